"""Backbone benchmark: a grid of regressor runs (backbone x train set x seed [x split], each evaluated
on every eval set) and a leaderboard of last-epoch SRCC/PLCC, median and spread over seeds and splits.

``dgqa bench --backbones tiny-resnet,resnet50 --train hub/dgqa/kadid10k --eval hub/dgqa/livec:test
--seeds 3 --out bench/``. Each cell trains into ``OUT/runs/<backbone>/<train>/seed<k>``; a rerun skips
every cell whose ``results.json`` is finished and carries the cell's config hash.

Published splits (:mod:`dgqa_data.splits`): ``PATH:split-*`` stands for the seeded splits
``PATH:split-00`` .. ``PATH:split-09`` (``--splits N``: the first N). A ``split-*`` train set makes one
cell per split ``k`` (trained on split k's train part); in such a cell a ``split-*`` eval set is
evaluated on its split ``k`` (its test part: with the same dataset, the in-dataset protocol), and in
a cell of a plain train set on each of its N test parts (cross-dataset). The leaderboard reports the
median, min, max and IQR over all (seed, split) runs, and says in ``protocol`` which split each
number uses.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import re
import shlex
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dgqa_data.atomic import write_atomic
from dgqa_data.csv_cells import escape
from dgqa_data.errors import DgqaError, at_least
from dgqa_data.paths import check_output, run_lock
from dgqa_data.specs import parse_spec
from dgqa_data.splits import NUM_SPLITS
from dgqa_train.config import parse_config
from dgqa_train.run_outputs import RESULTS_NAME
from dgqa_train.train import TrainConfig, config_hash

logger = logging.getLogger(__name__)

LEADERBOARD_COLUMNS = (
    "backbone", "train", "eval", "protocol", "seeds", "splits", "runs",
    "srcc_median", "srcc_min", "srcc_max", "srcc_iqr",
    "plcc_median", "plcc_min", "plcc_max", "plcc_iqr",
)  # fmt: skip


@dataclass
class Cell:
    """One training run of the grid.

    Attributes:
        backbone: the backbone.
        train: the training dataset spec of this run (``PATH:split-03`` for split 3 of ``PATH:split-*``).
        seed: the seed.
        output_dir: where the run writes.
        argv: the ``dgqa train`` flags.
        split: the split index of a ``split-*`` train set, else None.
        group: the train spec as given (``PATH:split-*``); None = ``train``.
        eval_map: eval spec as given -> the specs this run evaluates for it.
    """

    backbone: str
    train: str
    seed: int
    output_dir: Path
    argv: list[str]
    split: int | None = None
    group: str | None = None
    eval_map: dict[str, list[str]] = field(default_factory=dict)


def slug(spec: str) -> str:
    """A folder name for a dataset spec: readable base name + a short hash of the full spec."""
    parsed = parse_spec(spec)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(parsed.path).name or "data")
    name += f"-{parsed.split}" if parsed.split else ""
    return f"{name}-{zlib.crc32(spec.encode()):08x}"[:80]


def is_all_splits(spec: str) -> bool:
    """Whether ``spec`` is ``PATH:split-*`` (optionally ``-train`` / ``-val`` / ``-test``)."""
    parsed = parse_spec(spec)
    if parsed.split is not None and "*" in parsed.split and not parsed.all_folds:
        raise DgqaError(f"{spec}: '*' only stands for the split number, as in {parsed.path}:split-*")
    return parsed.all_folds


def with_split(spec: str, k: int) -> str:
    """``PATH:split-*`` -> ``PATH:split-03`` for ``k`` = 3 (other specs unchanged)."""
    if not is_all_splits(spec):
        return spec
    parsed = parse_spec(spec)
    return parsed.with_split(parsed.split.replace("*", f"{k:02d}", 1))


def _same_dataset(a: str, b: str) -> bool:
    sa, sb = parse_spec(a), parse_spec(b)
    if sa.local is not None and sb.local is not None:
        return sa.local.resolve() == sb.local.resolve()
    return sa.path == sb.path


def eval_specs(spec: str, k: int | None, n_splits: int) -> list[str]:
    """What a cell of split ``k`` (None: a plain train set) evaluates for the eval spec ``spec``:
    ``PATH:split-*`` is its split ``k``, or each of its ``n_splits`` splits; other specs are as given."""
    if not is_all_splits(spec):
        return [spec]
    return [with_split(spec, k)] if k is not None else [with_split(spec, j) for j in range(n_splits)]


def make_cells(
    backbones: list[str],
    trains: list[str],
    evals: list[str],
    seeds: list[int],
    out: Path,
    train_args: list[str],
    n_splits: int = NUM_SPLITS,
) -> list[Cell]:
    """The grid, in a stable order: backbone, train set, seed, split."""
    cells = []
    for backbone in backbones:
        for train in trains:
            ks: list[int | None] = list(range(n_splits)) if is_all_splits(train) else [None]
            for seed in seeds:
                for k in ks:
                    run_train = train if k is None else with_split(train, k)
                    eval_map = {spec: eval_specs(spec, k, n_splits) for spec in evals}
                    run_evals = list(dict.fromkeys(s for specs in eval_map.values() for s in specs))
                    cell_dir = (
                        out
                        / "runs"
                        / re.sub(r"[^A-Za-z0-9._-]+", "_", backbone)
                        / slug(run_train)
                        / f"seed{seed}"
                    )
                    argv = [
                        "--backbone", backbone, "--train_dataset", run_train, "--eval_datasets", *run_evals,
                        "--seed", str(seed), "--output_dir", str(cell_dir), *train_args,
                    ]  # fmt: skip
                    cells.append(Cell(backbone, run_train, seed, cell_dir, argv, k, train, eval_map))
    return cells


def is_finished(cell: Cell) -> bool:
    """True when the cell's ``results.json`` is complete and was produced by the same config."""
    path = cell.output_dir / RESULTS_NAME
    if not path.is_file():
        return False
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    want = config_hash(parse_config(TrainConfig, cell.argv))
    return bool(results.get("finished")) and results.get("config_hash") == want


