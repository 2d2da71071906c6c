"""IQA evaluation metrics (SRCC, PLCC, KRCC, RMSE, PLCC after the VQEG 4-parameter logistic mapping)
and a differentiable PLCC loss for training.

The correlations are exactly ``scipy.stats.spearmanr`` / ``pearsonr`` / ``kendalltau`` (tau-b, ties
handled as scipy does). Constant inputs give NaN with a :class:`ConstantInputWarning`; too few items
or non-finite values raise ``ValueError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import optimize, special, stats

from dgqa_data.errors import DgqaError

MIN_ITEMS = 2  # every correlation here is defined (and computed by scipy) from two items on
MIN_ITEMS_LOGISTIC = 5  # 4 parameters + at least one degree of freedom


class ConstantInputWarning(UserWarning):
    """Predictions or targets are constant: correlations are undefined and reported as NaN."""


ArrayLike = Sequence[float] | np.ndarray | torch.Tensor


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim > 1:
        squeezed = arr.squeeze()
        if squeezed.ndim > 1:
            raise DgqaError(f"{name} must be 1-D, got shape {arr.shape}")
        arr = squeezed.reshape(-1)
    return arr.reshape(-1)


def _validate(pred: ArrayLike, mos: ArrayLike, min_items: int = MIN_ITEMS) -> tuple[np.ndarray, np.ndarray]:
    p, m = _as_array(pred, "pred"), _as_array(mos, "mos")
    if p.shape != m.shape:
        raise DgqaError(f"pred and mos differ in length: {p.size} vs {m.size}")
    if p.size < min_items:
        raise DgqaError(f"need at least {min_items} items to compute this metric, got {p.size}")
    for name, arr in (("pred", p), ("mos", m)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise DgqaError(
                f"{name} has {bad.size} non-finite value(s) (NaN/inf), first at index {int(bad[0])}: {arr[bad[0]]}"
            )
    return p, m


def _constant(p: np.ndarray, m: np.ndarray, metric: str, warn: bool = True) -> bool:
    names = [n for n, a in (("pred", p), ("mos", m)) if np.all(a == a[0])]
    if names and warn:
        warnings.warn(
            f"{' and '.join(names)} constant: {metric} is undefined, returning NaN",
            ConstantInputWarning,
            stacklevel=3,
        )
    return bool(names)


def srcc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Spearman rank-order correlation (``scipy.stats.spearmanr``); NaN for constant input."""
    p, m = _validate(pred, mos)
    if _constant(p, m, "SRCC"):
        return float("nan")
    return float(stats.spearmanr(p, m).statistic)


def plcc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Pearson linear correlation, no mapping (``scipy.stats.pearsonr``); NaN for constant input."""
    p, m = _validate(pred, mos)
    if _constant(p, m, "PLCC"):
        return float("nan")
    return float(stats.pearsonr(p, m).statistic)


def krcc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Kendall rank correlation, tau-b (``scipy.stats.kendalltau``); NaN for constant input."""
    p, m = _validate(pred, mos)
    if _constant(p, m, "KRCC"):
        return float("nan")
    return float(stats.kendalltau(p, m).statistic)


