"""The scores table: per-image domain-classifier logits of a target set, as ``dgqa score`` writes it.

A scores folder holds ``scores.parquet`` (``image_id``, ``logits`` (26 floats), ``predicted``,
``predicted_domain``, in dataset order) and ``scores.json`` (classifier path + sha256, target, crops,
seed, ...). Reading and writing it needs no model, so selection runs without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dgqa_data.atomic import write_atomic, write_json
from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.schema import DISTORTION_NAMES, NUM_CLASSES

SCORES_FILE = "scores.parquet"
SCORES_META = "scores.json"
#: Written beside a classifier trained with a held-out set: its confusion matrix there (``counts``,
#: rows = true class, columns = predicted class) and the class frequencies its loss was trained under
#: (``train_prior``); copied into the ``scores.json`` of every target it scores, so that the
#: ``dgqa-corrected`` rule needs nothing but the scores folder.
CONFUSION_FILE = "confusion.json"


@dataclass
class Scores:
    """Per-image averaged logits of a target set, in dataset order."""

    image_ids: list[str]
    logits: np.ndarray  # (M, 26) float32
    meta: dict[str, Any]

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(1)


def load_scores(folder: str | Path) -> Scores:
    """Read a scores folder (written by ``dgqa score`` / :func:`write_scores`)."""
    folder = Path(folder)
    for name in (SCORES_FILE, SCORES_META):
        if not (folder / name).is_file():
            raise MissingInputError(f"{folder / name} not found: not a folder written by `dgqa score`")
    try:
        table = pq.read_table(folder / SCORES_FILE)
    except (pa.ArrowException, OSError) as err:
        raise DgqaError(f"{folder / SCORES_FILE}: not a parquet file written by `dgqa score` ({err})") from None
    if "logits" not in table.column_names or "image_id" not in table.column_names:
        raise DgqaError(f"{folder / SCORES_FILE}: no image_id/logits columns; not written by `dgqa score`")
    rows = table.column("logits").to_pylist()
    bad = [i for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != NUM_CLASSES]
    if bad:
        raise DgqaError(
            f"{folder / SCORES_FILE}: row {bad[0]} has {len(rows[bad[0]]) if isinstance(rows[bad[0]], list) else 0} "
            f"logits, not {NUM_CLASSES} "
            f"({len(bad)} such row(s)); scores of a {NUM_CLASSES}-way domain classifier are needed"
        )
    logits = np.asarray(rows, dtype=np.float32).reshape(-1, NUM_CLASSES)
    try:
        meta = json.loads((folder / SCORES_META).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DgqaError(f"{folder / SCORES_META}: not JSON written by `dgqa score` ({err})") from None
    if not isinstance(meta, dict):
        raise DgqaError(f"{folder / SCORES_META}: holds {json.dumps(meta)[:40]}, not the JSON object `dgqa score` writes")
    return Scores(table.column("image_id").to_pylist(), logits, meta)


def write_scores(folder: str | Path, image_ids: list[str], logits: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write ``scores.parquet`` (replaced atomically) and ``scores.json`` into ``folder``.

    Args:
        folder: output folder (created if needed).
        image_ids: one id per row, in dataset order.
        logits: ``(M, 26)`` averaged raw logits.
        meta: what produced them (classifier identity, target, crops, seed, ...).

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pred = np.asarray(logits).argmax(1)
    table = pa.table(
        {
            "image_id": pa.array(image_ids, pa.string()),
            "logits": pa.array(list(logits), pa.list_(pa.float32(), NUM_CLASSES)),
            "predicted": pa.array(pred, pa.int16()),
            "predicted_domain": pa.array([DISTORTION_NAMES[t] for t in pred], pa.string()),
        }
    )
    write_atomic(folder / SCORES_FILE, lambda tmp: pq.write_table(table, tmp))
    write_json(folder / SCORES_META, meta)
    return folder
