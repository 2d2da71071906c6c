"""The DGQA selection rules against hand-computed cases, and the published selections."""

import json

import numpy as np
import pytest

from dgqa_data.selection import (
    PAPER_SELECTIONS,
    Selection,
    chart_values,
    format_table,
    mean_probs,
    paper_selection,
    plot_selection,
    select,
    vote_shares,
)


def logits_with_top4(tops: list[tuple[int, int, int, int]]) -> np.ndarray:
    """One row per image whose 4 largest logits are exactly the given classes (in that order)."""
    z = np.zeros((len(tops), 26))
    for j, top in enumerate(tops):
        for rank, c in enumerate(top):
            z[j, c] = 10.0 - rank
    return z


def test_vote_shares_hand_computed():
    z = logits_with_top4([(1, 2, 3, 4), (1, 2, 3, 5), (1, 6, 7, 8)])
    s = vote_shares(z)
    # M = 3 images, normaliser (K - 1) * M = 9
    assert s[1] == pytest.approx(3 / 9)
    assert s[2] == pytest.approx(2 / 9) and s[3] == pytest.approx(2 / 9)
    assert s[4] == pytest.approx(1 / 9) and s[8] == pytest.approx(1 / 9)
    assert s[9:].sum() == 0 and s[0] == 0
    assert s.sum() == pytest.approx(4 / 3)  # K / (K - 1)


def test_dgqa_vote_rounding_edge():
    # 1000 images; type 9 is in the top-4 of 105 images -> 105 / 3000 = 0.035 -> round(., 2) = 0.04 (kept)
    # type 10 in 104 images -> 0.0347 -> 0.03 (rejected)
    base = (1, 2, 3, 4)
    tops = [(9, 2, 3, 4)] * 105 + [(10, 2, 3, 4)] * 104 + [base] * (1000 - 209)
    sel = select(logits_with_top4(tops), rule="dgqa-vote")
    assert 9 in sel.selected and 10 not in sel.selected
    assert sel.selected == [1, 2, 3, 4, 9]
    row9 = sel.table[9]
    assert row9["vote_share"] == pytest.approx(0.035) and row9["selected"] is True


def test_pristine_passes_threshold_but_is_never_selected():
    z = logits_with_top4([(0, 1, 2, 3)] * 10)
    sel = select(z)
    assert vote_shares(z)[0] == pytest.approx(10 / 30)
    assert sel.selected == [1, 2, 3]
    assert sel.table[0]["selected"] is False


def test_mean_prob_and_top_k():
    z = np.full((4, 26), -5.0)
    z[:, 17] = 5.0
    z[:, 3] = 4.0
    p = mean_probs(z)
    assert p.sum() == pytest.approx(1.0)
    assert select(z, rule="mean-prob").selected == [3, 17]
    assert select(z, rule="top-k", k=1).selected == [17]


def test_bad_logits_are_clear_errors():
    with pytest.raises(ValueError, match=r"shape \(M, 26\)"):
        select(np.zeros((3, 25)))
    with pytest.raises(ValueError, match="NaN"):
        select(np.full((2, 26), np.nan))
    with pytest.raises(ValueError, match="unknown rule"):
        select(np.zeros((2, 26)), rule="vote")


def test_paper_tables():
    assert paper_selection("livec").selected == [1, 3, 10, 17, 18, 25]
    assert paper_selection("KonIQ-10k").selected == [1, 3, 16, 17, 18, 25]
    assert paper_selection("pipal6").selected == [1, 2, 3, 9, 10, 11, 12, 16, 17, 18, 19, 21, 22, 25]
    # image counts in the DGQA README: 405 KADID images per selected type
    expected_images = {
        "livec": 2430,
        "bid": 2430,
        "pipal1": 2835,
        "pipal4": 3645,
        "pipal5": 2025,
        "pipal6": 5670,
    }
    for name, n in expected_images.items():
        assert 405 * len(PAPER_SELECTIONS[name]) == n
    with pytest.raises(ValueError, match="no published selection"):
        paper_selection("tid2013")


def test_selection_json_round_trip_and_plot(tmp_path):
    sel = select(logits_with_top4([(1, 2, 3, 4)] * 5), target="camera", classifier={"sha256": "ab"})
    path = sel.save(tmp_path / "selection.json")
    again = Selection.load(path)
    assert again == sel
    assert json.loads(path.read_text())["selected"] == [1, 2, 3, 4]
    assert "| 1 | gaussian_blur | 0.333 |" in format_table(sel)
    png = plot_selection(sel, tmp_path / "similarity.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_draws_what_the_rule_compares():
    # 4 of 38 images vote for types 5..8: share 4 / 114 = 0.035, which the rule rounds to 0.04 and keeps
    sel = select(logits_with_top4([(1, 2, 3, 4)] * 34 + [(5, 6, 7, 8)] * 4))
    assert sel.table[5]["vote_share"] == pytest.approx(0.0351, abs=1e-4) and 5 in sel.selected
    values = chart_values(sel)
    assert values[4] == 0.04 >= sel.threshold and values[0] == round(34 / 114, 2)
    assert chart_values(paper_selection("livec"))[:3] == [1.0, 0.0, 1.0]
