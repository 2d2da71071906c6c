"""The ``dgqa`` command: the data verbs + the model verbs, lazily imported, one flag style, no
abbreviations, and no import loop between the verb modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from dgqa_data import cli as data_cli
from dgqa_train import cli

REPO = Path(__file__).resolve().parents[2]
MODEL_VERBS = ["demo", "train-classifier", "score", "train", "predict", "bench", "probe", "curate"]


def flags(parser) -> list[tuple[str, ...]]:
    return [tuple(a.option_strings) or (a.dest,) for a in parser._actions]


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_load_no_model_stack(argv) -> None:
    """Building the parser imports no verb module: no torch, datasets, transformers or matplotlib."""
    code = (
        "import sys\nfrom dgqa_train.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as err:\n    assert err.code == 0, err.code\n"
        "heavy = ('torch', 'datasets', 'transformers', 'accelerate', 'matplotlib', 'pandas')\n"
        "print('LOADED', sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout
    assert ("dgqa 0.1" in proc.stdout) if argv == ["--version"] else ("train-classifier" in proc.stdout)


def test_dgqa_is_the_data_verbs_plus_the_model_verbs_with_the_same_flags() -> None:
    dgqa, data = cli.build_parser(), data_cli.build_parser()
    assert list(dgqa.verbs) == [*data.verbs, *MODEL_VERBS]
    for name in data.verbs:
        assert flags(dgqa.load(name)) == flags(data.load(name)), name


def test_every_parser_refuses_abbreviations() -> None:
    parser = cli.build_parser()
    assert not parser.allow_abbrev
    for name in parser.verbs:
        assert not parser.load(name).allow_abbrev, name


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["synth", "--source", "s", "--out", "o", "--refs", "3"], "--refs 3"),  # not --refs-per-shard
        (["score", "--classifier", "c", "--target", "t", "--out", "o", "--crop", "8"], "--crop 8"),
        (["predict", "--model", "m", "--batch", "2", "x.png"], "--batch"),  # 2 is an image
        (["train", "--train_dataset", "d", "--crop", "8"], "--crop 8"),  # the config parser too
        (["train-classifier", "--train_dataset", "d", "--output_dir", "o", "--lr_", "1"], "--lr_ 1"),
    ],
)
def test_a_prefix_is_not_taken_for_a_flag(tmp_path, capsys, argv, flag) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


def test_hyphen_and_underscore_spellings() -> None:
    """One style, hyphens; the underscore spelling that launch scripts document still works."""
    from dgqa_train.config import parse_config
    from dgqa_train.train import TrainConfig

    score = cli.build_parser().load("score")
    base = ["--classifier", "c", "--target", "t", "--out", "o"]
    for spelling in (["--crop-size", "8", "--batch-size", "2"], ["--crop_size", "8", "--batch_size", "2"]):
        args = score.parse_args(base + spelling)
        assert (args.crop_size, args.batch_size) == (8, 2)
    for spelling in (
        ["--train-dataset", "d", "--crop-size", "8"],
        ["--train_dataset", "d", "--crop_size", "8"],
    ):
        config = parse_config(TrainConfig, spelling)
        assert (config.train_dataset, config.crop_size) == ("d", 8)


def module_imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that a file imports anywhere in it (lazily or not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m.startswith(f"{package}.")}


def test_no_import_loop_between_dgqa_train_modules() -> None:
    """Even lazy imports: a verb module never imports the registry (commands / cli) back."""
    files = {f"dgqa_train.{p.stem}": p for p in (REPO / "dgqa_train").glob("*.py") if p.stem != "__init__"}
    graph = {mod: module_imports(path, "dgqa_train") & set(files) - {mod} for mod, path in files.items()}
    assert not any(
        {"dgqa_train.cli", "dgqa_train.commands"} & deps for m, deps in graph.items() if m != "dgqa_train.cli"
    )
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, f"import loop: {' -> '.join((*path, mod))}"
        if mod in done:
            return
        for dep in sorted(graph[mod]):
            visit(dep, (*path, mod))
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, ())
