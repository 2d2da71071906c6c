"""A dataset folder loads as it is on disk now, within one HF_HOME (as users load them).

``datasets`` keys its cache of a local folder on the card, not on the files: these tests rewrite
folders with content of the same size (permuted labels), which loaded the old cached rows before
dgqa stamped each card config with the content's hash.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dgqa_data.cli import main
from dgqa_data.hub_folder import (
    is_stamped,
    load_folder_or_hub,
    parse_card,
    read_card_metadata,
    render_card,
)
from dgqa_data.hydrate import hydrate
from tests.fixtures.folder import IMAGES, make_folder

NAMES = list(IMAGES)
FIRST = [10.0, 20.0, 30.0, 40.0, 50.0]
SECOND = [50.0, 40.0, 30.0, 20.0, 10.0]  # the same values in another order: parquet of the same size


def labels(root: Path, name: str, scores: list[float]) -> str:
    with open(root / name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos"])
        w.writerows(zip(NAMES, scores))
    return name


def build(root: Path, out: Path, label_file: str, *extra: str) -> None:
    argv = ["build", "folder", "--root", str(root), "--out", str(out), "--option", f"labels={label_file}"]
    assert main([*argv, "--option", "score_range=0,100", *extra]) == 0


def mos_of(folder: Path) -> list[float]:
    ds = datasets.load_dataset(str(folder), split="train").sort("image_id")
    return ds["mos"]


def sizes(folder: Path) -> list:
    """What the card said about the data before fingerprints: configs and dataset_info."""
    meta = read_card_metadata(folder)
    return [meta["dataset_info"], [{k: v for k, v in c.items() if k != "description"} for c in meta["configs"]]]


@pytest.fixture
def shots(tmp_path) -> Path:
    root = make_folder(tmp_path / "shots")
    labels(root, "l1.csv", FIRST)
    labels(root, "l2.csv", SECOND)
    return root


def by_name(scores: list[float]) -> list[float]:
    return [s for _, s in sorted(zip(NAMES, scores))]


def test_rebuild_with_corrected_labels_loads_the_new_labels(shots, tmp_path):
    out = tmp_path / "hub" / "mine"
    build(shots, out, "l1.csv")
    assert mos_of(out) == by_name(FIRST)  # now in the cache
    before = sizes(out)
    build(shots, out, "l2.csv", "--overwrite")
    assert sizes(out) == before  # same sizes and configs: only the content differs
    assert mos_of(out) == by_name(SECOND)
    ds = load_folder_or_hub(out)["train"].sort("image_id")
    assert ds["mos"] == by_name(SECOND)
    assert is_stamped(read_card_metadata(out))


def test_two_folders_of_the_same_name_load_their_own_rows(shots, tmp_path):
    a, b = tmp_path / "a" / "mine", tmp_path / "b" / "mine"
    build(shots, a, "l1.csv")
    build(shots, b, "l2.csv")
    assert sizes(a) == sizes(b)
    assert mos_of(a) == by_name(FIRST)
    assert mos_of(b) == by_name(SECOND)
    assert mos_of(a) == by_name(FIRST)


def test_hydrated_folders_of_the_same_name_load_their_own_rows(shots, tmp_path):
    for side, label_file in (("a", "l1.csv"), ("b", "l2.csv")):
        build(shots, tmp_path / side / "index", label_file, "--index-only")
        hydrate(tmp_path / side / "index", shots, tmp_path / side / "full", progress=False)
    assert mos_of(tmp_path / "a" / "full") == by_name(FIRST)
    assert mos_of(tmp_path / "b" / "full") == by_name(SECOND)
    # hydrating in place replaces the index: the same name now loads images with bytes
    index = tmp_path / "a" / "index"
    first = datasets.load_dataset(str(index), split="train").cast_column("image", datasets.Image(decode=False))
    assert first[0]["image"]["bytes"] is None
    hydrate(index, shots, progress=False, overwrite=True)
    again = datasets.load_dataset(str(index), split="train").cast_column("image", datasets.Image(decode=False))
    assert again.sort("image_id")[0]["image"]["bytes"] == (shots / sorted(NAMES)[0]).read_bytes()


def test_splits_import_into_same_name_folders(shots, tmp_path):
    a, b = tmp_path / "a" / "mine", tmp_path / "b" / "mine"
    build(shots, a, "l1.csv")
    shutil.copytree(a, b)
    assert datasets.load_dataset(str(a), "splits", split="train").num_rows == 5  # cached before the import
    for folder, first_test in ((a, 0), (b, 4)):
        rows = [[n, "test" if i == first_test else "train"] for i, n in enumerate(NAMES)]
        split_file = folder.parent / "s.csv"
        with open(split_file, "w", newline="") as f:
            csv.writer(f).writerows([["name", "split"], *rows])
        assert main(["splits", "import", str(split_file), "--dataset", str(folder), "--name", "u"]) == 0
    for folder, test_name in ((a, NAMES[0]), (b, NAMES[4])):
        table = datasets.load_dataset(str(folder), "splits", split="train")
        assert [r["image_id"] for r in table if r["user_u_split"] == "test"] == [test_name]


def test_a_card_without_fingerprints_is_read_from_its_files(shots, tmp_path):
    out = tmp_path / "old" / "mine"
    build(shots, out, "l1.csv")
    meta, body = parse_card((out / "README.md").read_text())
    for entry in meta["configs"]:
        entry.pop("description")
    (out / "README.md").write_text(render_card(meta, body))
    assert not is_stamped(read_card_metadata(out))
    assert load_folder_or_hub(out)["train"].sort("image_id")["mos"] == by_name(FIRST)
    # the parquet rewritten by hand with other labels of the same size
    shard = next((out / "data").glob("train-*.parquet"))
    table = pq.read_table(shard)
    new = dict(zip(NAMES, SECOND))
    mos = pa.array([new[i] for i in table.column("image_id").to_pylist()], pa.float32())
    pq.write_table(table.set_column(table.schema.get_field_index("mos"), "mos", mos), shard)
    assert load_folder_or_hub(out)["train"].sort("image_id")["mos"] == by_name(SECOND)


def test_a_file_rewritten_with_the_same_size_gets_a_new_digest(tmp_path):
    """The remembered sha256 of a shard (synth hashes each as it lands) never outlives its bytes."""
    import hashlib

    from dgqa_data.hub_folder import file_digest

    shard = tmp_path / "train-00000-of-00001.parquet"
    for content in (b"labels v1 " * 1000, b"labels v2 " * 1000):
        tmp = tmp_path / "shard.tmp"
        tmp.write_bytes(content)
        tmp.rename(shard)  # how every writer replaces a file
        assert file_digest(shard) == hashlib.sha256(content).hexdigest()
    shard.write_bytes(b"labels v3 " * 1000)  # rewritten in place, same size
    assert file_digest(shard) == hashlib.sha256(b"labels v3 " * 1000).hexdigest()