def run_cell(cell: Cell, launcher: str | None) -> None:
    """Train one cell in this process, or in a subprocess started with ``launcher``
    (e.g. ``"accelerate launch --num_processes 2"``)."""
    argv = [*cell.argv, "--overwrite_output_dir"]
    if not launcher:
        from dgqa_train.train import train

        train(parse_config(TrainConfig, argv))
        return
    script = str(Path(__file__).with_name("train.py"))
    subprocess.run([*shlex.split(launcher), script, *argv], check=True)


def _stats(values: list[float | None]) -> tuple[float, float, float, float]:
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (np.nan,) * 4
    q1, q3 = np.percentile(v, [25, 75])
    return float(np.median(v)), float(v.min()), float(v.max()), float(q3 - q1)


def protocol(spec: str, n_splits: int = NUM_SPLITS, by: str | None = None) -> str:
    """Which split protocol an eval spec measures, in words (the leaderboard's ``protocol``).

    Args:
        spec: the eval spec as given to the bench.
        n_splits: splits a ``split-*`` spec stands for.
        by: how the dataset's seeded splits group rows (``reference`` / ``image``), if known.
    """
    parsed = parse_spec(spec)
    if parsed.split is None:
        return "whole dataset"
    if parsed.kind == "seeded":
        how = {"reference": " by reference", "image": " by image", "mixed": " by reference/image"}.get(
            by or "", ""
        )
        text = (
            f"seeded 80/20{how} x{n_splits} (median)"
            if parsed.all_folds
            else f"seeded 80/20{how}, split-{parsed.fold:02d}"
        )
        return text + (f", {parsed.part} part" if parsed.part else "")
    if parsed.split in ("train", "validation", "test"):
        return f"official {parsed.split} split"
    part = parsed.part or "test"  # what an evaluation load takes (val for a train/val column)
    if parsed.kind == "official":
        return f"official {part} split"
    return f"imported split {parsed.column}, {part} part"


def leaderboard(cells: list[Cell], evals: list[str], n_splits: int = NUM_SPLITS) -> list[dict[str, Any]]:
    """One row per (backbone, train, eval) as given: median, min, max and IQR over seeds (and, for
    ``split-*`` train or eval sets, over the splits) of last-epoch SRCC/PLCC."""
    from dgqa_data.splits import grouping

    groups: dict[tuple[str, str], list[tuple[Cell, dict[str, Any]]]] = {}
    for cell in cells:
        path = cell.output_dir / RESULTS_NAME
        if path.is_file():
            groups.setdefault((cell.backbone, cell.group or cell.train), []).append(
                (cell, json.loads(path.read_text()))
            )
    by: dict[str, str | None] = {}
    rows = []
    for (backbone, train), results in groups.items():
        for spec in evals:
            runs = []  # (seed, split, metrics) of every run of this (train, eval)
            for cell, r in results:
                metrics = (r.get("last_epoch") or {}).get("metrics") or {}
                for actual in cell.eval_map.get(spec, [spec]):
                    k = cell.split if cell.split is not None else parse_spec(actual).fold
                    runs.append((cell.seed, k, metrics.get(actual) or {}))
            path = parse_spec(spec).path
            if is_all_splits(spec) and path not in by:
                by[path] = grouping(path)
            splits = {k for _, k, _ in runs if k is not None}
            row: dict[str, Any] = {
                "backbone": backbone,
                "train": train,
                "eval": spec,
                "protocol": protocol(spec, n_splits, by.get(path)),
                "seeds": len({seed for seed, _, _ in runs}),
                "splits": len(splits) if splits else "",
                "runs": len(runs),
            }
            for metric in ("srcc", "plcc"):
                med, lo, hi, iqr = _stats([m.get(metric) for _, _, m in runs])
                row.update(
                    {f"{metric}_median": med, f"{metric}_min": lo, f"{metric}_max": hi, f"{metric}_iqr": iqr}
                )
            rows.append(row)
    rows.sort(
        key=lambda r: (r["eval"], -np.nan_to_num(r["srcc_median"], nan=-9.0), r["backbone"], r["train"])
    )
    return rows


