"""BID: DatabaseGrades.xlsx + DatabaseImage%04d.JPG (in ImageDatabase/ or the root) -> dataset."""

from __future__ import annotations

import csv

import datasets
import numpy as np
import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS, DISTORTION_NAMES
from tests.fixtures.bid import GRADES, make_bid, write_grades

NAMES = [f"DatabaseImage{n:04d}.JPG" for n, _ in GRADES]


def f32(x: float) -> float:
    return float(np.float32(x))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bid")
    root = make_bid(tmp / "BID")  # images in BID/ImageDatabase/
    out = tmp / "hub" / "dgqa" / "bid"
    report = build_corpus("bid", root, out, progress=False)
    return root, out, report


def test_build_rows_columns_and_features(built):
    _, out, report = built
    assert report.counts == {("default", "train"): len(GRADES)} and report.skipped == []
    ds = datasets.load_dataset(str(out))
    assert list(ds) == ["train"]
    train = ds["train"]
    assert train["image_id"] == NAMES  # sheet order, numbers with gaps, upper-case .JPG
    assert train.column_names == list(COLUMNS)
    assert isinstance(train.features["image"], datasets.Image)
    assert isinstance(train.features["distortion_type"], datasets.ClassLabel)
    assert train.features["distortion_type"].names == list(DISTORTION_NAMES)
    assert train["mos"] == [f32(g) for _, g in GRADES]


def test_known_row_values_and_bytes(built):
    root, out, _ = built
    train = datasets.load_dataset(str(out), split="train")
    row = train[NAMES.index("DatabaseImage0456.JPG")]
    assert row["mos"] == f32(3.180518) and row["mos_std"] is None
    assert row["quality"] == f32(3.180518 / 5)
    assert row["reference_id"] is None
    assert (row["distortion_type"], row["distortion_level"]) == (-1, 0)
    assert (row["domain"], row["corpus"]) == ("authentic", "bid")
    assert row["image"].format == "JPEG" and row["image"].size == (64, 48)
    raw = train.cast_column("image", datasets.Image(decode=False))[NAMES.index("DatabaseImage0456.JPG")]
    assert raw["image"]["bytes"] == (root / "ImageDatabase" / "DatabaseImage0456.JPG").read_bytes()
    card = (out / "README.md").read_text()
    assert read_card_metadata(out)["license"] == "other"
    assert "Ciancio" in card and "not redistributable" in card and "No corpus-specific columns." in card


def test_load_by_hub_name(built, monkeypatch):
    _, out, _ = built
    monkeypatch.chdir(out.parent.parent)
    train = datasets.load_dataset("dgqa/bid", split="train")
    assert train.num_rows == len(GRADES) and train[-1]["image_id"] == "DatabaseImage0590.JPG"
    assert train[-1]["mos"] == f32(4.92)


def test_cli_images_in_the_root(tmp_path, capsys):
    root = make_bid(tmp_path / "BID", subfolder=False)
    assert not (root / "ImageDatabase").exists()
    out = tmp_path / "bid-root-images"
    assert main(["build", "bid", "--root", str(root), "--out", str(out)]) == 0
    assert f"default/train: {len(GRADES)}" in capsys.readouterr().out
    train = datasets.load_dataset(str(out), split="train")
    assert train["image_id"] == NAMES
    raw = train.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    assert raw == (root / "DatabaseImage0001.JPG").read_bytes()


def test_missing_grades_file(tmp_path, capsys):
    root = make_bid(tmp_path / "BID")
    (root / "DatabaseGrades.xlsx").unlink()
    with pytest.raises(
        CorpusError, match="missing BID grades file DatabaseGrades.xlsx: .*DatabaseGrades.xlsx"
    ):
        build_corpus("bid", root, tmp_path / "out", progress=False)
    (root / "DatabaseGrades.xls").write_bytes(b"\xd0\xcf\x11\xe0")  # old binary Excel format
    assert main(["build", "bid", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    assert (
        "DatabaseGrades.xls is the old Excel format: save it as DatabaseGrades.xlsx"
        in capsys.readouterr().err
    )


def test_missing_column_and_unreadable_workbook(tmp_path):
    root = make_bid(tmp_path / "BID")
    write_grades(root / "DatabaseGrades.xlsx", GRADES, header=("Image Number", "MOS"))
    with pytest.raises(CorpusError, match=r"missing column\(s\) 'Average Subjective Grade'; header row is"):
        build_corpus("bid", root, tmp_path / "out", progress=False)
    (root / "DatabaseGrades.xlsx").write_text("Image Number,Average Subjective Grade\n1,4.1\n")
    with pytest.raises(CorpusError, match="DatabaseGrades.xlsx: not a readable .xlsx workbook"):
        build_corpus("bid", root, tmp_path / "out", progress=False)


def test_bad_rows_fail_then_skip_bad_records_them(tmp_path):
    root = make_bid(tmp_path / "BID")
    rows = [*GRADES, (None, None), (7, "n/a"), (8.5, 2.0), (9, "NaN"), (10, None)]  # a blank row is ignored
    write_grades(root / "DatabaseGrades.xlsx", rows)
    (root / "ImageDatabase" / "DatabaseImage0005.JPG").unlink()  # sheet row 4
    with pytest.raises(
        BuildError, match="DatabaseGrades.xlsx row 8: DatabaseImage0007.JPG: Average Subjective"
    ):
        build_corpus("bid", root, tmp_path / "out", progress=False)

    out = tmp_path / "bid-skip-bad"
    report = build_corpus("bid", root, out, progress=False, skip_bad=True)
    assert report.num_rows == len(GRADES) - 1
    with open(out / "skipped.csv", newline="") as f:
        skipped = [(s["image_id"], s["where"], s["reason"]) for s in csv.DictReader(f)]
    assert skipped == [
        (
            "DatabaseImage0007.JPG",
            "DatabaseGrades.xlsx row 8",
            "Average Subjective Grade 'n/a' is not a number",
        ),
        ("8.5", "DatabaseGrades.xlsx row 9", "Image Number 8.5 is not a whole number"),
        (
            "DatabaseImage0009.JPG",
            "DatabaseGrades.xlsx row 10",
            "Average Subjective Grade is 'NaN', not a finite number",
        ),
        ("DatabaseImage0010.JPG", "DatabaseGrades.xlsx row 11", "Average Subjective Grade is empty"),
        ("DatabaseImage0005.JPG", "DatabaseGrades.xlsx row 4", "listed image is missing"),
    ]
    card = (out / "README.md").read_text()
    assert (
        "5 item(s) were skipped" in card and "| DatabaseImage0005.JPG | DatabaseGrades.xlsx row 4 |" in card
    )
    assert datasets.load_dataset(str(out), split="train")["image_id"] == [n for n in NAMES if "0005" not in n]
