"""Scoring (1 and 2 processes, official checkpoint); ``dgqa select`` is tested in tests/data/test_select_cli.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dgqa_data.hub_folder import file_digest
from dgqa_data.scores import load_scores
from dgqa_train.data import CropDataset, load_iqa_dataset, norm_tensors, to_model_input
from dgqa_train.models import build_model, save_model
from dgqa_train.official import official_resnet50_key_map
from dgqa_train.score import load_classifier, score
from tests.train.synthetic import HELDOUT_SCENES, make_target, scene_crops

REPO = Path(__file__).resolve().parents[2]
CROP = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def accelerate_launch(script: str, args: list[str], tmp_path: Path, processes: int = 2, timeout: int = 240):
    """``accelerate launch --multi_gpu`` on ``processes`` CPU processes (gloo), checked."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
    ]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--main_process_port", str(port), script, *args]
    env = launch_env(tmp_path)
    env["MASTER_PORT"] = str(port)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("tiny-resnet", task="classify", pretrained=False, crop_size=CROP)
    return save_model(model, tmp_path_factory.mktemp("cls") / "tiny")


@pytest.fixture(scope="module")
def target7(tmp_path_factory) -> Path:
    """7 target images (odd, so padding or duplication across 2 processes would show)."""
    refs = scene_crops(HELDOUT_SCENES, size=40, per_scene=4)[:7]
    return make_target(tmp_path_factory.mktemp("tgt") / "target7", refs, {1: 3})


def test_score_averages_crop_logits(tmp_path, tiny_classifier, target7) -> None:
    result = score(
        tiny_classifier, str(target7), tmp_path / "s", crops=5, crop_size=CROP, batch_size=3, seed=4
    )
    ds = load_iqa_dataset(str(target7))
    assert result.image_ids == ds["image_id"] and result.logits.shape == (7, 26)
    model, identity = load_classifier(tiny_classifier)
    crops = CropDataset(ds, CROP, num_crops=5, train=False, label="distortion_type", seed=4)
    with torch.no_grad():
        norm = norm_tensors(model, torch.device("cpu"))
        expected = torch.stack(
            [model(to_model_input(crops[i]["pixel_values"], *norm)).mean(0) for i in range(len(ds))]
        ).numpy()
    np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5)

    saved = load_scores(tmp_path / "s")
    assert saved.image_ids == result.image_ids
    np.testing.assert_array_equal(saved.logits, result.logits)
    table = pq.read_table(tmp_path / "s" / "scores.parquet").to_pydict()
    assert table["predicted"] == result.logits.argmax(1).tolist()
    meta = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert (
        meta["classifier"]["sha256"]
        == file_digest(tiny_classifier / "model.safetensors")
        == identity["sha256"]
    )
    assert (meta["crops"], meta["crop_size"], meta["seed"], meta["num_images"]) == (5, CROP, 4, 7)
    assert meta["target"] == str(target7) and meta["num_processes"] == 1


@pytest.mark.slow
def test_score_two_processes_equals_one(tmp_path, tiny_classifier, target7) -> None:
    one = score(tiny_classifier, str(target7), tmp_path / "one", crops=3, crop_size=CROP, batch_size=2)
    args = ["--classifier", str(tiny_classifier), "--target", str(target7), "--out", str(tmp_path / "two")]
    args += ["--crops", "3", "--crop_size", str(CROP), "--batch_size", "2"]
    accelerate_launch("dgqa_train/score.py", args, tmp_path)
    two = load_scores(tmp_path / "two")
    assert two.meta["num_processes"] == 2  # a real 2-process run, not two independent copies
    assert two.image_ids == one.image_ids
    np.testing.assert_allclose(two.logits, one.logits, rtol=0, atol=1e-5)


def _official_state(model) -> dict[str, torch.Tensor]:
    """The official ``Baseline`` state dict (``backbone.<i>.*``, ``classify.0.*``) of an IQAModel."""
    seq = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    ours = model.state_dict()
    out = {}
    for tv, dst in official_resnet50_key_map().items():
        head, rest = tv.split(".", 1)
        key = f"classify.0.{rest}" if head == "classify" else f"backbone.{seq[head]}.{rest}"
        out[f"module.{key}"] = ours[dst]
    return out


def test_score_official_checkpoint(tmp_path, target7) -> None:
    torch.manual_seed(1)
    model = build_model("resnet50", task="classify", pretrained=False).eval()
    path = tmp_path / "kadis-700k_model_best.pth.tar"
    torch.save({"epoch": 1, "state_dict": _official_state(model)}, path)
    result = score(path, str(target7), tmp_path / "s", crops=1, crop_size=64, batch_size=4)
    ds = load_iqa_dataset(str(target7))
    crops = CropDataset(ds, 64, num_crops=1, train=False, label="distortion_type", seed=0)
    with torch.no_grad():
        x = torch.stack([crops[i]["pixel_values"] for i in range(len(ds))])
        expected = model(to_model_input(x, *norm_tensors(model, torch.device("cpu")))).numpy()
    np.testing.assert_allclose(result.logits, expected, rtol=1e-4, atol=1e-4)
    assert result.meta["classifier"]["format"] == "official-dgqa"
    assert result.meta["classifier"]["sha256"] == file_digest(path)


def test_regressor_is_not_a_classifier(tmp_path) -> None:
    save_model(build_model("tiny-resnet", task="regress", pretrained=False), tmp_path / "reg")
    with pytest.raises(ValueError, match="not a 26-way domain classifier"):
        load_classifier(tmp_path / "reg")
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "missing")
