"""Generic bad-input behaviour of ``dgqa build``, on a miniature KADID-10k download.

Every bad input gives one clear error naming the file / row and the problem; ``--skip-bad`` records
instead; an interrupted or failed build never leaves a folder that looks complete.
"""

from __future__ import annotations

import csv
import hashlib

import datasets
import pyarrow.parquet as pq
import pytest

from dgqa_data.build import BuildError, build_corpus
from dgqa_data.cli import main
from dgqa_data.corpora.base import CorpusError
from dgqa_data.hub_folder import HubFolderWriter
from tests.fixtures.official import make_kadid10k

N_DIST = 2 * 2 * 2  # refs x types x levels
N_REFS = 2


@pytest.fixture
def kadid(tmp_path):
    return make_kadid10k(tmp_path / "kadid10k", n_refs=N_REFS, types=(1, 2), levels=(1, 2))


def build(root, out, **kw):
    return build_corpus("kadid10k", root, out, progress=False, **kw)


def edit_csv(root, fn):
    """Rewrite ``dmos.csv`` through ``fn(rows) -> rows`` (rows are lists of cells, header first)."""
    path = root / "dmos.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(fn(rows))


def no_leftovers(out):
    """Neither ``out`` nor a temporary sibling of it exists."""
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# -- one clear error per bad input ---------------------------------------------------------


