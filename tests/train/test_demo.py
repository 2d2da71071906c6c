"""`dgqa demo --fast` end to end: every stage's output, loadable subsets, selection, report, reruns."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
from datasets import load_dataset

from dgqa_data.camera import CAMERA_FAMILIES
from dgqa_data.selection import Selection
from dgqa_train import cli
from dgqa_train.demo import (
    ARMS,
    CURATED_ARMS,
    DEMO_RULES,
    HELDOUT_PHOTOS,
    POOL_PHOTOS,
    SOURCE_PHOTOS,
    TARGET_PHOTOS,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("demo")
    cwd = os.getcwd()
    os.chdir(parent)  # a relative --out, as the README's `dgqa demo` (default dgqa-demo) gives
    try:
        assert cli.main(["demo", "--fast", "--out", "run"]) == 0
    finally:
        os.chdir(cwd)
    return parent / "run"


def test_every_stage_wrote_its_output(demo):
    for rel in ("demo.json", "photos/split.json", "photos/camera-labels.csv", "photos/camera-truth.csv",
                *(f"classifier/seed{s}/{f}" for s in range(3) for f in ("model.safetensors", "results.json", "README.md", "confusion.json")),
                *(f"scores/seed{s}/scores.parquet" for s in range(3)),
                *(f"selection/{rule}/selection.json" for rule in DEMO_RULES), "subsets.json",
                "regressors.json", "report.md", "verdict.txt", "srcc.png", "confusion.png", "similarity.png"):  # fmt: skip
        assert (demo / rel).is_file(), rel
    split = json.loads((demo / "photos/split.json").read_text())
    assert (tuple(split["source"]), tuple(split["heldout"]), tuple(split["target"])) == (
        SOURCE_PHOTOS,
        HELDOUT_PHOTOS,
        TARGET_PHOTOS,
    )
    assert all(n >= 4 for pool in split.values() for n in pool.values())


def test_classifier_is_well_above_chance_on_the_held_out_photo(demo):
    for seed in range(3):
        metrics = json.loads((demo / f"classifier/seed{seed}/results.json").read_text())
        last = metrics["epochs"][-1]
        assert metrics["frozen_backbone"] and last["eval_images"] == 126 * sum(
            json.loads((demo / "photos/split.json").read_text())["heldout"].values()
        )
        assert last["eval_accuracy"] > 3 / 26  # chance is 1/26
        assert metrics["capture"]["jpeg"] == [50, 95] and metrics["balance_classes"]  # the capture-aware recipe
        centring = json.loads((demo / f"classifier/seed{seed}/confusion.json").read_text())["centring"]
        assert centring["mode"] == "folder" and len(centring["logit_offsets"]) == 26  # centred per source photo


def test_subsets_load_by_their_hub_names(demo, monkeypatch):
    monkeypatch.chdir(demo)
    info = json.loads((demo / "subsets.json").read_text())
    selection = Selection.load(demo / f"selection/{DEMO_RULES[0]}/selection.json")
    selected = load_dataset("dgqa/demo-sel-camera", split="train")
    assert info["selected"] == "demo-sel-camera" and info["all"] == "demo-all"
    assert len(selected) == info["rows"]["demo-sel-camera"] == 16 * 5 * len(selection.selected)
    assert set(selected["distortion_type"]) == set(selection.selected)
    carried = {t for types in CAMERA_FAMILIES.values() for t in types}
    oracle = load_dataset("dgqa/demo-sel-camera-oracle", split="train")
    complement = load_dataset("dgqa/demo-sel-camera-complement", split="train")
    assert set(oracle["distortion_type"]) == carried and len(oracle) == 16 * 5 * len(carried)
    assert set(complement["distortion_type"]) == set(range(1, 26)) - carried
    vote = Selection.load(demo / "selection/dgqa-vote/selection.json")
    assert set(load_dataset("dgqa/demo-sel-camera-vote", split="train")["distortion_type"]) == set(vote.selected)
    assert len(load_dataset("dgqa/demo-all", split="train")) == 16 * 126
    for seed, name in info["random"].items():
        rows = load_dataset(f"dgqa/{name}", split="train")
        assert len(rows) == len(selected) and name.endswith(f"seed{seed}")
    camera = load_dataset("dgqa/camera", split="train")
    assert len(camera) == 18 * 16 and all(0 < q <= 1 for q in camera["quality"])


def test_curated_arms_train_on_their_datasets(demo, monkeypatch):
    """selected + drc, all + drc and selected + ddc: loadable, each regressor trained on all its rows."""
    monkeypatch.chdir(demo)
    info = json.loads((demo / "curation.json").read_text())
    assert set(info["arms"]) == set(CURATED_ARMS) and not info["left_out"]
    assert tuple(info["pool"]) == POOL_PHOTOS and all(n >= 1 for n in info["pool"].values())
    images = {r["arm"]: r["train_images"] for r in json.loads((demo / "regressors.json").read_text())}
    rows = {arm: load_dataset(f"dgqa/{m['name']}", split="train") for arm, m in info["arms"].items()}
    for arm, ds in rows.items():
        assert len(ds) == info["arms"][arm]["rows"] == images[arm], arm
    selected = Selection.load(demo / f"selection/{DEMO_RULES[0]}/selection.json").selected
    assert len(rows["selected + drc"]) <= images["selected"] == 16 * 5 * len(selected)
    assert len(rows["all + drc"]) <= images["all"] == 16 * 126
    ddc, up = rows["selected + ddc"], info["arms"]["selected + ddc"]["upsampled"]
    assert up > 0 and up % (3 * len(selected)) == 0  # chosen references x selected types x levels 1, 3, 5
    assert len(ddc) == images["selected"] + up and sum(ddc["label_transferred"]) == up
    assert set(ddc["distortion_level"]) == {1, 2, 3, 4, 5} and set(ddc["distortion_type"]) == set(selected)
    report = (demo / "report.md").read_text()
    assert "DDC's pool: tiles of scikit-image photos used nowhere else" in report and "camera (" in report


def test_selections_are_measured_against_what_the_captures_carry(demo):
    truth = (demo / "photos/camera-truth.csv").read_text().splitlines()
    assert truth[0] == "image_id,families,background" and len(truth) == 1 + 18 * 16
    assert all(line.endswith(",jpeg") for line in truth[1:])  # every capture ends in a JPEG encode
    report = (demo / "report.md").read_text()
    for rule in DEMO_RULES:
        selection = Selection.load(demo / f"selection/{rule}/selection.json")
        assert selection.rule == rule and selection.num_images == 18 * 16
        ev = selection.evaluation
        assert ev["families"] == 5 and len(ev["found"]) + len(ev["missed"]) == 5
        camera_types = {t for types in CAMERA_FAMILIES.values() for t in types}
        assert ev["extras"] == sorted(set(selection.selected) - camera_types)
        st = selection.stability
        assert [Path(r["name"]).parts[-2:] for r in st["runs"]] == [("scores", f"seed{s}") for s in range(3)]
        majority = sorted(int(t) for t, c in st["selected_by"].items() if c >= 2)
        assert selection.selected == majority
        assert f"| `{rule}` | {len(selection.selected)} | {len(ev['found'])} of 5 (" in report
    assert "| defocus | " in report and "| jpeg (background) | 288 |" in report
    assert "## Library versions" in report and "libjpeg-turbo" in report


def test_report_holds_finite_numbers_for_every_arm_and_seed(demo):
    results = json.loads((demo / "regressors.json").read_text())
    assert sorted((r["arm"], r["seed"]) for r in results) == sorted((arm, s) for arm in ARMS for s in range(3))
    assert all(math.isfinite(r["srcc"]) and math.isfinite(r["plcc"]) for r in results)
    report = (demo / "report.md").read_text()
    arms = "|".join(map(re.escape, ARMS))
    rows = {m[0]: m[1:] for m in re.findall(rf"^\| ({arms}) \|.*\| (-?\d\.\d+) \+- (\d\.\d+) \| (-?\d\.\d+) \+- (\d\.\d+) \| (.+) \|$", report, re.M)}  # fmt: skip
    assert set(rows) == set(ARMS)
    for values in rows.values():
        per_seed = [float(v) for v in values[-1].split(", ")]
        assert len(per_seed) == 3 and all(math.isfinite(v) for v in per_seed)
    assert "chance band" in report.lower() and "k / (k - 1)" in report
    verdict = (demo / "verdict.txt").read_text()
    assert verdict.startswith("Selected-domain training is") and verdict.strip() in report


def test_a_rerun_reuses_every_stage(demo, capsys):
    before = (demo / "regressors.json").stat().st_mtime_ns
    assert cli.main(["demo", "--fast", "--out", str(demo)]) == 0
    out = capsys.readouterr().out
    assert out.count("reusing the finished stage") == 8
    assert (demo / "regressors.json").stat().st_mtime_ns == before


def test_other_settings_or_a_foreign_folder_are_refused(demo, tmp_path, capsys):
    assert cli.main(["demo", "--fast", "--seeds", "2", "--out", str(demo)]) == 2
    err = capsys.readouterr().err
    assert "other settings (seeds: 3 there, 2 now)" in err
    assert cli.main(["demo", "--fast", "--recipe", "paper", "--out", str(demo)]) == 2
    assert "other settings (recipe: 'capture' there, 'paper' now)" in capsys.readouterr().err
    assert cli.main(["demo", "--fast", "--classifier", "finetune", "--out", str(demo)]) == 2
    assert "other settings (classifier: 'frozen' there, 'finetune' now)" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.jpg").write_bytes(b"keep me")
    assert cli.main(["demo", "--fast", "--out", str(tmp_path / "mine")]) == 2
    assert "is not a dgqa demo folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "photo.jpg").read_bytes() == b"keep me"
    (tmp_path / "file.txt").write_text("data")
    assert cli.main(["demo", "--fast", "--out", str(tmp_path / "file.txt")]) == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
    assert (tmp_path / "file.txt").read_text() == "data"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--seeds", "1", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "--seeds: must be >= 2, got 1" in capsys.readouterr().err


def test_the_classifier_setting_decides_how_the_classifier_trains(tmp_path):
    from dgqa_train.demo import Demo, DemoError, DemoSettings

    frozen = Demo(tmp_path / "a", DemoSettings()).classifier_config(1, tmp_path / "a" / "c")
    assert (frozen.freeze_backbone, frozen.epochs, frozen.lr, frozen.batch_size) == (True, 30, 1e-3, 64)
    tuned = Demo(tmp_path / "b", DemoSettings(classifier="finetune")).classifier_config(2, tmp_path / "b" / "c")
    assert (tuned.freeze_backbone, tuned.epochs, tuned.lr, tuned.batch_size, tuned.seed) == (False, 2, 3e-4, 32, 2)
    assert tuned.capture_jpeg == "50-95" and tuned.balance_classes and tuned.features == "multilevel"
    fast = Demo(tmp_path / "c", DemoSettings(fast=True, classifier="finetune")).classifier_config(0, tmp_path)
    assert (fast.epochs, fast.crop_size) == (1, 128)
    assert frozen.capture.share == 1.0 and frozen.capture.jpeg == (50, 95)
    mixed = Demo(tmp_path / "d", DemoSettings(recipe="mixed")).classifier_config(0, tmp_path)
    assert mixed.capture.share == 0.5 and mixed.capture.jpeg == (50, 95) and mixed.balance_classes
    paper = Demo(tmp_path / "e", DemoSettings(recipe="paper")).classifier_config(0, tmp_path)
    assert paper.capture is None and not paper.balance_classes
    # features centred per source photo where they are extracted once (frozen), not for the paper's recipe
    assert (frozen.centre_features, mixed.centre_features) == ("folder", "folder")
    assert (tuned.centre_features, paper.centre_features) == ("off", "off")
    with pytest.raises(DemoError, match="demo classifier must be one of frozen, finetune, got 'fine-tune'"):
        DemoSettings(classifier="fine-tune")


def test_a_run_recorded_before_a_setting_existed_is_taken_with_its_default(tmp_path):
    from dataclasses import asdict

    from dgqa_train.demo import Demo, DemoError, DemoSettings

    old = asdict(DemoSettings(fast=True))
    del old["classifier"]  # demo.json of a run written before --classifier existed
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "demo.json").write_text(json.dumps(old))
    Demo(tmp_path / "run", DemoSettings(fast=True)).check_settings()  # frozen: what that run did
    with pytest.raises(DemoError, match="classifier: 'frozen' there, 'finetune' now"):
        Demo(tmp_path / "run", DemoSettings(fast=True, classifier="finetune")).check_settings()


def test_finetune_arm_trains_and_evaluates_end_to_end(tmp_path):
    """``--finetune`` runs `dgqa train` (last epoch, evaluated on the target) instead of the probe."""
    import shutil

    from dgqa_train.demo import Demo, DemoSettings
    from tests.train.synthetic import TRAIN_SCENES, scene_crops, simple_distort, write_folder

    refs = scene_crops(TRAIN_SCENES, size=40, per_scene=1)

    def rows(prefix: str):
        for r, (ref_id, img) in enumerate(refs):
            for lv in (1, 3, 5):
                yield {"image": simple_distort(img, 1, lv, r), "image_id": f"{prefix}{ref_id}_{lv}.png",
                       "reference_id": ref_id, "distortion_type": 1, "distortion_level": lv,
                       "quality": 1 - lv / 5}  # fmt: skip

    demo = Demo(
        tmp_path / "run", DemoSettings(fast=True, backbone="tiny-resnet", finetune=True), progress=False
    )
    train = write_folder(demo.hub / "demo-all", rows(""))
    target = write_folder(tmp_path / "camera", rows("t/"), split="test")
    shutil.copytree(target, demo.target)
    (record,) = demo._fit(train, [7])
    assert (record["seed"], record["train_images"]) == (7, len(refs) * 3)
    assert math.isfinite(record["srcc"]) and math.isfinite(record["plcc"])
    results = json.loads((demo.out / "finetune" / "demo-all-seed7" / "results.json").read_text())
    assert results["finished"] and results["last_epoch"]["epoch"] == demo.s.finetune_epochs == 2  # --fast: 2
