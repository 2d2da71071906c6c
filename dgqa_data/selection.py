"""DGQA domain selection: per-image classifier logits -> per-domain scores -> selected domains.

Selection is a pure function of the score table. ``dgqa-vote`` is the official rule of the DGQA
code (``sel_dist.py``): top-4 classes per image, count, divide by (K - 1) * M, keep the types whose
share rounded to two decimals is at least 0.04; class 0 (pristine) is never a source domain.

Also here: the report (per-domain table as CSV + parquet, ``selection.json``, ``similarity.png``)
and the ``dgqa select`` verb, which reads a scores folder (:mod:`dgqa_data.scores`); none of it
needs torch.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dgqa_data import __version__
from dgqa_data.errors import DgqaError, at_least, fraction
from dgqa_data.schema import DISTORTION_NAMES, NUM_CLASSES
from dgqa_data.scores import load_scores

RULES = ("dgqa-vote", "mean-prob", "top-k")
DEFAULT_THRESHOLD = {"dgqa-vote": 0.04, "mean-prob": 1 / 25}

TABLE_CSV = "selection.csv"
TABLE_PARQUET = "selection.parquet"
SELECTION_JSON = "selection.json"
PLOT = "similarity.png"

#: Selections published in the DGQA README (KADID-10k type ids), keyed by target.
PAPER_SELECTIONS: dict[str, tuple[int, ...]] = {
    "livec": (1, 3, 10, 17, 18, 25),
    "koniq10k": (1, 3, 16, 17, 18, 25),
    "bid": (1, 3, 9, 21, 23, 25),
    "pipal1": (1, 2, 3, 9, 17, 18, 25),
    "pipal2": (1, 2, 3, 9, 17, 23),
    "pipal3": (1, 3, 16, 17, 18, 19, 25),
    "pipal4": (1, 2, 3, 7, 9, 10, 17, 18, 25),
    "pipal5": (1, 2, 3, 4, 9),
    "pipal6": (1, 2, 3, 9, 10, 11, 12, 16, 17, 18, 19, 21, 22, 25),
}


@dataclass
class Selection:
    """The outcome of a selection run; serialised as ``selection.json`` beside every subset."""

    target: str
    rule: str
    selected: list[int]
    threshold: float | None = None
    k: int | None = None
    num_images: int | None = None
    table: list[dict[str, Any]] = field(default_factory=list)
    classifier: dict[str, Any] | None = None
    source: str = "computed"  # or "paper"
    dgqa_version: str = __version__

    @property
    def selected_names(self) -> list[str]:
        return [DISTORTION_NAMES[t] for t in self.selected]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Selection:
        """Read and strictly validate a ``selection.json`` (keys, types, integer type ids 1..25)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DgqaError(f"{path}: not a selection.json (invalid JSON: {err})") from None
        if not isinstance(data, dict):
            raise DgqaError(f"{path}: not a selection.json (expected a JSON object)")
        known = set(cls.__dataclass_fields__)
        if set(data) - known or not {"target", "rule", "selected"} <= set(data):
            raise DgqaError(
                f"{path}: not a selection.json: unknown keys {sorted(set(data) - known)}, "
                f"missing keys {sorted({'target', 'rule', 'selected'} - set(data))}"
            )
        selected = data["selected"]
        if not isinstance(selected, list) or any(
            isinstance(t, bool) or not isinstance(t, int) for t in selected
        ):
            raise DgqaError(f"{path}: 'selected' must be a list of integer type ids, got {selected!r}")
        bad = [t for t in selected if not 1 <= t <= 25]
        if bad:
            raise DgqaError(f"{path}: selected type ids {bad} are outside 1..25")
        if not selected:
            raise DgqaError(f"{path}: the selection is empty")
        if data["rule"] not in RULES:
            raise DgqaError(f"{path}: unknown rule {data['rule']!r}")
        for key, kind in (("threshold", (int, float)), ("k", int), ("num_images", int)):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise DgqaError(f"{path}: {key!r} must be a number or null, got {value!r}")
        return cls(**data)


