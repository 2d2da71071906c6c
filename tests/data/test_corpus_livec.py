"""LIVE Challenge (livec): official .mat layout -> Hub-layout dataset -> load_dataset."""

from __future__ import annotations

import csv

import datasets
import numpy as np
import pytest
import scipy.io

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS, DISTORTION_NAMES
from tests.fixtures.livec import KNOWN, TEST, TRAINING, livec_scores, make_livec, write_livec_mats


def f32(x: float) -> float:
    return float(np.float32(x))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One official-layout download and its build, shared by the read-only tests."""
    tmp = tmp_path_factory.mktemp("livec")
    root = make_livec(tmp / "ChallengeDB_release")
    out = tmp / "hub" / "dgqa" / "livec"
    report = build_corpus("livec", root, out, progress=False)
    return root, out, report


def test_build_counts_splits_and_features(built):
    root, out, report = built
    assert report.counts == {("default", "train"): 7, ("default", "test"): len(TEST)}
    assert report.skipped == []
    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "test"}
    assert ds["train"]["image_id"] == list(TRAINING)
    assert ds["test"]["image_id"] == list(TEST)  # .mat order, extension case kept (.bmp / .JPG)
    assert ds["test"].column_names == list(COLUMNS)
    feats = ds["test"].features
    assert isinstance(feats["image"], datasets.Image)
    assert isinstance(feats["distortion_type"], datasets.ClassLabel)
    assert feats["distortion_type"].names == list(DISTORTION_NAMES)
    assert feats["mos"].dtype == "float32" and feats["distortion_level"].dtype == "int8"


def test_known_rows_values_and_bytes(built):
    root, out, _ = built
    test = datasets.load_dataset(str(out), split="test")
    row = test[TEST.index("100.bmp")]
    mos, std = KNOWN["100.bmp"]
    assert row["image_id"] == "100.bmp"
    assert row["reference_id"] is None
    assert row["mos"] == f32(mos) and row["mos_std"] == f32(std)
    assert row["quality"] == f32(mos / 100.0)
    assert (row["distortion_type"], row["distortion_level"]) == (-1, 0)
    assert (row["domain"], row["corpus"]) == ("authentic", "livec")
    assert row["image"].size == (64, 48) and row["image"].format == "BMP"
    raw = test.cast_column("image", datasets.Image(decode=False))
    for i, name in enumerate(TEST):  # original bytes, not re-encoded
        assert raw[i]["image"]["bytes"] == (root / "Images" / name).read_bytes()
        assert raw[i]["image"]["path"] == name
    t1 = datasets.load_dataset(str(out), split="train")[0]
    assert (t1["image_id"], t1["mos"], t1["mos_std"]) == (
        "t1.bmp",
        f32(KNOWN["t1.bmp"][0]),
        f32(KNOWN["t1.bmp"][1]),
    )
    card = (out / "README.md").read_text()
    assert read_card_metadata(out)["license"] == "other"
    assert "Ghadiyaram" in card and "Permission is hereby granted" in card
    assert "No corpus-specific columns." in card


def test_load_by_hub_name(built, monkeypatch):
    _, out, _ = built
    monkeypatch.chdir(out.parent.parent)
    test = datasets.load_dataset("dgqa/livec", split="test")
    assert test.num_rows == len(TEST)
    assert test[1]["image_id"] == "100.bmp" and test[1]["mos"] == f32(KNOWN["100.bmp"][0])


def test_cli_build_drops_training_images(tmp_path, capsys):
    root = make_livec(tmp_path / "ChallengeDB_release")
    out = tmp_path / "livec-no-training"
    rc = main(["build", "livec", "--root", str(root), "--out", str(out), "--option", "training_images=drop"])
    assert rc == 0
    assert "default/test: 5" in capsys.readouterr().out
    ds = datasets.load_dataset(str(out))
    assert list(ds) == ["test"] and ds["test"]["image_id"] == list(TEST)


def test_bad_option_values(tmp_path, capsys):
    root = make_livec(tmp_path / "ChallengeDB_release", test=("3.bmp",))
    with pytest.raises(CorpusError, match="training_images must be 'keep' or 'drop'"):
        build_corpus("livec", root, tmp_path / "a", progress=False, training_images="no")
    rc = main(["build", "livec", "--root", str(root), "--out", str(tmp_path / "b"), "--option", "res=1"])
    assert rc == 2 and "unknown option(s) res; known: training_images" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["AllImages_release", "AllMOS_release", "AllStdDev_release"])
def test_missing_mat_file_names_it(tmp_path, missing):
    root = make_livec(tmp_path / "ChallengeDB_release", test=("3.bmp",))
    (root / "Data" / f"{missing}.mat").unlink()
    with pytest.raises(CorpusError, match=f"Data/{missing}.mat"):
        build_corpus("livec", root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_mat_lengths_must_agree(tmp_path):
    root = make_livec(tmp_path / "ChallengeDB_release", test=("3.bmp", "4.JPG"))
    names = TRAINING + ("3.bmp", "4.JPG")
    mos, std = livec_scores(names)
    write_livec_mats(root, names, mos[:-1], std)
    with pytest.raises(CorpusError, match="9 names, AllMOS_release.mat 8 scores, AllStdDev_release.mat 9"):
        build_corpus("livec", root, tmp_path / "out", progress=False)


def test_mat_without_the_variable(tmp_path):
    root = make_livec(tmp_path / "ChallengeDB_release", test=("3.bmp",))
    scipy.io.savemat(root / "Data" / "AllMOS_release.mat", {"mos": np.zeros((1, 8))})
    with pytest.raises(
        CorpusError, match="AllMOS_release.mat: no variable 'AllMOS_release'; the file holds \\['mos'\\]"
    ):
        build_corpus("livec", root, tmp_path / "out", progress=False)


def test_missing_image_and_case_sensitive_names(tmp_path):
    root = make_livec(tmp_path / "ChallengeDB_release")
    (root / "Images" / "787.JPG").rename(root / "Images" / "787.jpg")  # wrong case = missing
    with pytest.raises(
        BuildError, match=r"Data/AllImages_release.mat entry 10: 787.JPG: listed image is missing"
    ):
        build_corpus("livec", root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_nan_score_names_the_entry_and_skip_bad_records_it(tmp_path):
    root = make_livec(tmp_path / "ChallengeDB_release")
    names = TRAINING + TEST
    mos, std = livec_scores(names)
    mos[8] = float("nan")  # entry 9 = 100.bmp
    write_livec_mats(root, names, mos, std)
    (root / "Images" / "1164.JPG").unlink()  # entry 12
    with pytest.raises(BuildError, match=r"entry 9: 100.bmp: MOS \(Data/AllMOS_release.mat\) is nan"):
        build_corpus("livec", root, tmp_path / "out", progress=False)

    out = tmp_path / "livec-skip-bad"
    report = build_corpus("livec", root, out, progress=False, skip_bad=True)
    assert report.counts[("default", "test")] == len(TEST) - 2
    with open(out / "skipped.csv", newline="") as f:
        skipped = list(csv.DictReader(f))
    assert [(s["image_id"], s["where"]) for s in skipped] == [
        ("100.bmp", "Data/AllImages_release.mat entry 9"),
        ("1164.JPG", "Data/AllImages_release.mat entry 12"),
    ]
    assert "not a finite number" in skipped[0]["reason"] and skipped[1]["reason"] == "listed image is missing"
    card = (out / "README.md").read_text()
    assert "## Skipped items" in card and "| 1164.JPG | Data/AllImages_release.mat entry 12 |" in card
    assert datasets.load_dataset(str(out), split="test")["image_id"] == ["3.bmp", "787.JPG", "1000.JPG"]
