"""Selected subsets, controls, index-only writing and hydration, on a miniature KADID-10k."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from dgqa_data.build import build_corpus
from dgqa_data.cli import main as cli
from dgqa_data.corpora import base
from dgqa_data.corpora.kadid10k import KADID10K
from dgqa_data.hub_folder import FINGERPRINT_PREFIX, content_fingerprint
from dgqa_data.hydrate import HydrateError, hydrate
from dgqa_data.selection import Selection, format_table, paper_selection
from dgqa_data.subsets import SubsetError, all_control, random_control, select_subset, subset_name
from tests.fixtures.official import make_kadid10k

TYPES = (1, 2, 3, 9, 10, 17, 18, 25)  # the LIVEC selection (1, 3, 10, 17, 18, 25) + two others
LIVEC = {1, 3, 10, 17, 18, 25}
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(official download root, built dgqa/kadid10k folder): 2 refs x 8 types x 5 levels = 80 rows."""
    tmp = tmp_path_factory.mktemp("subsets")
    root = make_kadid10k(tmp / "download" / "kadid10k", n_refs=2, types=TYPES)
    built = tmp / "hub" / "dgqa" / "kadid10k"
    build_corpus("kadid10k", root, built, progress=False)
    return root, built


@pytest.fixture
def restricted(monkeypatch):
    """Pretend KADID-10k's terms forbid redistribution (as KonIQ-10k's, BID's, PIPAL's do)."""
    monkeypatch.setitem(base._REGISTRY, "kadid10k", dataclasses.replace(KADID10K, redistributable=False))


def rows_by_id(folder: Path) -> dict[str, dict]:
    """Rows of a dataset folder's parquet files keyed by image_id (read without datasets' cache)."""
    out = {}
    for f in sorted((folder / "data").rglob("*.parquet")):
        for row in pq.read_table(f).to_pylist():
            out[row["image_id"]] = row
    return out


def test_names():
    assert subset_name("kadid10k", "livec") == "kadid10k-sel-livec"
    assert subset_name("kadid10k", "LIVE Challenge/test") == "kadid10k-sel-LIVE-Challenge-test"


