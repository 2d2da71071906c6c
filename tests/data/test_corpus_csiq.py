"""CSIQ: csiq.DMOS.xlsx (sheet all_by_image) + src_imgs/ + dst_imgs/ -> Hub-layout dataset -> load_dataset."""

from __future__ import annotations

import csv
import shutil
from collections import Counter

import datasets
import numpy as np
import pytest

import dgqa_data.corpora.csiq as csiq  # registers the corpus (dgqa_data.corpora does not list it yet)
from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError, get_corpus
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS, DISTORTION_NAMES
from tests.fixtures.live_csiq import (
    CSIQ_1600,
    CSIQ_HEADER,
    CSIQ_REFS,
    CSIQ_TYPES,
    csiq_name,
    csiq_rows,
    make_csiq,
    write_csiq_sheet,
)

N_DISTORTED = len(CSIQ_REFS) * (5 * 5 + 4)  # 6 types, contrast has 4 levels
EXPECTED_TYPES = {"noise": 11, "jpeg": 10, "jpeg 2000": 9, "fnoise": 11, "blur": 1, "contrast": 25}


def f32(x: float) -> float:
    return float(np.float32(x))


def no_output(out):
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csiq")
    root = make_csiq(tmp / "CSIQ")
    out = tmp / "dgqa" / "csiq"
    assert main(["build", "csiq", "--root", str(root), "--out", str(out)]) == 0
    return tmp, root, out


@pytest.fixture
def root(tmp_path):
    return make_csiq(tmp_path / "CSIQ")


def edit_sheet(root, fn):
    """Rewrite the sheet through ``fn(rows) -> rows`` (rows as the fixture writes them)."""
    write_csiq_sheet(root / "csiq.DMOS.xlsx", fn(csiq_rows()))


def test_registered_and_restricted():
    assert get_corpus("CSIQ") is csiq.CSIQ and get_corpus("csiq-iqa") is csiq.CSIQ
    assert csiq.CSIQ.redistributable is False and csiq.CSIQ.higher_is_better is False
    assert {t: tid for t, (tid, _) in csiq.TYPE_MAP.items()} == EXPECTED_TYPES
    assert csiq.FILES == CSIQ_TYPES


def test_cli_build_counts_ids_and_values(built, monkeypatch):
    tmp, root, out = built
    monkeypatch.chdir(tmp)
    train = datasets.load_dataset("dgqa/csiq", split="train")
    assert train.num_rows == N_DISTORTED
    assert train.column_names == list(COLUMNS)
    assert train.features["distortion_type"].names == list(DISTORTION_NAMES)
    rows = csiq_rows()
    assert train["image_id"] == [csiq_name(r[0], r[2], r[3]) for r in rows]  # sheet order
    assert train["image_id"][:2] == ["1600.AWGN.1.png", "1600.AWGN.2.png"]
    assert train["reference_id"] == [f"{r[0]}.png" for r in rows]
    assert train["mos"] == [f32(r[5]) for r in rows] and train["mos_std"] == [f32(r[4]) for r in rows]
    assert train["quality"] == [f32(1.0 - r[5]) for r in rows]
    assert train["distortion_level"] == [r[3] for r in rows]
    assert train["distortion_type"] == [EXPECTED_TYPES[r[2]] for r in rows]
    assert train["domain"] == [f"csiq-{CSIQ_TYPES[r[2]][0]}" for r in rows]
    assert Counter(train["domain"]) == {
        "csiq-awgn": 15,
        "csiq-jpeg": 15,
        "csiq-jpeg2000": 15,
        "csiq-fnoise": 15,
        "csiq-blur": 15,
        "csiq-contrast": 12,
    }
    r = train.remove_columns("image")[train["image_id"].index("1600.jpeg2000.1.png")]
    assert r == {
        "image_id": "1600.jpeg2000.1.png",
        "reference_id": "1600.png",
        "mos": f32(CSIQ_1600["jpeg 2000"][0]),
        "mos_std": f32(0.064),
        "quality": f32(1.0 - 0.011967),
        "distortion_type": 9,
        "distortion_level": 1,
        "domain": "csiq-jpeg2000",
        "corpus": "csiq",
    }
    raw = train.cast_column("image", datasets.Image(decode=False))
    i = train["image_id"].index("bridge.fnoise.3.png")
    assert raw[i]["image"]["bytes"] == (root / "dst_imgs" / "fnoise" / "bridge.fnoise.3.png").read_bytes()
    assert train[i]["image"].format == "PNG"
    refs = datasets.load_dataset("dgqa/csiq", "pristine", split="train")
    assert refs["image_id"] == ["1600.png", "bridge.png", "aerial_city.png"] == refs["reference_id"]
    assert set(refs["distortion_type"]) == {0} and set(refs["domain"]) == {"pristine"}
    assert set(refs["mos"]) == {None}
    raw_refs = refs.cast_column("image", datasets.Image(decode=False))
    assert raw_refs[1]["image"]["bytes"] == (root / "src_imgs" / "bridge.png").read_bytes()


