"""Tests for dgqa_train.metrics: scipy-exact correlations, logistic mapping, edge cases, plcc_loss."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from dgqa_train.metrics import (
    ConstantInputWarning,
    iqa_metrics,
    krcc,
    logistic4,
    logistic4_fit,
    plcc,
    plcc_loss,
    rmse,
    srcc,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def plcc_logistic4(pred, mos) -> float:
    """PLCC after the 4-parameter logistic mapping, as :func:`iqa_metrics` reports it."""
    return iqa_metrics(pred, mos)["plcc_logistic4"]


def test_equal_scipy_random(rng: np.random.Generator) -> None:
    mos = rng.uniform(0, 100, 200)
    pred = mos + rng.normal(0, 20, 200)
    assert srcc(pred, mos) == stats.spearmanr(pred, mos).statistic
    assert plcc(pred, mos) == stats.pearsonr(pred, mos).statistic
    assert krcc(pred, mos) == stats.kendalltau(pred, mos).statistic
    assert rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)), rel=1e-12)
    assert 0.5 < srcc(pred, mos) < 1.0


def test_equal_scipy_with_ties(rng: np.random.Generator) -> None:
    mos = rng.integers(1, 6, 150).astype(float)  # 5-level ratings: many ties
    pred = np.round(mos + rng.normal(0, 1.0, 150))
    assert len(np.unique(pred)) < 20
    assert srcc(pred, mos) == stats.spearmanr(pred, mos).statistic
    assert plcc(pred, mos) == stats.pearsonr(pred, mos).statistic
    assert krcc(pred, mos) == stats.kendalltau(pred, mos).statistic  # tau-b handles the ties
    assert krcc(pred, mos) != stats.kendalltau(pred, mos, variant="c").statistic


def test_hand_values() -> None:
    assert srcc([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert krcc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert plcc([1, 2], [3, 5]) == pytest.approx(1.0)  # two items are enough
    assert rmse([1.0, 2.0], [1.0, 4.0]) == pytest.approx(np.sqrt(2.0))


def test_accepts_torch_and_column_vectors(rng: np.random.Generator) -> None:
    mos = rng.normal(size=30)
    pred = torch.tensor(mos + rng.normal(size=30), requires_grad=True)
    expected = stats.spearmanr(pred.detach().numpy(), mos).statistic
    assert srcc(pred.reshape(-1, 1), mos) == pytest.approx(expected, abs=1e-15)


def test_constant_gives_nan_and_warning() -> None:
    mos = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    pred = [3.0] * 6
    for fn in (srcc, plcc, krcc):
        with pytest.warns(ConstantInputWarning, match="pred constant"):
            assert np.isnan(fn(pred, mos))
    with pytest.warns(ConstantInputWarning, match="mos constant"):
        assert np.isnan(srcc(mos, pred))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = iqa_metrics(pred, mos)
    assert sum(issubclass(w.category, ConstantInputWarning) for w in caught) == 1
    assert np.isnan(out["srcc"]) and np.isnan(out["plcc"]) and np.isnan(out["krcc"])
    assert np.isnan(out["plcc_logistic4"])
    assert out["rmse"] == pytest.approx(rmse(pred, mos))


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 items"):
        srcc([1.0], [2.0])
    with pytest.raises(ValueError, match="at least 2 items"):
        iqa_metrics([], [])
    with pytest.raises(ValueError, match="differ in length"):
        plcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"pred has 1 non-finite value.*index 2"):
        krcc([1, 2, np.nan, 4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="mos has 1 non-finite"):
        iqa_metrics([1, 2, 3], [1, np.inf, 3])
    with pytest.raises(ValueError, match="1-D"):
        srcc(np.ones((3, 2)), np.ones((3, 2)))


def test_logistic_improves_plcc_on_monotone_nonlinear(rng: np.random.Generator) -> None:
    pred = rng.uniform(-3, 3, 300)
    mos = 1 + 4 / (1 + np.exp(-2.5 * pred)) + rng.normal(0, 0.05, 300)
    raw, mapped = plcc(pred, mos), plcc_logistic4(pred, mos)
    assert mapped > raw + 0.02
    assert mapped > 0.99
    fit = logistic4_fit(pred, mos)
    assert fit.method == "logistic4"
    b1, b2, b3, b4 = fit.params
    assert (b1, b2, b3, abs(b4)) == pytest.approx((5.0, 1.0, 0.0, 0.4), abs=0.05)
    assert fit(pred) == pytest.approx(logistic4(pred, *fit.params))
    # a decreasing relation maps onto an increasing one as well
    assert plcc_logistic4(-pred, mos) > 0.99
    # SRCC is invariant to the mapping
    assert srcc(fit(pred), mos) == pytest.approx(srcc(pred, mos), abs=1e-12)


def test_logistic_on_large_scale_inputs(rng: np.random.Generator) -> None:
    pred = rng.uniform(0, 1e4, 200)  # badly scaled predictions still fit (standardised internally)
    mos = np.tanh((pred - 5e3) / 2e3) + rng.normal(0, 0.02, 200)
    assert plcc_logistic4(pred, mos) > plcc(pred, mos)


def test_logistic_fallback_is_graceful() -> None:
    with pytest.warns(UserWarning, match="linear mapping"):
        fit = logistic4_fit([1.0, 2.0, 3.0], [2.0, 4.0, 6.1])
    assert fit.method == "linear"
    assert fit([4.0]) == pytest.approx([8.1], abs=0.1)


def test_iqa_metrics_keys(rng: np.random.Generator) -> None:
    mos = rng.uniform(0, 1, 50)
    pred = mos**3 + rng.normal(0, 0.01, 50)
    out = iqa_metrics(pred, mos)
    assert set(out) >= {"srcc", "plcc", "krcc", "rmse", "plcc_logistic4"}
    assert out["srcc"] == stats.spearmanr(pred, mos).statistic
    assert out["plcc"] == stats.pearsonr(pred, mos).statistic
    assert out["krcc"] == stats.kendalltau(pred, mos).statistic
    mapped = logistic4_fit(pred, mos)(pred)
    assert out["plcc_logistic4"] == pytest.approx(stats.pearsonr(mapped, mos).statistic)
    assert out["plcc_logistic4"] > out["plcc"]
    assert out["rmse_logistic4"] < out["rmse"]
    assert all(isinstance(v, float) for v in out.values())


def test_plcc_loss_value_and_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(32, generator=gen)
    pred = (0.3 * target + torch.randn(32, generator=gen)).requires_grad_()
    loss = plcc_loss(pred, target)
    expected = 1 - stats.pearsonr(pred.detach().numpy(), target.numpy()).statistic
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with torch.no_grad():  # one gradient step lowers the loss
        stepped = pred - 0.5 * pred.grad
    assert float(plcc_loss(stepped, target)) < loss.item()
    # invariant to affine rescaling of the predictions, shape (B, 1) accepted
    assert float(plcc_loss(3 * pred.detach().unsqueeze(1) + 7, target)) == pytest.approx(
        loss.item(), abs=1e-5
    )


def test_plcc_loss_degenerate_batches_are_finite() -> None:
    for pred in (torch.full((8,), 2.0, requires_grad=True), torch.tensor([1.5], requires_grad=True)):
        target = torch.arange(float(pred.numel()))
        loss = plcc_loss(pred, target)
        loss.backward()
        assert loss.item() == pytest.approx(1.0)
        assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="differ in size"):
        plcc_loss(torch.zeros(3), torch.zeros(4))
