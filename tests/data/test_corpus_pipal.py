"""PIPAL training set: per-reference label files, images spread over Distortion_1..4, Elo scores."""

from __future__ import annotations

import datasets
import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from dgqa_data.corpora.pipal import ELO_RANGE
from tests.fixtures.pipal import CODES, REFS, make_pipal, pipal_elo


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipal")
    root = make_pipal(tmp / "PIPAL")
    out = tmp / "dgqa" / "pipal"
    assert main(["build", "pipal", "--root", str(root), "--out", str(out)]) == 0
    return tmp, root, out


def test_counts_features_and_hub_name(built, monkeypatch):
    tmp, _, out = built
    monkeypatch.chdir(tmp)
    ds = datasets.load_dataset("dgqa/pipal", split="train")
    assert len(ds) == len(REFS) * len(CODES)
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["distortion_type"], datasets.ClassLabel)
    assert ds.features["pipal_group"] == datasets.Value("int8")
    assert ds.features["pipal_subtype"] == datasets.Value("int8")
    assert ds[0]["image"].format == "BMP"
    refs = datasets.load_dataset(str(out), "pristine", split="train")
    assert refs["image_id"] == [f"A{r:04d}.bmp" for r in sorted(REFS)]
    assert set(refs["distortion_type"]) == {0} and set(refs["domain"]) == {"pristine"}
    assert refs["pipal_group"] == [None] * len(REFS)


def test_known_rows(built):
    _, root, out = built
    ds = datasets.load_dataset(str(out), split="train")
    rows = {r["image_id"]: r for r in ds.remove_columns("image")}
    r = rows["A0001_00_00.bmp"]
    assert r == {
        "image_id": "A0001_00_00.bmp",
        "reference_id": "A0001.bmp",
        "mos": pytest.approx(1519.5648),
        "mos_std": None,
        "quality": pytest.approx((1519.5648 - ELO_RANGE[0]) / (ELO_RANGE[1] - ELO_RANGE[0])),
        "distortion_type": -1,
        "distortion_level": 0,
        "domain": "pipal-group-00",
        "corpus": "pipal",
        "pipal_group": 0,
        "pipal_subtype": 0,
    }
    # A0185 lives in Distortion_4 and its label file uses ", " (as the NTIRE files do)
    assert ", " in (root / "Train_Label" / "A0185.txt").read_text()
    r = rows["A0185_06_26.bmp"]
    assert (r["pipal_group"], r["pipal_subtype"], r["domain"]) == (6, 26, "pipal-group-06")
    assert r["mos"] == pytest.approx(pipal_elo(185, 6, 26))
    assert r["reference_id"] == "A0185.bmp"
    raw = ds.cast_column("image", datasets.Image(decode=False))
    i = ds["image_id"].index("A0060_03_05.bmp")
    assert raw[i]["image"]["bytes"] == (root / "Distortion_2" / "A0060_03_05.bmp").read_bytes()
    domains = set(ds["domain"])
    assert domains == {f"pipal-group-{g:02d}" for g, _ in CODES}


def test_card(built):
    _, _, out = built
    card = (out / "README.md").read_text()
    assert "license: other" in card and "PIPAL" in card and "pipal_group" in card
    assert "Gu, Jinjin" in card


def test_missing_image_and_clash_name_the_file(tmp_path):
    root = make_pipal(tmp_path / "PIPAL", refs={1: 1}, codes=((0, 0), (1, 2)))
    (root / "Distortion_1" / "A0001_01_02.bmp").unlink()
    with pytest.raises(
        BuildError, match=r"Train_Label/A0001.txt line 2: A0001_01_02.bmp: listed image is missing"
    ):
        build_corpus("pipal", root, tmp_path / "o1", progress=False)
    report = build_corpus("pipal", root, tmp_path / "o2", progress=False, skip_bad=True)
    assert report.counts[("default", "train")] == 1
    assert "A0001_01_02.bmp" in (tmp_path / "o2" / "skipped.csv").read_text()
    # the same name in two Distortion folders is ambiguous
    (root / "Distortion_3" / "A0001_00_00.bmp").write_bytes(
        (root / "Distortion_1" / "A0001_00_00.bmp").read_bytes()
    )
    with pytest.raises(BuildError, match=r"Distortion_3/A0001_00_00.bmp.*also in Distortion_1/"):
        build_corpus("pipal", root, tmp_path / "o3", progress=False)


def test_bad_label_lines(tmp_path):
    root = make_pipal(tmp_path / "PIPAL", refs={1: 1}, codes=((0, 0),))
    with open(root / "Train_Label" / "A0001.txt", "a") as f:
        f.write("\nA0001_00_00.bmp;1500\n")
    with pytest.raises(BuildError, match=r"A0001.txt line 3: A0001_00_00.bmp;1500: expected '<image>,<elo>'"):
        build_corpus("pipal", root, tmp_path / "o1", progress=False)
    (root / "Train_Label" / "A0001.txt").write_text("A0001_00_00.bmp,high\n")
    with pytest.raises(
        BuildError, match=r"A0001.txt line 1: A0001_00_00.bmp: Elo score 'high' is not a number"
    ):
        build_corpus("pipal", root, tmp_path / "o2", progress=False)
    for d in ("Distortion_1", "Distortion_2", "Distortion_3", "Distortion_4"):
        (root / d).rename(root / f"x{d}")
    with pytest.raises(CorpusError, match="none of Distortion_1"):
        build_corpus("pipal", root, tmp_path / "o3", progress=False)
