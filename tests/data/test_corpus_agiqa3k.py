"""AGIQA-3K: data.csv (quoted prompts) + AI-generated images, quality MOS and alignment extras."""

from __future__ import annotations

import csv

import datasets
import numpy as np
import pytest

import dgqa_data.corpora.agiqa3k  # noqa: F401  (registers agiqa3k)
from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError, get_corpus
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS
from tests.fixtures.tid_agiqa import AGIQA_HEADER, AGIQA_ROWS, make_agiqa3k

NAMES = [r[0] for r in AGIQA_ROWS]
EXTRA = ["mos_align", "std_align", "prompt", "adj1", "adj2", "style", "generator", "variant"]


def f32(x) -> float:
    return float(np.float32(x))


def build(root, out, **kw):
    return build_corpus("agiqa3k", root, out, progress=False, **kw)


def no_leftovers(out):
    """Neither ``out`` nor a temporary sibling of it exists."""
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def edit_rows(root, fn):
    """Rewrite ``data.csv`` through ``fn(rows) -> rows`` (lists of cells, header first)."""
    path = root / "data.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(fn(rows))


def set_cell(row: int, column: str, value: str):
    """An ``edit_rows`` function setting one cell of data row ``row`` (1-based, header excluded)."""
    col = AGIQA_HEADER.index(column)
    return lambda rows: [r if i != row else [*r[:col], value, *r[col + 1 :]] for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Images in ``images/`` next to data.csv, built through the Python API."""
    tmp = tmp_path_factory.mktemp("agiqa")
    root = make_agiqa3k(tmp / "AGIQA-3K", image_dir="images")
    out = tmp / "hub" / "dgqa" / "agiqa3k"
    report = build(root, out)
    return tmp, root, out, report


@pytest.fixture
def small(tmp_path):
    return make_agiqa3k(tmp_path / "agiqa", rows=AGIQA_ROWS[:4])


def test_counts_order_and_features(built, monkeypatch):
    tmp, _, out, report = built
    assert report.counts == {("default", "train"): len(AGIQA_ROWS)} and not report.skipped
    monkeypatch.chdir(tmp / "hub")
    ds = datasets.load_dataset("dgqa/agiqa3k")
    assert list(ds) == ["train"]
    train = ds["train"]
    assert train["image_id"] == NAMES
    assert train.column_names == [*COLUMNS, *EXTRA]
    feats = train.features
    assert isinstance(feats["image"], datasets.Image)
    assert isinstance(feats["distortion_type"], datasets.ClassLabel)
    assert feats["mos_align"] == feats["std_align"] == datasets.Value("float32")
    assert all(feats[c] == datasets.Value("string") for c in EXTRA[2:])
    assert train[0]["image"].format == "JPEG"


def test_known_rows(built):
    _, root, out, _ = built
    ds = datasets.load_dataset(str(out), split="train").remove_columns("image")
    rows = {r["image_id"]: r for r in ds}
    # the real first row of the official data.csv
    assert rows["AttnGAN_normal_000.jpg"] == {
        "image_id": "AttnGAN_normal_000.jpg",
        "reference_id": None,
        "mos": f32(0.965602553),
        "mos_std": f32(0.223270101),
        "quality": f32(0.965602553 / 5),
        "distortion_type": -1,
        "distortion_level": 0,
        "domain": "aigc/AttnGAN",
        "corpus": "agiqa3k",
        "mos_align": f32(0.40889324),
        "std_align": f32(0.615607722),
        "prompt": "statue of a man",
        "adj1": None,
        "adj2": None,
        "style": None,
        "generator": "AttnGAN",
        "variant": "normal",
    }
    r = rows["sd1.5_highcorr_017.jpg"]  # quoted prompt with commas and quotes
    assert r["prompt"] == 'a "vintage" car, parked, at night'
    assert (r["adj1"], r["adj2"], r["style"]) == ("close-up", "HDR lighting", None)
    assert (r["generator"], r["variant"], r["domain"]) == ("sd1.5", "highcorr", "aigc/sd1.5")
    assert (r["mos"], r["mos_std"], r["mos_align"], r["std_align"]) == (
        f32(2.89),
        f32(0.7),
        f32(3.01),
        f32(0.66),
    )
    r = rows["midjourney_normal_150.jpg"]  # the observed maxima: quality 4.49, alignment 4.29
    assert (r["mos"], r["quality"], r["mos_align"]) == (f32(4.49), f32(4.49 / 5), f32(4.29))
    assert rows["DALLE2_normal_289.jpg"]["mos_align"] == f32(0.02)
    assert {r["generator"] for r in ds} == {"AttnGAN", "glide", "sd1.5", "xl2.2", "midjourney", "DALLE2"}
    assert {r["variant"] for r in ds} == {"normal", "highcorr", "lowcorr", "lowstep"}
    assert rows["xl2.2_normal_100.jpg"]["domain"] == "aigc/xl2.2"
    assert set(ds["distortion_type"]) == {-1} and set(ds["reference_id"]) == {None}
    raw = datasets.load_dataset(str(out), split="train").cast_column("image", datasets.Image(decode=False))
    assert raw[3]["image"]["bytes"] == (root / "images" / NAMES[3]).read_bytes()


def test_card(built):
    _, _, out, _ = built
    meta, card = read_card_metadata(out), (out / "README.md").read_text()
    assert meta["license"] == "other" and meta["pretty_name"] == "AGIQA-3K"
    assert "Li, Chunyi" in card and "AGIQA-3K}: An Open Database for {AI}-Generated" in card
    assert "IEEE Transactions on Circuits and Systems for Video Technology" in card
    assert "MIT licence" in card and "not redistributable" in card
    for column in ("mos_align / std_align", "prompt", "adj1 / adj2", "style", "generator", "variant"):
        assert f"| {column} |" in card
    assert "in `images/` or in `AGIQA-3K/`" in card and "aigc/<generator>" in card
    assert "| -1 | authentic / unknown | 10 |" in card


def test_registry():
    corpus = get_corpus("AGIQA-3K")
    assert corpus.name == "agiqa3k" and corpus.redistributable is False
    assert corpus.score_range == (0.0, 5.0) and corpus.higher_is_better


@pytest.mark.parametrize("image_dir", ["", "AGIQA-3K"])
def test_cli_other_layouts(tmp_path, capsys, image_dir):
    root = make_agiqa3k(tmp_path / "agiqa", image_dir=image_dir)
    out = tmp_path / "out"
    assert main(["build", "agiqa-3k", "--root", str(root), "--out", str(out)]) == 0
    assert f"default/train: {len(AGIQA_ROWS)}" in capsys.readouterr().out
    raw = datasets.load_dataset(str(out), split="train").cast_column("image", datasets.Image(decode=False))
    folder = root / image_dir if image_dir else root
    assert raw["image_id"] == NAMES
    assert raw[5]["image"]["bytes"] == (folder / NAMES[5]).read_bytes()


def test_image_dir_option_and_no_images(tmp_path):
    root = make_agiqa3k(tmp_path / "agiqa", image_dir="pics")
    with pytest.raises(CorpusError, match=r"missing AGIQA-3K images: none of the images listed in data.csv"):
        build(root, tmp_path / "o1")
    assert build(root, tmp_path / "o2", image_dir="pics").num_rows == len(AGIQA_ROWS)
    with pytest.raises(CorpusError, match=r"agiqa3k: image_dir 'nowhere': .*nowhere is not a folder"):
        build(root, tmp_path / "o3", image_dir="nowhere")
    with pytest.raises(CorpusError, match=r"image_dir '\.\./x' escapes the corpus root"):
        build(root, tmp_path / "o4", image_dir="../x")
    with pytest.raises(CorpusError, match=r"agiqa3k: unknown option\(s\) resolution; known: image_dir"):
        build(root, tmp_path / "o5", resolution="512x384")
    assert all(no_leftovers(tmp_path / f"o{k}") for k in (1, 3, 4, 5))


# -- bad inputs: one clear error naming the file / line; nothing written -----------------------


def test_missing_metadata_and_column(small, tmp_path):
    edit_rows(small, lambda rows: [[c for i, c in enumerate(r) if i != 7] for r in rows])
    with pytest.raises(CorpusError, match=r"data.csv: missing column\(s\) mos_align; header is \['name'"):
        build(small, tmp_path / "out")
    (small / "data.csv").unlink()
    with pytest.raises(
        CorpusError, match=r"missing AGIQA-3K metadata file data.csv: .*data.csv does not exist"
    ):
        build(small, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


def test_unquoted_prompt_with_commas(small, tmp_path):
    path = small / "data.csv"
    path.write_text(path.read_text() + "glide_normal_002.jpg,a dog, a cat,,,,2.0,0.5,2.1,0.6\n")
    with pytest.raises(
        BuildError,
        match=r"data.csv line 6: glide_normal_002.jpg: expected 9 fields, got 10 \(quote prompts with commas\)",
    ):
        build(small, tmp_path / "out")
    path.write_text(
        "".join(path.read_text().splitlines(keepends=True)[:2]) + "glide_normal_002.jpg,a dog,,\n"
    )
    with pytest.raises(BuildError, match=r"data.csv line 3: glide_normal_002.jpg: expected 9 fields, got 4"):
        build(small, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("mos_quality", "5.2", r"mos 5.2 is outside the declared scale 0..5 of agiqa3k"),
        ("mos_quality", "-0.1", r"mos -0.1 is outside the declared scale 0..5"),
        ("mos_quality", "", r"mos_quality '' is not a number"),
        ("mos_quality", "good", r"mos_quality 'good' is not a number"),
        ("std_quality", "nan", r"std_quality is 'nan', not a finite number"),
        ("std_quality", "-0.3", r"std_quality -0.3 is negative"),
        ("mos_align", "7", r"mos_align 7 is outside the declared scale 0..5"),
        ("std_align", "x", r"std_align 'x' is not a number"),
        (
            "name",
            "sd1.5_000.jpg",
            r"name does not match <generator>_<normal\|highcorr\|lowcorr\|lowstep>_<n>",
        ),
    ],
)
def test_bad_cells(small, tmp_path, column, value, message):
    edit_rows(small, set_cell(3, column, value))
    name = value if column == "name" else AGIQA_ROWS[2][0]
    with pytest.raises(BuildError, match=rf"data.csv line 4: {name}: {message}"):
        build(small, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


def test_missing_image_then_skip_bad(small, tmp_path):
    (small / AGIQA_ROWS[1][0]).unlink()
    with pytest.raises(BuildError, match=r"data.csv line 3: glide_normal_031.jpg: listed image is missing"):
        build(small, tmp_path / "o1")
    assert no_leftovers(tmp_path / "o1")
    edit_rows(small, set_cell(4, "mos_quality", "6"))
    out = tmp_path / "o2"
    report = build(small, out, skip_bad=True)
    assert report.num_rows == 2
    with open(out / "skipped.csv", newline="") as f:
        skipped = [(s["image_id"], s["where"], s["reason"]) for s in csv.DictReader(f)]
    assert skipped == [
        ("sd1.5_highcorr_017.jpg", "data.csv line 5", "mos 6 is outside the declared scale 0..5 of agiqa3k"),
        ("glide_normal_031.jpg", "data.csv line 3", "listed image is missing"),
    ]
    assert "2 item(s) were skipped" in (out / "README.md").read_text()
