"""Regressor training: loss goes down, 1 vs 2 processes agree exactly, resume is exact, NaN-safe results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dgqa_data.build import build_corpus
from dgqa_train.config import parse_config
from dgqa_train.data import (
    CropDataset,
    decode_rgb,
    load_iqa_dataset,
    make_loader,
    norm_tensors,
    random_crops,
    to_model_input,
)
from dgqa_train.evaluate import json_safe, predict_batches, score_metrics
from dgqa_train.models import build_model, load_model, save_model
from dgqa_train.train import TrainConfig, train
from tests.fixtures.official import make_kadid10k

REPO = Path(__file__).resolve().parents[2]
# 15 images (1 reference x 3 types x 5 levels): odd, so even-batch padding would show in the metrics.
TINY = ["--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32", "--test_crops", "3",
        "--batch_size", "4", "--num_workers", "0", "--log_every", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def kadid(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("kadid")
    make_kadid10k(root / "raw", n_refs=1)
    build_corpus("kadid10k", root / "raw", root / "ds", progress=False)
    return str(root / "ds")


def run(kadid: str, out: Path, *extra: str) -> dict:
    argv = [*TINY, "--train_dataset", kadid, "--eval_datasets", kadid, "--output_dir", str(out), *extra]
    return train(parse_config(TrainConfig, argv))


def strict_json(path: Path) -> dict:
    def no_nan(token: str):
        raise AssertionError(f"{path} contains {token}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=no_nan)


@pytest.fixture(scope="module")
def trained(kadid, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    return out, run(kadid, out, "--epochs", "4", "--lr_backbone", "1e-3", "--lr_head", "5e-2")


def test_training_lowers_the_loss_and_writes_a_loadable_model(trained, kadid):
    out, results = trained
    losses = [h["train_loss"] for h in results["history"]]
    assert len(losses) == 4 and all(h["train_images"] == 15 for h in results["history"])
    assert losses[-1] < 0.7 * losses[0], losses

    on_disk = strict_json(out / "results.json")
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["finished"] and on_disk["world_size"] == 1 and on_disk["train"]["images"] == 15
    last = on_disk["last_epoch"]
    assert last["epoch"] == 4 and last["metrics"][kadid] == on_disk["history"][-1]["eval"][kadid]
    assert set(last["metrics"][kadid]) >= {"srcc", "plcc", "krcc", "rmse", "plcc_logistic4", "n"}
    assert last["metrics"][kadid]["n"] == 15
    best = on_disk["best_epoch"][kadid]
    srccs = [h["eval"][kadid]["srcc"] for h in on_disk["history"]]
    assert best["metrics"]["srcc"] == max(srccs) and "optimistic" in on_disk["best_epoch_note"]
    assert on_disk["config"]["backbone"] == "tiny-resnet" and on_disk["config"]["epochs"] == 4

    model = load_model(out)
    assert model.task == "regress" and model.config.extra["dgqa_train"]["train_dataset"] == kadid
    # the last in-training evaluation is the evaluation of the saved model (same test crops every epoch)
    mean, std = norm_tensors(model, torch.device("cpu"))
    loader = make_loader(CropDataset(load_iqa_dataset(kadid), 32, 3, train=False, seed=123), 4, 123, False, 0)
    _, pred, label = predict_batches(model, loader, mean, std)
    assert json_safe(score_metrics(pred, label)) == last["metrics"][kadid]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "| eval dataset |" in card and "load_model" in card
    assert strict_json(out / "train_config.json")["lr_head"] == 5e-2


def test_crops_are_a_function_of_seed_epoch_and_row(kadid):
    ds = load_iqa_dataset(kadid)
    crops = CropDataset(ds, 32, 3, train=True, seed=7)
    for i in (0, 14):
        item = crops[(2, i)]
        want = random_crops(decode_rgb(ds[i]["image"]), 32, 3, np.random.default_rng((7, 2, i)), flip=True)
        assert item["pixel_values"].dtype == torch.uint8 and item["pixel_values"].shape == (3, 3, 32, 32)
        assert torch.equal(item["pixel_values"], torch.from_numpy(want).permute(0, 3, 1, 2))
        assert torch.equal(crops[(2, i)]["pixel_values"], item["pixel_values"])  # same key, same crops
        assert not torch.equal(crops[(3, i)]["pixel_values"], item["pixel_values"])  # next epoch: new ones
        assert float(item["labels"]) == pytest.approx(ds[i]["quality"]) and int(item["index"]) == i
    # the one normalisation: (x / 255 - mean) / std on uint8; cached float features pass through
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1), torch.tensor([0.2, 0.25, 0.5]).view(3, 1, 1)
    x = crops[(0, 0)]["pixel_values"]
    assert torch.allclose(to_model_input(x, mean, std), (x.float() / 255 - mean) / std)
    feats = torch.randn(4, 8)
    assert to_model_input(feats, mean, std) is feats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, model_dir: Path, kadid: str, out: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(out.parent / f"hf{n}"), "OMP_NUM_THREADS": "1"}
    multi = ["--multi_gpu"] if n > 1 else []
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(n),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "dgqa_train/train.py",
        "--init_model", str(model_dir), "--epochs", "0", "--eval_datasets", kadid, "--output_dir", str(out),
        "--crop_size", "32", "--test_crops", "3", "--batch_size", "4", "--num_workers", "0",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_one_and_two_processes_give_identical_metrics(trained, kadid, tmp_path):
    model_dir, _ = trained
    procs = {n: launch(n, model_dir, kadid, tmp_path / f"p{n}") for n in (1, 2)}
    for n, p in procs.items():
        log, _ = p.communicate(timeout=240)
        assert p.returncode == 0, f"{n} process(es):\n{log[-4000:]}"
    one, two = (strict_json(tmp_path / f"p{n}" / "results.json") for n in (1, 2))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    m1, m2 = one["last_epoch"]["metrics"][kadid], two["last_epoch"]["metrics"][kadid]
    assert m1["n"] == m2["n"] == 15  # 15 rows on 2 x batch 4: one padded duplicate, dropped by the gather
    assert m1 == m2  # bit-identical, not approximately equal


def test_resume_reproduces_a_straight_run(kadid, tmp_path):
    lr = ["--lr_backbone", "1e-3", "--lr_head", "1e-2"]
    straight = run(kadid, tmp_path / "a", "--epochs", "2", *lr)
    # stop after 1 epoch, resume for the second
    run(kadid, tmp_path / "b", "--epochs", "1", *lr)
    with pytest.raises(ValueError, match="resume_from_checkpoint latest or --overwrite_output_dir"):
        run(kadid, tmp_path / "b", "--epochs", "2", *lr)  # a fresh run must not mix with old checkpoints
    torn = tmp_path / "b" / "checkpoints" / "checkpoint_7"  # a save killed half-way: no marker
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\x00" * 10)
    resumed = run(kadid, tmp_path / "b", "--epochs", "2", "--resume_from_checkpoint", "latest", *lr)
    # stop mid-epoch (15 images / batch 4 = 4 steps per epoch), resume from the step checkpoint
    stopped = run(kadid, tmp_path / "c", "--epochs", "2", "--max_steps", "3", *lr)
    assert [(h["epoch"], h["step"], h["partial_epoch"]) for h in stopped["history"]] == [(1, 3, True)]
    mid = run(kadid, tmp_path / "c", "--epochs", "2", "--resume_from_checkpoint", "latest", *lr)

    weights = load_file(tmp_path / "a" / "model.safetensors")
    for other in ("b", "c"):
        w = load_file(tmp_path / other / "model.safetensors")
        assert all(torch.equal(weights[k], w[k]) for k in weights), other
    assert straight["last_epoch"] == resumed["last_epoch"] == mid["last_epoch"]
    assert straight["history"][0]["train_loss"] == resumed["history"][0]["train_loss"]
    assert resumed["history"][-1]["step"] == straight["history"][-1]["step"] == 8
    # the resumed run finished the stopped epoch: its record replaces the partial one, with the exact loss
    assert [(h["epoch"], h["partial_epoch"]) for h in mid["history"]] == [(1, False), (2, False)]
    assert mid["history"][0]["train_loss"] == straight["history"][0]["train_loss"]
    assert mid["history"][0]["train_images"] == straight["history"][0]["train_images"] == 15


def test_constant_predictions_give_null_metrics_not_a_crash(kadid, tmp_path):
    model = build_model("tiny-resnet", pretrained=False, task="regress", crop_size=32)
    with torch.no_grad():
        model.head.weight.zero_()
    save_model(model, tmp_path / "init")
    with pytest.warns(UserWarning, match="constant"):
        results = run(
            kadid, tmp_path / "out", "--init_model", str(tmp_path / "init"), "--epochs", "1",
            "--lr_backbone", "0", "--lr_head", "0",
        )  # fmt: skip
    metrics = strict_json(tmp_path / "out" / "results.json")["last_epoch"]["metrics"][kadid]
    assert metrics["srcc"] is None and metrics["plcc"] is None and metrics["plcc_logistic4"] is None
    assert metrics["rmse"] > 0 and any("constant" in w for w in metrics["warnings"])
    assert results["best_epoch"][kadid] is None


def test_streaming_and_domain_filter(kadid, tmp_path):
    results = run(kadid, tmp_path / "s", "--epochs", "1", "--streaming", "--domains", "gaussian_blur", "3")
    assert results["history"][0]["train_images"] == 10  # 2 of 3 types x 5 levels
    assert results["last_epoch"]["metrics"][kadid]["n"] == 15


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {os.environ['DGQA_TEST_PWNED']}",))


def restamp(ckpt: Path) -> None:
    """Record a checkpoint folder's current files in its marker."""
    from dgqa_train.checkpoints import STATE_FILE, file_records

    state = json.loads((ckpt / STATE_FILE).read_text())
    (ckpt / STATE_FILE).write_text(json.dumps(state | {"files": file_records(ckpt)}))


