"""A user's own image folder: recursive scan, optional labels with a declared range, options."""

from __future__ import annotations

import datasets
import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from tests.fixtures.folder import IMAGES, make_folder

ORDER = ["a.jpg", "b.PNG", "phone/c.jpeg", "phone/night/d.png", "scans/e.JPG"]


def test_unlabeled_via_cli_and_hub_name(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "shots")
    out = tmp_path / "dgqa" / "folder"
    assert main(["build", "folder", "--root", str(root), "--out", str(out)]) == 0
    monkeypatch.chdir(tmp_path)
    ds = datasets.load_dataset("dgqa/folder", split="train")
    assert ds["image_id"] == ORDER  # recursive, sorted, hidden files and notes.txt left out
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["distortion_type"], datasets.ClassLabel)
    row = ds.remove_columns("image")[0]
    assert row == {
        "image_id": "a.jpg",
        "reference_id": None,
        "mos": None,
        "mos_std": None,
        "quality": None,
        "distortion_type": -1,
        "distortion_level": 0,
        "domain": "authentic",
        "corpus": "folder",
    }
    assert [im.format for im in ds["image"]] == ["JPEG", "PNG", "JPEG", "PNG", "JPEG"]
    raw = ds.cast_column("image", datasets.Image(decode=False))
    assert raw[3]["image"]["bytes"] == (root / "phone/night/d.png").read_bytes()


def test_labels_range_direction_name_domain(tmp_path):
    root = make_folder(tmp_path / "shots", labels="labels.csv")
    out = tmp_path / "mine"
    build_corpus(
        "folder",
        root,
        out,
        progress=False,
        labels="labels.csv",
        score_range="0,100",
        higher_is_better="false",
        name="my-phone",
        domain="phone",
    )
    ds = datasets.load_dataset(str(out), split="train").remove_columns("image")
    assert ds["image_id"] == ORDER
    for r in ds:
        mos = IMAGES[r["image_id"]][1]
        assert r["mos"] == pytest.approx(mos)
        assert r["quality"] == pytest.approx(1 - mos / 100)  # lower = better, flipped
        assert (r["corpus"], r["domain"]) == ("my-phone", "phone")
    card = (out / "README.md").read_text()
    assert "- my-phone" in card and "declared range 0.0–100.0, lower = better" in card
    assert "`my-phone`" in card


def test_labels_absolute_path_and_higher_is_better(tmp_path):
    root = make_folder(tmp_path / "shots", labels="labels.csv")
    labels = (root / "labels.csv").rename(tmp_path / "scores.csv")
    opts = {"labels": str(labels), "score_range": "0,100"}
    build_corpus("folder", root, tmp_path / "o", progress=False, **opts)
    ds = datasets.load_dataset(str(tmp_path / "o"), split="train")
    assert ds[0]["quality"] == pytest.approx(0.715)


def test_labels_need_a_range(tmp_path, capsys):
    root = make_folder(tmp_path / "shots", labels="labels.csv")
    with pytest.raises(
        CorpusError, match=r"labels=labels.csv needs the declared score range: add score_range=LO,HI"
    ):
        build_corpus("folder", root, tmp_path / "o", progress=False, labels="labels.csv")
    rc = main(
        [
            "build",
            "folder",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--option",
            "labels=labels.csv",
        ]
    )
    assert rc == 2 and "score_range=LO,HI" in capsys.readouterr().err
    with pytest.raises(CorpusError, match=r"score_range='100,0': LO must be below HI"):
        build_corpus("folder", root, tmp_path / "o", labels="labels.csv", score_range="100,0")
    with pytest.raises(CorpusError, match=r"score_range='1-5': expected LO,HI"):
        build_corpus("folder", root, tmp_path / "o", labels="labels.csv", score_range="1-5")
    assert not (tmp_path / "o").exists()


def test_label_errors_name_the_row(tmp_path):
    root = make_folder(tmp_path / "shots", labels="labels.csv")
    opts = {"labels": "labels.csv", "score_range": "0,50", "progress": False}
    with pytest.raises(
        BuildError, match=r"labels.csv line 2: a.jpg: mos 71.5 is outside the declared score_range 0,50"
    ):
        build_corpus("folder", root, tmp_path / "o1", **opts)
    opts["score_range"] = "0,100"
    (root / "extra.webp").write_bytes((root / "a.jpg").read_bytes())
    with pytest.raises(BuildError, match=r"extra.webp: no row for this image in labels.csv"):
        build_corpus("folder", root, tmp_path / "o2", **opts)
    report = build_corpus("folder", root, tmp_path / "o3", skip_bad=True, **opts)
    assert report.num_rows == len(IMAGES) and [s.image_id for s in report.skipped] == ["extra.webp"]
    (root / "extra.webp").unlink()
    with open(root / "labels.csv", "a") as f:
        f.write("gone.jpg,50\n")
    with pytest.raises(BuildError, match=r"labels.csv line 7: gone.jpg: listed image is missing"):
        build_corpus("folder", root, tmp_path / "o4", **opts)


def test_bad_options(tmp_path):
    root = make_folder(tmp_path / "shots")
    with pytest.raises(CorpusError, match="option higher_is_better='maybe': expected true or false"):
        build_corpus("folder", root, tmp_path / "o", higher_is_better="maybe")
    with pytest.raises(CorpusError, match="score_range is only used with labels"):
        build_corpus("folder", root, tmp_path / "o", score_range="0,1")
    with pytest.raises(CorpusError, match="name='../x'"):
        build_corpus("folder", root, tmp_path / "o", name="../x")
    with pytest.raises(CorpusError, match="unknown option"):
        build_corpus("folder", root, tmp_path / "o", resolution="512")
