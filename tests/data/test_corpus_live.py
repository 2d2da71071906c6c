"""LIVE IQA release 2: the official .mat + folder layout -> Hub-layout dataset -> load_dataset."""

from __future__ import annotations

import csv
import shutil
from collections import Counter

import datasets
import numpy as np
import pytest
import scipy.io

import dgqa_data.corpora.live as live  # registers the corpus (dgqa_data.corpora does not list it yet)
from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError, get_corpus
from dgqa_data.hub_folder import read_card_metadata
from dgqa_data.schema import COLUMNS, DISTORTION_NAMES
from tests.fixtures.live_csiq import LIVE_KNOWN, LIVE_REFS, live_entries, make_live, write_live_mats

N_DISTORTED = 779
PER_FOLDER = {"jp2k": 169, "jpeg": 175, "wn": 145, "gblur": 145, "fastfading": 145}


def f32(x: float) -> float:
    return float(np.float32(x))


def realigned_quality(dmos: float) -> float:
    return f32(1.0 - (dmos + 5.0) / 120.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One miniature ``databaserelease2`` (982 BMPs), copied by the tests that edit it."""
    return make_live(tmp_path_factory.mktemp("live-src") / "databaserelease2")


@pytest.fixture
def root(source, tmp_path):
    """A private copy of the download, free to break."""
    return shutil.copytree(source, tmp_path / "databaserelease2")


@pytest.fixture(scope="module")
def built(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("live-out") / "dgqa" / "live"
    report = build_corpus("live", source, out, progress=False)
    return out, report


def distorted(entries=None):
    return [e for e in (entries or live_entries()) if not e["orgs"]]


def no_output(out):
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_registered_with_aliases_and_restricted():
    for name in ("live", "LIVEIQA", "live-r2", "live-iqa", "databaserelease2"):
        assert get_corpus(name) is live.LIVE
    assert live.LIVE.redistributable is False and live.LIVE.higher_is_better is False
    assert live.NUM_ENTRIES == 982 and live.entry_path(0) == "jp2k/img1.bmp"
    assert live.entry_path(227) == "jpeg/img1.bmp" and live.entry_path(981) == "fastfading/img174.bmp"


def test_counts_ids_and_features(built):
    out, report = built
    assert report.counts == {("default", "train"): N_DISTORTED, ("pristine", "train"): 29}
    assert report.skipped == []
    ds = datasets.load_dataset(str(out))
    assert list(ds) == ["train"]
    train = ds["train"]
    assert train.column_names == list(COLUMNS)
    assert train.features["distortion_type"].names == list(DISTORTION_NAMES)
    assert isinstance(train.features["image"], datasets.Image)
    expected = distorted()
    assert train["image_id"] == [e["image_id"] for e in expected]  # .mat order, reference copies left out
    assert train["image_id"][:3] == ["jp2k/img2.bmp", "jp2k/img3.bmp", "jp2k/img4.bmp"]  # img1 is a copy
    assert "wn/img146.bmp" not in train["image_id"] and "wn/img145.bmp" in train["image_id"]
    assert train["reference_id"] == [e["ref"] for e in expected]
    assert Counter(i.split("/")[0] for i in train["image_id"]) == PER_FOLDER
    assert Counter(train["domain"]) == {f"live-{f}": n for f, n in PER_FOLDER.items()}
    assert set(train["corpus"]) == {"live"} and set(train["distortion_level"]) == {0}


def test_scores_and_type_mapping(built):
    out, _ = built
    train = datasets.load_dataset(str(out), split="train").remove_columns("image")
    rows = {r["image_id"]: r for r in train}
    for image_id, (ref, new, _) in LIVE_KNOWN.items():
        r = rows[image_id]
        assert (r["reference_id"], r["mos"], r["quality"]) == (ref, f32(new), realigned_quality(new))
    assert rows["jpeg/img57.bmp"]["mos"] < 0 and rows["wn/img20.bmp"]["mos"] > 100  # published as is
    assert min(train["quality"]) >= 0.0 and max(train["quality"]) <= 1.0
    for e in distorted():
        r = rows[e["image_id"]]
        assert (r["mos"], r["mos_std"]) == (f32(e["dmos_new"]), f32(e["dmos_std"]))
        assert r["distortion_type"] == live.TYPE_MAP[e["folder"]][0]
    assert rows["jp2k/img2.bmp"] == {
        "image_id": "jp2k/img2.bmp",
        "reference_id": "studentsculpture.bmp",
        "mos": f32(15.512954417537026),
        "mos_std": f32(8.1),
        "quality": realigned_quality(15.512954417537026),
        "distortion_type": 9,
        "distortion_level": 0,
        "domain": "live-jp2k",
        "corpus": "live",
    }
    by_folder = {
        f: {rows[e["image_id"]]["distortion_type"] for e in distorted() if e["folder"] == f}
        for f in PER_FOLDER
    }
    assert by_folder == {"jp2k": {9}, "jpeg": {10}, "wn": {11}, "gblur": {1}, "fastfading": {9}}


def test_original_bytes_and_pristine_config(built, source):
    out, _ = built
    train = datasets.load_dataset(str(out), split="train")
    raw = train.cast_column("image", datasets.Image(decode=False))
    for i in (0, 200, 400, 778):
        image_id = train[i]["image_id"]
        assert raw[i]["image"]["bytes"] == (source / image_id).read_bytes()
        assert raw[i]["image"]["path"] == image_id
    assert train[0]["image"].format == "BMP" and train[0]["image"].size == (32, 24)
    refs = datasets.load_dataset(str(out), "pristine", split="train")
    first_seen = list(dict.fromkeys(e["ref"] for e in distorted()))
    assert refs["image_id"] == first_seen and sorted(first_seen) == sorted(LIVE_REFS)
    assert refs["reference_id"] == refs["image_id"]
    assert set(refs["distortion_type"]) == {0} and set(refs["domain"]) == {"pristine"}
    assert set(refs["mos"]) == {None} and set(refs["quality"]) == {None}
    raw_refs = refs.cast_column("image", datasets.Image(decode=False))
    assert raw_refs[0]["image"]["bytes"] == (source / "refimgs" / first_seen[0]).read_bytes()


def test_card(built):
    out, _ = built
    card = (out / "README.md").read_text()
    assert read_card_metadata(out)["license"] == "other"
    assert "Sheikh, Hamid R. and Sabir, Muhammad F. and Bovik, Alan C." in card
    assert "not redistributable" in card and "index-only" in card
    assert (
        "**Scores in this build:** realigned DMOS" in card
        and "`--option dmos=realigned`, the default" in card
    )
    assert "declared range -5.0–115.0, lower = better" in card
    for folder, (tid, why) in live.TYPE_MAP.items():
        assert f"| {folder} | live-{folder} | {tid} {DISTORTION_NAMES[tid]} | {why} |" in card
    assert "| 9 | jpeg2000 | 314 |" in card  # jp2k 169 + fastfading 145
    assert "| 0 | pristine | 29 |" in card


def test_cli_build_original_dmos(source, tmp_path, capsys):
    out = tmp_path / "live-original"
    rc = main(["build", "live", "--root", str(source), "--out", str(out), "--option", "dmos=original"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "default/train: 779" in printed and "pristine/train: 29" in printed
    train = datasets.load_dataset(str(out), split="train").remove_columns("image")
    expected = distorted()
    assert train["mos"] == [f32(e["dmos"]) for e in expected]
    assert set(train["mos_std"]) == {None}
    r = train[0]
    assert (r["image_id"], r["mos"], r["quality"]) == (
        "jp2k/img2.bmp",
        f32(28.00384535689855),
        f32(1.0 - 28.00384535689855 / 100.0),
    )
    card = (out / "README.md").read_text()
    assert "**Scores in this build:** original DMOS" in card and "`--option dmos=original`" in card
    assert "declared range 0.0–100.0, lower = better" in card


def test_bad_options(source, tmp_path, capsys):
    with pytest.raises(CorpusError, match="live: dmos must be 'realigned' or 'original', got 'new'"):
        build_corpus("live", source, tmp_path / "a", progress=False, dmos="new")
    rc = main(["build", "live", "--root", str(source), "--out", str(tmp_path / "b"), "--option", "scale=1"])
    assert rc == 2 and "unknown option(s) scale; known: dmos" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("missing", "dmos", "message"),
    [
        ("refnames_all.mat", "realigned", "missing LIVE metadata file refnames_all.mat"),
        ("dmos_realigned.mat", "realigned", "missing LIVE metadata file dmos_realigned.mat"),
        ("dmos.mat", "original", "missing LIVE metadata file dmos.mat"),
        ("refimgs", "realigned", "missing LIVE reference folder refimgs/"),
        ("fastfading", "realigned", "missing LIVE image folder fastfading/"),
    ],
)
def test_missing_files_name_them(root, tmp_path, missing, dmos, message):
    path = root / missing
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=message):
        build_corpus("live", root, out, progress=False, dmos=dmos)
    assert no_output(out)


def test_only_the_chosen_score_file_is_needed(root, tmp_path):
    (root / "dmos_realigned.mat").unlink()
    report = build_corpus("live", root, tmp_path / "out", progress=False, dmos="original")
    assert report.counts[("default", "train")] == N_DISTORTED


def test_malformed_mat_files(root, tmp_path):
    out = tmp_path / "out"
    (root / "dmos_realigned.mat").write_bytes(b"not a mat file")
    with pytest.raises(CorpusError, match=r"dmos_realigned.mat: not a readable .mat file"):
        build_corpus("live", root, out, progress=False)
    entries = live_entries()
    write_live_mats(root, entries[:-1])  # 981 entries
    with pytest.raises(
        CorpusError, match=r"refnames_all.mat: variable 'refnames_all' has 981 entries; release 2 lists 982"
    ):
        build_corpus("live", root, out, progress=False)
    write_live_mats(root, entries)
    scipy.io.savemat(
        root / "dmos_realigned.mat", {"dmos_new": np.zeros((1, 982)), "orgs": np.zeros((1, 982))}
    )
    with pytest.raises(
        CorpusError,
        match=r"dmos_realigned.mat: no variable 'dmos_std'; the file holds \['dmos_new', 'orgs'\]",
    ):
        build_corpus("live", root, out, progress=False)
    assert no_output(out)


def test_bad_entries_name_the_entry_and_skip_bad_records_them(root, tmp_path):
    entries = live_entries()
    entries[1]["dmos_new"] = float("nan")  # jp2k/img2.bmp
    entries[2]["orgs"] = 2  # jp2k/img3.bmp
    entries[3]["ref"] = 7.0  # jp2k/img4.bmp: a number where a file name belongs
    entries[4]["dmos_new"] = 130.0  # jp2k/img5.bmp: outside the declared -5..115
    entries[0]["dmos_new"] = float("nan")  # jp2k/img1.bmp is a reference copy: never read
    write_live_mats(root, entries)
    (root / "jp2k" / "img6.bmp").unlink()
    (root / "jp2k" / "img1.bmp").unlink()  # a reference copy: not needed
    out = tmp_path / "out"
    with pytest.raises(
        BuildError, match=r"dmos_realigned.mat entry 2: jp2k/img2.bmp: dmos_new \(dmos_realigned.mat\) is nan"
    ):
        build_corpus("live", root, out, progress=False)
    assert no_output(out)

    report = build_corpus("live", root, out, progress=False, skip_bad=True)
    assert report.counts[("default", "train")] == N_DISTORTED - 5
    with open(out / "skipped.csv", newline="") as f:
        skipped = [(s["image_id"], s["where"], s["reason"]) for s in csv.DictReader(f)]
    assert skipped == [
        (
            "jp2k/img2.bmp",
            "dmos_realigned.mat entry 2",
            "dmos_new (dmos_realigned.mat) is nan, not a finite number",
        ),
        (
            "jp2k/img3.bmp",
            "dmos_realigned.mat entry 3",
            "orgs is 2.0, expected 0 (distorted) or 1 (reference copy)",
        ),
        ("jp2k/img4.bmp", "refnames_all.mat entry 4", "refnames_all holds array([[7.]]), not a file name"),
        (
            "jp2k/img5.bmp",
            "dmos_realigned.mat entry 5",
            "mos 130 is outside the declared scale -5..115 of live",
        ),
        ("jp2k/img6.bmp", "dmos_realigned.mat entry 6", "listed image is missing"),
    ]
    card = (out / "README.md").read_text()
    assert (
        "## Skipped items" in card
        and "| jp2k/img6.bmp | dmos_realigned.mat entry 6 | listed image is missing |" in card
    )


def test_out_of_scale_original_dmos(root, tmp_path):
    entries = live_entries()
    entries[-29 - 1]["dmos"] = 100.5  # fastfading/img145.bmp
    write_live_mats(root, entries)
    with pytest.raises(
        BuildError,
        match=r"dmos.mat entry 953: fastfading/img145.bmp: mos 100.5 is outside the declared scale 0..100",
    ):
        build_corpus("live", root, tmp_path / "out", progress=False, dmos="original")
    build_corpus("live", root, tmp_path / "out2", progress=False)  # the realigned scores are fine


def test_missing_reference_image(root, tmp_path):
    (root / "refimgs" / "studentsculpture.bmp").unlink()
    with pytest.raises(
        BuildError,
        match=r"refnames_all.mat entry 2: studentsculpture.bmp: reference image refimgs/studentsculpture.bmp is missing",
    ):
        build_corpus("live", root, tmp_path / "out", progress=False)
    assert no_output(tmp_path / "out")
