"""Fault matrix of training (issue 19, sections 4, 6 and 8): a resume with other settings is refused
naming them; a torn or failed checkpoint is skipped, never used; a bad ``dgqa_state.json``, a refused
RNG state and a broken model folder each give one line; a last batch of one image, duplicate images
in one predict call, bad labels and bad config-file values are handled."""

from __future__ import annotations

import errno
import json
import pickle
import shutil
from pathlib import Path

import accelerate.checkpointing
import pytest

from dgqa_data.build import build_corpus
from dgqa_train import cli
from dgqa_train.checkpoints import STATE_FILE, file_records
from tests.fixtures.official import make_kadid10k
from tests.train.test_train import restamp

# 15 images, batch 4: 4 optimizer steps per epoch
TINY = ["--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32", "--test_crops", "1",
        "--batch_size", "4", "--num_workers", "0"]  # fmt: skip


def run(capsys, *argv) -> tuple[int, str, str]:
    """``dgqa argv`` in process: (exit code, stdout, stderr)."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as err:
        rc = err.code
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 15-image dataset, a second one, and a finished 2-epoch run with checkpoint_0 and checkpoint_1."""
    root = tmp_path_factory.mktemp("resume")
    make_kadid10k(root / "raw", n_refs=1)
    build_corpus("kadid10k", root / "raw", root / "ds", progress=False)
    shutil.copytree(root / "ds", root / "ds2")
    rc = cli.main(["train", *TINY, "--train_dataset", str(root / "ds"), "--output_dir", str(root / "run"),
                   "--epochs", "2"])  # fmt: skip
    assert rc == 0
    return root


def resume(world, tmp_path, capsys, *extra) -> tuple[int, str, str, Path]:
    """Copy the finished run and resume it for a third epoch (``extra`` overrides flags)."""
    out = tmp_path / "run"
    if not out.exists():
        shutil.copytree(world / "run", out)
    argv = ["train", *TINY, "--train_dataset", world / "ds", "--output_dir", out, "--epochs", "3",
            "--resume_from_checkpoint", "latest", *extra]  # fmt: skip
    return (*run(capsys, *argv), out)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--batch_size", "5"], "batch_size (4 -> 5)"),
        (["--train_dataset", "{ds2}"], "train_dataset ('{ds}' -> '{ds2}')"),
        (["--lr_head", "0.001", "--seed", "7"], "lr_head (0.0002 -> 0.001); seed (123 -> 7)"),
    ],
)
def test_a_resume_with_other_settings_is_refused_naming_them(world, tmp_path, capsys, extra, named):
    names = {"ds": str(world / "ds"), "ds2": str(world / "ds2")}
    before = file_records(world / "run")
    rc, _, err, out = resume(world, tmp_path, capsys, *[a.format(**names) for a in extra])
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err  # refused before any progress bar
    assert f"checkpoint_1 was trained with other settings: {named.format(**names)}; " in err
    assert "--allow_resume_mismatch" in err
    assert file_records(out) == before  # nothing trained, nothing written


def test_an_explicit_override_resumes_and_says_what_changed(world, tmp_path, capsys):
    rc, stdout, err, out = resume(world, tmp_path, capsys, "--batch_size", "5", "--allow_resume_mismatch")
    assert rc == 0, err
    assert "resuming " in stdout and "with changed settings: batch_size (4 -> 5)" in stdout
    assert json.loads((out / "results.json").read_text())["history"][-1]["epoch"] == 3
    # epochs and the run's bookkeeping may change without an override
    rc, _, err, out = resume(world, tmp_path, capsys, "--epochs", "4", "--batch_size", "5", "--log_every", "3")
    assert rc == 0, err


