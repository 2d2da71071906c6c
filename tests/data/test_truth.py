"""Selections measured against the truth; the confusion-corrected rule; agreement over seeds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dgqa_data.cli import main
from dgqa_data.errors import DgqaError
from dgqa_data.scores import write_scores
from dgqa_data.selection import (
    Selection,
    agreement,
    centred_logits,
    combine,
    corrected_shares,
    format_table,
    select,
)
from dgqa_data.truth import judge, load_truth, truth_from_csv, truth_from_types

K = 26


def confusable(rng: np.random.Generator) -> np.ndarray:
    """Held-out counts of a classifier that is right 60% of the time and sends 30% of every true
    type to its 'look-alike' (t + 1), 10% anywhere."""
    c = np.zeros((K, K))
    for t in range(K):
        c[t, t] = 60
        c[t, (t + 1) % K] += 30
        c[t] += rng.multinomial(10, np.full(K, 1 / K))
    return c


def held_out(counts: np.ndarray) -> dict:
    """The classifier's record: its held-out confusion and the (uniform) prior it trained under."""
    return {"counts": counts.tolist(), "train_prior": [1 / K] * K}


def draw_logits(counts: np.ndarray, mixture: dict[int, float], n: int, seed: int) -> np.ndarray:
    """Target logits of a classifier that sees only which class an image looks like: each image of a
    type in ``mixture`` looks like a class drawn from that type's confusion row, and its logits are
    the calibrated posterior of that look (log P(look | type), uniform prior)."""
    rng = np.random.default_rng(seed)
    a = (counts + 0.5) / (counts + 0.5).sum(1, keepdims=True)
    types = rng.choice(list(mixture), size=n, p=list(mixture.values()))
    looks = np.array([rng.choice(K, p=a[t]) for t in types])
    return np.log(a[:, looks].T)


def test_corrected_rule_gives_look_alike_votes_back():
    counts = confusable(np.random.default_rng(0))
    mixture = {2: 0.35, 11: 0.35, 16: 0.3}
    logits = draw_logits(counts, mixture, n=3000, seed=1)
    w = corrected_shares(logits, held_out(counts))
    assert w.sum() == pytest.approx(1.0)
    for t, share in mixture.items():
        assert w[t] == pytest.approx(share, abs=0.05)
    assert w[[3, 12, 17]].max() < 0.03  # the look-alikes (t + 1) hold ~30% of the votes, not of the mixture
    corrected = select(logits, "dgqa-corrected", confusion=held_out(counts))
    vote = select(logits, "dgqa-vote", confusion=held_out(counts))
    assert corrected.selected == [2, 11, 16]
    assert {3, 12, 17} <= set(vote.selected)  # the vote keeps the look-alikes
    assert corrected.table[2]["corrected_share"] == pytest.approx(w[2])
    assert "corrected share" in format_table(vote)  # shown beside the vote share by every rule


def test_corrected_rule_without_a_held_out_record_assumes_equal_frequencies_and_says_so():
    counts = confusable(np.random.default_rng(0))
    logits = draw_logits(counts, {2: 0.4, 11: 0.3, 16: 0.3}, n=2000, seed=1)
    official = select(logits, "dgqa-corrected", classifier={"path": "kadis-700k_model_best.pth.tar"})
    uniform = {"counts": counts, "train_prior": [1.0] * K}
    assert official.selected == select(logits, "dgqa-corrected", confusion=uniform).selected == [2, 11, 16]
    assert official.notes == [
        "kadis-700k_model_best.pth.tar has no held-out record (confusion.json; the official checkpoint ships "
        "none, and neither does a classifier trained with --eval_fraction 0): dgqa-corrected assumed it was "
        "trained under equal class frequencies; --rule dgqa-vote needs no record"
    ]
    assert select(logits, "dgqa-vote").notes == [] and select(logits, "dgqa-vote").table[2]["corrected_share"] is None