def test_selected_subset_loads_with_only_the_selected_domains(corpus, tmp_path, monkeypatch):
    _, built = corpus
    hub = tmp_path / "hub"
    report = select_subset(built, paper_selection("livec"), out=hub / "dgqa" / "kadid10k-sel-livec")
    assert report.name == "kadid10k-sel-livec" and report.num_rows == 60 and not report.index_only
    assert set(report.domain_counts) == LIVEC and set(report.domain_counts.values()) == {10}

    monkeypatch.chdir(hub)
    ds = datasets.load_dataset("dgqa/kadid10k-sel-livec", split="train")
    source = datasets.load_dataset(str(built), split="train")
    assert ds.features == source.features
    assert ds.num_rows == 60 and set(ds["distortion_type"]) == LIVEC
    assert set(ds["domain"]) == {
        "gaussian_blur",
        "motion_blur",
        "jpeg",
        "darken",
        "mean_shift",
        "contrast_change",
    }
    # image bytes copied exactly as stored in the source
    src_rows, sub_rows = rows_by_id(built), rows_by_id(report.out)
    assert all(row["image"]["bytes"] == src_rows[i]["image"]["bytes"] for i, row in sub_rows.items())

    sel = Selection.load(report.out / "selection.json")
    assert sel.selected == sorted(LIVEC) and sel.source == "paper"
    assert (report.out / "similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_card_parses_and_holds_the_selection(corpus, tmp_path):
    _, built = corpus
    report = select_subset(built, paper_selection("livec"), out=tmp_path / "kadid10k-sel-livec")
    card = DatasetCard.load(report.out / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other"  # inherited from the source card
    assert {"image-quality-assessment", "kadid10k", "livec"} <= set(data["tags"])
    assert data["source_datasets"] == ["dgqa/kadid10k"]
    assert data["task_categories"] and data["size_categories"] == ["n<1K"]
    fingerprint = data["configs"][0].pop("description")  # the content's hash: a rewrite never loads old rows
    assert fingerprint == FINGERPRINT_PREFIX + content_fingerprint(report.out, data["configs"][0])[:32]
    assert data["configs"] == [
        {
            "config_name": "default",
            "default": True,
            "data_files": [{"split": "train", "path": "data/train-*"}],
        }
    ]
    assert data["pretty_name"] == "KADID-10k, DGQA selection for livec"
    assert format_table(paper_selection("livec")) in card.text
    assert 'load_dataset("dgqa/kadid10k-sel-livec"' in card.text
    assert "2405.04167" in card.text and "lin2019kadid" in card.text  # both citations
    assert "| 17 | darken | 10 |" in card.text  # per-domain counts


def test_computed_selection_records_rule_and_classifier(corpus, tmp_path):
    _, built = corpus
    sel = dataclasses.replace(
        paper_selection("livec"),
        target="mytarget",
        source="computed",
        num_images=123,
        classifier={"path": "clf.safetensors", "sha256": "ab" * 32},
    )
    report = select_subset(built, sel, out=tmp_path / "x")
    assert report.name == "kadid10k-sel-mytarget"
    text = (report.out / "README.md").read_text()
    assert "ab" * 32 in text and "123 unlabeled target images" in text and "round(s_k, 2) >= 0.04" in text


def test_all_control_is_the_whole_default_config(corpus, tmp_path):
    _, built = corpus
    report = all_control(built, out=tmp_path / "kadid10k-all")
    assert report.name == "kadid10k-all" and report.num_rows == 80
    assert set(report.domain_counts) == set(TYPES)
    assert "pristine" not in {r["domain"] for r in rows_by_id(report.out).values()}


def test_random_control_same_size_deterministic_and_seeded(corpus, tmp_path):
    _, built = corpus
    livec = paper_selection("livec")
    a = random_control(built, livec, seed=0, out=tmp_path / "a")
    b = random_control(built, 60, seed=0, out=tmp_path / "b")
    c = random_control(built, livec, seed=1, out=tmp_path / "c")
    assert a.name == b.name == "kadid10k-random-60-seed0" and c.name == "kadid10k-random-60-seed1"
    assert a.num_rows == b.num_rows == c.num_rows == 60
    ids = [list(rows_by_id(r.out)) for r in (a, b, c)]
    assert ids[0] == ids[1] and set(ids[0]) != set(ids[2])
    assert len(a.domain_counts) > len(LIVEC)  # drawn over all types, not the selected ones
    info = json.loads((a.out / "subset.json").read_text())
    assert info["kind"] == "random" and info["seed"] == 0 and info["size_of"] == "kadid10k-sel-livec"
    assert "default_rng(0).choice(80, 60, replace=False)" in (a.out / "README.md").read_text()
    with pytest.raises(SubsetError, match="outside 1..80"):
        random_control(built, 81, out=tmp_path / "d")


def test_index_only_by_default_for_restricted_corpora_and_hydrate_round_trip(
    corpus, tmp_path, restricted, monkeypatch
):
    root, built = corpus
    livec = paper_selection("livec")
    embedded = select_subset(
        built, livec, out=tmp_path / "embedded" / "kadid10k-sel-livec", embed_restricted=True
    )
    assert not embedded.index_only
    index = select_subset(built, livec, out=tmp_path / "index" / "kadid10k-sel-livec")
    assert index.index_only

    monkeypatch.chdir(tmp_path / "index")
    # datasets caches a local folder by its name and card hash: a cache of this test's own keeps the
    # index-only and hydrated folders (same name as the embedded one loaded above) apart
    cache = tmp_path / "datasets-cache"
    ds = datasets.load_dataset("kadid10k-sel-livec", split="train", cache_dir=str(cache / "index"))
    assert ds.features["image"] == datasets.Value("string") and "sha256" in ds.features
    assert ds.num_rows == 60
    card = (index.out / "README.md").read_text()
    assert "index-only" in card and "dgqa hydrate" in card

    hydrated = hydrate(index.out, root, tmp_path / "hydrated" / "kadid10k-sel-livec")
    assert hydrated.num_rows == 60
    want, got = rows_by_id(embedded.out), rows_by_id(hydrated.out)
    assert {i: r["image"]["bytes"] for i, r in got.items()} == {
        i: r["image"]["bytes"] for i, r in want.items()
    }
    assert pq.read_schema(next((hydrated.out / "data").glob("*.parquet"))).names == list(
        want["I01_01_01.png"]
    )
    hydrated_card = (hydrated.out / "README.md").read_text()
    assert "### Index-only" not in hydrated_card and "re-attached with `dgqa hydrate`" in hydrated_card
    assert (hydrated.out / "selection.json").read_text() == (index.out / "selection.json").read_text()
    loaded = datasets.load_dataset(str(hydrated.out), split="train", cache_dir=str(cache / "hydrated"))
    assert loaded.features == datasets.load_dataset(str(embedded.out), split="train").features


def test_index_only_source_stores_paths_relative_to_the_root(corpus, tmp_path):
    root, _ = corpus
    built = build_corpus("kadid10k", root, tmp_path / "hub" / "kadid10k", index_only=True, progress=False).out
    report = select_subset(built, paper_selection("livec"), out=tmp_path / "idx")
    paths = {r["image"] for r in rows_by_id(report.out).values()}
    assert paths and all(p.startswith("images/I") for p in paths)
    hydrated = hydrate(report.out, root, tmp_path / "hyd")
    row = rows_by_id(hydrated.out)["I02_25_05.png"]
    assert row["image"]["bytes"] == (root / "images" / "I02_25_05.png").read_bytes()


def test_hydrate_names_tampered_and_missing_files_and_writes_nothing(corpus, tmp_path, restricted):
    root, built = corpus
    copy = shutil.copytree(root, tmp_path / "my-download")
    index = select_subset(built, paper_selection("livec"), out=tmp_path / "idx")
    before = (index.out / "README.md").read_text()
    (copy / "images" / "I01_03_02.png").write_bytes(b"\x89PNG tampered")
    (copy / "images" / "I02_17_05.png").unlink()
    with pytest.raises(HydrateError) as err:
        hydrate(index.out, copy)  # in place
    assert len(err.value.problems) == 2
    assert "I01_03_02.png: sha256 mismatch" in str(err.value)
    assert "I02_17_05.png: missing" in str(err.value)
    assert (index.out / "README.md").read_text() == before  # the index is untouched
    assert not [p for p in index.out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    with pytest.raises(HydrateError):
        hydrate(index.out, copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert hydrate(index.out, root).num_rows == 60  # a good copy: hydrated in place
    assert (
        rows_by_id(index.out)["I01_03_02.png"]["image"]["bytes"]
        == (root / "images" / "I01_03_02.png").read_bytes()
    )


def test_cli_subset_and_hydrate(corpus, tmp_path, capsys):
    root, built = corpus
    src = tmp_path / "kadid10k"
    shutil.copytree(built, src)
    assert cli(["subset", "--source", str(src), "--paper", "livec"]) == 0
    assert (tmp_path / "kadid10k-sel-livec" / "selection.json").exists()
    assert (
        cli(["subset", "--source", str(src), "--control", "random", "--paper", "livec", "--seed", "3"]) == 0
    )
    assert (tmp_path / "kadid10k-random-60-seed3").is_dir()
    assert cli(["subset", "--source", str(src), "--control", "all", "--out", str(tmp_path / "all")]) == 0
    captured = capsys.readouterr()
    assert "kadid10k-sel-livec, 60 rows" in captured.out and "17 darken: 10" in captured.out
    assert "writing kadid10k-sel-livec" in captured.err and "60/60" in captured.err  # progress bar
    assert cli(["subset", "--source", str(src), "--control", "all", "--paper", "livec"]) == 2
    assert cli(["subset", "--source", str(src)]) == 2
    assert cli(["hydrate", str(tmp_path / "all"), "--root", str(root)]) == 2  # not index-only
    assert "only index-only datasets are hydrated" in capsys.readouterr().err


def test_release_script_writes_the_paper_subsets(corpus, tmp_path, capsys):
    root, _ = corpus
    spec = importlib.util.spec_from_file_location(
        "release", REPO_ROOT / "scripts" / "release_paper_subsets.py"
    )
    release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release)
    out = tmp_path / "hub" / "dgqa"
    assert (
        release.main(["--kadid-root", str(root), "--out", str(out), "--random-seeds", "0", "--tag", "v1.0"])
        == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert len([n for n in names if "-sel-" in n]) == 9
    assert {"kadid10k", "kadid10k-all", "kadid10k-sel-pipal6", "kadid10k-random-60-seed0"} <= set(names)
    printed = capsys.readouterr().out
    assert (
        f"dgqa publish {out / 'kadid10k-sel-livec'} --repo-id dgqa/kadid10k-sel-livec --tag v1.0" in printed
    )
    assert release.main(["--kadid-root", str(root), "--out", str(out)]) == 0  # reruns keep what exists
    assert "kept" in capsys.readouterr().out
