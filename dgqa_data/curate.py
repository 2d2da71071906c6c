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
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from dgqa_data import __version__
from dgqa_data.cards import card_metadata
from dgqa_data.errors import DgqaError
from dgqa_data.hub_folder import HubFolderWriter, json_text, render_card
from dgqa_data.paths import check_output
from dgqa_data.schema import DISTORTION_NAMES
from dgqa_data.subsets import SourceFolder

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


def feature_norms(
    features: Any, rows: int | None = None, where: str = "features"
) -> tuple[np.ndarray, np.ndarray]:
    """``(features as float32 (N, D), row norms)``, checked block by block (no copy of float32 input).

    Raises:
        CurationError: not a 2-D matrix, a row count other than ``rows``, or rows that are missing
            (NaN/inf) or zero (cosine similarity undefined).
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise CurationError(f"{where}: expected a (rows, dims) matrix, got shape {x.shape}")
    if rows is not None and x.shape[0] != rows:
        raise CurationError(f"{where}: features for {x.shape[0]} row(s), but the set has {rows}")
    norms = np.empty(len(x), np.float32)
    for s in range(0, len(x), BLOCK):
        norms[s : s + BLOCK] = np.linalg.norm(x[s : s + BLOCK], axis=1)
    bad = np.flatnonzero(~np.isfinite(norms))
    if bad.size:
        raise CurationError(
            f"{where}: features missing (NaN) for {bad.size} row(s) (first rows {bad[:3].tolist()})"
        )
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise CurationError(f"{where}: zero feature vector in row(s) {zero[:3].tolist()}; cosine undefined")
    return x, norms


def unit_features(features: Any, rows: int | None = None, where: str = "features") -> np.ndarray:
    """Rows of ``features`` scaled to unit length, as float32 ``(N, D)`` (checked by :func:`feature_norms`)."""
    x, norms = feature_norms(features, rows, where)
    return x / norms[:, None]


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
    features: np.ndarray,
    norms: np.ndarray,
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
    exist at a time. Similarities are float32 dot products of unit rows; the one copy of the
    features made is the label-ordered unit rows.
    """
    order = np.argsort(labels10, kind="stable")
    lab = labels10[order]
    x = features[order]
    x /= norms[order, None]
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
    seed: int | Sequence[int] = 0,
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
            their first member); a sequence such as ``[seed, epoch]`` works too (per-epoch DRC).
        block: rows per block of the similarity products.
        where: names the set in error messages.
    """
    if not 0 < keep <= 1 or max_cluster < 1 or not -1 <= sim < 1 or not label_gap > 0:
        raise CurationError(
            f"DRC settings: need -1 <= sim < 1, label_gap > 0, max_cluster >= 1 and 0 < keep <= 1; got "
            f"sim {sim}, label_gap {label_gap}, max_cluster {max_cluster}, keep {keep}"
        )
    y = normalise_labels(labels, f"{where} labels")
    x, norms = feature_norms(features, len(y), f"{where} features")
    if types is not None and len(types) != len(y):
        raise CurationError(f"{where}: {len(types)} type(s) for {len(y)} row(s)")
    clusters = components(len(y), *redundant_links(x, norms, y, sim, label_gap, block))
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
    Holds the M x M float64 distances of the M candidates (M = 10,000: 0.8 GB): rule 1 runs first so
    that M is the pool's new content only, not the pool.

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


def reference_label_table(
    reference_ids: Sequence[str],
    cells: Sequence[Any],
    labels: Sequence[float],
    references: Sequence[str],
) -> tuple[np.ndarray, list[Any]]:
    """The ``(references, cells)`` label matrix :func:`transfer_labels` reads, from one row per image.

    Args:
        reference_ids: the reference of every row.
        cells: the cell of every row, e.g. ``(type, level)``.
        labels: the label of every row.
        references: the training references, in the order of the matrix rows.

    Returns:
        ``(matrix, cell order)``: cells sorted; NaN where a reference has no row of a cell; a cell
        with several rows of one reference holds their mean.
    """
    order = sorted(set(cells))
    col = {c: k for k, c in enumerate(order)}
    row = {r: k for k, r in enumerate(references)}
    total = np.zeros((len(references), len(order)))
    count = np.zeros_like(total)
    for r, c, y in zip(reference_ids, cells, labels):
        if r in row and y is not None:
            total[row[r], col[c]] += y
            count[row[r], col[c]] += 1
    with np.errstate(invalid="ignore"):
        return total / count, order


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


def transfer_labels(
    result: DdcResult,
    ref_labels: Any,
    where: str = "training labels",
    references: Sequence[str] | None = None,
    cells: Sequence[Any] | None = None,
) -> np.ndarray:
    """Labels of the chosen references' distorted versions: ``(chosen, cells)``, each the weighted
    mean of the label neighbours' labels at the same cell (a (type, level)).

    Args:
        result: a :func:`ddc` result.
        ref_labels: ``(T, cells)`` labels of every training reference at every (type, level).
        where: names the labels in error messages.
        references, cells: names of the matrix rows and columns, for error messages.

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
            r, c = int(near[missing[0][0]]), int(missing[0][1])
            ref = references[r] if references is not None else f"row {r}"
            raise CurationError(f"{where}: reference {ref} has no label for cell {cells[c] if cells else c}")
        out[n] = w @ sub
    return out