def test_resume_never_unpickles_code_from_a_checkpoint_folder(kadid, tmp_path, monkeypatch):
    import pickle

    run(kadid, tmp_path / "r", "--epochs", "1")
    ckpt = tmp_path / "r" / "checkpoints" / "checkpoint_0"
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("DGQA_TEST_PWNED", str(pwned))
    (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match="cannot load this checkpoint: Number of custom checkpoints"):
        run(kadid, tmp_path / "r", "--epochs", "2", "--resume_from_checkpoint", "latest")
    (ckpt / "custom_checkpoint_0.pkl").unlink()
    # Accelerate reads the RNG file with weights_only: the code pickle is refused (and the RNG state
    # skipped with a warning), the run goes on
    (ckpt / "random_states_0.pkl").write_bytes(pickle.dumps(_Evil()))
    restamp(ckpt)  # an attacker who also rewrites the marker's file hashes
    results = run(kadid, tmp_path / "r", "--epochs", "2", "--resume_from_checkpoint", "latest")
    assert results["finished"] and not pwned.exists()
    latest = max(
        (tmp_path / "r" / "checkpoints").glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[1])
    )
    (latest / "optimizer.bin").write_bytes(pickle.dumps(_Evil()))
    restamp(latest)
    with pytest.raises(ValueError, match="refused to load a checkpoint file that is not plain"):
        run(kadid, tmp_path / "r", "--epochs", "3", "--resume_from_checkpoint", "latest")
    assert not pwned.exists()


def test_a_cpu_launch_that_got_one_process_warns(monkeypatch, tmp_path):
    from dgqa_train.config import make_accelerator

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # accelerate launch --cpu --num_processes 2
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.warns(UserWarning, match="--multi_gpu --num_processes N"):
        accelerator = make_accelerator(tmp_path)
    assert accelerator.num_processes == 1
