"""Per-epoch DRC (``dgqa train --drc_per_epoch``): planted duplicates are thinned each epoch, the kept
rows are recorded, reproducible under a seed, the same on 1 and 2 processes, and exact after a resume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dgqa_data.curate import drc
from dgqa_data.errors import DgqaError
from dgqa_train.config import parse_config
from dgqa_train.data import EpochSampler
from dgqa_train.epoch_drc import EpochDrc, kept_digest
from dgqa_train.train import TrainConfig, train
from tests.train.synthetic import TRAIN_SCENES, scene_crops, write_folder
from tests.train.test_score_select import launch_env
from tests.train.test_train import free_port

REPO = Path(__file__).resolve().parents[2]
TINY = ["--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32", "--test_crops", "1",
        "--batch_size", "4", "--num_workers", "0", "--log_every", "1"]  # fmt: skip
# clusters above 2 rows keep max(2, floor(L / 2)): the 8 planted copies keep 4
DRC = ["--drc_per_epoch", "--drc_max_cluster", "2", "--drc_keep", "0.5"]
# thresholds under which the model's features decide the clusters too (labels up to 2 apart can link)
REAL = ["--drc_per_epoch", "--drc_label_gap", "3", "--drc_max_cluster", "2", "--lr_backbone", "1e-3",
        "--lr_head", "1e-2"]  # fmt: skip
DISTINCT, COPIES = 8, 8
# 9 labels 1.25 apart once normalised to [0, 10]: only rows with the same label can link (gap < 1)
LABELS = np.linspace(0.0, 1.0, DISTINCT + 1)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> str:
    """8 distinct photos with distinct labels, then one more photo repeated 8 times with one label."""
    crops = scene_crops(TRAIN_SCENES, size=40, per_scene=3)[: DISTINCT + 1]
    rows = [
        {"image": img, "image_id": f"{ref}.png", "reference_id": ref, "distortion_type": 0,
         "quality": float(LABELS[i])}
        for i, (ref, img) in enumerate(crops[:DISTINCT])
    ]  # fmt: skip
    ref, img = crops[DISTINCT]
    rows += [
        {"image": img, "image_id": f"{ref}_copy{c}.png", "reference_id": ref, "distortion_type": 0,
         "quality": float(LABELS[DISTINCT])}
        for c in range(COPIES)
    ]  # fmt: skip
    return str(write_folder(tmp_path_factory.mktemp("planted") / "ds", rows))


def run(data: str, out: Path, *extra: str) -> dict:
    argv = [*TINY, "--train_dataset", data, "--eval_datasets", data, "--output_dir", str(out), *extra]
    return train(parse_config(TrainConfig, argv))


def expected_kept(seed: int, epoch: int) -> np.ndarray:
    """The kept rows DRC must find: the planted copies form the one cluster, whatever the features."""
    n = DISTINCT + COPIES
    feats = np.eye(DISTINCT + 1, dtype=np.float32)[[*range(DISTINCT), *[DISTINCT] * COPIES]]
    labels = [*LABELS[:DISTINCT], *[LABELS[DISTINCT]] * COPIES]
    result = drc(feats, labels, max_cluster=2, keep=0.5, seed=[seed, epoch])
    assert result.kept.size == n - COPIES // 2
    return result.kept


@pytest.fixture(scope="module")
def three_epochs(planted, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("drc3")
    return out, run(planted, out, "--epochs", "3", "--seed", "5", *DRC)


def test_planted_copies_are_thinned_every_epoch_and_recorded(three_epochs):
    out, results = three_epochs
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["history"] == json.loads(json.dumps(results["history"]))
    for h in on_disk["history"]:
        d = h["drc"]
        assert (d["rows"], d["kept"], d["clusters"], d["rows_in_clusters"], d["thinned_clusters"]) == (16, 12, 1, 8, 1)
        assert d["kept_sha256"] == kept_digest(expected_kept(5, h["epoch"] - 1))  # seeded by (seed, epoch)
        assert h["train_images"] == 12  # the sampler drew only the kept rows
        assert d["kept_per_type"] == {"0": 12}
    assert len({h["drc"]["kept_sha256"] for h in on_disk["history"]}) > 1  # redrawn each epoch
    card = (out / "README.md").read_text()
    assert "per-epoch DRC" in card and "rows kept per epoch: 12, 12, 12 of 16" in card


def test_same_seed_same_rows_and_weights(planted, three_epochs, tmp_path):
    out, first = three_epochs
    again = run(planted, tmp_path / "again", "--epochs", "3", "--seed", "5", *DRC)
    assert [h["drc"]["kept_sha256"] for h in again["history"]] == [
        h["drc"]["kept_sha256"] for h in first["history"]
    ]
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_off_by_default_keeps_every_row(planted, tmp_path):
    results = run(planted, tmp_path / "off", "--epochs", "1")
    assert results["history"][0]["train_images"] == 16 and "drc" not in results["history"][0]
    assert "per-epoch DRC" not in (tmp_path / "off" / "README.md").read_text()


def test_resume_mid_epoch_and_at_an_epoch_boundary_equal_a_straight_run(planted, tmp_path, monkeypatch):
    straight = run(planted, tmp_path / "a", "--epochs", "2", *REAL)
    kept = [h["drc"]["kept"] for h in straight["history"]]
    # the model's features, not only the planted copies, decide the clusters
    assert any(h["drc"]["rows_in_clusters"] != COPIES for h in straight["history"]), straight["history"]
    stop = -(-kept[0] // 4) + 1  # one step into epoch 2
    stopped = run(planted, tmp_path / "b", "--epochs", "2", "--max_steps", str(stop), *REAL)
    assert [(h["epoch"], h["partial_epoch"]) for h in stopped["history"]] == [(1, False), (2, True)]
    # the checkpoint keeps epoch 2's rows: the model that chose them is gone after step `stop`
    ckpt = max((tmp_path / "b" / "checkpoints").glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[1]))
    saved = json.loads((ckpt / "dgqa_state.json").read_text())["epoch_rows"]
    dropped = set(saved["dropped"])
    assert saved["epoch"] == 1 and len(dropped) == 16 - kept[1]
    assert kept_digest(np.array([i for i in range(16) if i not in dropped])) == straight["history"][1]["drc"][
        "kept_sha256"
    ]
    run(planted, tmp_path / "c", "--epochs", "1", *REAL)
    chosen = []  # the epochs whose rows a feature pass chose
    choose = EpochDrc.choose
    monkeypatch.setattr(EpochDrc, "choose", lambda self, epoch: chosen.append(epoch) or choose(self, epoch))
    mid = run(planted, tmp_path / "b", "--epochs", "2", "--resume_from_checkpoint", "latest", *REAL)
    assert chosen == []  # the interrupted epoch's rows came from the checkpoint
    edge = run(planted, tmp_path / "c", "--epochs", "2", "--resume_from_checkpoint", "latest", *REAL)
    assert chosen == [1]  # a new epoch after a resume: chosen by the restored model

    weights = load_file(tmp_path / "a" / "model.safetensors")
    for other, resumed in (("b", mid), ("c", edge)):
        w = load_file(tmp_path / other / "model.safetensors")
        assert all(torch.equal(weights[k], w[k]) for k in weights), other
        assert resumed["last_epoch"] == straight["last_epoch"]
        for h, s in zip(resumed["history"], straight["history"], strict=True):
            assert without_time(h["drc"]) == without_time(s["drc"])
            assert (h["train_loss"], h["train_images"]) == (s["train_loss"], s["train_images"])


def without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "time_s"}


def test_sampler_draws_only_the_given_rows_and_leaves_out_a_lone_last_row():
    sampler = EpochSampler(20, seed=3, lone_batch=4)
    sampler.set_epoch(2)
    assert sorted(i for _, i in sampler) == list(range(20))
    sampler.use_rows([1, 4, 6, 9, 11, 15, 17, 19, 0])  # 9 rows in batches of 4: one row is left out
    drawn = [i for e, i in sampler]
    assert len(sampler) == len(drawn) == 8 and set(drawn) < {0, 1, 4, 6, 9, 11, 15, 17, 19}
    assert drawn == [i for _, i in sampler]  # a function of (seed, epoch)
    sampler.use_rows(None)
    assert len(sampler) == 20


def test_bad_drc_settings_and_data_are_refused(planted, tmp_path):
    for flags, message in (
        (["--drc_sim", "1"], "--drc_sim must be < 1"),
        (["--drc_keep", "1.5"], "--drc_keep must be in"),
        (["--drc_max_cluster", "0"], "--drc_max_cluster must be >= 1"),
        (["--streaming"], "cannot be used with --streaming"),
    ):
        with pytest.raises(DgqaError, match=message):
            parse_config(TrainConfig, ["--output_dir", str(tmp_path / "x"), "--train_dataset", planted,
                                       "--drc_per_epoch", *flags])  # fmt: skip
    crops = scene_crops(TRAIN_SCENES, size=40, per_scene=1)
    flat = write_folder(
        tmp_path / "flat",
        [{"image": img, "image_id": f"{r}.png", "distortion_type": 0, "quality": 0.5} for r, img in crops],
    )
    with pytest.raises(DgqaError, match="constant labels"):
        run(str(flat), tmp_path / "flat_run", "--epochs", "1", *DRC)
    assert not (tmp_path / "flat_run" / "results.json").exists()


def test_saved_rows_are_checked_before_a_resume_uses_them():
    drc_rows = EpochDrc.__new__(EpochDrc)  # restore() reads only the labels
    drc_rows.labels = np.linspace(0, 1, 6)
    kept = np.array([0, 2, 3, 5])
    saved = {"epoch": 1, "dropped": [1, 4], "record": {"drc": {"rows": 6, "kept_sha256": kept_digest(kept)}}}
    assert drc_rows.restore(1, saved).tolist() == kept.tolist()
    for bad, message in (
        (saved | {"epoch": 2}, "are for epoch 2 (from 0) of 6 rows, not epoch 1 of 6"),
        (saved | {"dropped": [1]}, "do not match their recorded digest"),
        (saved | {"dropped": [1, 9]}, "do not match their recorded digest"),
        (saved | {"dropped": "1, 4"}, "do not match their recorded digest"),
    ):
        with pytest.raises(DgqaError, match=re.escape(message)):
            drc_rows.restore(1, bad)


@pytest.mark.slow
def test_two_processes_keep_the_rows_of_one(planted, tmp_path):
    """DRC on the model's features, gathered from 2 processes, keeps the rows that 1 process keeps."""
    outs = {n: tmp_path / f"p{n}" for n in (1, 2)}
    for n, out in outs.items():
        port = free_port()
        multi = ["--multi_gpu"] if n > 1 else []
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(n),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), "dgqa_train/train.py", *TINY, *REAL,
               "--train_dataset", planted, "--output_dir", str(out), "--epochs", "1"]  # fmt: skip
        env = launch_env(tmp_path)
        env["MASTER_PORT"] = str(port)
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    one, two = (json.loads((out / "results.json").read_text()) for out in outs.values())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    d1, d2 = one["history"][0]["drc"], two["history"][0]["drc"]
    assert d1["rows"] == 16 and d1["kept"] < 16
    assert without_time(d1) == without_time(d2)  # same clusters, same kept rows (digest)
    drawn = d2["kept"] - (d2["kept"] % 4 == 1)  # a lone last row is left out
    assert two["history"][0]["train_images"] == -(-drawn // 8) * 8  # Accelerate fills the last batches
