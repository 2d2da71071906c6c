"""Domain-classifier training (1 and 2 processes, resume) and planted-domain recovery end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dgqa_data.distortions import distort
from dgqa_data.selection import select
from dgqa_train import cli
from dgqa_train.checkpoints import latest_checkpoint
from dgqa_train.data import load_iqa_dataset, split_by_reference
from dgqa_train.models import load_model
from dgqa_train.run_outputs import RUN_FILES
from dgqa_train.score import score
from dgqa_train.train_classifier import ClassifierTrainConfig, main
from tests.train.synthetic import (
    HELDOUT_SCENES,
    TRAIN_SCENES,
    make_source,
    make_target,
    scene_crops,
)
from tests.train.test_score_select import accelerate_launch

CROP = 32


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """8 references x (pristine + 3 visibly different distortions): 32 labelled images, 4 classes."""
    refs = scene_crops(TRAIN_SCENES, size=40, per_scene=2)
    return make_source(tmp_path_factory.mktemp("src") / "source", refs, types=(1, 2, 3), levels=(4,))


def base_args(source: Path, out: Path, *extra: str) -> list[str]:
    args = ["--train_dataset", str(source), "--output_dir", str(out), "--backbone", "tiny-resnet"]
    args += ["--pretrained", "false", "--crop_size", str(CROP), "--batch_size", "8", "--lr", "3e-3"]
    return args + list(extra)


def test_split_by_reference_has_no_leaks(source) -> None:
    ds = load_iqa_dataset(str(source))
    train, held = split_by_reference(ds, 0.25, seed=0)
    refs = ds["reference_id"]
    assert sorted(train + held) == list(range(len(ds)))
    assert {refs[i] for i in train}.isdisjoint({refs[i] for i in held})
    assert len({refs[i] for i in held}) == 2  # ceil(0.25 * 8) whole references
    with pytest.raises(ValueError, match="reference image"):
        split_by_reference(ds.filter(lambda r: r == refs[0], input_columns="reference_id"), 0.5, 0)


def test_training_lowers_the_loss(tmp_path, source) -> None:
    metrics = main(base_args(source, tmp_path / "run", "--epochs", "6", "--eval_dataset", str(source)))
    losses = [e["train_loss"] for e in metrics["epochs"]]
    evals = [e["eval_loss"] for e in metrics["epochs"]]
    assert len(losses) == 6 and metrics["global_step"] == 6 * 4
    assert losses[-1] < losses[0] - 0.1 and evals[-1] < evals[0]
    assert metrics["epochs"][-1]["eval_images"] == 32 and metrics["completed"]
    model = load_model(tmp_path / "run")
    assert model.task == "classify" and model.config.num_outputs == 26
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["epochs"] == metrics["epochs"] and on_disk["finished"] and on_disk["config"]["epochs"] == 6
    # the same output contract as dgqa train: model, flags, results, card (+ the confusion record)
    assert set(RUN_FILES) | {"confusion.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
    card = (tmp_path / "run" / "README.md").read_text()
    assert "Linear(feature_dim, 26)" in card and "- domain-classification" in card
    assert f"Accuracy {metrics['epochs'][-1]['eval_accuracy']:.4f} on 32 held-out images" in card


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="mixed_precision"):
        ClassifierTrainConfig(train_dataset="x", output_dir="y", mixed_precision="fp8")
    with pytest.raises(ValueError, match="eval_fraction"):
        ClassifierTrainConfig(train_dataset="x", output_dir="y", eval_fraction=1.0)


def test_unlabeled_rows_are_refused(tmp_path) -> None:
    target = make_target(tmp_path / "t", scene_crops(HELDOUT_SCENES, size=40, per_scene=1), {1: 3})
    with pytest.raises(ValueError, match="no distortion type"):
        main(base_args(target, tmp_path / "run", "--eval_fraction", "0"))


def test_resume_mid_epoch_equals_uninterrupted_run(tmp_path, source) -> None:
    """A run stopped mid-epoch (max_steps) and resumed from 'latest' ends with the same weights and
    metrics as one uninterrupted run: epoch, step, optimizer state and the data order are restored."""
    full = main(base_args(source, tmp_path / "full", "--epochs", "3", "--eval_fraction", "0.25"))

    config = tmp_path / "cls.yaml"
    config.write_text(
        "\n".join(f"{k}: {v}" for k, v in [("epochs", 3), ("eval_fraction", 0.25), ("max_steps", 5)]) + "\n"
    )
    assert cli.main(["train-classifier", "--config", str(config), *base_args(source, tmp_path / "part")]) == 0
    ckpt = latest_checkpoint(tmp_path / "part")
    state = json.loads((ckpt / "dgqa_state.json").read_text())
    assert (state["epoch"], state["global_step"], state["batches_in_epoch"]) == (1, 5, 2)  # 3 batches/epoch
    partial = json.loads((tmp_path / "part" / "results.json").read_text())
    assert [(e["epoch"], e["partial_epoch"]) for e in partial["epochs"]] == [(1, False), (2, True)]
    assert not partial["completed"]

    resumed = main(
        base_args(source, tmp_path / "part", "--epochs", "3", "--eval_fraction", "0.25")
        + ["--resume_from_checkpoint", "latest"]
    )
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3]
    assert resumed["global_step"] == full["global_step"] == 9 and resumed["completed"]
    for a, b in zip(resumed["epochs"], full["epochs"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["eval_accuracy"] == pytest.approx(b["eval_accuracy"])
    w_full = load_file(tmp_path / "full" / "model.safetensors")
    w_resumed = load_file(tmp_path / "part" / "model.safetensors")
    for name, tensor in w_full.items():
        torch.testing.assert_close(w_resumed[name], tensor, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_two_process_training(tmp_path, source) -> None:
    out = tmp_path / "run2"
    accelerate_launch(
        "dgqa_train/train_classifier.py",
        base_args(source, out, "--epochs", "2", "--eval_fraction", "0.25"),
        tmp_path,
    )
    metrics = json.loads((out / "results.json").read_text())
    assert metrics["num_processes"] == 2 and [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][-1]["eval_images"] == 8  # gathered exactly: 2 references x 4 images, no padding
    assert metrics["global_step"] == 2 * 2  # 24 train images / (8 per process x 2 processes), rounded up
    assert load_model(out).task == "classify"


PLANTED = {1: 4, 10: 5, 13: 4, 23: 4}  # gaussian_blur, jpeg, impulse_noise, color_block
PLANTED_SEED = int(os.environ.get("DGQA_PLANTED_SEED", "0"))  # vary to check robustness


@pytest.mark.slow
def test_planted_domain_recovery(tmp_path) -> None:
    """Train on a KADIS-style pool (pristine + 25 types x 3 levels of 4 photos), score a target made of
    different photos carrying 4 known distortion types, and recover those types with dgqa-vote."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest, and immune to a busy machine
    try:
        refs = scene_crops(TRAIN_SCENES, size=48, per_scene=6, seed=PLANTED_SEED)
        src = make_source(
            tmp_path / "src", refs, levels=(3, 4, 5), distort=distort, pristine_copies=3, seed=PLANTED_SEED
        )
        held = scene_crops(HELDOUT_SCENES, size=48, per_scene=6, seed=PLANTED_SEED + 1)
        target = make_target(tmp_path / "target", held, PLANTED, distort=distort, seed=7)
        same = lambda image, *_: image  # noqa: E731
        control = make_target(tmp_path / "control", held, {0: 0}, distort=same)  # the photos, undistorted
        args = ["--train_dataset", str(src), "--output_dir", str(tmp_path / "cls")]
        args += ["--backbone", "efficientnet-lite0", "--pretrained", "true", "--crop_size", "32"]
        args += ["--epochs", "4", "--batch_size", "32", "--lr", "5e-4", "--weight_decay", "0"]
        args += ["--eval_fraction", "0", "--seed", str(PLANTED_SEED)]
        main(args)
        planted_scores = score(tmp_path / "cls", str(target), tmp_path / "scores", crops=5, batch_size=32)
        control_scores = score(
            tmp_path / "cls", str(control), tmp_path / "control_scores", crops=5, batch_size=32
        )
    finally:
        torch.set_num_threads(threads)

    sel = select(planted_scores.logits, "dgqa-vote")
    ctl = select(control_scores.logits, "dgqa-vote")
    hit = set(sel.selected) & set(PLANTED)
    others = sorted(set(sel.selected) - set(PLANTED))
    share = np.array([r["vote_share"] for r in sel.table])
    control_share = np.array([r["vote_share"] for r in ctl.table])
    detail = f"selected {sel.selected}, control {ctl.selected}, shares {np.round(share, 3).tolist()}"
    print(detail)
    assert len(hit) >= 3, detail
    # with the K = 4 vote every planted type also lifts ~3 look-alikes (lens/motion blur for gaussian
    # blur, JPEG2000 for JPEG, other noises for impulse noise): at least 9 of the 21 others are rejected
    assert len(others) <= 12, detail
    # the planted types lead the ranking and draw far more votes than the average other domain
    top6 = np.argsort(-share[1:], kind="stable")[:6] + 1
    assert len(set(top6.tolist()) & set(PLANTED)) >= 3, detail
    non_planted = [t for t in range(1, 26) if t not in PLANTED]
    assert share[list(PLANTED)].mean() > 2 * share[non_planted].mean(), detail
    # ... and it is the distortions that drew them: the same photos undistorted vote less for 3 of the 4
    # planted types, and less for them together (pristine 48 px crops look like mild blur and JPEG to a
    # 4-epoch classifier, so the control's share of those two is high: compared per type, not by a margin)
    lifted = [t for t in PLANTED if share[t] > control_share[t]]
    detail += f", control shares {np.round(control_share, 3).tolist()}"
    assert len(lifted) >= 3 and share[list(PLANTED)].sum() > control_share[list(PLANTED)].sum(), detail
