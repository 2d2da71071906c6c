"""DGQA domain selection: per-image classifier logits -> per-domain scores -> selected domains.

Selection is a pure function of the score table. ``dgqa-vote`` is the official rule of the DGQA
code (``sel_dist.py``): top-4 classes per image, count, divide by (K - 1) * M, keep the types whose
share rounded to two decimals is at least 0.04; class 0 (pristine) is never a source domain.
``dgqa-corrected`` estimates the target's mixture of domains instead (the maximum-likelihood mixture
under label shift, from every image's class probabilities and the classifier's training prior),
which gives the votes a confusable look-alike draws back to the true type; for a classifier trained
on content-centred features (``--centre_features``) it estimates the target's content mean with it.

Also here: the report (per-domain table as CSV + parquet, ``selection.json``, ``similarity.png``)
and the ``dgqa select`` verb, which reads a scores folder (:mod:`dgqa_data.scores`); none of it
needs torch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dgqa_data import __version__
from dgqa_data.atomic import write_atomic
from dgqa_data.errors import DgqaError, at_least, fraction
from dgqa_data.paths import claim_folder
from dgqa_data.schema import DISTORTION_NAMES, NUM_CLASSES
from dgqa_data.scores import SCORES_META, load_scores
from dgqa_data.specs import parse_spec

RULES = ("dgqa-vote", "dgqa-corrected", "mean-prob", "top-k")
GIVEN = "given"  # the rule of a selection of known types (the truth, its complement): no rule
DEFAULT_THRESHOLD = {"dgqa-vote": 0.04, "dgqa-corrected": 0.04, "mean-prob": 1 / 25}

TABLE_CSV = "selection.csv"
TABLE_PARQUET = "selection.parquet"
SELECTION_JSON = "selection.json"
PLOT = "similarity.png"
#: What :func:`write_report` writes.
REPORT_FILES = (TABLE_CSV, TABLE_PARQUET, SELECTION_JSON, PLOT)

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
    evaluation: dict[str, Any] | None = None  # against the truth (:func:`dgqa_data.truth.judge`)
    stability: dict[str, Any] | None = None  # several classifiers (seeds): :func:`agreement`
    versions: dict[str, str] | None = None  # the libraries that produced the numbers
    notes: list[str] = field(default_factory=list)  # what the rule had to assume

    @property
    def selected_names(self) -> list[str]:
        return [DISTORTION_NAMES[t] for t in self.selected]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        return write_atomic(path, self.to_json())

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
        if data["rule"] not in (*RULES, GIVEN):
            raise DgqaError(f"{path}: unknown rule {data['rule']!r}")
        for key, kind in (("threshold", (int, float)), ("k", int), ("num_images", int)):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise DgqaError(f"{path}: {key!r} must be a number or null, got {value!r}")
        notes = data.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise DgqaError(f"{path}: 'notes' must be a list of strings, got {notes!r}")
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


def check_held_out(record: Any, where: str = "held-out record") -> dict[str, Any]:
    """A classifier's held-out record (``confusion.json``): ``counts`` (26 x 26 held-out confusion
    matrix, rows = true class) and ``train_prior`` (the class frequencies its loss was trained under)."""
    if not isinstance(record, dict):
        raise DgqaError(f"{where}: expected an object with counts and train_prior")
    c = np.asarray(record.get("counts"), dtype=np.float64) if record.get("counts") is not None else None
    if c is None or c.shape != (NUM_CLASSES, NUM_CLASSES) or not np.isfinite(c).all() or (c < 0).any():
        raise DgqaError(f"{where}: counts must be {NUM_CLASSES} x {NUM_CLASSES} non-negative numbers")
    if not c.sum():
        raise DgqaError(f"{where}: counts has no held-out image")
    prior = record.get("train_prior")
    p = np.asarray(prior, dtype=np.float64) if prior is not None else None
    if p is None or p.shape != (NUM_CLASSES,) or not np.isfinite(p).all() or (p < 0).any() or not p.sum():
        raise DgqaError(f"{where}: train_prior must be {NUM_CLASSES} non-negative class frequencies")
    checked = {**record, "counts": c, "train_prior": p / p.sum()}
    if record.get("centring") is not None:
        checked["centring"] = _check_centring(record["centring"], where)
    return checked


def _check_centring(record: Any, where: str) -> dict[str, np.ndarray]:
    shapes = {"bias": (NUM_CLASSES,), "plan": (NUM_CLASSES,), "logit_offsets": (NUM_CLASSES, NUM_CLASSES)}
    if not isinstance(record, dict):
        raise DgqaError(f"{where}: centring must be an object with {', '.join(shapes)}")
    out = {}
    for key, shape in shapes.items():
        value = np.asarray(record.get(key) if record.get(key) is not None else np.nan, dtype=np.float64)
        if value.shape != shape or not np.isfinite(value).all():
            raise DgqaError(f"{where}: centring {key} must be {' x '.join(map(str, shape))} finite numbers")
        out[key] = value
    if (out["plan"] < 0).any() or abs(out["plan"].sum() - 1) > 1e-6:
        raise DgqaError(f"{where}: centring plan must be class frequencies summing to 1")
    return out


def _label_shift_em(p: np.ndarray, prior: np.ndarray, w: np.ndarray, tol: float) -> np.ndarray:
    """The maximum-likelihood mixture of probabilities ``p`` (classes the prior knows) under label
    shift (Saerens et al. 2002), by EM from ``w``."""
    ratio = 1.0 / prior
    for _ in range(10_000):
        r = p * (w * ratio)[None]
        new = (r / r.sum(1, keepdims=True)).mean(0)
        done = np.abs(new - w).max() < tol
        w = new
        if done:
            break
    return w


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def corrected_shares(logits: np.ndarray, held_out: Any = None, tol: float = 1e-10) -> np.ndarray:
    """The target's mixture of domains, corrected for the classifier's confusions.

    The classifier's class probabilities ``p(y | x)`` hold its confusions: an image of one type
    puts part of its mass on the look-alikes of that type. Counting top classes (the vote) counts
    the look-alikes as found. Here the mixture ``w`` is the one under which the target images are
    most likely (maximum likelihood under label shift, solved by EM: Saerens et al. 2002): every
    image's probabilities are reweighted by ``w / prior`` (``prior``: the class frequencies the
    classifier was trained under, from its held-out record), and ``w`` is their mean, until it no
    longer moves. A look-alike keeps only the share that no true type explains. Classes the
    classifier never trained on get 0. Without a held-out record (``None``) the classifier is taken
    to have been trained under equal class frequencies. A classifier trained on content-centred
    features also has the target's content mean estimated with ``w`` (:func:`centred_logits`).
    """
    return estimate(logits, held_out, tol)[1]


def centred_logits(logits: np.ndarray, held_out: Any = None) -> np.ndarray:
    """The logits every rule reads: as scored, or, for a classifier trained on content-centred
    features (a held-out record with ``centring``: ``--centre_features``), centred by the target's
    estimated content mean.

    Such a classifier reads a feature as content mean + class offset. The target's content mean is
    its feature mean less the class offsets its mixture ``w`` accounts for; the head is linear, so
    this runs on the logits: ``z - (mean(z) - bias) + (w - plan) @ logit_offsets``, alternated with
    the EM of :func:`corrected_shares` until ``w`` no longer moves.
    """
    return estimate(logits, held_out)[0]


def estimate(logits: np.ndarray, held_out: Any = None, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """``(logits the rules read, corrected mixture)``: see :func:`centred_logits` and :func:`corrected_shares`."""
    z = _check_logits(logits)
    record = check_held_out(held_out) if held_out is not None else {}
    prior = record.get("train_prior", np.full(NUM_CLASSES, 1 / NUM_CLASSES))
    known = prior > 0
    centring = record.get("centring")
    if centring is None:
        w = _label_shift_em(_softmax(z)[:, known], prior[known], prior[known].copy(), tol)
    else:
        shift, plan = z.mean(0) - centring["bias"], centring["plan"]
        scored = z

        def centred(mixture: np.ndarray) -> np.ndarray:
            return scored - shift + (mixture - plan) @ centring["logit_offsets"]

        full = plan.copy()
        for _ in range(200):
            w = _label_shift_em(_softmax(centred(full))[:, known], prior[known], full[known] + 1e-12, tol)
            moved = np.abs(w - full[known]).max()
            full = np.zeros(NUM_CLASSES)
            full[known] = w
            if moved < 1e-8:
                break
        z = centred(full)
    shares = np.zeros(NUM_CLASSES)
    shares[known] = w
    return z, shares


def mean_probs(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of every class averaged over images."""
    return _softmax(_check_logits(logits)).mean(axis=0)


