"""SPAQ: TestImage/*.jpg + Annotations/*.xlsx -> dataset, as shipped or resized (short side N)."""

from __future__ import annotations

import csv
import io

import datasets
import numpy as np
import pytest
from PIL import Image, ImageOps

import dgqa_data.corpora.spaq  # noqa: F401  (registers the corpus)
from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from dgqa_data.corpora.spaq import resized_size
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS
from tests.fixtures.official import reference_crops
from tests.fixtures.spaq_bid import (
    EXIF_ROWS,
    MOS_HEADER,
    ROTATED,
    SCENE_HEADER,
    SCENE_ROWS,
    SPAQ_ROWS,
    make_spaq,
    write_xlsx,
)

NAMES = [r[0] for r in SPAQ_ROWS]
ATTRIBUTES = ("brightness", "colorfulness", "contrast", "noisiness", "sharpness")
MOS_XLSX = "Annotations/MOS and Image attribute scores.xlsx"


def f32(x: float) -> float:
    return float(np.float32(x))


def build(root, out, **kw):
    return build_corpus("spaq", root, out, progress=False, **kw)


def raw_bytes(ds, i):
    return ds.cast_column("image", datasets.Image(decode=False))[i]["image"]["bytes"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spaq")
    spaq = make_spaq(tmp / "download")
    out = tmp / "hub" / "dgqa" / "spaq"
    report = build(tmp / "download", out)  # the parent of SPAQ/
    return spaq, out, report


def test_rows_columns_and_features(built):
    _, out, report = built
    assert report.counts == {("default", "train"): len(SPAQ_ROWS)} and report.skipped == []
    train = datasets.load_dataset(str(out), split="train")
    assert train["image_id"] == NAMES  # sheet order
    assert train.column_names == [*COLUMNS, *ATTRIBUTES, "scene", "exif"]
    for name in ATTRIBUTES:
        assert train.features[name] == datasets.Value("float32")
    assert set(train.features["scene"]) == {
        "animal", "cityscape", "human", "indoor_scene", "landscape", "night_scene", "plant", "still_life", "others"
    }  # fmt: skip
    assert list(train.features["exif"]) == [
        "focal_length", "f_number", "exposure_time", "iso", "brightness", "flash", "time_0", "time_1"
    ]  # fmt: skip
    assert train["mos"] == [f32(r[1]) for r in SPAQ_ROWS]
    assert train["quality"] == [f32(r[1] / 100) for r in SPAQ_ROWS]
    for k, name in enumerate(ATTRIBUTES):
        assert train[name] == [f32(r[2 + k]) for r in SPAQ_ROWS]
    assert set(train["mos_std"]) == {None} and set(train["reference_id"]) == {None}
    assert set(train["distortion_type"]) == {-1} and set(train["distortion_level"]) == {0}
    assert set(train["domain"]) == {"authentic"} and set(train["corpus"]) == {"spaq"}


def test_known_values_scene_exif_and_bytes(built):
    spaq, out, _ = built
    train = datasets.load_dataset(str(out), split="train")
    first = train[0]
    assert (first["image_id"], first["mos"], first["brightness"]) == ("00001.jpg", f32(48.86), f32(52.3))
    assert first["scene"]["cityscape"] == f32(0.333333) and first["scene"]["human"] == f32(0.666667)
    assert first["exif"] == {
        k: f32(v)
        for k, v in zip(
            ("focal_length", "f_number", "exposure_time", "iso", "brightness", "flash", "time_0", "time_1"),
            EXIF_ROWS[0][1:],
        )
    }
    assert train[3]["exif"]["brightness"] is None  # a blank cell is a null field
    assert train[4]["scene"]["still_life"] == 1.0
    for i, name in enumerate(NAMES):  # bytes copied untouched, the rotated one too
        assert raw_bytes(train, i) == (spaq / "TestImage" / name).read_bytes()
    rotated = train[NAMES.index(ROTATED)]["image"]
    assert rotated.size == (48, 64)  # stored 64x48 with EXIF orientation 6: datasets turns it upright
    assert train[0]["image"].format == "JPEG" and train[0]["image"].size == (64, 48)
    card = (out / "README.md").read_text()
    assert read_card_metadata(out)["license"] == "other"
    assert "Fang" in card and "Smartphone Photography" in card and "not redistributable" in card
    assert "No official split" in card and "--option resize=512" in card
    assert "| scene |" in card and "| exif |" in card


def test_cli_resized_variant_from_the_spaq_folder(tmp_path, capsys):
    spaq = make_spaq(tmp_path / "dl")
    out = tmp_path / "spaq-32"
    argv = ["build", "spaq", "--root", str(spaq), "--out", str(out)]
    before = sorted(p.relative_to(spaq) for p in spaq.rglob("*"))
    assert main([*argv, "--option", "resize=32"]) == 0
    assert f"default/train: {len(SPAQ_ROWS)}" in capsys.readouterr().out
    train = datasets.load_dataset(str(out), split="train")
    assert train["image_id"] == NAMES and train["mos"] == [f32(r[1]) for r in SPAQ_ROWS]
    sizes = [img.size for img in train["image"]]
    # 64x48 -> short side 32, long side round(64 * 32 / 48) = round(42.67) = 43; the rotated one is 48x64
    assert sizes == [(32, 43) if n == ROTATED else (43, 32) for n in NAMES]
    assert {img.format for img in train["image"]} == {"PNG"}
    for i, name in enumerate(NAMES):  # exactly: EXIF orientation, then Pillow BICUBIC to the size above
        with Image.open(spaq / "TestImage" / name) as src:
            upright = ImageOps.exif_transpose(src)
            expected = upright.resize(resized_size(*upright.size, 32), Image.Resampling.BICUBIC)
        got = Image.open(io.BytesIO(raw_bytes(train, i)))
        assert np.array_equal(np.asarray(got), np.asarray(expected))
    assert sorted(p.relative_to(spaq) for p in spaq.rglob("*")) == before  # nothing written into the input
    card = (out / "README.md").read_text()
    assert "Resized variant" in card and "BICUBIC" in card and "short side is 32 pixels" in card


def test_resize_512_in_two_processes(tmp_path):
    crop = reference_crops()[0]
    landscape = np.asarray(Image.fromarray(crop).resize((1024, 768), Image.Resampling.BICUBIC))
    portrait = np.ascontiguousarray(landscape[:, :600])  # 600x768 (W x H)
    rows = [r for r in SPAQ_ROWS if r[0] in ("00001.jpg", "00002.jpg", "00004.jpg")]
    small = reference_crops()[5]  # 64x48: short side already <= 512, kept at its size
    spaq = make_spaq(tmp_path / "dl", rows=rows, scene=None, exif=None, crops=[landscape, portrait, small])
    out = tmp_path / "spaq-512"
    report = build(spaq, out, resize="512", num_proc=2)  # resized in the build's two read workers
    assert report.num_rows == 3
    train = datasets.load_dataset(str(out), split="train")
    # 1024x768 -> 683x512 (1024 * 512 / 768 = 682.67); 600x768 -> 512x655 (768 * 512 / 600 = 655.36)
    assert [img.size for img in train["image"]] == [(683, 512), (512, 655), (64, 48)]
    assert set(train["scene"]) == {None} and set(train["exif"]) == {None}  # optional files absent
    assert sorted(p.name for p in (spaq / "TestImage").iterdir()) == ["00001.jpg", "00002.jpg", "00004.jpg"]


def test_resized_size_rule():
    assert resized_size(4000, 3000, 512) == (683, 512)
    assert resized_size(3000, 4000, 512) == (512, 683)
    assert resized_size(1536, 1024, 512) == (768, 512)  # exact
    assert resized_size(3, 2, 1) == (2, 1)  # 1.5 rounds up
    assert resized_size(500, 400, 512) == (500, 400)  # never upscaled


# -- bad inputs: one clear line naming the file / row --------------------------------------------


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_folders_and_metadata(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        CorpusError, match="missing SPAQ folders: neither .* holds TestImage/ and Annotations/"
    ):
        build(tmp_path / "empty", tmp_path / "out")
    spaq = make_spaq(tmp_path / "dl")
    (spaq / MOS_XLSX).unlink()
    with pytest.raises(CorpusError) as err:
        build(spaq, tmp_path / "out")
    assert one_line(err).startswith(f"missing SPAQ metadata file {MOS_XLSX}: ")
    assert one_line(err).endswith("MOS and Image attribute scores.xlsx does not exist")


def test_missing_image_fails_then_skip_bad_records_it(tmp_path):
    spaq = make_spaq(tmp_path / "dl")
    (spaq / "TestImage" / "00002.jpg").unlink()
    with pytest.raises(BuildError) as err:
        build(spaq, tmp_path / "out")
    assert one_line(err).startswith(f"{MOS_XLSX} row 3: 00002.jpg: listed image is missing")
    with pytest.raises(BuildError, match=f"{MOS_XLSX} row 3: 00002.jpg: listed image is missing"):
        build(spaq, tmp_path / "out", resize=32)  # the resized variant says the same
    report = build(spaq, tmp_path / "skip", skip_bad=True)
    assert report.num_rows == len(SPAQ_ROWS) - 1
    with open(tmp_path / "skip" / "skipped.csv", newline="") as f:
        assert list(csv.reader(f))[1:] == [["00002.jpg", f"{MOS_XLSX} row 3", "listed image is missing"]]


def test_bad_scores(tmp_path):
    rows = [list(r) for r in SPAQ_ROWS]
    rows[1][1] = 120.0  # MOS out of 0..100
    rows[2][1] = "n/a"
    rows[3][6] = -3  # Sharpness
    rows[4][3] = None  # Colorfulness blank
    spaq = make_spaq(tmp_path / "dl", rows=rows)
    with pytest.raises(BuildError) as err:
        build(spaq, tmp_path / "out")
    assert one_line(err) == (
        f"{MOS_XLSX} row 3: 00002.jpg: mos 120 is outside the declared scale 0..100 of spaq "
        "(use --skip-bad to record and skip bad items)"
    )
    report = build(spaq, tmp_path / "skip", skip_bad=True)
    assert [(s.image_id, s.where, s.reason) for s in report.skipped] == [
        ("00002.jpg", f"{MOS_XLSX} row 3", "mos 120 is outside the declared scale 0..100 of spaq"),
        ("00003.jpg", f"{MOS_XLSX} row 4", "MOS 'n/a' is not a number"),
        ("00004.jpg", f"{MOS_XLSX} row 5", "Sharpness -3 is outside the attribute scale 0..100"),
        ("00005.jpg", f"{MOS_XLSX} row 6", "Colorfulness is empty"),
    ]
    assert datasets.load_dataset(str(tmp_path / "skip"), split="train")["image_id"] == ["00001.jpg"]


def test_malformed_sheets(tmp_path):
    spaq = make_spaq(tmp_path / "dl")
    write_xlsx(spaq / MOS_XLSX, MOS_HEADER[:-1], [r[:-1] for r in SPAQ_ROWS])
    with pytest.raises(CorpusError) as err:
        build(spaq, tmp_path / "out")
    assert (
        "MOS and Image attribute scores.xlsx (sheet 'Sheet1'): missing column(s) 'Sharpness'; header row is"
        in (one_line(err))
    )
    (spaq / MOS_XLSX).write_text("Image name,MOS\n00001.jpg,48.86\n")  # a CSV saved under the .xlsx name
    with pytest.raises(CorpusError) as err:
        build(spaq, tmp_path / "out")
    assert "MOS and Image attribute scores.xlsx: not a readable .xlsx workbook: " in one_line(err)


def test_scene_file_must_list_every_image_once(tmp_path):
    scene = [*SCENE_ROWS[:2], SCENE_ROWS[1], *SCENE_ROWS[3:]]  # 00002 twice, 00003 absent
    spaq = make_spaq(tmp_path / "dl", scene=scene)
    report = build(spaq, tmp_path / "skip", skip_bad=True)
    assert [(s.image_id, s.reason) for s in report.skipped] == [
        (
            "00002.jpg",
            "listed 2 times in Scene category labels.xlsx: Annotations/Scene category labels.xlsx row 3, "
            "Annotations/Scene category labels.xlsx row 4",
        ),
        ("00003.jpg", "not listed in Scene category labels.xlsx (remove that file to build without it)"),
    ]
    write_xlsx(spaq / "Annotations" / "Scene category labels.xlsx", SCENE_HEADER, [
        (*SCENE_ROWS[0][:3], "lots", *SCENE_ROWS[0][4:]), *SCENE_ROWS[1:]
    ])  # fmt: skip
    with pytest.raises(BuildError) as err:
        build(spaq, tmp_path / "out")
    assert one_line(err).startswith(
        "Annotations/Scene category labels.xlsx row 2: 00001.jpg: human 'lots' is not a number"
    )


def test_bad_options(tmp_path):
    spaq = make_spaq(tmp_path / "dl", scene=None, exif=None)
    with pytest.raises(
        CorpusError, match=r"spaq: resize must be a short side in pixels \(e.g. 512\) or none"
    ):
        build(spaq, tmp_path / "out", resize="big")
    with pytest.raises(
        CorpusError, match="spaq: unknown option.*size; known: resize"
    ):
        build(spaq, tmp_path / "out", size="512")
    report = build(spaq, tmp_path / "none", resize="none")  # explicit "as shipped"
    train = datasets.load_dataset(str(tmp_path / "none"), split="train")
    assert (
        report.num_rows == len(SPAQ_ROWS)
        and raw_bytes(train, 0) == (spaq / "TestImage" / NAMES[0]).read_bytes()
    )


def test_unreadable_image_when_resizing_and_index_only_is_refused(tmp_path):
    spaq = make_spaq(tmp_path / "dl", scene=None, exif=None)
    (spaq / "TestImage" / "00004.jpg").write_bytes(b"not a jpeg")
    report = build(tmp_path / "dl", tmp_path / "out", resize=32, skip_bad=True)
    [skip] = report.skipped
    assert (skip.image_id, skip.where) == ("00004.jpg", f"{MOS_XLSX} row 5")
    assert skip.reason == "not a readable image (unknown or corrupt header)"  # checked before resizing
    train = datasets.load_dataset(str(tmp_path / "out"), split="train")
    assert train["image_id"] == [n for n in NAMES if n != "00004.jpg"]
    # index-only keeps the shipped files' paths and checksums: it cannot describe resized images
    with pytest.raises(CorpusError, match="spaq: --index-only stores the shipped files, but these options"):
        build(tmp_path / "dl", tmp_path / "idx", resize=32, index_only=True)
    assert not (tmp_path / "idx").exists()


def test_a_transform_that_fails_names_the_image(tmp_path):
    """An image that passes the header check but cannot be resized is a bad item, named."""
    from dgqa_data.build import _read

    spaq = make_spaq(tmp_path / "dl", scene=None, exif=None)
    path = spaq / "TestImage" / NAMES[0]
    data, reason = _read(str(path), transform=lambda b: (_ for _ in ()).throw(ValueError("too small")))
    assert data is None and reason == "cannot transform image: too small"
    data, reason = _read(str(path), transform=lambda b: b[:4])
    assert (data, reason) == (path.read_bytes()[:4], None)