def _check_logits(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != NUM_CLASSES:
        raise DgqaError(f"expected logits of shape (M, {NUM_CLASSES}), got {z.shape}")
    if len(z) == 0:
        raise DgqaError("no target images were scored")
    if not np.isfinite(z).all():
        raise DgqaError("logits contain NaN or inf")
    return z


def vote_shares(logits: np.ndarray, k: int = 4) -> np.ndarray:
    """s_c = (# images whose top-k contains c) / ((k - 1) * M), for every class c (official rule)."""
    z = _check_logits(logits)
    top = np.argsort(-z, axis=1, kind="stable")[:, :k]
    counts = np.bincount(top.ravel(), minlength=NUM_CLASSES)
    return counts / ((k - 1) * len(z))


def mean_probs(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of every class averaged over images."""
    z = _check_logits(logits)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).mean(axis=0)


def select(
    logits: np.ndarray,
    rule: str = "dgqa-vote",
    threshold: float | None = None,
    k: int | None = None,
    target: str = "target",
    classifier: dict[str, Any] | None = None,
) -> Selection:
    """Select source domains (type ids 1..25) from per-image logits of shape (M, 26).

    Args:
        logits: per-image averaged raw logits.
        rule: ``dgqa-vote`` (official: top-``k`` votes, k = 4, keep round(share, 2) >= 0.04),
            ``mean-prob`` (mean softmax mass >= threshold, default 1/25), or ``top-k`` (the ``k``
            types with the highest vote share, default 6).
        threshold: override the rule's threshold.
        k: top-k of the vote (``dgqa-vote``) or number of types kept (``top-k``).
        target: name of the target set, recorded in the result.
        classifier: identity of the classifier (path, sha256), recorded in the result.
    """
    if rule not in RULES:
        raise DgqaError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer))):
        raise DgqaError(f"k must be a whole number, got {k!r}")
    if rule == "dgqa-vote" and k is not None and not 2 <= k <= NUM_CLASSES:
        raise DgqaError(
            f"k of the dgqa-vote rule must be in 2..{NUM_CLASSES} (shares divide by k - 1), got {k}"
        )
    if rule == "top-k" and k is not None and not 1 <= k <= NUM_CLASSES - 1:
        raise DgqaError(f"k of the top-k rule (types kept) must be in 1..{NUM_CLASSES - 1}, got {k}")
    if rule == "mean-prob" and k is not None:
        raise DgqaError("k is not used by the mean-prob rule")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= float(threshold) <= 1.0):
        raise DgqaError(f"threshold must be a number in [0, 1], got {threshold!r}")
    vote_k = k if (rule == "dgqa-vote" and k) else 4
    shares = vote_shares(logits, vote_k)
    probs = mean_probs(logits)
    if rule == "dgqa-vote":
        threshold = DEFAULT_THRESHOLD[rule] if threshold is None else threshold
        chosen = [t for t in range(1, NUM_CLASSES) if round(float(shares[t]), 2) >= threshold]
    elif rule == "mean-prob":
        threshold = DEFAULT_THRESHOLD[rule] if threshold is None else threshold
        chosen = [t for t in range(1, NUM_CLASSES) if probs[t] >= threshold]
    else:
        k = k or 6
        order = sorted(range(1, NUM_CLASSES), key=lambda t: (-shares[t], -probs[t], t))
        chosen = sorted(order[:k])
    table = [
        {
            "type_id": t,
            "domain": DISTORTION_NAMES[t],
            "vote_share": float(shares[t]),
            "mean_prob": float(probs[t]),
            "selected": t in chosen,
        }
        for t in range(NUM_CLASSES)
    ]
    return Selection(
        target=target,
        rule=rule,
        selected=chosen,
        threshold=threshold,
        k=vote_k if rule == "dgqa-vote" else k,
        num_images=len(logits),
        table=table,
        classifier=classifier,
    )


def paper_selection(target: str) -> Selection:
    """A selection published in the DGQA README (``livec``, ``koniq10k``, ``bid``, ``pipal1``..``pipal6``)."""
    key = target.lower().replace("-", "").replace("_", "")
    if key not in PAPER_SELECTIONS:
        raise DgqaError(f"no published selection for {target!r}; known: {', '.join(PAPER_SELECTIONS)}")
    chosen = list(PAPER_SELECTIONS[key])
    table = [
        {
            "type_id": t,
            "domain": DISTORTION_NAMES[t],
            "vote_share": None,
            "mean_prob": None,
            "selected": t in chosen,
        }
        for t in range(NUM_CLASSES)
    ]
    return Selection(
        target=key, rule="dgqa-vote", selected=chosen, threshold=0.04, k=4, table=table, source="paper"
    )


def format_table(selection: Selection) -> str:
    """The per-domain table as markdown (the 25 source domains; pristine shown for reference)."""
    lines = ["| id | domain | vote share | mean prob | selected |", "|---:|---|---:|---:|:---:|"]
    for row in selection.table:
        vs = "" if row["vote_share"] is None else f"{row['vote_share']:.3f}"
        mp = "" if row["mean_prob"] is None else f"{row['mean_prob']:.3f}"
        mark = "yes" if row["selected"] else ("(n/a)" if row["type_id"] == 0 else "")
        lines.append(f"| {row['type_id']} | {row['domain']} | {vs} | {mp} | {mark} |")
    return "\n".join(lines)


def chart_values(selection: Selection) -> list[float]:
    """Bar heights of types 1..25: what the rule compares with its threshold (``dgqa-vote``: the vote
    share rounded to two decimals; ``mean-prob``: the mean probability; a paper selection: 1 or 0)."""
    key = "mean_prob" if selection.rule == "mean-prob" else "vote_share"
    rows = [r for r in selection.table if r["type_id"] > 0]
    values = [r[key] if r[key] is not None else (1.0 if r["selected"] else 0.0) for r in rows]
    if selection.rule == "dgqa-vote" and selection.source != "paper":
        values = [round(v, 2) for v in values]
    return values


def plot_selection(selection: Selection, path: str | Path) -> Path:
    """Bar chart of the 25 domains' scores with the threshold line, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in selection.table if r["type_id"] > 0]
    key = "mean_prob" if selection.rule == "mean-prob" else "vote_share"
    values = chart_values(selection)
    colors = ["tab:green" if r["selected"] else "tab:gray" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.bar([f"{r['type_id']}" for r in rows], values, color=colors)
    if selection.threshold is not None and selection.source != "paper":
        ax.axhline(
            selection.threshold, color="tab:red", linestyle="--", label=f"threshold {selection.threshold:g}"
        )
        ax.legend()
    ax.set_xlabel("KADID distortion type id (green = selected)")
    ax.set_ylabel(
        "vote share (rounded to 2 decimals, as the rule compares it)"
        if selection.rule == "dgqa-vote"
        else ("vote share" if key == "vote_share" else "mean probability")
    )
    ax.set_title(f"DGQA selection for {selection.target} ({selection.rule}): {selection.selected}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------------------
# The report and the ``dgqa select`` verb
# ------------------------------------------------------------------------------------------------


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
    """Run a selection rule on the logits in a scores folder (see :mod:`dgqa_data.scores`).

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


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa select``."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", help="folder written by `dgqa score`")
    src.add_argument("--paper", help="a published DGQA selection: livec, koniq10k, bid, pipal1..pipal6")
    p.add_argument("--rule", choices=RULES, default="dgqa-vote", help="default: dgqa-vote")
    p.add_argument("--threshold", type=fraction, default=None, help="override the rule's threshold")
    p.add_argument(
        "--k", type=at_least(1), default=None, help="top-k of the vote (dgqa-vote) or types kept (top-k)"
    )
    p.add_argument("--target", default=None, help="target name to record (default: from scores.json)")
    p.add_argument("--out", default=None, help="report folder (default: the --scores folder)")
    return p


def run(args: argparse.Namespace) -> Selection:
    """``dgqa select``: select, print the per-domain table and write the report."""
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