def select(
    logits: np.ndarray,
    rule: str = "dgqa-vote",
    threshold: float | None = None,
    k: int | None = None,
    target: str = "target",
    classifier: dict[str, Any] | None = None,
    confusion: Any = None,
) -> Selection:
    """Select source domains (type ids 1..25) from per-image logits of shape (M, 26).

    Args:
        logits: per-image averaged raw logits.
        rule: ``dgqa-vote`` (official: top-``k`` votes, k = 4, keep round(share, 2) >= 0.04),
            ``dgqa-corrected`` (the confusion-corrected mixture share >= threshold, default 0.04:
            :func:`corrected_shares`), ``mean-prob`` (mean softmax mass >= threshold, default
            1/25), or ``top-k`` (the ``k`` types with the highest vote share, default 6).
        threshold: override the rule's threshold.
        k: top-k of the vote (``dgqa-vote``) or number of types kept (``top-k``).
        target: name of the target set, recorded in the result.
        classifier: identity of the classifier (path, sha256), recorded in the result.
        confusion: the classifier's held-out record (``confusion.json``: confusion ``counts`` and
            ``train_prior``); needed by ``dgqa-corrected``, whose share every rule then shows beside
            the vote share.
    """
    if rule not in RULES:
        raise DgqaError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "dgqa-corrected" and k is not None:
        raise DgqaError("k is not used by the dgqa-corrected rule")
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
    notes = []
    if rule == "dgqa-corrected" and confusion is None:
        notes.append(
            f"{(classifier or {}).get('path', 'the classifier')} has no held-out record (confusion.json; the "
            "official checkpoint ships none, and neither does a classifier trained with --eval_fraction 0): "
            "dgqa-corrected assumed it was trained under equal class frequencies; --rule dgqa-vote needs no record"
        )
    corrected = None
    if confusion is not None or rule == "dgqa-corrected":
        logits, corrected = estimate(logits, confusion)
    if confusion is not None and confusion.get("centring") is not None:
        notes.append(
            "the classifier was trained on content-centred features: every rule read the logits centred by "
            "the target's content mean, estimated with its corrected mixture"
        )
    shares = vote_shares(logits, vote_k)
    probs = mean_probs(logits)
    if rule == "dgqa-vote":
        threshold = DEFAULT_THRESHOLD[rule] if threshold is None else threshold
        chosen = [t for t in range(1, NUM_CLASSES) if round(float(shares[t]), 2) >= threshold]
    elif rule == "dgqa-corrected":
        threshold = DEFAULT_THRESHOLD[rule] if threshold is None else threshold
        chosen = [t for t in range(1, NUM_CLASSES) if corrected[t] >= threshold]
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
            "corrected_share": None if corrected is None else float(corrected[t]),
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
        notes=notes,
    )


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """|a & b| / |a | b| of two selections (1.0 for two empty ones)."""
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 1.0