# -- DDC on a dataset -----------------------------------------------------------------------------
#: Prefix of the image and reference ids of upsampled rows (never a source id).
DDC_PREFIX = "ddc/"


def pristine_rows(src: SourceFolder) -> dict[str, tuple[str, int]]:
    """``reference_id -> (config, row)`` of every reference's first pristine row (distortion_type 0):
    from the ``pristine`` config (where a built FR corpus keeps its references) before ``default``
    (where a ``dgqa synth`` set keeps them)."""
    found: dict[str, tuple[str, int]] = {}
    for config in sorted({c for c, _ in src.parts}, key=lambda c: c != "pristine"):
        offset = 0
        for _, files in src.config_parts(config):
            for f in files:
                t = pq.read_table(f, columns=["reference_id", "distortion_type"])
                refs, types = t["reference_id"].to_pylist(), t["distortion_type"].to_pylist()
                for k, (r, d) in enumerate(zip(refs, types)):
                    if d == 0 and r is not None:
                        found.setdefault(r, (config, offset + k))
                offset += t.num_rows
    return found


def training_references(reference_ids: Sequence[Any], pristine: dict[str, Any], where: str) -> list[str]:
    """The training references T: the references of the rows (first-appearance order) that have a
    pristine image.

    Raises:
        CurationError: fewer than 2 such references.
    """
    refs = [r for r in dict.fromkeys(reference_ids) if r is not None and r in pristine]
    if len(refs) < 2:
        raise CurationError(
            f"{where}: {len(refs)} training reference(s) with a pristine image (a distortion_type 0 row of "
            "the same reference_id, in the default or pristine config); DDC needs at least 2"
        )
    return refs


def ddc_cells(
    types: np.ndarray, levels: np.ndarray, labels: np.ndarray, ddc_levels: Sequence[int], where: str
) -> list[tuple[int, int]]:
    """The cells the upsampled images take: every distorted type of the rows at every level of
    ``ddc_levels``.

    Raises:
        CurationError: a level outside 1..5, no distorted row, or a cell with no labelled row.
    """
    bad = [lv for lv in ddc_levels if not 1 <= int(lv) <= 5]
    if bad or not ddc_levels:
        raise CurationError(f"--ddc-levels: need levels in 1..5, got {list(ddc_levels)}")
    distorted = sorted({int(t) for t in types if t >= 1})
    if not distorted:
        raise CurationError(f"{where}: no distorted row (distortion_type 1..25) to take labels from")
    have = {(int(t), int(lv)) for t, lv, y in zip(types, levels, labels) if t >= 1 and y is not None}
    cells = [(t, int(lv)) for t in distorted for lv in sorted(set(ddc_levels))]
    missing = [c for c in cells if c not in have]
    if missing:
        t, lv = missing[0]
        raise CurationError(
            f"{where}: no labelled row of type {t} ({DISTORTION_NAMES[t]}) at level {lv} to transfer labels "
            f"from ({len(missing)} such cell(s)); choose --ddc-levels among the source's levels"
        )
    return cells


def ddc_label_table(
    reference_ids: Sequence[Any],
    types: np.ndarray,
    levels: np.ndarray,
    labels: Sequence[Any],
    references: Sequence[str],
    cells: Sequence[tuple[int, int]],
) -> np.ndarray:
    """``(references, cells)`` label matrix of the rows (:func:`reference_label_table`), columns in
    the order of ``cells`` (NaN where a reference has no row of a cell)."""
    cell_of = [(int(t), int(lv)) for t, lv in zip(types, levels)]
    table, order = reference_label_table(reference_ids, cell_of, labels, references)
    col = {c: k for k, c in enumerate(order)}
    return table[:, [col[c] for c in cells]]