def test_card(built):
    _, _, out = built
    card = (out / "README.md").read_text()
    assert read_card_metadata(out)["license"] == "other"
    assert "Larson, Eric C. and Chandler, Damon M." in card and "Journal of Electronic Imaging" in card
    assert "not redistributable" in card and "index-only" in card
    assert "declared range 0.0–1.0, lower = better" in card
    for dst_type, (tid, why) in csiq.TYPE_MAP.items():
        folder = CSIQ_TYPES[dst_type][0]
        assert f"| {dst_type} | {folder}/" in card
        assert f"| csiq-{folder} | {tid} {DISTORTION_NAMES[tid]} | {why} |" in card
    assert "dst_imgs_all/" in card and "`dst_imgs/AWGN/`" in card
    assert "| 11 | white_noise | 30 |" in card  # noise + fnoise
    assert "| 0 | pristine | 3 |" in card


@pytest.mark.parametrize("layout", ["upper", "flat"])
def test_public_layout_variants(tmp_path, layout):
    root = make_csiq(tmp_path / "CSIQ", layout=layout)
    assert (root / ("dst_imgs/AWGN" if layout == "upper" else "dst_imgs_all")).is_dir()
    out = tmp_path / "out"
    report = build_corpus("csiq", root, out, progress=False)
    assert report.counts == {("default", "train"): N_DISTORTED, ("pristine", "train"): len(CSIQ_REFS)}
    train = datasets.load_dataset(str(out), split="train")
    assert train["image_id"][0] == "1600.AWGN.1.png"  # the official name, wherever the file was
    raw = train.cast_column("image", datasets.Image(decode=False))
    folder = "dst_imgs/AWGN" if layout == "upper" else "dst_imgs_all"
    assert raw[0]["image"]["bytes"] == (root / folder / "1600.AWGN.1.png").read_bytes()


def test_file_name_case_and_type_spelling_variants(root, tmp_path):
    """A file name in another case, ``JPEG  2000``, 1600 read as 1600.0, and no dmos_std column."""
    (root / "dst_imgs" / "blur" / "1600.BLUR.2.png").rename(root / "dst_imgs" / "blur" / "1600.blur.2.png")
    rows = [
        [1600.0 if r[0] == 1600 else r[0], r[1], "JPEG  2000" if r[2] == "jpeg 2000" else r[2], r[3], r[5]]
        for r in csiq_rows()
    ]
    write_csiq_sheet(root / "csiq.DMOS.xlsx", rows, header=tuple(c for c in CSIQ_HEADER if c != "dmos_std"))
    out = tmp_path / "out"
    build_corpus("csiq", root, out, progress=False)
    train = datasets.load_dataset(str(out), split="train")
    assert train["image_id"][:2] == ["1600.AWGN.1.png", "1600.AWGN.2.png"]
    assert "1600.BLUR.2.png" in train["image_id"]
    assert Counter(train["distortion_type"])[9] == 15
    assert set(train["mos_std"]) == {None}
    raw = train.cast_column("image", datasets.Image(decode=False))
    i = train["image_id"].index("1600.BLUR.2.png")
    assert raw[i]["image"]["bytes"] == (root / "dst_imgs" / "blur" / "1600.blur.2.png").read_bytes()