def agreement(selections: Sequence[Selection], names: Sequence[str]) -> dict[str, Any]:
    """How far selections made with several classifiers (seeds) agree: pairwise Jaccard indices,
    how many runs selected each type, and the types that flip (selected by some runs, not all)."""
    runs = [{"name": n, "selected": list(s.selected)} for n, s in zip(names, selections)]
    pairs = [jaccard(a.selected, b.selected) for i, a in enumerate(selections) for b in selections[i + 1 :]]
    counts = {t: sum(t in s.selected for s in selections) for t in range(1, NUM_CLASSES)}
    return {
        "runs": runs,
        "jaccard_mean": float(np.mean(pairs)) if pairs else 1.0,
        "jaccard_min": float(min(pairs)) if pairs else 1.0,
        "selected_by": {str(t): c for t, c in counts.items() if c},
        "flips": [t for t, c in counts.items() if 0 < c < len(selections)],
    }


def combine(selections: Sequence[Selection], names: Sequence[str]) -> Selection:
    """One selection from several classifiers' (seeds'): the types a majority of them selected,
    with every share averaged over them and the agreement recorded (``stability``); the types that
    flip are listed, never averaged away silently."""
    if len(selections) == 1:
        return selections[0]
    first = selections[0]
    if len({(s.rule, s.threshold, s.k) for s in selections}) > 1:
        raise DgqaError("the selections to combine were made with different rules or thresholds")
    stability = agreement(selections, names)
    chosen = [t for t, c in stability["selected_by"].items() if 2 * c > len(selections)]
    chosen = sorted(int(t) for t in chosen)
    table = []
    for t in range(NUM_CLASSES):
        row = dict(first.table[t])
        for key in ("vote_share", "corrected_share", "mean_prob"):
            values = [s.table[t][key] for s in selections]
            row[key] = None if any(v is None for v in values) else float(np.mean(values))
        row["selected"] = t in chosen
        table.append(row)
    return replace(
        first,
        selected=chosen,
        table=table,
        classifier={"runs": [s.classifier for s in selections]},
        stability=stability,
        notes=list(dict.fromkeys(n for s in selections for n in s.notes)),
    )