def ddc_rows(
    paths: Sequence[str | Path],
    ref_ids: Sequence[str],
    cells: Sequence[tuple[int, int]],
    quality: np.ndarray,
    mos: np.ndarray | None,
    *,
    seed: int = 0,
    corpus: str = "ddc",
) -> Any:
    """Rows of the chosen references' distorted versions at ``cells`` (the synth machinery: every
    type x level of the cells, seeded per (reference, type, level)), with the transferred labels.

    Args:
        paths, ref_ids: the chosen pool images and their ids (relative to the pool).
        cells: the ``(type, level)`` cells; every type x level of them is made.
        quality, mos: ``(chosen, cells)`` transferred labels (``mos`` None: left empty).
        seed: the synth seed.
        corpus: the ``corpus`` value of the rows.

    Yields:
        Rows of the unified schema (plus ``seed``, ``draws``), ids prefixed :data:`DDC_PREFIX`,
        ``label_transferred`` True.
    """
    from dgqa_data.synth import Reference, SynthPlan, image_row, synth_images, unique_stems

    refs = unique_stems([Reference(r, path=str(p)) for r, p in zip(ref_ids, paths)])
    plan = SynthPlan(
        source="",
        types=sorted({t for t, _ in cells}),
        levels=sorted({lv for _, lv in cells}),
        include_pristine=False,
        seed=seed,
        corpus=corpus,
    )
    row_of = {r: k for k, r in enumerate(ref_ids)}
    col = {c: k for k, c in enumerate(cells)}
    for ref, tid, level, s, draws, name, img, _ in synth_images(refs, plan):
        i, j = row_of[ref.ref_id], col[(tid, level)]
        row = image_row(plan, ref, tid, level, s, draws, DDC_PREFIX + name, img, None)
        row["image"]["path"] = row["image_id"]
        row["reference_id"] = DDC_PREFIX + ref.ref_id
        row["quality"] = float(quality[i, j])
        row["mos"] = None if mos is None else float(mos[i, j])
        row["label_transferred"] = True
        yield row


