"""Fault matrix of the data verbs (issue 19, sections 5 and 8): every decode and parse goes through one
guarded path and a bad file is one line naming it; a full disk leaves a dataset as it was."""

from __future__ import annotations

import errno
import hashlib
import pathlib
import shutil
from pathlib import Path

import datasets
import pytest

from dgqa_data.build import build_corpus
from dgqa_data.cli import main
from tests.fixtures.official import make_kadid10k


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def kadid(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("kadid")
    build_corpus("kadid10k", make_kadid10k(tmp / "raw", n_refs=2), tmp / "kadid10k", progress=False)
    return tmp / "kadid10k"


# -- section 8: a full disk -------------------------------------------------------------------------
@pytest.mark.parametrize("fails", [".splits.parquet.tmp", ".splits.csv.tmp", ".README.md.tmp"])
def test_splits_import_on_a_full_disk_changes_nothing_and_the_retry_works(kadid, tmp_path, capsys, monkeypatch, fails):
    ds = tmp_path / "kadid10k"
    shutil.copytree(kadid, ds)
    table = tmp_path / "s.csv"
    assert main(["splits", "export", str(ds), "--out", str(table)]) == 0
    before = snapshot(ds)
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        if self.name.startswith(fails):
            real(self, data[: len(data) // 2])  # a part is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    capsys.readouterr()
    assert main(["splits", "import", str(table), "--dataset", str(ds), "--name", "mine"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m dgqa_data splits: error: {ds}: could not write the splits table (No space left on device); "
        "the dataset is unchanged"
    ]
    assert snapshot(ds) == before and sorted(p.name for p in ds.iterdir()) == sorted(
        p.name for p in kadid.iterdir()
    )  # no temporaries left
    assert "user_mine_split_00" not in datasets.load_dataset(str(ds), "splits", split="train").column_names
    monkeypatch.setattr(pathlib.Path, "write_bytes", real)
    assert main(["splits", "import", str(table), "--dataset", str(ds), "--name", "mine"]) == 0
    assert "user_mine_split_00" in datasets.load_dataset(str(ds), "splits", split="train").column_names