def given_selection(target: str, types: Sequence[int], source: str, rule: str = GIVEN) -> Selection:
    """A selection of known types, made by no rule here (``source`` says where they come from: the
    paper, the truth of a target, its complement)."""
    chosen = sorted(int(t) for t in types)
    if not chosen or not all(1 <= t < NUM_CLASSES for t in chosen):
        raise DgqaError(f"a selection needs type ids in 1..{NUM_CLASSES - 1}, got {chosen}")
    table = [
        {
            "type_id": t,
            "domain": DISTORTION_NAMES[t],
            "vote_share": None,
            "corrected_share": None,
            "mean_prob": None,
            "selected": t in chosen,
        }
        for t in range(NUM_CLASSES)
    ]
    return Selection(target=target, rule=rule, selected=chosen, table=table, source=source)


def paper_selection(target: str) -> Selection:
    """A selection published in the DGQA README (``livec``, ``koniq10k``, ``bid``, ``pipal1``..``pipal6``)."""
    key = target.lower().replace("-", "").replace("_", "")
    if key not in PAPER_SELECTIONS:
        raise DgqaError(f"no published selection for {target!r}; known: {', '.join(PAPER_SELECTIONS)}")
    return replace(given_selection(key, PAPER_SELECTIONS[key], "paper", rule="dgqa-vote"), threshold=0.04, k=4)


def _key(selection: Selection) -> str:
    """The table column the rule compares with its threshold."""
    return {"mean-prob": "mean_prob", "dgqa-corrected": "corrected_share"}.get(selection.rule, "vote_share")


def _has_corrected(selection: Selection) -> bool:
    return any(r.get("corrected_share") is not None for r in selection.table)