def rmse(pred: ArrayLike, mos: ArrayLike) -> float:
    """Root mean squared error between ``pred`` and ``mos`` (same scale assumed, no mapping)."""
    p, m = _validate(pred, mos, min_items=1)
    return float(np.sqrt(np.mean((p - m) ** 2)))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`` (overflow-safe)."""
    scale = np.abs(b4) + np.finfo(np.float64).tiny
    return (b1 - b2) * special.expit((np.asarray(x, dtype=np.float64) - b3) / scale) + b2


@dataclass(frozen=True)
class Logistic4Fit:
    """A fitted monotone mapping from predictions to the MOS scale.

    Attributes:
        method: ``"logistic4"``, or ``"linear"`` when the logistic fit was impossible (then a warning
            was emitted and ``params`` are ``(slope, intercept, nan, nan)``).
        params: ``(b1, b2, b3, b4)`` of :func:`logistic4`.
        sse: sum of squared residuals on the fitted data.
    """

    method: str
    params: tuple[float, float, float, float]
    sse: float

    def __call__(self, x: ArrayLike) -> np.ndarray:
        """Map predictions onto the MOS scale."""
        arr = _as_array(x, "x")
        if self.method == "linear":
            return self.params[0] * arr + self.params[1]
        return logistic4(arr, *self.params)


def _linear_fallback(p: np.ndarray, m: np.ndarray, reason: str) -> Logistic4Fit:
    warnings.warn(f"4-parameter logistic fit failed ({reason}); using a linear mapping instead", stacklevel=3)
    if np.all(p == p[0]):
        slope, intercept = 0.0, float(np.mean(m))
    else:
        slope, intercept = (float(v) for v in np.polyfit(p, m, 1))
    sse = float(np.sum((slope * p + intercept - m) ** 2))
    return Logistic4Fit("linear", (slope, intercept, float("nan"), float("nan")), sse)


def logistic4_fit(pred: ArrayLike, mos: ArrayLike, maxfev: int = 20000) -> Logistic4Fit:
    """Fit the VQEG 4-parameter logistic mapping pred -> mos with ``scipy.optimize.curve_fit``.

    Predictions are standardised before fitting and several initial slopes are tried (the best sum of
    squared errors wins); direction is taken from the rank correlation. If no fit converges, or there
    are fewer than 5 items, falls back to a linear mapping with a warning.

    Args:
        pred: model predictions.
        mos: subjective scores.
        maxfev: ``curve_fit`` evaluation budget per start.
    """
    p, m = _validate(pred, mos)
    if p.size < MIN_ITEMS_LOGISTIC:
        return _linear_fallback(p, m, f"only {p.size} items, need {MIN_ITEMS_LOGISTIC}")
    if np.all(p == p[0]) or np.all(m == m[0]):
        return _linear_fallback(p, m, "constant input")
    mu, sd = float(np.mean(p)), float(np.std(p))
    z = (p - mu) / sd
    hi, lo = float(np.max(m)), float(np.min(m))
    if stats.spearmanr(p, m).statistic < 0:
        hi, lo = lo, hi
    best: tuple[float, np.ndarray] | None = None
    for b3 in (float(np.median(z)), 0.0):
        for b4 in (1.0, 0.3, 3.0):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    params, _ = optimize.curve_fit(logistic4, z, m, p0=[hi, lo, b3, b4], maxfev=maxfev)
            except (RuntimeError, ValueError, optimize.OptimizeWarning, FloatingPointError):
                continue
            if not np.all(np.isfinite(params)):
                continue
            sse = float(np.sum((logistic4(z, *params) - m) ** 2))
            if best is None or sse < best[0]:
                best = (sse, params)
    if best is None:
        return _linear_fallback(p, m, "curve_fit did not converge")
    b1, b2, b3z, b4z = (float(v) for v in best[1])
    return Logistic4Fit("logistic4", (b1, b2, mu + sd * b3z, sd * abs(b4z)), best[0])


def _plcc_mapped(p: np.ndarray, m: np.ndarray, fit: Logistic4Fit) -> float:
    mapped = fit(p)
    if np.all(mapped == mapped[0]):
        return float("nan")
    return float(stats.pearsonr(mapped, m).statistic)


def iqa_metrics(pred: ArrayLike, mos: ArrayLike) -> dict[str, float]:
    """All IQA metrics in one dict.

    Keys: ``srcc``, ``plcc`` (no mapping), ``krcc`` (tau-b), ``rmse`` (no mapping),
    ``plcc_logistic4`` and ``rmse_logistic4`` (after the VQEG 4-parameter logistic mapping).
    Constant input: correlations are NaN (one :class:`ConstantInputWarning`), RMSE still computed.
    """
    p, m = _validate(pred, mos)
    out = {"srcc": float("nan"), "plcc": float("nan"), "krcc": float("nan"), "rmse": rmse(p, m)}
    out.update(plcc_logistic4=float("nan"), rmse_logistic4=float("nan"))
    if _constant(p, m, "SRCC/PLCC/KRCC"):
        return out
    out["srcc"] = float(stats.spearmanr(p, m).statistic)
    out["plcc"] = float(stats.pearsonr(p, m).statistic)
    out["krcc"] = float(stats.kendalltau(p, m).statistic)
    fit = logistic4_fit(p, m)
    out["plcc_logistic4"] = _plcc_mapped(p, m, fit)
    out["rmse_logistic4"] = float(np.sqrt(np.mean((fit(p) - m) ** 2)))
    return out


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - Pearson(pred, target)`` over the batch, differentiable and finite for any input.

    Computed in float32 (or float64 if given); a constant ``pred`` or ``target`` (or a batch of one)
    gives a loss of 1 with a zero gradient instead of NaN.

    Args:
        pred: ``(B,)`` or ``(B, 1)`` predictions.
        target: same number of elements.
        eps: added to each sum of squares.
    """
    p, t = pred.reshape(-1), target.reshape(-1)
    if p.numel() != t.numel():
        raise DgqaError(f"pred and target differ in size: {p.numel()} vs {t.numel()}")
    if p.numel() == 0:
        raise DgqaError("plcc_loss needs a non-empty batch")
    dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
    p, t = p.to(dtype), t.to(dtype)
    pc, tc = p - p.mean(), t - t.mean()
    r = (pc * tc).sum() / torch.sqrt(((pc * pc).sum() + eps) * ((tc * tc).sum() + eps))
    return 1.0 - r