def test_corrected_rule_refuses_a_bad_held_out_record():
    logits = np.zeros((4, K))
    with pytest.raises(DgqaError, match="counts must be 26 x 26 non-negative numbers"):
        select(logits, "dgqa-corrected", confusion={"counts": np.ones((3, 3)), "train_prior": [1] * K})
    with pytest.raises(DgqaError, match="counts has no held-out image"):
        select(logits, "dgqa-corrected", confusion={"counts": np.zeros((K, K)), "train_prior": [1] * K})
    with pytest.raises(DgqaError, match="train_prior must be 26 non-negative class frequencies"):
        select(logits, "dgqa-corrected", confusion={"counts": np.ones((K, K))})


def test_judge_recall_precision_extras_and_background(tmp_path):
    path = tmp_path / "truth.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "families", "background"])
        w.writerows([["a.png", "defocus", "jpeg"], ["b.png", "noise;darker", "jpeg"], ["c.png", "", "jpeg"]])
    truth = truth_from_csv(path)
    assert truth.families == {"defocus": [1, 2], "noise": [11, 12], "darker": [17]}
    assert truth.rows == {"defocus": 1, "jpeg": 3, "noise": 1, "darker": 1} and truth.total == 3
    j = judge([2, 10, 12, 19, 4], truth)
    assert (j["found"], j["missed"], j["extras"], j["types_kept"]) == (["defocus", "noise"], ["darker"], [4, 19], 5)
    assert j["recall"] == pytest.approx(2 / 3) and j["precision"] == pytest.approx(3 / 5)  # 10 is background


def test_bad_truth_is_named_by_row(tmp_path):
    with pytest.raises(DgqaError, match=r"row 2 \(c.png\): type id 31 is not a KADID distortion type"):
        truth_from_types([1, -1, 31], "truth t", ["a.png", "b.png", "c.png"])
    path = tmp_path / "t.csv"
    path.write_text("image_id,families\na.png,defocus\nb.png,sunburn\n")
    with pytest.raises(DgqaError, match="t.csv: line 3, column families: 'sunburn' is neither"):
        truth_from_csv(path)
    path.write_text("image_id,kinds\na.png,defocus\n")
    with pytest.raises(DgqaError, match="no column 'families'"):
        load_truth(path)
    with pytest.raises(DgqaError, match="no row records a distortion type"):
        truth_from_types([-1, 0, None], "truth t")


def test_truth_of_a_dataset_column(tmp_path, photos):
    from dgqa_data.synth import synthesize
    from tests.fixtures.official import encode

    refs = tmp_path / "refs"
    refs.mkdir()
    for i, crop in enumerate(photos[:2]):
        (refs / f"p{i}.png").write_bytes(encode(crop[:48, :48], "PNG"))
    ds = synthesize(refs, tmp_path / "planted", plan="full", types=[3, 16], levels=[2], progress=False)
    truth = load_truth(ds)
    assert truth.families == {"motion_blur": [3], "brighten": [16]} and truth.rows == {"motion_blur": 2, "brighten": 2}
    assert truth.total == 6  # two pristine rows carry nothing
    assert judge([3, 9], truth)["missed"] == ["brighten"]


def three_seeds() -> list[Selection]:
    sels = []
    for chosen in ([1, 2, 3], [1, 2, 4], [1, 2, 3, 5]):
        logits = np.zeros((10, K))
        sels.append(Selection(target="t", rule="dgqa-vote", selected=chosen, threshold=0.04, k=4, num_images=10,
                              table=select(logits, "dgqa-vote").table))  # fmt: skip
    return sels


def test_agreement_and_majority_over_seeds():
    sels = three_seeds()
    st = agreement(sels, ["s0", "s1", "s2"])
    assert st["flips"] == [3, 4, 5] and st["selected_by"] == {"1": 3, "2": 3, "3": 2, "4": 1, "5": 1}
    assert st["jaccard_min"] == pytest.approx(2 / 5) and st["jaccard_mean"] == pytest.approx((2 / 4 + 3 / 4 + 2 / 5) / 3)
    both = combine(sels, ["s0", "s1", "s2"])
    assert both.selected == [1, 2, 3] and both.stability == st
    assert "selected by (of 3)" in format_table(both)


