"""KADIS-700k: references + generated dist_imgs, the 7/8 label quirk, no MOS."""

from __future__ import annotations

import datasets
import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.kadis700k import csv_type
from dgqa_data.schema import DISTORTION_NAMES
from tests.fixtures.kadis700k import ROWS, make_kadis700k


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kadis")
    root = make_kadis700k(tmp / "kadis700k")
    out = tmp / "hub" / "dgqa" / "kadis700k"
    report = build_corpus("kadis700k", root, out, progress=False)
    return root, out, report


def _rows(out):
    ds = datasets.load_dataset(str(out), split="train")
    return ds, {r["image_id"]: r for r in ds.remove_columns("image")}


def test_counts_order_and_features(built):
    root, out, report = built
    assert report.counts == {("default", "train"): len(ROWS) * 6}
    assert report.skipped == []
    ds, _ = _rows(out)
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["distortion_type"], datasets.ClassLabel)
    assert ds.features["distortion_type"].names == list(DISTORTION_NAMES)
    assert ds.features["kadis_file_type"] == datasets.Value("int8")
    # each reference, then its 5 generated images (level order)
    assert ds["image_id"][:7] == [
        "a-fleshy-plant-1464418.png",
        *(f"a-fleshy-plant-1464418_01_{lv:02d}.bmp" for lv in range(1, 6)),
        "astronaut-crop-2.png",
    ]
    # original bytes, not re-encoded: PNG references and BMP distorted images
    assert ds[0]["image"].format == "PNG"
    first = ds.cast_column("image", datasets.Image(decode=False))[1]["image"]
    assert first["bytes"] == (root / "dist_imgs" / "a-fleshy-plant-1464418_01_01.bmp").read_bytes()


def test_known_rows(built):
    _, out, _ = built
    _, rows = _rows(out)
    assert rows["a-fleshy-plant-1464418.png"] == {
        "image_id": "a-fleshy-plant-1464418.png",
        "reference_id": "a-fleshy-plant-1464418.png",
        "mos": None,
        "mos_std": None,
        "quality": None,
        "distortion_type": 0,
        "distortion_level": 0,
        "domain": "pristine",
        "corpus": "kadis700k",
        "kadis_file_type": 0,
        "kadis_csv_type": 1,
    }
    r = rows["a-fleshy-plant-1464418_01_03.bmp"]
    assert (r["distortion_type"], r["distortion_level"], r["domain"]) == (1, 3, "gaussian_blur")
    assert r["reference_id"] == "a-fleshy-plant-1464418.png" and r["mos"] is None
    # the generator names outputs after the part of ref_im before the first dot
    assert rows["coffee_10_05.bmp"]["reference_id"] == "coffee.cup-3.png"
    assert rows["coffee_10_05.bmp"]["domain"] == "jpeg"


def test_seven_eight_quirk(built):
    _, out, _ = built
    _, rows = _rows(out)
    assert csv_type({"dist_type_1": "7", "dist_type_2": "8"}) == 8
    assert csv_type({"dist_type_1": "7", "dist_type_2": ""}) == 7
    # `7,8` row: the official generator wrote _07_ files; they are relabelled to type 8
    for lv in range(1, 6):
        r = rows[f"astronaut-crop-2_07_{lv:02d}.bmp"]
        assert (r["distortion_type"], r["kadis_file_type"], r["kadis_csv_type"]) == (8, 7, 8)
        assert r["domain"] == "color_saturation_2"
    assert rows["astronaut-crop-2.png"]["kadis_csv_type"] == 8
    # a plain `7,` row stays type 7
    assert rows["rocket-4_07_01.bmp"]["distortion_type"] == 7
    assert "7/8 quirk" in (out / "README.md").read_text()


def test_file_type_is_trusted_over_csv(tmp_path):
    root = make_kadis700k(tmp_path / "k", rows=ROWS[:1], levels=(1,))
    # a file whose TT disagrees with the CSV (says 1): what was generated wins, the CSV value is kept
    (root / "dist_imgs" / "a-fleshy-plant-1464418_05_02.bmp").write_bytes(
        (root / "dist_imgs" / "a-fleshy-plant-1464418_01_01.bmp").read_bytes()
    )
    build_corpus("kadis700k", root, tmp_path / "out", progress=False)
    _, rows = _rows(tmp_path / "out")
    r = rows["a-fleshy-plant-1464418_05_02.bmp"]
    assert (r["distortion_type"], r["kadis_file_type"], r["kadis_csv_type"]) == (5, 5, 1)


def test_references_only_via_cli_and_hub_name(tmp_path, monkeypatch):
    root = make_kadis700k(tmp_path / "kadis700k", generate=False)
    out = tmp_path / "dgqa" / "kadis700k"
    assert main(["build", "kadis700k", "--root", str(root), "--out", str(out)]) == 0
    monkeypatch.chdir(tmp_path)
    ds = datasets.load_dataset("dgqa/kadis700k", split="train")
    assert ds["image_id"] == [r[0] for r in ROWS]
    assert set(ds["distortion_type"]) == {0}
    assert ds["kadis_csv_type"] == [1, 8, 10, 7]


def test_include_references_false(built, tmp_path):
    root, _, _ = built
    out = tmp_path / "out"
    rc = main(
        ["build", "kadis", "--root", str(root), "--out", str(out), "--option", "include_references=false"]
    )
    assert rc == 0
    ds = datasets.load_dataset(str(out), split="train")
    assert len(ds) == len(ROWS) * 5 and 0 not in ds["distortion_type"]


def test_bad_inputs_name_the_file(tmp_path):
    root = make_kadis700k(tmp_path / "k", rows=ROWS[:1], levels=(1,))
    (root / "dist_imgs" / "unknown-ref_01_01.bmp").write_bytes(b"x")
    with pytest.raises(
        BuildError, match=r"dist_imgs/unknown-ref_01_01.bmp.*no row for reference 'unknown-ref'"
    ):
        build_corpus("kadis700k", root, tmp_path / "o1", progress=False)
    (root / "dist_imgs" / "unknown-ref_01_01.bmp").unlink()
    with open(root / "kadis700k_ref_imgs.csv", "a") as f:
        f.write("b.png,x,\n")
    with pytest.raises(BuildError, match=r"kadis700k_ref_imgs.csv line 3: b.png: .*no distortion type"):
        build_corpus("kadis700k", root, tmp_path / "o2", progress=False)
    report = build_corpus("kadis700k", root, tmp_path / "o3", progress=False, skip_bad=True)
    assert [s.image_id for s in report.skipped] == ["b.png"]
    assert "b.png" in (tmp_path / "o3" / "skipped.csv").read_text()
    with pytest.raises(Exception, match="unknown option"):
        build_corpus("kadis700k", root, tmp_path / "o4", progress=False, levels="3")