def ddc_report(
    result: DdcResult, candidates: Sequence[str], references: Sequence[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """The JSON-ready summary of a DDC run: counts, thresholds and the chosen references with their
    label neighbours and weights."""
    return {
        "operation": "ddc",
        "settings": settings,
        "training_references": len(references),
        "candidates": len(candidates),
        "median_nn_distance": result.median_nn,
        "max_far_distance": result.max_far,
        "rule1_passed": int(result.rule1.size),
        "rule2_dropped": len(result.dropped),
        "chosen": [
            {
                "reference": candidates[c],
                "nearest_distance": float(result.nearest[c]),
                "neighbours": [references[k] for k in near],
                "weights": [float(w) for w in weights],
            }
            for c, near, weights in zip(result.chosen.tolist(), result.neighbours, result.weights)
        ],
    }


# -- writing a curated dataset --------------------------------------------------------------------
@dataclass
class CurateReport:
    """What :func:`write_curated` wrote: the folder, its name, rows, rows per type, index-only."""

    out: Path
    name: str
    rows: int
    domain_counts: dict[int, int]
    index_only: bool


def source_column(src: SourceFolder, column: str) -> np.ndarray:
    """One column of every row of the source's ``default`` config, in source order (object array)."""
    values: list[Any] = []
    for _, files in src.config_parts():
        for f in files:
            if column not in pq.read_schema(f).names:
                raise CurationError(f"{f}: no {column!r} column")
            values.extend(pq.read_table(f, columns=[column])[column].to_pylist())
    return np.asarray(values, dtype=object)


def selected_rows(types: np.ndarray, selected: Sequence[int] | None, where: str) -> np.ndarray:
    """Indices of the rows of the ``selected`` types (all rows when None).

    Raises:
        CurationError: the selection names types with no row in the source.
    """
    if selected is None:
        return np.arange(len(types))
    absent = sorted(set(selected) - set(np.unique(types).tolist()))
    if absent:
        names = ", ".join(f"{t} ({DISTORTION_NAMES[t]})" for t in absent)
        raise CurationError(f"{where}: the selection names type(s) absent from the source: {names}")
    return np.flatnonzero(np.isin(types, list(selected)))


def write_curated(
    source: str | Path,
    keep: np.ndarray,
    *,
    name: str,
    out: str | Path,
    record: dict[str, Any],
    namespace: str = "dgqa",
    overwrite: bool = False,
    progress: bool = True,
    extra_rows: Any = None,
) -> CurateReport:
    """Copy the rows ``keep`` (a mask over the source's ``default`` rows) into a Hub-layout folder
    whose card and ``curation.json`` hold ``record`` (operation, settings, report).

    Image bytes are copied as stored; rows of corpora whose terms forbid redistribution are written
    index-only, as :func:`dgqa_data.subsets.write_subset` does. ``extra_rows`` (the upsampled rows of
    :func:`ddc_rows`) are appended to the first split, and a ``label_transferred`` column tells them
    from the source's rows.

    Raises:
        CurationError: ``extra_rows`` for a source that must be written index-only.
    """
    from dgqa_data.subsets import _to_index_only, index_only_features, restricted_corpora

    src = SourceFolder.open(source)
    types, corpora = src.scan()
    out = Path(out).expanduser()
    check_output(out, {"source dataset": src.folder})
    to_index = bool(restricted_corpora(corpora)) and not src.index_only
    if extra_rows is not None and (to_index or src.index_only):
        raise CurationError(f"{src.folder}: upsampled rows cannot join an index-only dataset (no pixels)")
    features = index_only_features(src.features) if to_index else datasets.Features(src.features)
    if extra_rows is not None:
        features["label_transferred"] = datasets.Value("bool")
    writer = HubFolderWriter(out, features, overwrite=overwrite)
    bar = tqdm(total=int(keep.sum()), desc=f"writing {name}", unit="img", disable=not progress)
    upsampled: Counter = Counter()
    with writer, bar:
        offset, first = 0, None
        for split, files in src.config_parts():
            first = first or split
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
                    mask = keep[offset : offset + batch.num_rows]
                    offset += batch.num_rows
                    for row in batch.filter(pa.array(mask)).to_pylist():
                        if extra_rows is not None:
                            row["label_transferred"] = False
                        writer.add(_to_index_only(row, f) if to_index else row, split)
                    bar.update(int(mask.sum()))
        for row in extra_rows if extra_rows is not None else ():
            writer.add({k: row.get(k) for k in features}, first)
            upsampled[int(row["distortion_type"])] += 1
        counts = dict(sorted((Counter(types[keep].tolist()) + upsampled).items()))
        record = {
            "name": name,
            "source": src.name,
            "source_rows": len(types),
            "rows": int(keep.sum()) + sum(upsampled.values()),
            **record,
        }
        if extra_rows is not None:
            record["upsampled_rows"] = sum(upsampled.values())
            record["upsampled_per_type"] = dict(sorted(upsampled.items()))
        card = curated_card(src, name, record, writer.parts(), dict(writer.counts), counts, namespace)
        writer.finish(card, {"curation.json": json_text(record)})
    return CurateReport(out, name, record["rows"], counts, src.index_only or to_index)


def curated_card(
    src: SourceFolder,
    name: str,
    record: dict[str, Any],
    parts: list[tuple[str, str]],
    counts: dict[tuple[str, str], int],
    domain_counts: dict[int, int],
    namespace: str,
) -> str:
    """README.md of a curated dataset: what was done, its settings, and rows kept per type."""
    pretty = f"{src.metadata.get('pretty_name') or src.name}, curated ({', '.join(record['operations'])})"
    meta = card_metadata(
        pretty_name=pretty,
        license=src.metadata.get("license") or "other",
        parts=parts,
        num_rows=sum(counts.values()),
        tags=["dataset-curation", "syndr-iqa", *record["operations"], src.name],
    )
    lines = [
        f"# {pretty}",
        "",
        f"`{src.name}` ({record['source_rows']} rows) curated by dgqa {__version__} with the SynDR-IQA "
        f"steps {', '.join(record['operations'])}: {record['rows']} rows. Image bytes are copied as stored.",
        "",
    ]
    if record.get("selection"):
        sel = record["selection"]
        lines += [
            f"Rows restricted first to the DGQA selection for `{sel['target']}`: types {sel['selected']}.",
            "",
        ]
    if "drc" in record:
        lines += drc_card_lines(record["drc"])
    if "ddc" in record:
        lines += ddc_card_lines(record["ddc"], record.get("upsampled_rows", 0))
    up = record.get("upsampled_per_type")
    head = "| id | type | source rows | kept |" + (
        " upsampled (labels transferred) |" if up is not None else ""
    )
    lines += ["## Rows per type", "", head, "|---:|---|---:|---:|" + ("---:|" if up is not None else "")]
    source_counts = record.get("source_rows_per_type", {})
    for t in sorted(set(source_counts) | set(domain_counts)):  # a type whose rows all went: kept 0
        label = DISTORTION_NAMES[t] if t >= 0 else "authentic / unknown"
        kept = domain_counts.get(t, 0) - (up or {}).get(t, 0)
        extra = f" {(up or {}).get(t, 0)} |" if up is not None else ""
        lines.append(f"| {t} | {label} | {source_counts.get(t, '')} | {kept} |{extra}")
    lines += ["", "## How to load", "", "```python", "from datasets import load_dataset", ""]
    lines += [f'ds = load_dataset("{namespace}/{name}", split="train")', "```", ""]
    lines += ["The full record (settings, cluster sizes) is in `curation.json`.", "", "## Citation", ""]
    lines += ["```bibtex", SYNDR_CITATION, "```", ""]
    return render_card(meta, "\n".join(lines))


def drc_card_lines(rep: dict[str, Any]) -> list[str]:
    """The DRC section of a curated card."""
    s = rep["settings"]
    return [
        "## Redundant-cluster downsampling (DRC)",
        "",
        f"Features: {rep.get('features', 'given')}. Labels min-max normalised to [0, 10]; rows linked when "
        f"cosine similarity > {s['sim']} and label difference < {s['label_gap']}; the connected components "
        f"are the redundant clusters. A cluster of up to {s['max_cluster']} rows is kept whole, a larger "
        f"one keeps max({s['max_cluster']}, floor(L x {s['keep']})) rows drawn with seed {s['seed']}.",
        "",
        f"- rows considered: {rep['rows']}, kept: {rep['kept']}",
        f"- clusters: {rep['clusters']} holding {rep['rows_in_clusters']} rows; "
        f"{rep['thinned_clusters']} larger than {s['max_cluster']} thinned",
        f"- cluster sizes (size: count): {', '.join(f'{k}: {v}' for k, v in rep['cluster_sizes'].items()) or 'none'}",
        "",
    ]


def ddc_card_lines(rep: dict[str, Any], rows: int) -> list[str]:
    """The DDC section of a curated card: the labels are transferred; the chosen references with
    their label neighbours and weights."""
    s = rep["settings"]
    lines = [
        "## Diverse-content upsampling (DDC)",
        "",
        f"**The labels of the {rows} upsampled images are transferred, not rated** (column "
        "`label_transferred` is true on them): a chosen reference's label at a (type, level) is the "
        "softmax-over-cosine-similarity weighted mean of the labels, at the same (type, level), of its "
        f"{s['k']} nearest training references that lie within {s['tol']} (cosine distance) of the nearest one.",
        "",
        f"Features: {rep.get('features', 'given')}. Pool `{s['pool']}`: {rep['candidates']} candidates; "
        f"{rep['training_references']} training references. Rule 1 (nearest-reference distance > "
        f"{rep['median_nn_distance']:.4f}, the references' median nearest-neighbour distance, and farthest-"
        f"reference distance < {rep['max_far_distance']:.4f}, their largest farthest-neighbour distance): "
        f"{rep['rule1_passed']} passed; rule 2 (greedy thinning until no pair is nearer than "
        f"{rep['median_nn_distance']:.4f}): {rep['rule2_dropped']} dropped; **{len(rep['chosen'])} chosen**.",
        "",
        f"Images: `dgqa synth` of each chosen reference, types {s['types']} at levels {s['levels']}, seed "
        f"{s['seed']} (ids prefixed `{DDC_PREFIX}`).",
        "",
        "| chosen reference | nearest-reference distance | label neighbours (weight) |",
        "|---|---:|---|",
    ]
    for c in rep["chosen"]:
        near = ", ".join(f"{r} ({w:.3f})" for r, w in zip(c["neighbours"], c["weights"]))
        lines.append(f"| {c['reference']} | {c['nearest_distance']:.4f} | {near} |")
    return [*lines, ""]


SYNDR_CITATION = """@inproceedings{li2025syndriqa,
  title={Towards Syn-to-Real IQA: A Novel Perspective on Reshaping Synthetic Data Distributions},
  author={Li, Aobo and Wu, Jinjian and Liu, Yongxu and Li, Leida and Dong, Weisheng},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2025},
  note={SynDR-IQA; arXiv:2601.00225}
}"""