def test_select_cli_with_seeds_and_truth(tmp_path, capsys):
    counts = confusable(np.random.default_rng(0))
    truth = tmp_path / "truth.csv"
    truth.write_text("image_id,families\n" + "".join(f"x{i}.png,{t}\n" for i, t in enumerate([2, 11, 16] * 5)))
    folders = []
    for seed in range(3):
        logits = draw_logits(counts, {2: 0.35, 11: 0.35, 16: 0.3}, n=1500, seed=seed)
        meta = {"target": "cam", "classifier": {"path": f"cls{seed}"}, "confusion": held_out(counts)}
        folders.append(write_scores(tmp_path / f"s{seed}", [f"x{i}.png" for i in range(1500)], logits, meta))
    argv = ["select", "--scores", *map(str, folders), "--rule", "dgqa-corrected", "--truth", str(truth)]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "3 classifiers: Jaccard mean 1.00 (min 1.00); kept the types a majority selected; types that flip: none" in out
    assert "against the truth: found 3 of 3 families (" in out and "0 extra type(s) (none)" in out
    saved = json.loads((tmp_path / "r" / "selection.json").read_text())
    assert saved["selected"] == [2, 11, 16] and saved["evaluation"]["recall"] == 1.0
    assert [r["name"] for r in saved["stability"]["runs"]] == list(map(str, folders))
    assert saved["stability"]["runs"][0]["evaluation"]["extras"] == []
    assert set(saved["versions"]) >= {"numpy", "torch", "pillow", "jpeg codec"}
    loaded = Selection.load(tmp_path / "r" / "selection.json")
    assert loaded.evaluation["found"] == saved["evaluation"]["found"]
    # a scores folder of a classifier without a confusion matrix: one line naming the way out
    write_scores(tmp_path / "plain", ["a"], np.zeros((1, K)), {"target": "cam", "classifier": {"path": "official"}})
    assert main(["select", "--scores", str(tmp_path / "plain"), "--rule", "dgqa-corrected"]) == 0
    assert "note: official has no held-out record (confusion.json;" in capsys.readouterr().out
    assert json.loads((tmp_path / "plain" / "selection.json").read_text())["notes"][0].startswith("official has no")
    assert main(["select", "--paper", "livec", "--out", str(tmp_path / "p"), "--truth", str(truth)]) == 2
    assert "--truth measures a computed selection" in capsys.readouterr().err


def test_truth_file_in_the_select_cli_names_bad_rows(tmp_path, capsys):
    write_scores(tmp_path / "s", ["a"], np.zeros((1, K)), {"target": "cam"})
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,families\na.png,27\n")
    assert main(["select", "--scores", str(tmp_path / "s"), "--truth", str(bad)]) == 2
    assert "bad.csv: line 2, column families: type id 27 is not a KADID distortion type" in capsys.readouterr().err


def test_report_files_carry_the_corrected_share(tmp_path):
    from dgqa_data.selection import write_report

    counts = confusable(np.random.default_rng(0))
    sel = select(draw_logits(counts, {5: 1.0}, 200, 0), "dgqa-corrected", confusion=held_out(counts))
    out = write_report(sel, tmp_path)
    header = (Path(out) / "selection.csv").read_text().splitlines()[0]
    assert header == '"type_id","domain","vote_share","corrected_share","mean_prob","selected"'
    assert sel.selected == [5]