def format_table(selection: Selection) -> str:
    """The per-domain table as markdown (the 25 source domains; pristine shown for reference), with
    the corrected share beside the vote share when the classifier has a confusion matrix."""
    corrected = _has_corrected(selection)
    runs = selection.stability["selected_by"] if selection.stability else None
    head = ["id", "domain", "vote share", *(["corrected share"] if corrected else []), "mean prob"]
    head += [*([f"selected by (of {len(selection.stability['runs'])})"] if runs is not None else []), "selected"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h != "domain" else "---" for h in head) + "|"]
    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    for row in selection.table:
        cells = [str(row["type_id"]), row["domain"], fmt(row["vote_share"])]
        cells += [fmt(row.get("corrected_share"))] if corrected else []
        cells += [fmt(row["mean_prob"])]
        cells += [str(runs.get(str(row["type_id"]), 0)) if row["type_id"] else ""] if runs is not None else []
        cells += ["yes" if row["selected"] else ("(n/a)" if row["type_id"] == 0 else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart_values(selection: Selection, key: str | None = None) -> list[float]:
    """Bar heights of types 1..25: what the rule compares with its threshold (``dgqa-vote``: the vote
    share rounded to two decimals; ``dgqa-corrected``: the corrected share; ``mean-prob``: the mean
    probability; a paper selection: 1 or 0), or the column ``key``."""
    key = key or _key(selection)
    rows = [r for r in selection.table if r["type_id"] > 0]
    values = [r.get(key) if r.get(key) is not None else (1.0 if r["selected"] else 0.0) for r in rows]
    if key == "vote_share" and selection.rule == "dgqa-vote" and selection.source != "paper":
        values = [round(v, 2) for v in values]
    return values


def plot_selection(selection: Selection, path: str | Path) -> Path:
    """Bar chart of the 25 domains' scores with the threshold line, saved as PNG; the vote share and
    the corrected share side by side when both exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in selection.table if r["type_id"] > 0]
    x = np.arange(len(rows))
    selected = [r["selected"] for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4))
    if _has_corrected(selection) and selection.rule in ("dgqa-vote", "dgqa-corrected"):
        for offset, key, label, color in (
            (-0.2, "vote_share", "vote share", "tab:blue"),
            (0.2, "corrected_share", "corrected share", "tab:orange"),
        ):
            values = chart_values(selection, key)
            alpha = [1.0 if s else 0.35 for s in selected]
            for xi, v, a in zip(x, values, alpha):
                ax.bar(xi + offset, v, width=0.4, color=color, alpha=a)
            ax.bar([], [], color=color, label=f"{label}{' (the rule)' if key == _key(selection) else ''}")
        ax.set_xlabel("KADID distortion type id (solid = selected)")
        ax.set_ylabel("share")
    else:
        ax.bar(x, chart_values(selection), color=["tab:green" if s else "tab:gray" for s in selected])
        ax.set_xlabel("KADID distortion type id (green = selected)")
        ax.set_ylabel(
            "vote share (rounded to 2 decimals, as the rule compares it)"
            if selection.rule == "dgqa-vote"
            else {"mean_prob": "mean probability", "corrected_share": "corrected share"}.get(
                _key(selection), "vote share"
            )
        )
    ax.set_xticks(x, [str(r["type_id"]) for r in rows])
    if selection.threshold is not None and selection.source != "paper":
        ax.axhline(
            selection.threshold, color="tab:red", linestyle="--", label=f"threshold {selection.threshold:g}"
        )
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
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
    return parse_spec(spec).name


def select_from_scores(
    scores_dir: str | Path | Sequence[str | Path],
    rule: str = "dgqa-vote",
    threshold: float | None = None,
    k: int | None = None,
    target: str | None = None,
    truth: str | Path | None = None,
    truth_column: str | None = None,
) -> Selection:
    """Run a selection rule on the logits in one or several scores folders (see :mod:`dgqa_data.scores`).

    Args:
        scores_dir: folder with ``scores.parquet`` and ``scores.json``, or several (one per
            classifier seed): then the types a majority selected are kept and the agreement is
            recorded (:func:`combine`).
        rule: ``dgqa-vote``, ``dgqa-corrected``, ``mean-prob`` or ``top-k``.
        threshold: override the rule's threshold.
        k: top-k of the vote, or number of types for ``top-k``.
        target: name recorded in the result (default: the name of the target in ``scores.json``).
        truth: what the target really holds (:func:`dgqa_data.truth.load_truth`: a dataset with a
            ``distortion_type`` column or a CSV of families); the result then says how the
            selection compares with it (``evaluation``).
        truth_column: the column of ``truth`` to read.
    """
    from dgqa_data.versions import library_versions

    folders = [scores_dir] if isinstance(scores_dir, (str, Path)) else list(scores_dir)
    if not folders:
        raise DgqaError("no scores folder given")
    runs = []
    for folder in folders:
        scores = load_scores(folder)
        if scores.meta.get("confusion") is not None:  # a bad record is named by its file
            check_held_out(scores.meta["confusion"], f"{Path(folder) / SCORES_META}: confusion")
        runs.append(
            select(
                scores.logits,
                rule=rule,
                threshold=threshold,
                k=k,
                target=target or target_name(str(scores.meta.get("target", "target"))),
                classifier=scores.meta.get("classifier"),
                confusion=scores.meta.get("confusion"),
            )
        )
        runs[-1].versions = scores.meta.get("versions")
    if len({r.num_images for r in runs}) > 1:
        raise DgqaError(f"the scores folders hold different numbers of images: {[r.num_images for r in runs]}")
    selection = combine(runs, [str(f) for f in folders])
    selection.versions = selection.versions or library_versions()
    if truth is not None:
        from dgqa_data.truth import judge, load_truth

        known = load_truth(truth, truth_column)
        selection.evaluation = judge(selection.selected, known)
        for run, record in zip(runs, (selection.stability or {}).get("runs", [])):
            record["evaluation"] = {k: v for k, v in judge(run.selected, known).items() if k != "truth"}
    return selection


TABLE_SCHEMA = pa.schema(
    [
        ("type_id", pa.int16()),
        ("domain", pa.string()),
        ("vote_share", pa.float64()),
        ("corrected_share", pa.float64()),
        ("mean_prob", pa.float64()),
        ("selected", pa.bool_()),
    ]
)


def write_report(selection: Selection, out: str | Path) -> Path:
    """Write ``selection.csv``, ``selection.parquet``, ``selection.json`` and ``similarity.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{f.name: r.get(f.name) for f in TABLE_SCHEMA} for r in selection.table]
    table = pa.Table.from_pylist(rows, schema=TABLE_SCHEMA)
    pacsv.write_csv(table, out / TABLE_CSV)
    pq.write_table(table, out / TABLE_PARQUET)
    selection.save(out / SELECTION_JSON)
    plot_selection(selection, out / PLOT)
    return out


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa select``."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--scores",
        nargs="+",
        help="folder written by `dgqa score`; several (classifiers of several seeds): keep what a "
        "majority selects and report their agreement",
    )
    src.add_argument("--paper", help="a published DGQA selection: livec, koniq10k, bid, pipal1..pipal6")
    p.add_argument("--rule", choices=RULES, default="dgqa-vote", help="default: dgqa-vote")
    p.add_argument("--threshold", type=fraction, default=None, help="override the rule's threshold")
    p.add_argument(
        "--k", type=at_least(1), default=None, help="top-k of the vote (dgqa-vote) or types kept (top-k)"
    )
    p.add_argument("--target", default=None, help="target name to record (default: from scores.json)")
    p.add_argument(
        "--truth",
        default=None,
        help="what the target really holds, to measure the selection against: a dataset with a "
        "distortion_type column (PATH or PATH:SPLIT), or a CSV of image_id + families",
    )
    p.add_argument("--truth-column", default=None, help="the column of --truth to read")
    p.add_argument(
        "--out",
        default=None,
        help="report folder (default: the first --scores folder, beside its scores); any other folder "
        "must be new, empty or an earlier dgqa select output",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out that dgqa select did not write (its files are kept)",
    )
    return p


