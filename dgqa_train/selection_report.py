"""``dgqa select``: apply a DGQA selection rule to a score folder (or take a published selection)
and write the report: per-domain table (CSV + parquet), ``selection.json`` and ``similarity.png``.

The rules themselves live in :mod:`dgqa_data.selection` (pure functions); this module only reads
``dgqa score`` output and writes files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dgqa_data.errors import DgqaError
from dgqa_data.selection import Selection, format_table, paper_selection, plot_selection, select
from dgqa_train.score import load_scores

TABLE_CSV = "selection.csv"
TABLE_PARQUET = "selection.parquet"
SELECTION_JSON = "selection.json"
PLOT = "similarity.png"


def target_name(spec: str) -> str:
    """The name a target dataset spec stands for: ``hub/dgqa/livec:test`` -> ``livec`` (subset names
    are ``<source>-sel-<target>``)."""
    from dgqa_data.paths import local_path

    path = local_path(spec)
    return path.name if path is not None else spec.rstrip("/").split(":")[0].split("/")[-1]


def select_from_scores(
    scores_dir: str | Path,
    rule: str = "dgqa-vote",
    threshold: float | None = None,
    k: int | None = None,
    target: str | None = None,
) -> Selection:
    """Run a selection rule on the logits in a ``dgqa score`` folder.

    Args:
        scores_dir: folder with ``scores.parquet`` and ``scores.json``.
        rule: ``dgqa-vote``, ``mean-prob`` or ``top-k``.
        threshold: override the rule's threshold.
        k: top-k of the vote, or number of types for ``top-k``.
        target: name recorded in the result (default: the name of the target in ``scores.json``).
    """
    scores = load_scores(scores_dir)
    return select(
        scores.logits,
        rule=rule,
        threshold=threshold,
        k=k,
        target=target or target_name(str(scores.meta.get("target", "target"))),
        classifier=scores.meta.get("classifier"),
    )


def write_report(selection: Selection, out: str | Path) -> Path:
    """Write ``selection.csv``, ``selection.parquet``, ``selection.json`` and ``similarity.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        selection.table,
        schema=pa.schema(
            [
                ("type_id", pa.int16()),
                ("domain", pa.string()),
                ("vote_share", pa.float64()),
                ("mean_prob", pa.float64()),
                ("selected", pa.bool_()),
            ]
        ),
    )
    pacsv.write_csv(table, out / TABLE_CSV)
    pq.write_table(table, out / TABLE_PARQUET)
    selection.save(out / SELECTION_JSON)
    plot_selection(selection, out / PLOT)
    return out


def run(args: argparse.Namespace) -> Selection:
    """Select, print the per-domain table and write the report."""
    if args.paper:
        if args.out is None:
            raise DgqaError("--paper needs --out")
        selection = paper_selection(args.paper)
    else:
        selection = select_from_scores(args.scores, args.rule, args.threshold, args.k, args.target)
    out = write_report(selection, args.out or args.scores)
    print(format_table(selection))
    print(
        f"selected {len(selection.selected)} domain(s): {selection.selected} ({', '.join(selection.selected_names)})"
    )
    print(f"wrote {out / SELECTION_JSON}, {TABLE_CSV}, {TABLE_PARQUET}, {PLOT}")
    return selection