def test_missing_root(tmp_path, capsys):
    with pytest.raises(CorpusError, match=r"corpus root .*nowhere does not exist or is not a folder"):
        build(tmp_path / "nowhere", tmp_path / "out")
    assert main(["build", "kadid10k", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_missing_metadata(kadid, tmp_path):
    (kadid / "dmos.csv").unlink()
    with pytest.raises(
        CorpusError, match=r"missing KADID-10k metadata file dmos.csv: .*dmos.csv does not exist"
    ):
        build(kadid, tmp_path / "out")


def test_missing_column(kadid, tmp_path):
    edit_csv(kadid, lambda rows: [[c for i, c in enumerate(r) if i != 2] for r in rows])
    with pytest.raises(
        CorpusError, match=r"dmos.csv: missing column\(s\) dmos; header is \['dist_img', 'ref_img', 'var'\]"
    ):
        build(kadid, tmp_path / "out")


def test_listed_image_missing(kadid, tmp_path):
    (kadid / "images" / "I01_02_01.png").unlink()
    with pytest.raises(BuildError, match=r"dmos.csv line 4: I01_02_01.png: listed image is missing"):
        build(kadid, tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


def test_truncated_png(kadid, tmp_path):
    path = kadid / "images" / "I02_01_02.png"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(BuildError, match=r"dmos.csv line 7: I02_01_02.png: truncated PNG"):
        build(kadid, tmp_path / "out")


def test_corrupt_file(kadid, tmp_path):
    (kadid / "images" / "I01_01_01.png").write_bytes(b"\x00garbage, not an image" * 50)
    with pytest.raises(BuildError, match=r"dmos.csv line 2: I01_01_01.png: not a readable image"):
        build(kadid, tmp_path / "out")


@pytest.mark.parametrize(
    ("value", "message"),
    [("high", r"dmos 'high' is not a number"), ("nan", r"dmos is 'nan', not a finite number")],
)
def test_bad_score(kadid, tmp_path, value, message):
    edit_csv(kadid, lambda rows: [r if i != 3 else [r[0], r[1], value, r[3]] for i, r in enumerate(rows)])
    with pytest.raises(BuildError, match=rf"dmos.csv line 4: I01_02_01.png: {message}"):
        build(kadid, tmp_path / "out")


def test_duplicate_names(kadid, tmp_path):
    edit_csv(kadid, lambda rows: [*rows, rows[1]])
    with pytest.raises(
        BuildError, match=r"dmos.csv line 10: I01_01_01.png: duplicate name \(first at dmos.csv line 2\)"
    ):
        build(kadid, tmp_path / "out")


def test_path_escaping_root(kadid, tmp_path):
    (kadid / "I01_03_01.png").write_bytes((kadid / "images" / "I01.png").read_bytes())
    edit_csv(kadid, lambda rows: [*rows, ["../I01_03_01.png", "I01.png", "3.0", "0.5"]])
    # the name matches the KADID pattern; only the path escapes the image folder
    with pytest.raises(
        BuildError, match=r"dmos.csv line 10: \.\./I01_03_01.png: path '\.\./I01_03_01.png' escapes"
    ):
        build(kadid, tmp_path / "out")


def test_unknown_corpus(tmp_path, capsys):
    with pytest.raises(CorpusError, match=r"unknown corpus 'kadid11k'; known corpora: .*kadid10k.*kadis700k"):
        build_corpus("kadid11k", tmp_path, tmp_path / "out")
    assert main(["build", "kadid11k", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "known corpora:" in capsys.readouterr().err


# -- --skip-bad ----------------------------------------------------------------------------


def test_skip_bad_records_everything(kadid, tmp_path):
    (kadid / "images" / "I01_02_01.png").unlink()
    (kadid / "images" / "I01_01_01.png").write_bytes(b"garbage")
    edit_csv(kadid, lambda rows: [r if i != 6 else [r[0], r[1], "nan", r[3]] for i, r in enumerate(rows)])
    edit_csv(kadid, lambda rows: [*rows, rows[8]])
    out = tmp_path / "dgqa" / "kadid10k"
    rc = main(["build", "kadid10k", "--root", str(kadid), "--out", str(out), "--skip-bad"])
    assert rc == 0
    with open(out / "skipped.csv", newline="") as f:
        skipped = list(csv.DictReader(f))
    bad = {"I01_01_01.png", "I01_02_01.png", "I02_01_02.png", "I02_02_02.png"}
    assert {s["image_id"] for s in skipped} == bad
    reasons = {s["image_id"]: s["reason"] for s in skipped}
    assert reasons["I01_02_01.png"] == "listed image is missing"
    assert reasons["I02_01_02.png"].startswith("dmos is 'nan'")
    assert reasons["I02_02_02.png"].startswith("duplicate name")
    card = (out / "README.md").read_text()
    assert "4 item(s) were skipped" in card and all(name in card for name in bad)
    ds = datasets.load_dataset(str(out), split="train")
    assert len(ds) == N_DIST - 3  # the duplicate's first occurrence is kept
    assert not (bad - {"I02_02_02.png"}) & set(ds["image_id"])


# -- atomic writes ---------------------------------------------------------------------------


def test_interrupted_build_leaves_nothing(kadid, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original = HubFolderWriter.add
    calls = []

    def add(self, row, split="train", config="default"):
        calls.append(row["image_id"])
        if len(calls) == 5:
            raise KeyboardInterrupt
        original(self, row, split, config)

    monkeypatch.setattr(HubFolderWriter, "add", add)
    with pytest.raises(KeyboardInterrupt):
        build(kadid, out)
    assert no_leftovers(out)


def test_failed_rebuild_keeps_existing_out(kadid, tmp_path):
    out = tmp_path / "out"
    build(kadid, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (kadid / "images" / "I02_02_02.png").write_bytes(b"broken")
    with pytest.raises(BuildError, match="I02_02_02.png"):
        build(kadid, out, overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []
    with pytest.raises(FileExistsError, match="already exists"):
        build(kadid, out)


# -- modes -----------------------------------------------------------------------------------


def test_index_only(kadid, tmp_path):
    out = tmp_path / "idx"
    build(kadid, out, index_only=True)
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.features["image"] == datasets.Value("string")
    assert len(ds) == N_DIST
    for row in ds:
        assert row["image"] == f"images/{row['image_id']}"
        assert row["sha256"] == hashlib.sha256((kadid / row["image"]).read_bytes()).hexdigest()
    assert "index-only" in (out / "README.md").read_text()


def test_num_proc_gives_identical_content(kadid, tmp_path):
    build(kadid, tmp_path / "p1", num_proc=1)
    build(kadid, tmp_path / "p2", num_proc=2)
    files1 = sorted(p.relative_to(tmp_path / "p1") for p in (tmp_path / "p1").rglob("*.parquet"))
    files2 = sorted(p.relative_to(tmp_path / "p2") for p in (tmp_path / "p2").rglob("*.parquet"))
    assert files1 == files2 and len(files1) == 3  # default + pristine + the splits table
    for rel in files1:
        assert pq.read_table(tmp_path / "p1" / rel).equals(pq.read_table(tmp_path / "p2" / rel))
    assert (tmp_path / "p1" / "README.md").read_text() == (tmp_path / "p2" / "README.md").read_text()
