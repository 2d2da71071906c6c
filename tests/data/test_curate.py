"""DRC and DDC (dgqa_data.curate) on constructed features whose answers are known."""

from __future__ import annotations

import math
import re
import tracemalloc

import numpy as np
import pytest

from dgqa_data.curate import (
    CurationError,
    cluster_quota,
    ddc,
    drc,
    normalise_labels,
    reference_label_table,
    transfer_labels,
)

DIM = 16


def near(direction: int, n: int, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    """``n`` rows within a small angle of basis vector ``direction`` (cosine > 0.99)."""
    x = np.zeros((n, DIM), np.float32)
    x[:, direction] = 1.0
    return x + noise * rng.standard_normal((n, DIM)).astype(np.float32)


def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Features, labels (already on [0, 10]), types and the known clusters:

    * ``a``: 3 rows near e0 (kept whole);
    * ``b``: 25 rows near e1 (L > 20: keeps max(20, 12) = 20);
    * ``c``: 50 rows near e2 (keeps max(20, 25) = 25);
    * ``chain``: 3 rows at 0, 20 and 40 degrees in the (e3, e4) plane: one cluster through the middle;
    * ``split``: 2 rows near e5 whose labels differ by 1.5 (not linked);
    * singletons at e6..e9, two of them with the extreme labels 0 and 10.
    """
    rng = np.random.default_rng(0)
    parts, labels, types, groups = [], [], [], {}

    def add(name, feats, labs, typ):
        start = sum(len(p) for p in parts)
        parts.append(feats)
        labels.extend(labs)
        types.extend([typ] * len(feats))
        groups[name] = np.arange(start, start + len(feats))

    add("a", near(0, 3, rng), [5.0, 5.2, 5.4], 1)
    add("b", near(1, 25, rng), 3.0 + 0.01 * np.arange(25), 2)
    add("c", near(2, 50, rng), 7.0 + 0.005 * np.arange(50), 3)
    chain = np.zeros((3, DIM), np.float32)
    angles = np.radians([0, 20, 40])  # neighbours at cosine 0.94, the ends at 0.77
    chain[:, 3], chain[:, 4] = np.cos(angles), np.sin(angles)
    add("chain", chain, [4.0, 4.1, 4.2], 1)
    add("split", near(5, 2, rng), [2.0, 3.5], 2)
    add("single", np.eye(DIM, dtype=np.float32)[[6, 7, 8, 9]], [0.0, 10.0, 1.0, 9.0], 3)
    feats = np.concatenate(parts)
    return feats, np.asarray(labels), np.asarray(types), groups


def test_planted_chain_ends_are_not_similar():
    feats, _, _, g = planted()
    ends = feats[g["chain"][[0, 2]]]
    assert ends[0] @ ends[1] < 0.9  # linked only through the middle row


def test_drc_finds_the_planted_clusters_and_keeps_the_quota():
    feats, labels, types, g = planted()
    res = drc(feats, labels, types=types, seed=0)
    got = [c.tolist() for c in res.clusters]
    assert got == [g["a"].tolist(), g["b"].tolist(), g["c"].tolist(), g["chain"].tolist()]
    kept = set(res.kept.tolist())
    for name in ("a", "chain", "split", "single"):
        assert set(g[name].tolist()) <= kept
    assert len(kept & set(g["b"].tolist())) == 20
    assert len(kept & set(g["c"].tolist())) == 25
    n = len(labels)
    assert res.report["rows"] == n and res.report["kept"] == n - 5 - 25 == len(kept)
    assert res.report["clusters"] == 4 and res.report["thinned_clusters"] == 2
    assert res.report["cluster_sizes"] == {50: 1, 25: 1, 3: 2}
    assert res.report["rows_per_type"] == {1: 6, 2: 27, 3: 54}
    assert res.report["kept_per_type"] == {1: 6, 2: 22, 3: 29}


def test_drc_is_blocked_the_same_and_seeded():
    feats, labels, types, _ = planted()
    one = drc(feats, labels, seed=3)
    small_blocks = drc(feats, labels, seed=3, block=7)
    assert np.array_equal(one.kept, small_blocks.kept)
    assert [c.tolist() for c in one.clusters] == [c.tolist() for c in small_blocks.clusters]
    assert np.array_equal(one.kept, drc(feats, labels, seed=3).kept)
    assert not np.array_equal(one.kept, drc(feats, labels, seed=4).kept)


def test_drc_thresholds_are_options():
    feats, labels, *_ = planted()
    assert len(drc(feats, labels, label_gap=2.0).clusters) == 5  # the split pair now links
    res = drc(feats, labels, max_cluster=30, keep=0.2)
    assert res.report["thinned_clusters"] == 1 and res.report["kept"] == len(labels) - 20
    assert cluster_quota(20) == 20 and cluster_quota(21) == 20 and cluster_quota(41) == 20
    assert cluster_quota(43) == 21 and cluster_quota(100, 20, 0.5) == 50


def test_labels_are_normalised_to_0_10():
    assert normalise_labels([2.0, 3.0, 4.0]).tolist() == [0.0, 5.0, 10.0]
    # the raw scale does not matter: MOS on 1..5 link like the same ranks on 0..10
    feats, labels, *_ = planted()
    scaled = drc(feats, labels * 0.4 + 1.0)
    assert [c.tolist() for c in scaled.clusters] == [c.tolist() for c in drc(feats, labels).clusters]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "no labels"),
        ([1.0, None, 2.0], "1 of 3 row(s) have no label (first rows [1])"),
        ([1.0, float("nan"), 2.0], "have no label"),
        ([3.0, 3.0, 3.0], "every label is 3"),
    ],
)
def test_bad_labels_are_one_line(labels, message):
    with pytest.raises(CurationError, match=re.escape(message)) as err:
        drc(np.eye(3), labels)
    assert "\n" not in str(err.value)


def test_bad_features_are_one_line():
    with pytest.raises(CurationError, match=r"features for 2 row\(s\), but the set has 3"):
        drc(np.eye(3)[:2], [1.0, 2.0, 3.0])
    x = np.eye(3)
    x[1, 0] = np.nan
    with pytest.raises(CurationError, match=r"features missing \(NaN\) for 1 row\(s\) \(first rows \[1\]\)"):
        drc(x, [1.0, 2.0, 3.0])
    with pytest.raises(CurationError, match=r"zero feature vector in row\(s\) \[2\]"):
        drc(np.eye(3) * [1, 1, 0], [1.0, 2.0, 3.0])


def test_drc_on_20k_rows_allocates_no_n_by_n_matrix():
    rng = np.random.default_rng(0)
    n = 20_000
    feats = rng.standard_normal((n, 32)).astype(np.float32)
    feats[:200] = feats[0] + 0.01 * rng.standard_normal((200, 32)).astype(np.float32)
    labels = rng.uniform(0, 10, n)
    labels[:200] = 5.0 + 0.001 * np.arange(200)
    tracemalloc.start()
    try:
        res = drc(feats, labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.clusters[0].tolist() == list(range(200)) and res.report["kept"] == n - 100
    assert peak < 100 * 2**20, peak  # an N x N float64 matrix would be 3.2 GB (float32: 1.6 GB)


# -- DDC ----------------------------------------------------------------------------------------
def on_circle(degrees) -> np.ndarray:
    a = np.radians(np.asarray(degrees, np.float64))
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


REFS = [0, 10, 20, 50]  # nearest-neighbour angles 10, 10, 10, 30 -> median 10 deg; widest pair 50 deg
CANDS = [32, 34, 39, 45, -15, 25]


def dist(deg: float) -> float:
    return 1.0 - math.cos(math.radians(deg))


def test_ddc_rules_on_constructed_features():
    res = ddc(on_circle(REFS), on_circle(CANDS))
    assert res.median_nn == pytest.approx(dist(10), abs=1e-6)
    assert res.max_far == pytest.approx(dist(50), abs=1e-6)
    # rule 1: 45 and 25 are 5 deg from a reference (not new); -15 is 65 deg from 50 (outside the spread)
    assert res.rule1.tolist() == [0, 1, 2]
    # rule 2: (32, 34) are 2 deg apart: 32 is the less new (12 vs 14 deg) -> dropped; then (34, 39),
    # 5 deg: 39 is 11 deg from 50, 34 is 14 from 20 -> 39 dropped
    assert [(d, p) for d, p, _ in res.dropped] == [(0, 1), (2, 1)]
    assert [d for *_, d in res.dropped] == pytest.approx([dist(2), dist(5)], abs=1e-6)
    assert res.chosen.tolist() == [1]


def test_ddc_label_transfer_matches_a_hand_computation():
    res = ddc(on_circle(REFS), on_circle(CANDS))
    # 34 deg: nearest 20 (14 deg), 50 (16), 10 (24), 0 (34); within 0.05 of dist(14): 20 and 50
    assert res.neighbours[0].tolist() == [2, 3]
    e20, e50 = math.exp(math.cos(math.radians(14))), math.exp(math.cos(math.radians(16)))
    w20, w50 = e20 / (e20 + e50), e50 / (e20 + e50)
    assert res.weights[0] == pytest.approx([w20, w50], abs=1e-6)
    ref_labels = np.array([[1.0, 8.0], [2.0, 6.0], [3.0, 4.0], [7.0, 0.5]])  # (references, cells)
    got = transfer_labels(res, ref_labels)
    assert got.shape == (1, 2)
    assert got[0] == pytest.approx([w20 * 3.0 + w50 * 7.0, w20 * 4.0 + w50 * 0.5], abs=1e-6)
    one = ddc(on_circle(REFS), on_circle(CANDS), k=1)
    assert one.neighbours[0].tolist() == [2] and transfer_labels(one, ref_labels)[0].tolist() == [3.0, 4.0]
    wide = ddc(on_circle(REFS), on_circle(CANDS), tol=0.2)
    assert wide.neighbours[0].tolist() == [2, 3, 1, 0]


def test_ddc_errors_are_one_line():
    with pytest.raises(CurationError, match=r"pool: none of 2 candidate\(s\) is new content"):
        ddc(on_circle(REFS), on_circle([45, -15]))
    with pytest.raises(CurationError, match=r"pool: 3-d features, the training references have 2"):
        ddc(on_circle(REFS), np.ones((2, 3)))
    res = ddc(on_circle(REFS), on_circle(CANDS))
    with pytest.raises(CurationError, match="reference row 3 has no label for cell 1"):
        transfer_labels(res, np.array([[1, 1], [1, 1], [1, 1], [1, np.nan]]))


def test_reference_label_table_feeds_the_transfer():
    ids = ["r0", "r0", "r1", "r1", "r1", "r2"]
    cells = [(1, 3), (2, 3), (1, 3), (2, 3), (2, 3), (1, 3)]
    labels = [0.5, 0.25, 0.75, 0.5, 0.3, 9.0]
    table, order = reference_label_table(ids, cells, labels, ["r1", "r0"])
    assert order == [(1, 3), (2, 3)]
    assert table.tolist() == [[0.75, 0.4], [0.5, 0.25]]  # r2 is not a training reference
    table, _ = reference_label_table(ids[:1], cells[:1] + [], labels[:1], ["r0", "r1"])
    assert table[0, 0] == 0.5 and np.isnan(table[1, 0])


def test_drc_settings_are_checked():
    with pytest.raises(CurationError, match="DRC settings: need -1 <= sim < 1, label_gap > 0"):
        drc(np.eye(3), [1.0, 2.0, 3.0], label_gap=0)