@pytest.mark.parametrize("damage", ["truncate", "tamper", "delete"])
def test_a_torn_newest_checkpoint_is_skipped_for_the_newest_that_verifies(world, tmp_path, capsys, damage):
    out = tmp_path / "run"
    shutil.copytree(world / "run", out)
    weights = out / "checkpoints" / "checkpoint_1" / "model.safetensors"
    size = weights.stat().st_size
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:500])
        why = f"has 500 bytes, not {size}"
    elif damage == "tamper":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
        why = "has changed"
    else:
        weights.unlink()
        why = "is missing"
    rc, stdout, err, _ = resume(world, tmp_path, capsys)
    assert rc == 0, err
    assert f"skipping checkpoint checkpoint_1: {weights} {why} (torn or altered checkpoint)" in stdout
    assert f"resumed from {out / 'checkpoints' / 'checkpoint_0'}: epoch 1, step 4" in stdout
    history = json.loads((out / "results.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["step"] == 12
    # named explicitly, the torn checkpoint is one line
    rc, _, err = run(capsys, "train", *TINY, "--train_dataset", world / "ds", "--output_dir", tmp_path / "x",
                     "--epochs", "3", "--resume_from_checkpoint", weights.parent)  # fmt: skip
    assert rc == 2 and err.strip().endswith(f"{weights} {why} (torn or altered checkpoint)")


def test_a_save_that_fails_on_a_full_disk_leaves_no_torn_checkpoint(world, tmp_path, capsys, monkeypatch):
    real = accelerate.checkpointing.save
    calls = []

    def full_disk(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # checkpoint_1's optimizer file: half written, then the disk is full
            Path(path).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(accelerate.checkpointing, "save", full_disk)
    out = tmp_path / "run"
    argv = ["train", *TINY, "--train_dataset", world / "ds", "--output_dir", out, "--epochs", "2"]
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and "Traceback" not in err
    assert f"could not save checkpoint {out / 'checkpoints' / 'checkpoint_1'}: No space left on device;" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint_0"]
    monkeypatch.setattr(accelerate.checkpointing, "save", real)
    rc, stdout, err = run(capsys, *argv, "--resume_from_checkpoint", "latest")
    assert rc == 0, err
    assert "resumed from" in stdout and "checkpoint_0: epoch 1, step 4" in stdout


BAD_STATES = [
    ({"epoch": -1}, "epoch must be a whole number >= 0, got -1"),
    ({"epoch": "1"}, "epoch must be a whole number >= 0, got '1'"),
    ({"global_step": None}, "global_step must be a whole number >= 0, got None"),
    ({"loss_sum": float("nan")}, "loss_sum must be a finite number, got nan"),
    ({"history": "x"}, "history must be a list of epoch records, got 'x'"),
    ({"files": {"model.safetensors": {"size": 1}}}, "files must be an object of {size, sha256} records"),
    ("drop:batches_in_epoch", "batches_in_epoch is missing"),
    ("text:[1, 2]", "not a dgqa checkpoint marker (a JSON object)"),
    ("text:{not json", "not a dgqa checkpoint marker: Expecting property name"),
    ({"batches_in_epoch": 10**9}, "says 1000000000 batches of epoch 3 are done, but an epoch has 4"),
]


@pytest.mark.parametrize(("change", "message"), BAD_STATES, ids=[m[:25] for _, m in BAD_STATES])
def test_a_bad_state_file_is_one_line(world, tmp_path, capsys, change, message):
    out = tmp_path / "run"
    shutil.copytree(world / "run", out)
    marker = out / "checkpoints" / "checkpoint_1" / STATE_FILE
    state = json.loads(marker.read_text())
    if isinstance(change, dict):
        marker.write_text(json.dumps(state | change))
    elif change.startswith("drop:"):
        del state[change[5:]]
        marker.write_text(json.dumps(state))
    else:
        marker.write_text(change[5:])
    rc, _, err, _ = resume(world, tmp_path, capsys)
    assert rc == 2 and "Traceback" not in err, err
    assert message in err.strip().splitlines()[-1]
    assert str(marker) in err or "batches_in_epoch" in change


def test_a_refused_rng_state_is_said(world, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(world / "run", out)
    ckpt = out / "checkpoints" / "checkpoint_1"
    (ckpt / "random_states_0.pkl").write_bytes(pickle.dumps({"not": "a state"}))
    restamp(ckpt)
    rc, stdout, err, _ = resume(world, tmp_path, capsys)
    assert rc == 0, err
    notes = [line for line in stdout.splitlines() if "random number state" in line]
    assert notes == [f"note: Accelerate could not restore the random number state from {ckpt} (skipped); "
                     "the resumed run's random crops and shuffles differ from an uninterrupted run's"]  # fmt: skip
    # an intact checkpoint restores it without a note
    rc, stdout, _, _ = resume(world, tmp_path / "b", capsys)
    assert rc == 0 and "random number state" not in stdout


MODEL_DAMAGE = [
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:1000]), "model.safetensors: cannot load the weights (Error while deserializing header"),
    ("model.safetensors", lambda p: p.write_bytes(b"hello" * 20), "model.safetensors: cannot load the weights (Error while deserializing header"),
    ("config.json", lambda p: p.write_text("{oops"), "config.json: not a valid dgqa model config: Expecting property name"),
    ("config.json", lambda p: p.write_text(json.dumps(json.loads(p.read_text()) | {"crop_size": "32"})), "config.json: not a valid dgqa model config: model config key 'crop_size' has the wrong type or value: '32'"),
    ("config.json", lambda p: p.write_text(json.dumps(json.loads(p.read_text()) | {"num_outputs": 3})), "model.safetensors: cannot load the weights (size mismatch for regress.weight"),
    ("config.json", lambda p: p.write_bytes(b'{"backbone": "\xe9"}'), "config.json: not a valid dgqa model config: 'utf-8' codec can't decode"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "damage", "message"), MODEL_DAMAGE, ids=[m[:40] for *_, m in MODEL_DAMAGE])
def test_a_broken_model_folder_is_one_line_naming_the_file(world, tmp_path, capsys, name, damage, message):
    model = tmp_path / "model"
    model.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(world / "run" / f, model / f)
    damage(model / name)
    image = next((world / "raw").rglob("*.png"))
    for argv in (
        ["predict", "--model", model, image],
        ["score", "--classifier", model, "--target", world / "ds", "--out", tmp_path / "s", "--crops", "1"],
        ["train", *TINY, "--train_dataset", world / "ds", "--output_dir", tmp_path / "t", "--epochs", "1",
         "--init_model", model],
    ):  # fmt: skip
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and "Traceback" not in err, (argv[0], err)
        line = err.strip().splitlines()[-1]
        assert line.startswith(f"dgqa {argv[0]}: error: {model}/{message}"), line


# -- section 6: training edge cases ---------------------------------------------------------------
CONFIGS = [
    ("c.json", '{"epochs": 1e400}', "c.json: epochs must be a whole number, got inf"),
    ("c.json", '{"epochs": 2.7}', "c.json: epochs must be a whole number, got 2.7"),
    ("c.yaml", "epochs: 2.7\n", "c.yaml: epochs must be a whole number, got 2.7"),
    ("c.yaml", "pretrained: maybe\n", "c.yaml: pretrained must be true or false, got 'maybe'"),
    ("c.json", '{"batch_size": true}', "c.json: batch_size must be a whole number, got True"),
    ("c.json", '{"epochs": [1, 2]}', "c.json: epochs must be a whole number, got [1, 2]"),
    ("c.json", '{"mixed_precision": "fp8"}', "--mixed_precision must be no, fp16 or bf16, got 'fp8'"),
    ("c.json", "[1]", "c.json: a config file holds KEY: VALUE pairs, got list"),
]


@pytest.mark.parametrize(("name", "text", "message"), CONFIGS, ids=[c[2][:40] for c in CONFIGS])
def test_config_file_values_are_checked_like_flags(world, tmp_path, capsys, name, text, message):
    (tmp_path / name).write_text(text)
    for verb in ("train", "train-classifier"):
        rc, _, err = run(capsys, verb, "--config", tmp_path / name, "--train_dataset", world / "ds",
                         "--output_dir", tmp_path / verb)  # fmt: skip
        assert rc == 2 and err.strip().splitlines() == [f"dgqa {verb}: error: {tmp_path / message}"
                                                        if message.startswith("c.") else f"dgqa {verb}: error: {message}"]
        assert not (tmp_path / verb).exists()


def test_a_yaml_config_file_reads_like_the_flags(world, tmp_path):
    from dgqa_train.config import parse_config
    from dgqa_train.train import TrainConfig

    (tmp_path / "c.yaml").write_text("lr_head: 1e-4\nepochs: 2\npretrained: false\neval_datasets: a\n")
    config = parse_config(TrainConfig, ["--config", str(tmp_path / "c.yaml"), "--train_dataset", "x"])
    assert (config.lr_head, config.epochs, config.pretrained, config.eval_datasets) == (1e-4, 2, False, ["a"])


def test_a_last_batch_of_one_image_is_dropped_and_said_once(world, tmp_path, capsys):
    # 15 images in batches of 7: 7 + 7 + 1; BatchNorm cannot train on the lone image
    rc, stdout, err = run(capsys, "train", *TINY, "--train_dataset", world / "ds", "--output_dir", tmp_path / "r",
                          "--epochs", "2", "--batch_size", "7")  # fmt: skip
    assert rc == 0, err
    note = ("note: 15 training images in batches of 7 leave a last batch of one image, which BatchNorm cannot "
            "train on: it is dropped each epoch (a different image each time)")  # fmt: skip
    assert err.count(note) == 1
    history = json.loads((tmp_path / "r" / "results.json").read_text())["history"]
    assert [(h["step"], h["train_images"]) for h in history] == [(2, 14), (4, 14)]
    rc, _, err = run(capsys, "train-classifier", "--train_dataset", world / "ds", "--output_dir", tmp_path / "c",
                     "--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32", "--epochs", "1",
                     "--batch_size", "7", "--num_workers", "0", "--eval_fraction", "0")  # fmt: skip
    assert rc == 0, err
    assert err.count(note) == 1


def test_an_image_scores_the_same_wherever_it_sits_in_a_call(world, tmp_path, capsys):
    import datasets
    import torch

    from dgqa_train.data import CropDataset

    images = sorted((world / "raw").rglob("*.png"))[:2]
    copy = tmp_path / "copy.png"
    copy.write_bytes(images[0].read_bytes())
    paths = [images[0]] * 4 + [images[1], copy]
    rows = {"image": [{"bytes": None, "path": str(p)} for p in paths], "quality": [0.5] * len(paths)}
    feats = datasets.Features({"image": datasets.Image(decode=False), "quality": datasets.Value("float32")})
    crops = CropDataset(datasets.Dataset.from_dict(rows, features=feats), 16, 3, train=False, seed=123)
    first = crops[0]["pixel_values"]
    assert all(torch.equal(crops[i]["pixel_values"], first) for i in (1, 2, 3, 5))  # test crops: by content
    train = CropDataset(datasets.Dataset.from_dict(rows, features=feats), 16, 3, train=True, seed=123)
    assert not torch.equal(train[(0, 1)]["pixel_values"], train[(0, 0)]["pixel_values"])  # training: by row
    rc, stdout, err = run(capsys, "predict", "--model", world / "run", *[images[0]] * 4, copy)
    assert rc == 0, err
    assert len({line.split("\t")[-1] for line in stdout.strip().splitlines()}) == 1, stdout


def labelled_set(folder: Path, quality: list[float]) -> Path:
    """A dataset of the fixture photos with these ``quality`` labels."""
    from dgqa_data.hub_folder import HubFolderWriter, configs_yaml, render_card
    from dgqa_data.schema import base_features
    from tests.fixtures.official import encode, reference_crops

    writer = HubFolderWriter(folder, base_features())
    for i, q in enumerate(quality):
        crop = reference_crops()[i % 4]
        writer.add({"image": {"bytes": encode(crop, "PNG"), "path": f"{i}.png"}, "image_id": f"{i}.png",
                    "quality": q, "mos": 1.0, "distortion_type": -1, "distortion_level": 0,
                    "domain": "authentic", "corpus": "x"})  # fmt: skip
    writer.finish(render_card({"configs": configs_yaml(writer.parts()), "license": "other"}, "# x"))
    return folder


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, -0.25])
def test_training_rows_with_a_quality_off_0_1_are_refused_naming_them(tmp_path, capsys, bad):
    labelled_set(tmp_path / "ds", [0.5, 0.5, bad, 0.5])
    rc, _, err = run(capsys, "train", *TINY, "--train_dataset", tmp_path / "ds", "--output_dir", tmp_path / "r",
                     "--epochs", "1")  # fmt: skip
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"dgqa train: error: training dataset {tmp_path / 'ds'}: 1 row(s) have a quality that is not a number "
        f"in [0, 1] (first rows [2]: ['2.png'], quality [{bad}]); refused before training"
    )
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_probe_writes_an_undefined_correlation_as_null_and_says_why(world, tmp_path, capsys):
    const = labelled_set(tmp_path / "const", [0.5] * 4)  # constant labels: no correlation is defined
    rc, stdout, err = run(capsys, "probe", "--train", world / "ds", "--eval", const, "--out", tmp_path / "p",
                          "--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32", "--seeds", "1")  # fmt: skip
    assert rc == 0, err
    record = json.loads((tmp_path / "p" / "probe.json").read_text(), parse_constant=pytest.fail)[0]
    assert record["srcc"] is None and record["plcc"] is None and record["rmse"] == pytest.approx(record["rmse"])
    assert record["undefined"] == (
        "srcc, plcc, krcc, plcc_logistic4, rmse_logistic4 undefined (null): the evaluation labels are constant, "
        "so there is no ranking or linear trend to measure"
    )
    assert record["undefined"] in stdout