def centred_classifier(rng: np.random.Generator, dim: int = 12, sigma: float = 1.0):
    """A linear classifier of features = content mean + class offset + noise, trained (in closed form:
    equal-covariance Gaussians) on features centred per photo under a full plan; returns its class
    offsets, head (W, b) and held-out record with the centring."""
    offsets = rng.normal(0, 1.6, (K, dim))
    centred = offsets - offsets.mean(0)  # what a photo's mean leaves of every class under a uniform plan
    w = centred / sigma**2
    b = -0.5 * (centred**2).sum(1) / sigma**2
    record = {
        "counts": np.eye(K).tolist(),
        "train_prior": [1 / K] * K,
        "centring": {"bias": b.tolist(), "logit_offsets": (centred @ w.T).tolist(), "plan": [1 / K] * K},
    }
    return offsets, w, b, record


def test_a_centred_classifier_has_the_targets_content_mean_estimated_with_its_mixture():
    rng = np.random.default_rng(3)
    offsets, w, b, record = centred_classifier(rng)
    mixture = {2: 0.35, 11: 0.35, 16: 0.3}
    types = rng.choice(list(mixture), size=2000, p=list(mixture.values()))
    content = rng.normal(0, 2.0, offsets.shape[1])  # the target's photos: a mean no training photo had
    feats = content + offsets[types] + rng.normal(0, 1.0, (len(types), offsets.shape[1]))
    raw = feats @ w.T + b  # the head on the target's features, as scored
    plain = corrected_shares(raw, {k: v for k, v in record.items() if k != "centring"})
    found = corrected_shares(raw, record)
    assert sorted(np.argsort(-plain)[:3]) != [2, 11, 16]  # the content shift fools the classifier
    for t, share in mixture.items():
        assert found[t] == pytest.approx(share, abs=0.03)
    assert found.sum() == pytest.approx(1.0) and np.delete(found, [2, 11, 16]).max() < 0.02
    sel = select(raw, "dgqa-corrected", confusion=record)
    assert sel.selected == [2, 11, 16]
    assert "every rule read the logits centred by the target's content mean" in sel.notes[0]
    # the logits every rule reads are those of the features less the target's true content mean
    truth = (feats - content - offsets.mean(0)) @ w.T + b
    z = centred_logits(raw, record)
    assert np.corrcoef(z.ravel(), truth.ravel())[0, 1] > 0.999
    assert (z.argmax(1) == truth.argmax(1)).mean() > 0.97
    # centred by the set's mean first (as `dgqa score` writes them): the same estimate
    np.testing.assert_allclose(corrected_shares(raw - (raw.mean(0) - b), record), found, atol=1e-6)


def test_a_bad_centring_record_is_named():
    record = centred_classifier(np.random.default_rng(0))[3]
    logits = np.zeros((4, K))
    bad = {**record, "centring": {**record["centring"], "logit_offsets": [[0.0] * K] * 3}}
    with pytest.raises(DgqaError, match="held-out record: centring logit_offsets must be 26 x 26 finite numbers"):
        select(logits, "dgqa-corrected", confusion=bad)
    bad = {**record, "centring": {**record["centring"], "plan": [0.5] * K}}
    with pytest.raises(DgqaError, match="centring plan must be class frequencies summing to 1"):
        select(logits, "dgqa-corrected", confusion=bad)
    with pytest.raises(DgqaError, match="centring must be an object with bias, plan, logit_offsets"):
        select(logits, "dgqa-vote", confusion={**record, "centring": [1, 2]})


def test_a_bad_held_out_record_in_a_scores_folder_is_named_by_its_file(tmp_path, capsys):
    record = centred_classifier(np.random.default_rng(0))[3]
    record["centring"]["plan"] = [0.5] * K
    write_scores(tmp_path / "s", ["a", "b"], np.zeros((2, K)), {"target": "t", "confusion": record})
    rc = main(["select", "--scores", str(tmp_path / "s"), "--rule", "dgqa-corrected", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].endswith(f"{tmp_path / 's' / 'scores.json'}: confusion: centring plan must be class frequencies summing to 1")
    assert not (tmp_path / "o").exists()
