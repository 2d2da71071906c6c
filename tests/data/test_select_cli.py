"""``python -m dgqa_data``: the select verb on a scores table, the data verbs' parser, and the data
layer standing alone (no torch, no dgqa_train)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dgqa_data import cli
from dgqa_data.cli import main
from dgqa_data.scores import load_scores, write_scores
from dgqa_data.selection import PAPER_SELECTIONS, Selection, select

REPO = Path(__file__).resolve().parents[2]
DATA_VERBS = ["build", "synth", "select", "subset", "hydrate", "splits", "publish"]


def test_select_cli_equals_pure_function(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 26)).astype(np.float32)
    logits[:, [1, 10, 17]] += 1.5  # a few clearly favoured domains
    identity = {"path": "/x/cls", "sha256": "ab" * 32, "format": "dgqa", "backbone": "tiny-resnet"}
    ids = [f"img{i:03d}.png" for i in range(50)]
    write_scores(
        tmp_path / "s", ids, logits, {"classifier": identity, "target": "livec", "crops": 5, "seed": 0}
    )
    assert (
        main(["select", "--scores", str(tmp_path / "s"), "--rule", "dgqa-vote", "--out", str(tmp_path / "r")])
        == 0
    )
    expected = select(logits, "dgqa-vote", target="livec", classifier=identity)
    got = Selection.load(tmp_path / "r" / "selection.json")
    assert got.selected == expected.selected and {1, 10, 17} <= set(got.selected)
    assert got.classifier == identity and got.target == "livec" and got.num_images == 50
    table = pq.read_table(tmp_path / "r" / "selection.parquet").to_pylist()
    assert [r["selected"] for r in table] == [r["selected"] for r in expected.table]
    np.testing.assert_allclose([r["vote_share"] for r in table], [r["vote_share"] for r in expected.table])
    csv_lines = (tmp_path / "r" / "selection.csv").read_text().splitlines()
    assert len(csv_lines) == 27 and "vote_share" in csv_lines[0]
    assert (tmp_path / "r" / "similarity.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| 17 | darken |" in out and f"selected {len(expected.selected)} domain(s)" in out

    # other rules and options pass through to the pure function
    for rule, extra in (("top-k", ["--k", "3"]), ("mean-prob", ["--threshold", "0.05"])):
        main(["select", "--scores", str(tmp_path / "s"), "--rule", rule, *extra])
        got = Selection.load(tmp_path / "s" / "selection.json")
        kw = {"k": 3} if rule == "top-k" else {"threshold": 0.05}
        assert got.selected == select(logits, rule, **kw).selected and got.rule == rule


@pytest.mark.parametrize("target", sorted(PAPER_SELECTIONS))
def test_select_paper_cli(tmp_path, target) -> None:
    assert main(["select", "--paper", target, "--out", str(tmp_path)]) == 0
    got = Selection.load(tmp_path / "selection.json")
    assert got.selected == list(PAPER_SELECTIONS[target]) and got.source == "paper"
    assert (tmp_path / "selection.csv").is_file() and (tmp_path / "similarity.png").is_file()


def test_select_errors(tmp_path, capsys) -> None:
    assert main(["select", "--paper", "nope", "--out", str(tmp_path)]) == 2
    assert main(["select", "--scores", str(tmp_path / "absent")]) == 2
    assert "scores.parquet" in capsys.readouterr().err


def test_scores_table_round_trip(tmp_path) -> None:
    logits = np.random.default_rng(1).normal(size=(5, 26)).astype(np.float32)
    ids = [f"img{i}.png" for i in range(5)]
    write_scores(tmp_path / "s", ids, logits, {"target": "t", "crops": 2})
    got = load_scores(tmp_path / "s")
    assert got.image_ids == ids and got.meta == {"target": "t", "crops": 2}
    np.testing.assert_array_equal(got.logits, logits)
    table = pq.read_table(tmp_path / "s" / "scores.parquet").to_pydict()
    assert table["predicted"] == logits.argmax(1).tolist() and len(table["predicted_domain"]) == 5


def test_data_verbs_and_no_abbreviations() -> None:
    parser = cli.build_parser()
    assert list(parser.verbs) == DATA_VERBS
    assert not parser.allow_abbrev
    for name in DATA_VERBS:
        assert not parser.load(name).allow_abbrev, name


def test_build_help_names_every_registered_corpus(capsys) -> None:
    from dgqa_data.build import CORPUS_NAMES
    from dgqa_data.corpora import list_corpora

    assert list(CORPUS_NAMES) == list_corpora()
    with pytest.raises(SystemExit):
        cli.main(["build", "--help"])
    assert ", ".join(CORPUS_NAMES) in " ".join(capsys.readouterr().out.split())


def test_a_prefix_is_not_taken_for_a_flag(tmp_path, capsys) -> None:
    """``--refs`` used to be read as ``--refs-per-shard``: argparse's prefix matching is off."""
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--source", str(tmp_path), "--out", str(tmp_path / "o"), "--refs", "3"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --refs 3" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# Runs in a fresh interpreter: what the data layer imports, with nothing of pytest's session around.
STANDALONE = r"""
import importlib, pkgutil, runpy, sys
import numpy as np
import dgqa_data
from dgqa_data import cli
from dgqa_data.scores import write_scores

out = sys.argv[1]
parser = cli.build_parser()
for name in list(parser.verbs):
    parser.load(name)  # imports each data verb's module
for info in pkgutil.walk_packages(dgqa_data.__path__, "dgqa_data."):
    if info.name != "dgqa_data.__main__":
        importlib.import_module(info.name)
logits = np.random.default_rng(0).normal(size=(8, 26)).astype(np.float32)
write_scores(out + "/scores", [f"i{i}.png" for i in range(8)], logits, {"target": "t"})
for argv in (["select", "--paper", "livec", "--out", out + "/paper"], ["select", "--scores", out + "/scores"]):
    sys.argv = ["dgqa_data", *argv]
    try:
        runpy.run_module("dgqa_data", run_name="__main__", alter_sys=True)
    except SystemExit as err:
        assert err.code == 0, (argv, err.code)
heavy = sorted(m for m in ("torch", "transformers", "accelerate") if m in sys.modules)
train = sorted(m for m in sys.modules if m.split(".")[0] == "dgqa_train")
print("LOADED", heavy, train)
"""


def test_data_layer_runs_without_torch_or_dgqa_train(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED [] []" in proc.stdout, proc.stdout[-2000:]
    assert Selection.load(tmp_path / "paper" / "selection.json").source == "paper"
    assert (tmp_path / "scores" / "selection.json").is_file()


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a Python file imports (anywhere in it, lazily or not)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", ["dgqa_data", "tests/data"])
def test_never_imports_dgqa_train(folder) -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / folder).rglob("*.py"))
        if "dgqa_train" in imported_packages(p)
    ]
    assert offenders == []


def test_readme_corpus_table_is_the_generated_one() -> None:
    from dgqa_data.corpora.summary import markdown_table, with_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert with_table(readme) == readme, "run: python scripts/corpus_table.py --write"
    table = markdown_table()
    assert table.count("\n") == 1 + 12  # header, rule, one row per corpus
    assert "| `koniq10k` | NR, authentic |" in table and "official: `train` / `validation` / `test`" in table
    assert "| `live` | FR, synthetic |" in table and "lower = better" in table
