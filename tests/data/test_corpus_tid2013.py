"""TID2013: label files in one order, case-insensitive names, 24 TID types mapped onto KADID types."""

from __future__ import annotations

import csv
import os

import datasets
import numpy as np
import pytest

import dgqa_data.corpora.tid2013  # noqa: F401  (registers tid2013)
from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError, get_corpus
from dgqa_data.corpora.tid2013 import TID_TO_KADID, TID_TYPES, UNMAPPED, mapping_rows
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS, DISTORTION_NAMES
from tests.fixtures.tid_agiqa import DISK_CASE, UPPER, make_tid2013, tid_mos_std

REFS = (1, 25)
N_TYPES, N_LEVELS = 24, 5


def f32(x: float) -> float:
    return float(np.float32(x))


def build(root, out, **kw):
    return build_corpus("tid2013", root, out, progress=False, **kw)


def no_leftovers(out):
    """Neither ``out`` nor a temporary sibling of it exists."""
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def edit_lines(path, fn):
    """Rewrite a label file through ``fn(lines) -> lines`` (lines without their newline)."""
    path.write_text("".join(f"{line}\n" for line in fn(path.read_text().splitlines())))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two references (I01.BMP, i25.bmp) x 24 types x 5 levels, built through the CLI."""
    tmp = tmp_path_factory.mktemp("tid2013")
    root = make_tid2013(tmp / "tid2013", refs=REFS)
    out = tmp / "hub" / "dgqa" / "tid2013"
    assert main(["build", "tid2013", "--root", str(root), "--out", str(out)]) == 0
    return tmp, root, out


@pytest.fixture
def small(tmp_path):
    return make_tid2013(tmp_path / "tid2013", refs=(1,), types=(1, 2), levels=(1, 2))


def test_counts_order_and_features(built, monkeypatch):
    tmp, _, out = built
    monkeypatch.chdir(tmp / "hub")
    ds = datasets.load_dataset("dgqa/tid2013", split="train")
    assert len(ds) == len(REFS) * N_TYPES * N_LEVELS
    # mos_with_names.txt order: reference, type, level; names exactly as the file spells them
    assert ds["image_id"][:6] == [
        "i01_01_1.bmp",
        "i01_01_2.bmp",
        "i01_01_3.bmp",
        "i01_01_4.bmp",
        "i01_01_5.bmp",
        "i01_02_1.bmp",
    ]
    assert ds["image_id"][-1] == "i25_24_5.bmp"
    assert set(ds["image_id"]) >= {n.replace("i", "I", 1) for n in UPPER}  # upper-case names kept
    assert ds.column_names == [*COLUMNS, "tid2013_type"]
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["distortion_type"], datasets.ClassLabel)
    assert ds.features["tid2013_type"] == datasets.Value("int8")
    assert ds[0]["image"].format == "BMP" and ds[0]["image"].size == (64, 48)
    refs = datasets.load_dataset(str(out), "pristine", split="train")
    assert refs["image_id"] == refs["reference_id"] == ["I01.BMP", "i25.bmp"]
    assert set(refs["distortion_type"]) == {0} and set(refs["domain"]) == {"pristine"}
    assert refs["mos"] == [None, None] and refs["tid2013_type"] == [None, None]


def test_known_rows(built):
    _, root, out = built
    ds = datasets.load_dataset(str(out), split="train").remove_columns("image")
    rows = {r["image_id"]: r for r in ds}
    # the real first line of mos_with_names.txt / mos_std.txt
    assert rows["i01_01_1.bmp"] == {
        "image_id": "i01_01_1.bmp",
        "reference_id": "I01.BMP",
        "mos": f32(5.51429),
        "mos_std": f32(0.13013),
        "quality": f32(5.51429 / 9),
        "distortion_type": DISTORTION_NAMES.index("white_noise"),
        "distortion_level": 1,
        "domain": "tid2013/additive_gaussian_noise",
        "corpus": "tid2013",
        "tid2013_type": 1,
    }
    mos, std = tid_mos_std(25, 23, 4)
    assert rows["i25_23_4.bmp"] == {
        "image_id": "i25_23_4.bmp",
        "reference_id": "i25.bmp",
        "mos": f32(mos),
        "mos_std": f32(std),
        "quality": f32(mos / 9),
        "distortion_type": -1,
        "distortion_level": 4,
        "domain": "tid2013/chromatic_aberrations",
        "corpus": "tid2013",
        "tid2013_type": 23,
    }
    upper = rows["I25_07_3.bmp"]  # upper-case in the label file and on disk
    assert (upper["reference_id"], upper["tid2013_type"], upper["distortion_level"]) == ("i25.bmp", 7, 3)
    assert upper["distortion_type"] == DISTORTION_NAMES.index("quantization")


def test_case_insensitive_match_keeps_bytes(built):
    _, root, out = built
    raw = datasets.load_dataset(str(out), split="train").cast_column("image", datasets.Image(decode=False))
    ((listed, on_disk),) = DISK_CASE.items()
    files = set(os.listdir(root / "distorted_images"))
    assert listed not in files and on_disk in files  # listed lower-case, stored upper-case
    i = raw["image_id"].index(listed)
    assert raw[i]["image"]["bytes"] == (root / "distorted_images" / on_disk).read_bytes()
    j = raw["image_id"].index("I25_07_1.bmp")
    assert raw[j]["image"]["bytes"] == (root / "distorted_images" / "I25_07_1.bmp").read_bytes()
    refs = datasets.load_dataset(str(out), "pristine", split="train").cast_column(
        "image", datasets.Image(decode=False)
    )
    assert refs[1]["image"]["bytes"] == (root / "reference_images" / "i25.bmp").read_bytes()


def test_type_mapping_and_levels(built):
    _, _, out = built
    ds = datasets.load_dataset(str(out), split="train").remove_columns("image")
    seen = {}
    for r in ds:
        t = r["tid2013_type"]
        seen.setdefault(t, set()).add((r["distortion_type"], r["domain"]))
        assert r["distortion_level"] == int(r["image_id"][-5])
    assert seen == {t: {(TID_TO_KADID[t][0], f"tid2013/{TID_TYPES[t]}")} for t in range(1, 25)}
    assert set(ds["distortion_level"]) == {1, 2, 3, 4, 5}
    # the documented table: every TID type once, a KADID id or -1, a reason each
    assert sorted(TID_TO_KADID) == sorted(TID_TYPES) == list(range(1, 25))
    assert UNMAPPED == (12, 13, 20, 21, 23, 24)
    expected = {1: 11, 2: 12, 6: 13, 7: 22, 8: 1, 9: 15, 10: 10, 11: 9, 14: 20, 15: 23, 16: 18, 17: 25}
    expected.update({19: 14, 22: 6})
    assert {t: k for t, (k, _) in TID_TO_KADID.items() if t in expected} == expected
    assert all(-1 <= k < len(DISTORTION_NAMES) and k != 0 and why for k, why in TID_TO_KADID.values())


def test_card(built):
    _, _, out = built
    meta, card = read_card_metadata(out), (out / "README.md").read_text()
    assert meta["license"] == "other" and meta["pretty_name"] == "TID2013"
    assert {c["config_name"] for c in meta["configs"]} == {"default", "pristine", "splits"}
    assert "Ponomarenko, Nikolay" in card and "Signal Processing: Image Communication" in card
    assert "not redistributable" in card and "research" in card
    assert "| tid2013_type |" in card and "TID levels are not KADID levels" in card
    for cells in mapping_rows():  # the card's table is the module's table, row for row
        assert "| " + " | ".join(cells) + " |" in card
    assert "| -1 | authentic / unknown | 60 |" in card  # 6 unmapped types x 2 refs x 5 levels


def test_registry_and_not_redistributable():
    corpus = get_corpus("TID-2013")
    assert corpus.name == "tid2013" and corpus.redistributable is False
    assert corpus.score_range == (0.0, 9.0) and corpus.higher_is_better and corpus.bounded_scale


def test_python_api_without_mos_txt_and_index_only(tmp_path):
    root = make_tid2013(tmp_path / "tid2013", refs=(2,), types=(8, 20), levels=(1, 5), mos_file=False)
    for name in ("mos_with_names.txt", "mos_std.txt"):  # Windows line ends read the same
        (root / name).write_bytes((root / name).read_bytes().replace(b"\n", b"\r\n"))
    report = build(root, tmp_path / "out", index_only=True)
    assert report.counts == {("default", "train"): 4, ("pristine", "train"): 1}
    ds = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert ds["image"] == [f"distorted_images/{n}" for n in ds["image_id"]]
    assert ds["image_id"] == ["i02_08_1.bmp", "i02_08_5.bmp", "i02_20_1.bmp", "i02_20_5.bmp"]
    assert ds["distortion_type"] == [1, 1, -1, -1] and ds["reference_id"] == ["I02.BMP"] * 4
    assert ds["domain"] == ["tid2013/gaussian_blur"] * 2 + ["tid2013/comfort_noise"] * 2


# -- bad inputs: one clear error naming the file / line; nothing written -----------------------


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (
            "mos_with_names.txt",
            r"missing TID2013 label file mos_with_names.txt: .*mos_with_names.txt does not exist",
        ),
        ("mos_std.txt", r"missing TID2013 label file mos_std.txt: .*mos_std.txt does not exist"),
        ("distorted_images", r"missing TID2013 image folder distorted_images/"),
        ("reference_images", r"missing TID2013 reference folder reference_images/"),
    ],
)
def test_missing_files(small, tmp_path, remove, message):
    path = small / remove
    if path.is_dir():
        for p in path.iterdir():
            p.unlink()
        path.rmdir()
    else:
        path.unlink()
    with pytest.raises(CorpusError, match=message):
        build(small, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


def test_label_file_not_text(small, tmp_path):
    (small / "mos_std.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CorpusError, match=r"mos_std.txt line 1: not UTF-8 text \(byte 0xff\); save the file as UTF-8"):
        build(small, tmp_path / "out")


def test_line_count_mismatch(small, tmp_path):
    edit_lines(small / "mos_std.txt", lambda lines: lines[:-1])
    with pytest.raises(
        CorpusError,
        match=r"TID2013 label files disagree in length \(mos_with_names.txt has 4, mos_std.txt has 3, "
        r"mos.txt has 4 lines\)",
    ):
        build(small, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")
    edit_lines(small / "mos_std.txt", lambda lines: [*lines, "0.2", "0.3"])
    edit_lines(small / "mos_with_names.txt", lambda lines: [*lines, lines[-1]])
    with pytest.raises(
        CorpusError, match=r"mos_with_names.txt has 5, mos_std.txt has 5, mos.txt has 4 lines"
    ):
        build(small, tmp_path / "out")
    # trailing blank lines do not count
    edit_lines(small / "mos_with_names.txt", lambda lines: [*lines[:-1], "", ""])
    edit_lines(small / "mos_std.txt", lambda lines: lines[:-1])
    assert build(small, tmp_path / "ok").counts[("default", "train")] == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("4.1;i01_01_2.bmp", r"mos_with_names.txt line 2: 4.1;i01_01_2.bmp: expected '<MOS> <image name>'"),
        ("4.1 i01_01_2.bmp extra", r"line 2: 4.1 i01_01_2.bmp extra: expected '<MOS> <image name>'"),
        ("4.1 i01_1_2.bmp", r"line 2: i01_1_2.bmp: name does not match iXX_YY_Z.bmp"),
        ("4.1 i01_25_2.bmp", r"line 2: i01_25_2.bmp: distortion type 25 / level 2 outside 1..24 / 1..5"),
        ("4.1 i01_01_6.bmp", r"line 2: i01_01_6.bmp: distortion type 1 / level 6 outside"),
        ("high i01_01_2.bmp", r"line 2: i01_01_2.bmp: MOS 'high' is not a number"),
        ("9.5 i01_01_2.bmp", r"line 2: i01_01_2.bmp: mos 9.5 is outside the declared scale 0..9 of tid2013"),
        ("-0.2 i01_01_2.bmp", r"line 2: i01_01_2.bmp: mos -0.2 is outside the declared scale 0..9"),
    ],
)
def test_malformed_label_lines(small, tmp_path, line, message):
    edit_lines(small / "mos_with_names.txt", lambda lines: [lines[0], line, *lines[2:]])
    (small / "mos.txt").unlink()  # the MOS check against mos.txt is tested on its own
    with pytest.raises(BuildError, match=message):
        build(small, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


def test_bad_std_and_mos_txt_disagreeing(small, tmp_path):
    edit_lines(small / "mos_std.txt", lambda lines: [lines[0], lines[1], "n/a", lines[3]])
    with pytest.raises(BuildError, match=r"mos_std.txt line 3: i01_02_1.bmp: MOS std 'n/a' is not a number"):
        build(small, tmp_path / "out")
    edit_lines(small / "mos_std.txt", lambda lines: [lines[0], lines[1], "-0.1", lines[3]])
    with pytest.raises(BuildError, match=r"mos_std.txt line 3: i01_02_1.bmp: MOS std -0.1 is negative"):
        build(small, tmp_path / "out")
    edit_lines(small / "mos_std.txt", lambda lines: [lines[0], lines[1], "0.2", lines[3]])
    edit_lines(small / "mos.txt", lambda lines: [lines[1], lines[0], *lines[2:]])  # swapped order
    with pytest.raises(
        BuildError,
        match=r"mos_with_names.txt line 1: i01_01_1.bmp: MOS 5.51429 differs from mos.txt line 1 "
        r"\(6.\d+\): the label files are not in the same order",
    ):
        build(small, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


def test_missing_images_and_case_clash(small, tmp_path):
    (small / "distorted_images" / "i01_02_2.bmp").unlink()
    with pytest.raises(
        BuildError,
        match=r"mos_with_names.txt line 4: i01_02_2.bmp: listed image is missing from distorted_images/",
    ):
        build(small, tmp_path / "o1")
    out = tmp_path / "o2"
    report = build(small, out, skip_bad=True)
    assert report.counts[("default", "train")] == 3
    with open(out / "skipped.csv", newline="") as f:
        assert [(s["image_id"], s["where"]) for s in csv.DictReader(f)] == [
            ("i01_02_2.bmp", "mos_with_names.txt line 4")
        ]
    # two files equal up to case: ambiguous
    src = small / "distorted_images" / "i01_01_1.bmp"
    (small / "distorted_images" / "I01_01_1.BMP").write_bytes(src.read_bytes())
    with pytest.raises(
        BuildError, match=r"distorted_images/i01_01_1.bmp: i01_01_1.bmp: same name as I01_01_1.BMP"
    ):
        build(small, tmp_path / "o3")
    (small / "distorted_images" / "I01_01_1.BMP").unlink()
    (small / "reference_images" / "I01.BMP").unlink()
    with pytest.raises(
        BuildError,
        match=r"mos_with_names.txt line 1: i01_01_1.bmp: its reference I01.BMP \(any case\) is missing",
    ):
        build(small, tmp_path / "o4")
    assert no_leftovers(tmp_path / "o4")