def _f(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.4f}"


def write_leaderboard(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """``leaderboard.csv``, ``leaderboard.md`` and ``leaderboard.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=LEADERBOARD_COLUMNS)
    w.writeheader()
    w.writerows(
        {k: ("" if isinstance(v, float) and not np.isfinite(v) else escape(v)) for k, v in r.items()} for r in rows
    )
    write_atomic(out / "leaderboard.csv", buf.getvalue())
    md = [
        "# Leaderboard",
        "",
        "Last-epoch metrics on raw predictions; median [min, max] over seeds and, for seeded splits, over "
        "the splits (IQR in leaderboard.csv). `protocol`: the split each number is measured on.",
        "",
        "| eval | protocol | backbone | train | seeds | splits | SRCC | PLCC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['eval']} | {r['protocol']} | {r['backbone']} | {r['train']} | {r['seeds']} | {r['splits'] or '-'} | "
            f"{_f(r['srcc_median'])} [{_f(r['srcc_min'])}, {_f(r['srcc_max'])}] | "
            f"{_f(r['plcc_median'])} [{_f(r['plcc_min'])}, {_f(r['plcc_max'])}] |"
        )
    write_atomic(out / "leaderboard.md", "\n".join(md) + "\n")
    _plot(rows, out / "leaderboard.png")
    return [out / "leaderboard.csv", out / "leaderboard.md", out / "leaderboard.png"]


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = sorted({r["eval"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(evals)), figsize=(5 * max(1, len(evals)), 4), squeeze=False)
    for ax, spec in zip(axes[0], evals):
        sel = [r for r in rows if r["eval"] == spec]
        labels = [f"{r['backbone']}\n{slug(r['train']).rsplit('-', 1)[0]}" for r in sel]
        med = np.array([r["srcc_median"] for r in sel])
        err = np.nan_to_num(np.array([[m - r["srcc_min"], r["srcc_max"] - m] for m, r in zip(med, sel)]).T)
        ax.bar(range(len(sel)), np.nan_to_num(med), yerr=err, capsize=4, color="tab:blue")
        ax.set_xticks(range(len(sel)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"eval: {spec}", fontsize=9)
        ax.set_ylabel("SRCC (median, min-max over runs)")
        ax.axhline(0, color="black", linewidth=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_bench(
    backbones: list[str],
    trains: list[str],
    evals: list[str],
    seeds: int | list[int],
    out: str | Path,
    train_args: list[str] | None = None,
    launcher: str | None = None,
    base_seed: int = 123,
    progress: bool = True,
    n_splits: int = NUM_SPLITS,
) -> dict[str, Any]:
    """Run (or resume) the grid and write the leaderboard.

    Args:
        backbones: backbone names/ids.
        trains: training dataset specs (one cell per spec; ``PATH:split-*``: one per split).
        evals: eval dataset specs (every cell evaluates on all; ``PATH:split-*``: see the module).
        seeds: number of seeds (``base_seed, base_seed + 1, ...``) or explicit seeds.
        out: benchmark folder.
        train_args: extra ``dgqa train`` flags for every cell (e.g. ``["--epochs", "5"]``).
        launcher: run cells as subprocesses with this command prefix; None runs them in this process.
        base_seed: first seed when ``seeds`` is a count.
        progress: show a progress bar over the cells (each cell's training shows its own).
        n_splits: seeded splits ``PATH:split-*`` stands for (the first ``n_splits`` of 10).

    Returns:
        ``{"ran": [...], "skipped": [...], "failed": [...], "leaderboard": rows, "files": [...]}``.
    """
    out = Path(out)
    if not 1 <= n_splits <= NUM_SPLITS:
        raise DgqaError(f"--splits must be in 1..{NUM_SPLITS} (the published seeded splits), got {n_splits}")
    inputs = {f"training dataset {i + 1}": s for i, s in enumerate(trains)}
    check_output(out, inputs | {f"eval dataset {i + 1}": s for i, s in enumerate(evals)})
    with run_lock(out, claim={"verb": "bench", "known": ("bench.json",)}):  # one bench per folder; a failed start leaves none
        seed_list = list(range(base_seed, base_seed + seeds)) if isinstance(seeds, int) else list(seeds)
        cells = make_cells(backbones, trains, evals, seed_list, out, list(train_args or []), n_splits)
        for train in trains:
            for spec in evals:
                if is_all_splits(spec) and not is_all_splits(train) and _same_dataset(train, spec):
                    logger.warning(
                        "train set %s holds images of the test parts of %s (in-dataset: train on %s:split-* instead)",
                        train,
                        spec,
                        parse_spec(train).path,
                    )
        summary: dict[str, Any] = {"ran": [], "skipped": [], "failed": []}
        bar = tqdm(cells, desc="bench cells", unit="cell", disable=not progress)
        for cell in bar:
            name = str(cell.output_dir.relative_to(out))
            bar.set_postfix_str(name)
            if is_finished(cell):
                logger.info("skip %s (finished, same config)", name)
                summary["skipped"].append(name)
                continue
            logger.info("run %s", name)
            try:
                run_cell(cell, launcher)
                summary["ran"].append(name)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - one failed cell must not lose the others
                logger.error("cell %s failed: %s", name, err)
                summary["failed"].append({"cell": name, "error": str(err)})
        rows = leaderboard(cells, evals, n_splits)
        summary["leaderboard"] = rows
        summary["files"] = [str(p) for p in write_leaderboard(rows, out)]
        bench = {
            "backbones": backbones,
            "train": trains,
            "eval": evals,
            "seeds": seed_list,
            "splits": n_splits,
            "train_args": train_args,
        }
        write_atomic(
            out / "bench.json",
            json.dumps({**bench, **{k: summary[k] for k in ("ran", "skipped", "failed")}}, indent=2),
        )
    return summary


def run(args: argparse.Namespace) -> int:
    """``dgqa bench``: run the grid, print the markdown leaderboard; exit 1 if a cell failed."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("accelerate").setLevel(logging.WARNING)
    split = [s.strip() for s in args.backbones.split(",") if s.strip()]
    train_args = shlex.split(args.train_args) + (
        ["--epochs", str(args.epochs)] if args.epochs is not None else []
    )
    summary = run_bench(
        split,
        [s.strip() for s in args.train.split(",") if s.strip()],
        [s.strip() for s in args.eval.split(",") if s.strip()],
        args.seeds,
        args.out,
        train_args=train_args,
        launcher=args.launcher,
        base_seed=args.base_seed,
        n_splits=args.splits,
    )
    print(
        f"ran {len(summary['ran'])}, skipped {len(summary['skipped'])}, failed {len(summary['failed'])} cell(s)"
    )
    print(Path(args.out, "leaderboard.md").read_text())
    return 1 if summary["failed"] else 0


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa bench``."""
    p.add_argument("--backbones", required=True, help="comma list, e.g. tiny-resnet,resnet50")
    p.add_argument(
        "--train",
        required=True,
        help="comma list of training datasets (PATH[:SPLIT]); PATH:split-* = one run per seeded split",
    )
    p.add_argument(
        "--eval",
        required=True,
        help="comma list of eval datasets (PATH[:SPLIT], e.g. hub/dgqa/koniq10k:test); PATH:split-* = the test "
        "parts of the seeded splits (split k with a split-* train set, else each of them)",
    )
    p.add_argument(
        "--splits",
        type=at_least(1),
        default=NUM_SPLITS,
        help=f"seeded splits PATH:split-* stands for: split-00 .. split-(N-1) (default {NUM_SPLITS})",
    )
    p.add_argument("--seeds", type=at_least(1), default=3, help="seeds per cell: base-seed, base-seed+1, ...")
    p.add_argument("--base-seed", type=int, default=123)
    p.add_argument("--out", required=True, help="benchmark folder (runs/ + leaderboard.{csv,md,png})")
    p.add_argument("--epochs", type=at_least(0), help="epochs per run (default: the training default, 24)")
    p.add_argument("--train-args", default="", help='extra train flags per cell, e.g. "--lr_head 1e-3"')
    p.add_argument("--launcher", help='run cells as subprocesses, e.g. "accelerate launch --num_processes 2"')
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m dgqa_train.bench ...``."""
    p = argparse.ArgumentParser(prog="dgqa bench", description=__doc__.splitlines()[0], allow_abbrev=False)
    return run(add_arguments(p).parse_args(argv))


if __name__ == "__main__":
    from dgqa_data.cli import guarded

    sys.exit(guarded("dgqa bench", main))
