"""Content centring of frozen-backbone features (``train-classifier --centre_features``).

A frozen backbone's features hold the image's content as much as its distortion, and a head trained
on a few photos reads a new photo's content as a distortion (in the demo, camera blur on new photos
came out as jitter, camera noise as contrast change). Centring models a feature as content mean +
class offset: the head trains on features less the mean of their content group (``set``: the whole
training set; ``folder``: the reference's folder, e.g. the tiles of one photo), so that it learns
the offsets. A target's content mean is unknown; ``dgqa-corrected`` estimates it together with the
target's mixture (:func:`dgqa_data.selection.corrected_shares`), from what is stored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np
import torch

from dgqa_data.schema import NUM_CLASSES

MODES = ("off", "set", "folder")


def content_groups(reference_ids: Sequence[str], mode: str) -> np.ndarray:
    """The content group of every row: one for the whole set, or the reference's folder."""
    if mode == "set":
        return np.zeros(len(reference_ids), dtype=np.int64)
    folders = [str(PurePosixPath(str(r)).parent) for r in reference_ids]
    return np.unique(folders, return_inverse=True)[1]


def centre(features: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``features`` less the mean of their group."""
    out = np.asarray(features, dtype=np.float32).copy()
    for g in np.unique(groups):
        rows = groups == g
        out[rows] -= out[rows].mean(0)
    return out


def class_offsets(centred: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, plan)``: every class's mean centred feature (zeros for an absent class) and the
    class frequencies of the rows (the plan a group mean averages over)."""
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=NUM_CLASSES).astype(np.float64)
    offsets = np.zeros((NUM_CLASSES, centred.shape[1]), dtype=np.float64)
    np.add.at(offsets, y, centred.astype(np.float64))
    present = counts > 0
    offsets[present] /= counts[present, None]
    return offsets, counts / counts.sum()


def centring_record(head: torch.nn.Linear, offsets: np.ndarray, plan: np.ndarray) -> dict[str, list]:
    """What the corrected rule needs, in logit space (the head is linear): the head's bias, the
    class offsets through the head (``offsets @ W.T``, 26 x 26) and the plan."""
    weight = head.weight.detach().double().cpu().numpy()
    return {
        "bias": head.bias.detach().double().cpu().numpy().tolist(),
        "logit_offsets": (offsets @ weight.T).tolist(),
        "plan": plan.tolist(),
    }
