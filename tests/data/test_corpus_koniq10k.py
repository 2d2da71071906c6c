"""KonIQ-10k: scores CSV (+ official split CSV) and image folders -> Hub-layout dataset."""

from __future__ import annotations

import csv

import datasets
import numpy as np
import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS
from tests.fixtures.koniq10k import ROWS, UNSCORED, make_koniq10k, mos_sd

NAMES = [r[0] for r in ROWS]
EXTRA = ["mos_zscore", "rating_distribution", "num_ratings"]


def f32(x: float) -> float:
    return float(np.float32(x))


def by_id(ds: datasets.Dataset, image_id: str) -> dict:
    return ds[ds["image_id"].index(image_id)]


def rewrite_scores(root, edit) -> None:
    """Apply ``edit(rows)`` to the data rows of the scores CSV (header kept)."""
    path = root / "koniq10k_scores_and_distributions.csv"
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both resolutions + the official split file; ``auto`` must pick 512x384."""
    tmp = tmp_path_factory.mktemp("koniq")
    root = make_koniq10k(tmp / "koniq10k", resolutions=("1024x768", "512x384"))
    out = tmp / "hub" / "dgqa" / "koniq10k"
    report = build_corpus("koniq10k", root, out, progress=False)
    return root, out, report


def test_official_splits_columns_and_features(built):
    _, out, report = built
    assert report.counts == {("default", "train"): 3, ("default", "test"): 2, ("default", "validation"): 1}
    ds = datasets.load_dataset(str(out))
    # file order within each split, as the official sets file assigns them
    assert {split: ds[split]["image_id"] for split in ds} == {
        "train": ["10004473376.jpg", "10021195374.jpg", "1006008434.jpg"],
        "validation": ["1004284896.jpg"],
        "test": ["10007357496.jpg", "1012286458.jpg"],
    }
    feats = ds["train"].features
    assert ds["train"].column_names == [*COLUMNS, *EXTRA]
    assert isinstance(feats["image"], datasets.Image)
    assert isinstance(feats["distortion_type"], datasets.ClassLabel)
    assert feats["rating_distribution"].length == 5 and feats["num_ratings"].dtype == "int32"


def test_known_row_values(built):
    root, out, _ = built
    row = by_id(datasets.load_dataset(str(out), split="train"), "10004473376.jpg")
    mos, sd = mos_sd((0, 0, 25, 73, 7))
    assert mos == pytest.approx(3.82857142857143)  # the published MOS of this image
    assert row["mos"] == f32(mos) and row["mos_std"] == f32(sd)
    assert row["quality"] == f32((mos - 1) / 4)
    assert row["mos_zscore"] == f32(77.3836206897)
    assert row["rating_distribution"] == [0.0, 0.0, 25.0, 73.0, 7.0] and row["num_ratings"] == 105
    assert row["reference_id"] is None
    assert (row["distortion_type"], row["distortion_level"]) == (-1, 0)
    assert (row["domain"], row["corpus"]) == ("authentic", "koniq10k")
    assert row["image"].size == (32, 24)  # auto picked the 512x384 release
    raw = datasets.load_dataset(str(out), split="test").cast_column("image", datasets.Image(decode=False))
    assert raw[0]["image"]["bytes"] == (root / "512x384" / raw[0]["image"]["path"]).read_bytes()
    meta, card = read_card_metadata(out), (out / "README.md").read_text()
    assert meta["license"] == "other" and "Hosu" in card
    assert "| rating_distribution |" in card and "not redistributable" in card


def test_load_by_hub_name(built, monkeypatch):
    _, out, _ = built
    monkeypatch.chdir(out.parent.parent)
    ds = datasets.load_dataset("dgqa/koniq10k")
    assert {s: ds[s].num_rows for s in ds} == {"train": 3, "validation": 1, "test": 2}
    assert by_id(ds["test"], "1012286458.jpg")["mos"] == f32(2.32)


def test_cli_1024_without_sets_ignores_unscored_image(tmp_path, capsys):
    root = make_koniq10k(tmp_path / "koniq10k", sets=False)
    assert (root / "1024x768" / UNSCORED).exists()
    out = tmp_path / "koniq-1024"
    args = ["build", "koniq10k", "--root", str(root), "--out", str(out), "--option", "resolution=1024x768"]
    assert main(args) == 0
    assert "default/train: 6" in capsys.readouterr().out
    ds = datasets.load_dataset(str(out))
    assert list(ds) == ["train"]
    assert ds["train"]["image_id"] == NAMES and UNSCORED not in ds["train"]["image_id"]
    assert ds["train"][0]["image"].size == (64, 48)


def test_resolution_option(tmp_path):
    root = make_koniq10k(tmp_path / "koniq10k")  # 1024x768 only
    report = build_corpus("koniq10k", root, tmp_path / "auto", progress=False)  # auto falls back
    assert report.num_rows == len(ROWS)
    with pytest.raises(
        CorpusError, match=r"missing KonIQ-10k image folder 512x384/: .*512x384 does not exist"
    ):
        build_corpus("koniq10k", root, tmp_path / "a", progress=False, resolution="512x384")
    with pytest.raises(CorpusError, match="resolution must be auto, 512x384 or 1024x768, got '2k'"):
        build_corpus("koniq10k", root, tmp_path / "b", progress=False, resolution="2k")
    (root / "1024x768").rename(root / "images")
    with pytest.raises(CorpusError, match="neither .*512x384 nor .*1024x768"):
        build_corpus("koniq10k", root, tmp_path / "c", progress=False)


def test_missing_or_malformed_scores_file(tmp_path):
    root = make_koniq10k(tmp_path / "koniq10k", sets=False)
    scores = root / "koniq10k_scores_and_distributions.csv"
    text = scores.read_text()
    scores.write_text(text.replace(",MOS,SD,", ",mos,SD,", 1))
    with pytest.raises(CorpusError, match="koniq10k_scores_and_distributions.csv: missing column.s. MOS"):
        build_corpus("koniq10k", root, tmp_path / "out", progress=False)
    scores.unlink()
    with pytest.raises(
        CorpusError, match="missing KonIQ-10k metadata file koniq10k_scores_and_distributions.csv"
    ):
        build_corpus("koniq10k", root, tmp_path / "out", progress=False)


def test_image_missing_from_sets_file(tmp_path):
    root = make_koniq10k(tmp_path / "koniq10k")
    sets = root / "koniq10k_distributions_sets.csv"
    lines = sets.read_text().splitlines(keepends=True)
    sets.write_text("".join(lines[:2] + lines[3:]))  # drop 10007357496.jpg
    with pytest.raises(
        BuildError,
        match="koniq10k_scores_and_distributions.csv line 3: 10007357496.jpg: not listed in koniq10k_distributions_sets.csv",
    ):
        build_corpus("koniq10k", root, tmp_path / "out", progress=False)
    sets.write_text("".join(lines).replace(",validation\n", ",holdout\n"))
    with pytest.raises(
        BuildError, match="koniq10k_distributions_sets.csv line 5: 1004284896.jpg: set 'holdout'"
    ):
        build_corpus("koniq10k", root, tmp_path / "out", progress=False)


def test_bad_rows_fail_then_skip_bad_records_them(tmp_path):
    root = make_koniq10k(tmp_path / "koniq10k")

    def edit(rows):
        rows[1][7] = "n/a"  # MOS of 10007357496.jpg (line 3)
        rows[3][8] = "nan"  # SD of 1004284896.jpg (line 5)

    rewrite_scores(root, edit)
    (root / "1024x768" / "1012286458.jpg").unlink()  # line 7
    with pytest.raises(BuildError, match="line 3: 10007357496.jpg: MOS 'n/a' is not a number"):
        build_corpus("koniq10k", root, tmp_path / "out", progress=False)

    out = tmp_path / "koniq-skip-bad"
    report = build_corpus("koniq10k", root, out, progress=False, skip_bad=True)
    assert report.num_rows == len(ROWS) - 3
    with open(out / "skipped.csv", newline="") as f:
        skipped = [(s["image_id"], s["where"], s["reason"]) for s in csv.DictReader(f)]
    where = "koniq10k_scores_and_distributions.csv line {}".format
    assert skipped == [
        ("10007357496.jpg", where(3), "MOS 'n/a' is not a number"),
        ("1004284896.jpg", where(5), "SD is 'nan', not a finite number"),
        ("1012286458.jpg", where(7), "listed image is missing"),
    ]
    card = (out / "README.md").read_text()
    assert "3 item(s) were skipped" in card and f"| 1004284896.jpg | {where(5)} |" in card