def test_index_only_build(root, tmp_path):
    out = tmp_path / "out"
    build_corpus("csiq", root, out, progress=False, index_only=True)
    train = datasets.load_dataset(str(out), split="train")
    assert train[0]["image"] == "dst_imgs/awgn/1600.AWGN.1.png" and len(train[0]["sha256"]) == 64


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("csiq.DMOS.xlsx", r"missing CSIQ metadata file csiq.DMOS.xlsx: .*csiq.DMOS.xlsx does not exist"),
        ("src_imgs", r"missing CSIQ reference folder src_imgs/"),
        (
            "dst_imgs",
            r"missing CSIQ image folder dst_imgs/: .* does not exist \(nor the flattened dst_imgs_all/\)",
        ),
    ],
)
def test_missing_files_name_them(root, tmp_path, remove, message):
    path = root / remove
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(CorpusError, match=message):
        build_corpus("csiq", root, tmp_path / "out", progress=False)
    assert no_output(tmp_path / "out")


def test_malformed_workbook(root, tmp_path):
    out = tmp_path / "out"
    book = root / "csiq.DMOS.xlsx"
    book.write_bytes(b"not a workbook")
    with pytest.raises(CorpusError, match=r"csiq.DMOS.xlsx: not a readable .xlsx workbook"):
        build_corpus("csiq", root, out, progress=False)
    write_csiq_sheet(book, csiq_rows(), sheet="Sheet1")
    with pytest.raises(
        CorpusError,
        match=r"no sheet 'all_by_image'; the workbook has sheets \['all_by_distortion', 'Sheet1'\]",
    ):
        build_corpus("csiq", root, out, progress=False)
    header = tuple("score" if c == "dmos" else c for c in CSIQ_HEADER)
    write_csiq_sheet(book, csiq_rows(), header=header)
    with pytest.raises(
        CorpusError,
        match=r"\(sheet 'all_by_image'\): no header row with the columns image, dst_type, dst_lev, dmos",
    ):
        build_corpus("csiq", root, out, progress=False)
    assert no_output(out)


def test_bad_rows_name_the_row_and_skip_bad_records_them(root, tmp_path):
    def damage(rows):
        rows[1][5] = 1.5  # row 3: 1600.AWGN.2.png, dmos out of 0..1
        rows[2][2] = "sharpen"  # row 4: unknown type
        rows[3][3] = 7  # row 5: no such level
        rows[4][5] = "n/a"  # row 6: not a number
        rows[5][0] = "../1600"  # row 7: not a reference name
        return rows

    edit_sheet(root, damage)
    (root / "dst_imgs" / "blur" / "bridge.BLUR.3.png").unlink()
    out = tmp_path / "out"
    with pytest.raises(
        BuildError,
        match=r"csiq.DMOS.xlsx sheet all_by_image row 3: 1600.AWGN.2.png: mos 1.5 is outside the declared scale 0..1",
    ):
        build_corpus("csiq", root, out, progress=False)
    assert no_output(out)

    report = build_corpus("csiq", root, out, progress=False, skip_bad=True)
    assert report.counts[("default", "train")] == N_DISTORTED - 6
    with open(out / "skipped.csv", newline="") as f:
        skipped = [(s["image_id"], s["where"], s["reason"]) for s in csv.DictReader(f)]
    where = "csiq.DMOS.xlsx sheet all_by_image row {}".format
    bridge_row = 2 + next(i for i, r in enumerate(csiq_rows()) if (r[0], r[2], r[3]) == ("bridge", "blur", 3))
    assert skipped == [
        ("1600.AWGN.2.png", where(3), "mos 1.5 is outside the declared scale 0..1 of csiq"),
        (
            "1600",
            where(4),
            "dst_type 'sharpen' is not one of 'noise', 'jpeg', 'jpeg 2000', 'fnoise', 'blur', 'contrast'",
        ),
        ("1600", where(5), "dst_lev 7 is not a level 1..5"),
        ("1600.AWGN.5.png", where(6), "dmos 'n/a' is not a number"),
        ("../1600", where(7), "image '../1600' is not a reference name"),
        (
            "bridge.BLUR.3.png",
            where(bridge_row),
            "listed image is missing (looked in dst_imgs/blur/, dst_imgs/, dst_imgs_all/)",
        ),
    ]


def test_missing_reference_image(root, tmp_path):
    (root / "src_imgs" / "bridge.png").unlink()
    with pytest.raises(
        BuildError, match=r"all_by_image row 31: bridge.png: reference image src_imgs/bridge.png is missing"
    ):
        build_corpus("csiq", root, tmp_path / "out", progress=False)
