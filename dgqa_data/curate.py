"""Curation beyond DGQA: the two SynDR-IQA steps (Li, Wu, Liu, Li, Dong, NeurIPS 2025) as numpy
functions on features that are given (the data layer stays torch-free; features come from
:mod:`dgqa_train.features`).

* :func:`drc`, density-aware redundant-cluster downsampling: rows linked when their features'
  cosine similarity is > ``sim`` and their labels (min-max normalised to [0, 10]) differ by less
  than ``label_gap``; the connected components of the links are the redundant clusters; a cluster
  larger than ``max_cluster`` keeps a seeded sample of ``max(max_cluster, floor(L * keep))`` rows.
  The pairwise step is blocked (rows sorted by label, so only pairs that can pass the label test
  are compared): no N x N matrix is ever allocated.
* :func:`ddc`, distribution-aware diverse-content upsampling: new references chosen from a pool
  by their cosine distances to the training references T (rule 1: new content yet inside T's
  spread; rule 2: greedy thinning), and :func:`transfer_labels`: labels of a chosen reference's
  distorted versions from its nearest training references.

Every bad input raises :class:`CurationError` (one line) before anything is computed or written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dgqa_data.errors import DgqaError

#: Rows per block of the blocked similarity products (a block is at most BLOCK x COL_BLOCK floats).
BLOCK = 1024
COL_BLOCK = 8192


class CurationError(DgqaError):
    """Curation cannot run: features missing, labels absent or constant, no usable candidate, ..."""


# -- checks ---------------------------------------------------------------------------------------
def normalise_labels(labels: Any, where: str = "labels") -> np.ndarray:
    """Labels min-max normalised to [0, 10] over the set (float64).

    Raises:
        CurationError: no labels, a missing (None/NaN) label, or all labels equal.
    """
    if labels is None:
        raise CurationError(f"{where}: no labels (DRC needs a quality label for every row)")
    y = np.array([np.nan if v is None else v for v in labels], dtype=np.float64)
    if y.size == 0:
        raise CurationError(f"{where}: no labels (the set is empty)")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise CurationError(
            f"{where}: {bad.size} of {y.size} row(s) have no label (first rows {bad[:3].tolist()})"
        )
    low, high = y.min(), y.max()
    if high == low:
        raise CurationError(f"{where}: every label is {low:g}; constant labels cannot be normalised")
    return (y - low) * (10.0 / (high - low))


def unit_features(features: Any, rows: int | None = None, where: str = "features") -> np.ndarray:
    """Rows of ``features`` scaled to unit length, as C-contiguous float32 ``(N, D)``.

    Raises:
        CurationError: not a 2-D matrix, a row count other than ``rows``, or rows that are missing
            (NaN/inf) or zero (cosine similarity undefined).
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise CurationError(f"{where}: expected a (rows, dims) matrix, got shape {x.shape}")
    if rows is not None and x.shape[0] != rows:
        raise CurationError(f"{where}: features for {x.shape[0]} row(s), but the set has {rows}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise CurationError(
            f"{where}: features missing (NaN) for {bad.size} row(s) (first rows {bad[:3].tolist()})"
        )
    norm = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norm == 0)
    if zero.size:
        raise CurationError(f"{where}: zero feature vector in row(s) {zero[:3].tolist()}; cosine undefined")
    return np.ascontiguousarray(x / norm[:, None], dtype=np.float32)


# -- DRC ------------------------------------------------------------------------------------------
@dataclass
class DrcResult:
    """What :func:`drc` found and kept.

    Attributes:
        kept: indices of the kept rows, ascending.
        clusters: the redundant clusters (members ascending), ordered by their first member.
        report: settings, counts, cluster sizes and rows kept per type (JSON-ready).
    """

    kept: np.ndarray
    clusters: list[np.ndarray]
    report: dict[str, Any] = field(default_factory=dict)


