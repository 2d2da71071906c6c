"""BID: DatabaseGrades.xlsx + DatabaseImage%04d.JPG (in ImageDatabase/ or the root) -> dataset."""

from __future__ import annotations

import csv
import math

import datasets
import numpy as np
import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS, DISTORTION_NAMES
from tests.fixtures.bid import GRADES, make_bid, write_grades
from tests.fixtures.spaq_bid import XLS_ROWS, make_bid_xls, write_xls, xls_cells

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
        CorpusError,
        match="missing BID grades file: none of DatabaseGrades.xls, DatabaseGrades.xlsx, DatabaseGrades.csv is in .*BID",
    ):
        build_corpus("bid", root, tmp_path / "out", progress=False)
    (root / "DatabaseGrades.xls").write_bytes(b"\xd0\xcf\x11\xe0")  # a truncated old binary Excel file
    assert main(["build", "bid", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "DatabaseGrades.xls: not a readable .xls workbook: " in err and len(err.strip().splitlines()) == 1


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


# -- DatabaseGrades.xls (public copies): per-subject grades -> mos_std ------------------------------

XLS_NAMES = [f"DatabaseImage{n:04d}.JPG" for n, *_ in XLS_ROWS]
# Sample standard deviations (ddof=1) of each row's grades, worked out by hand:
#   0001: 4,4,5,4,3      mean 4      squared deviations 0+0+1+0+1 = 2            -> sqrt(2/4)
#   0002: 2,3,2,1,3,2    mean 13/6   (3*1 + 2*25 + 49)/36 = 102/36                -> sqrt(102/36/5)
#   0005: 1              one grade: no spread                                      -> None
#   0456: 3,5,2,4,1,4    mean 19/6   (1 + 121 + 49 + 25 + 169 + 25)/36 = 390/36   -> sqrt(390/36/5)
#   0590: 5,4,5          mean 14/3   (1 + 4 + 1)/9 = 6/9                          -> sqrt(6/9/2)
HAND_STD = [math.sqrt(2 / 4), math.sqrt(102 / 36 / 5), None, math.sqrt(390 / 36 / 5), math.sqrt(6 / 9 / 2)]


@pytest.fixture(scope="module")
def built_xls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bid-xls")
    root = make_bid_xls(tmp / "BID")
    out = tmp / "bid-xls"
    report = build_corpus("bid", root, out, progress=False)
    return root, out, report


def test_xls_grades_mos_and_std(built_xls):
    _, out, report = built_xls
    assert report.counts == {("default", "train"): len(XLS_ROWS)} and report.skipped == []
    train = datasets.load_dataset(str(out), split="train")
    assert train["image_id"] == XLS_NAMES and train.column_names == list(COLUMNS)
    assert train["mos"] == [f32(mean) for _, mean, *_ in XLS_ROWS]  # the published mean, as is
    assert train["mos_std"] == [None if s is None else f32(s) for s in HAND_STD]
    assert train["quality"] == [f32(mean / 5) for _, mean, *_ in XLS_ROWS]


def test_xls_count_mismatch_is_reported_not_fixed(tmp_path, capsys):
    root = make_bid_xls(tmp_path / "BID", subfolder=False)
    out = tmp_path / "bid-cli"
    assert main(["build", "bid", "--root", str(root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"default/train: {len(XLS_ROWS)}" in captured.out
    warning = [line for line in captured.err.splitlines() if line.startswith("warning: bid:")]
    assert warning == [
        "warning: bid: 1 row(s) of DatabaseGrades.xls give a grade count that disagrees with the grades "
        "present: row 6 (DatabaseImage0590.JPG); mos is kept as published and mos_std uses the grades "
        "present (all listed in the card)"
    ]  # once, although a build reads the rows twice
    train = datasets.load_dataset(str(out), split="train")
    row = train[XLS_NAMES.index("DatabaseImage0590.JPG")]
    assert row["mos"] == f32(4.666667) and row["mos_std"] == f32(math.sqrt(6 / 9 / 2))
    card = (out / "README.md").read_text()
    assert "sample standard deviation (ddof=1" in card
    assert "This build read `DatabaseGrades.xls` with 6 per-subject grade columns." in card
    assert (
        "| DatabaseImage0590.JPG | DatabaseGrades.xls row 6 | the grade count is 4; 3 grade(s) present |"
        in card
    )


def test_xls_count_blank_or_not_whole_is_reported(tmp_path, capsys):
    rows = [(1, 4.0, None, (4, 4, 5, 4, 3, None)), (2, 2.166667, "six", (2, 3, 2, 1, 3, 2)), XLS_ROWS[3]]
    root = make_bid_xls(tmp_path / "BID", rows=rows)
    build_corpus("bid", root, tmp_path / "out", progress=False)
    assert "warning: bid: 2 row(s) of DatabaseGrades.xls" in capsys.readouterr().err
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        "| DatabaseImage0001.JPG | DatabaseGrades.xls row 2 | the grade count is empty; 5 grade(s) present |"
        in card
    )
    assert (
        "| DatabaseImage0002.JPG | DatabaseGrades.xls row 3 | the grade count 'six' is not a whole number; "
        "6 grade(s) present |" in card
    )


def test_xls_bad_subject_grade_names_row_and_column(tmp_path):
    root = make_bid_xls(tmp_path / "BID")
    cells = xls_cells()
    cells[2][4] = "x"  # row 3 (image 2), column "Subject 2"
    write_xls(root / "DatabaseGrades.xls", cells)
    with pytest.raises(BuildError) as err:
        build_corpus("bid", root, tmp_path / "out", progress=False)
    assert str(err.value) == (
        "DatabaseGrades.xls row 3: DatabaseImage0002.JPG: subject grade in column 'Subject 2' 'x' is not a "
        "number (use --skip-bad to record and skip bad items)"
    )
    cells[2][4], cells[4][8] = 3, 7  # row 5 (image 456): a grade outside 0..5
    write_xls(root / "DatabaseGrades.xls", cells)
    with pytest.raises(
        BuildError, match="DatabaseGrades.xls row 5: DatabaseImage0456.JPG: subject grade 7 is "
    ):
        build_corpus("bid", root, tmp_path / "out", progress=False)


def test_xls_preferred_over_xlsx_and_csv_conversion(tmp_path):
    root = make_bid_xls(tmp_path / "BID")
    write_grades(root / "DatabaseGrades.xlsx", [(n, 1.0) for n, *_ in XLS_ROWS])  # a 2-column conversion
    build_corpus("bid", root, tmp_path / "both", progress=False)
    train = datasets.load_dataset(str(tmp_path / "both"), split="train")
    assert train["mos"] == [f32(mean) for _, mean, *_ in XLS_ROWS]  # read from the .xls
    (root / "DatabaseGrades.xls").unlink()
    build_corpus("bid", root, tmp_path / "xlsx", progress=False)
    train = datasets.load_dataset(str(tmp_path / "xlsx"), split="train")
    assert set(train["mos"]) == {1.0} and set(train["mos_std"]) == {None}
    assert "which has no per-subject grades" in (tmp_path / "xlsx" / "README.md").read_text()
    (root / "DatabaseGrades.xlsx").unlink()
    with open(root / "DatabaseGrades.csv", "w", newline="") as f:
        csv.writer(f).writerows(xls_cells())
    build_corpus("bid", root, tmp_path / "csv", progress=False)
    train = datasets.load_dataset(str(tmp_path / "csv"), split="train")
    assert train["mos_std"] == [None if s is None else f32(s) for s in HAND_STD]
    assert (
        "This build read `DatabaseGrades.csv` with 6 per-subject grade columns."
        in (tmp_path / "csv" / "README.md").read_text()
    )