def run(args: argparse.Namespace) -> Selection:
    """``dgqa select``: select, print the per-domain table and write the report."""
    if args.paper:
        if args.out is None:
            raise DgqaError("--paper needs --out")
        if args.truth is not None:
            raise DgqaError("--truth measures a computed selection: use it with --scores")
        selection = paper_selection(args.paper)
    else:
        selection = select_from_scores(
            args.scores, args.rule, args.threshold, args.k, args.target, args.truth, args.truth_column
        )
    out = Path(args.out or args.scores[0])
    if not any(out.resolve() == Path(f).resolve() for f in args.scores or ()):  # a scores folder holds its report
        claim_folder(out, "select", overwrite=args.overwrite, writes=REPORT_FILES, known=(SELECTION_JSON,))
    out = write_report(selection, out)
    print(format_table(selection))
    print(
        f"selected {len(selection.selected)} domain(s): {selection.selected} ({', '.join(selection.selected_names)})"
    )
    if selection.stability:
        st = selection.stability
        flips = ", ".join(f"{t} {DISTORTION_NAMES[t]}" for t in st["flips"]) or "none"
        print(
            f"{len(st['runs'])} classifiers: Jaccard mean {st['jaccard_mean']:.2f} (min {st['jaccard_min']:.2f}); "
            f"kept the types a majority selected; types that flip: {flips}"
        )
    if selection.evaluation:
        from dgqa_data.truth import format_judgement

        print(f"against the truth: {format_judgement(selection.evaluation)}")
    for note in selection.notes:
        print(f"note: {note}")
    print(f"wrote {out / SELECTION_JSON}, {TABLE_CSV}, {TABLE_PARQUET}, {PLOT}")
    return selection