def redundant_links(
    unit: np.ndarray,
    labels10: np.ndarray,
    sim: float = 0.9,
    label_gap: float = 1.0,
    block: int = BLOCK,
    col_block: int = COL_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i != j`` listed once, with cosine similarity > ``sim`` and label
    difference < ``label_gap``, found block by block.

    Rows are visited in label order, so a row block is compared only with the following rows whose
    label is within ``label_gap`` of the block's largest: at most ``block x col_block`` similarities
    exist at a time. Similarities are float32 dot products of unit rows.
    """
    order = np.argsort(labels10, kind="stable")
    lab = labels10[order]
    x = unit[order]
    n = len(order)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for s in range(0, n, block):
        e = min(s + block, n)
        hi = int(np.searchsorted(lab, lab[e - 1] + label_gap, side="left"))
        for c in range(s, hi, col_block):
            d = min(c + col_block, hi)
            i, j = np.nonzero(x[s:e] @ x[c:d].T > sim)
            i, j = i + s, j + c
            ok = (i < j) & (np.abs(lab[i] - lab[j]) < label_gap)  # each pair once, no self
            rows.append(order[i[ok]])
            cols.append(order[j[ok]])
    empty = np.zeros(0, np.int64)
    return (np.concatenate(rows) if rows else empty), (np.concatenate(cols) if cols else empty)


def components(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
    """Connected components of the graph on ``n`` nodes with edges ``(i, j)`` that have 2+ members,
    each ascending, ordered by their first member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if i.size == 0:
        return []
    graph = coo_matrix((np.ones(i.size, np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    order = np.argsort(comp, kind="stable")
    cuts = np.flatnonzero(np.diff(comp[order])) + 1
    groups = [g for g in np.split(order, cuts) if g.size > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def cluster_quota(size: int, max_cluster: int = 20, keep: float = 0.5) -> int:
    """Rows a redundant cluster of ``size`` keeps: all up to ``max_cluster``, else
    ``max(max_cluster, floor(size * keep))``."""
    return size if size <= max_cluster else max(max_cluster, int(np.floor(size * keep)))


def drc(
    features: Any,
    labels: Any,
    *,
    types: Sequence[int] | None = None,
    sim: float = 0.9,
    label_gap: float = 1.0,
    max_cluster: int = 20,
    keep: float = 0.5,
    seed: int = 0,
    block: int = BLOCK,
    where: str = "training set",
) -> DrcResult:
    """Density-aware redundant-cluster downsampling (SynDR-IQA's DRC) on given features.

    Args:
        features: ``(N, D)`` features of the rows (any scale; compared by cosine similarity).
        labels: ``N`` quality labels, min-max normalised to [0, 10] here before the label test.
        types: the distortion type of every row, for the rows-kept-per-type report.
        sim: link when cosine similarity > ``sim``.
        label_gap: ... and normalised label difference < ``label_gap``.
        max_cluster: clusters up to this size are kept whole.
        keep: larger clusters keep ``max(max_cluster, floor(L * keep))`` rows.
        seed: seeds the samples (``numpy.random.default_rng(seed)``, clusters drawn in the order of
            their first member).
        block: rows per block of the similarity products.
        where: names the set in error messages.
    """
    if not 0 < keep <= 1 or max_cluster < 1:
        raise CurationError(f"DRC: keep must be in (0, 1] and max_cluster >= 1, got {keep}, {max_cluster}")
    y = normalise_labels(labels, f"{where} labels")
    x = unit_features(features, len(y), f"{where} features")
    if types is not None and len(types) != len(y):
        raise CurationError(f"{where}: {len(types)} type(s) for {len(y)} row(s)")
    clusters = components(len(y), *redundant_links(x, y, sim, label_gap, block))
    rng = np.random.default_rng(seed)
    mask = np.ones(len(y), dtype=bool)
    for members in clusters:
        quota = cluster_quota(members.size, max_cluster, keep)
        if quota < members.size:
            mask[members] = False
            mask[rng.choice(members, size=quota, replace=False)] = True
    kept = np.flatnonzero(mask)
    settings = {"sim": sim, "label_gap": label_gap, "max_cluster": max_cluster, "keep": keep, "seed": seed}
    return DrcResult(kept, clusters, drc_report(len(y), kept, clusters, settings, types))


def drc_report(
    n: int,
    kept: np.ndarray,
    clusters: list[np.ndarray],
    settings: dict[str, Any],
    types: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The JSON-ready summary of a DRC run."""
    sizes = sorted((int(c.size) for c in clusters), reverse=True)
    report: dict[str, Any] = {
        "operation": "drc",
        "settings": settings,
        "rows": n,
        "kept": int(kept.size),
        "clusters": len(clusters),
        "rows_in_clusters": int(sum(sizes)),
        "thinned_clusters": sum(s > settings["max_cluster"] for s in sizes),
        "cluster_sizes": dict(sorted(Counter(sizes).items(), reverse=True)),
    }
    if types is not None:
        t = np.asarray(types)
        report["rows_per_type"] = {int(k): int(v) for k, v in sorted(Counter(t.tolist()).items())}
        report["kept_per_type"] = {int(k): int(v) for k, v in sorted(Counter(t[kept].tolist()).items())}
    return report


# -- DDC ------------------------------------------------------------------------------------------
@dataclass
class DdcResult:
    """What :func:`ddc` chose.

    Attributes:
        median_nn: median over T of each reference's nearest-other-reference cosine distance.
        max_far: largest over T of each reference's farthest-reference distance.
        nearest: every candidate's nearest-T distance; ``farthest``: its farthest-T distance.
        rule1: candidates passing rule 1 (ascending).
        dropped: ``(dropped, partner, distance)`` in the order rule 2 dropped them.
        chosen: candidates kept by both rules (ascending).
        neighbours: for each chosen candidate, the T references its labels come from (nearest first).
        weights: their softmax-over-similarity weights (same shape as ``neighbours`` entries).
    """

    median_nn: float
    max_far: float
    nearest: np.ndarray
    farthest: np.ndarray
    rule1: np.ndarray
    dropped: list[tuple[int, int, float]]
    chosen: np.ndarray
    neighbours: list[np.ndarray]
    weights: list[np.ndarray]


def reference_spread(refs: np.ndarray) -> tuple[float, float]:
    """``(median nearest-neighbour distance, largest farthest-neighbour distance)`` within the unit
    rows ``refs`` (self excluded), cosine distances."""
    if len(refs) < 2:
        raise CurationError(f"training references: {len(refs)} reference(s); DDC needs at least 2")
    dist = 1.0 - (refs @ refs.T).astype(np.float64)
    np.fill_diagonal(dist, np.inf)
    nn = dist.min(axis=1)
    np.fill_diagonal(dist, -np.inf)
    return float(np.median(nn)), float(dist.max())


def nearest_farthest(
    cands: np.ndarray, refs: np.ndarray, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's nearest- and farthest-reference cosine distance (blocked over candidates)."""
    near = np.empty(len(cands))
    far = np.empty(len(cands))
    for s in range(0, len(cands), block):
        dist = 1.0 - (cands[s : s + block] @ refs.T).astype(np.float64)
        near[s : s + block] = dist.min(axis=1)
        far[s : s + block] = dist.max(axis=1)
    return near, far


def thin(
    cands: np.ndarray, below: float, novelty: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Rule 2: while the closest pair among ``cands`` (unit rows) is nearer than ``below``, drop one.

    Of the closest pair (ties: the lowest indices), the one with the smaller ``novelty`` (its
    nearest-T distance: the less new content) is dropped; equal novelty drops the later row.

    Returns:
        ``(kept positions ascending, [(dropped, partner, distance)] in drop order)``.
    """
    m = len(cands)
    dist = 1.0 - (cands @ cands.T).astype(np.float64)
    np.fill_diagonal(dist, np.inf)
    alive = np.ones(m, dtype=bool)
    dropped: list[tuple[int, int, float]] = []
    while alive.sum() > 1:
        nn = dist.argmin(axis=1)
        nd = dist[np.arange(m), nn]
        i = int(np.argmin(np.where(alive, nd, np.inf)))
        j = int(nn[i])
        if not nd[i] < below:
            break
        a, b = min(i, j), max(i, j)
        drop = a if novelty[a] < novelty[b] else b
        dropped.append((drop, a + b - drop, float(nd[i])))
        alive[drop] = False
        dist[drop, :] = np.inf
        dist[:, drop] = np.inf
    return np.flatnonzero(alive), dropped


def label_neighbours(
    chosen: np.ndarray, refs: np.ndarray, k: int = 5, tol: float = 0.05
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each chosen unit row: its ``k`` nearest references (ties: lower index first), those
    within ``tol`` cosine distance of the nearest, and their softmax-over-similarity weights."""
    neighbours, weights = [], []
    for row in chosen:
        s = (refs @ row).astype(np.float64)
        top = np.lexsort((np.arange(len(s)), -s))[:k]
        near = top[(1.0 - s[top]) <= (1.0 - s[top[0]]) + tol]
        w = np.exp(s[near] - s[near].max())
        neighbours.append(near)
        weights.append(w / w.sum())
    return neighbours, weights


def ddc(
    ref_features: Any,
    cand_features: Any,
    *,
    k: int = 5,
    tol: float = 0.05,
    pool: str = "pool",
) -> DdcResult:
    """Distribution-aware diverse-content upsampling (SynDR-IQA's DDC): choose new references.

    Rule 1 keeps a candidate whose nearest-T cosine distance is above the median of T's
    nearest-neighbour distances and whose farthest-T distance is below T's largest
    farthest-neighbour distance; rule 2 thins them (:func:`thin`) until no pair is nearer than that
    median. Each chosen candidate gets its label neighbours (:func:`label_neighbours`).

    Raises:
        CurationError: bad features, or no candidate passes both rules.
    """
    refs = unit_features(ref_features, where="training reference features")
    cands = unit_features(cand_features, where=f"{pool} features")
    if refs.shape[1] != cands.shape[1]:
        raise CurationError(
            f"{pool}: {cands.shape[1]}-d features, the training references have {refs.shape[1]}"
        )
    median_nn, max_far = reference_spread(refs)
    near, far = nearest_farthest(cands, refs)
    rule1 = np.flatnonzero((near > median_nn) & (far < max_far))
    if rule1.size == 0:
        raise CurationError(
            f"{pool}: none of {len(cands)} candidate(s) is new content inside the references' spread "
            f"(nearest-T distance > {median_nn:.4f} and farthest-T distance < {max_far:.4f})"
        )
    kept, dropped_pos = thin(cands[rule1], median_nn, near[rule1])
    chosen = rule1[kept]
    dropped = [(int(rule1[d]), int(rule1[p]), dist) for d, p, dist in dropped_pos]
    neighbours, weights = label_neighbours(cands[chosen], refs, k, tol)
    return DdcResult(median_nn, max_far, near, far, rule1, dropped, chosen, neighbours, weights)


def transfer_labels(result: DdcResult, ref_labels: Any, where: str = "training labels") -> np.ndarray:
    """Labels of the chosen references' distorted versions: ``(chosen, cells)``, each the weighted
    mean of the label neighbours' labels at the same cell (a (type, level)).

    Args:
        result: a :func:`ddc` result.
        ref_labels: ``(T, cells)`` labels of every training reference at every (type, level).

    Raises:
        CurationError: a label neighbour lacks a label for some cell.
    """
    labels = np.asarray(ref_labels, dtype=np.float64)
    if labels.ndim != 2:
        raise CurationError(f"{where}: expected a (references, cells) matrix, got shape {labels.shape}")
    out = np.empty((len(result.chosen), labels.shape[1]))
    for n, (near, w) in enumerate(zip(result.neighbours, result.weights)):
        sub = labels[near]
        missing = np.argwhere(~np.isfinite(sub))
        if missing.size:
            r, c = missing[0]
            raise CurationError(f"{where}: reference row {int(near[r])} has no label for cell {int(c)}")
        out[n] = w @ sub
    return out
