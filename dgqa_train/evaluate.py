"""Evaluation of a quality regressor: mean over seeded test crops, exact multi-process gathering,
and the IQA metrics of :mod:`dgqa_train.metrics`, reported separately and labelled.

Predictions are gathered with ``accelerator.gather_for_metrics`` together with each row's index and
sorted by it, so an evaluation on N processes returns the very arrays (and metrics) of one process.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from dgqa_train.data import to_model_input
from dgqa_train.metrics import iqa_metrics

#: Metric keys of every eval entry and what they mean.
METRIC_LABELS: dict[str, str] = {
    "srcc": "SRCC",
    "plcc": "PLCC (no mapping)",
    "krcc": "KRCC (tau-b)",
    "rmse": "RMSE (no mapping, quality scale [0, 1])",
    "plcc_logistic4": "PLCC after a 4-parameter logistic fit",
    "rmse_logistic4": "RMSE after a 4-parameter logistic fit",
}


def predict_batches(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    mean: torch.Tensor,
    std: torch.Tensor,
    accelerator: Any = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's outputs for every row of a loader, averaged over each row's crops, gathered exactly.

    Args:
        model: a regressor or classifier (unwrapped); put in eval mode here.
        batches: batches with ``pixel_values`` (uint8 crops ``(B, 3, S, S)`` or ``(B, n, 3, S, S)``, or
            cached float features ``(B, D)``), ``labels`` and ``index`` (a prepared loader when
            ``accelerator`` is given).
        mean: ``(3, 1, 1)`` normalisation mean on the model's device.
        std: ``(3, 1, 1)`` normalisation std.
        accelerator: gathers across processes (duplicates from even-batch padding are dropped) and
            autocasts; None evaluates in this process on ``mean.device``.
        dtype: of the outputs (float64: exact crop means for the metrics; float32 halves the memory
            of wide outputs such as features).

    Returns:
        ``(index, output, label)`` sorted by index, identical on every process: output is ``dtype``
        ``(N,)`` for a one-output model (a regressor), ``(N, K)`` otherwise (mean logits).
    """
    was_training = model.training
    model.eval()
    parts: list[dict[str, torch.Tensor]] = []
    full = 0
    with torch.no_grad():
        for batch in batches:
            x = batch["pixel_values"].to(mean.device, non_blocking=True)
            b = x.shape[0]
            if x.ndim == 5:  # (B, n, 3, S, S): every crop is a row of the forward pass
                x = x.flatten(0, 1)
            rows = x.shape[0]
            # Every forward pass gets the same shape and layout (a short last batch is padded), so a row's
            # output does not depend on how rows are split into batches or across processes (kernels pick
            # their algorithm by shape): 1-process and N-process evaluations agree to the last bit.
            full = max(full, rows)
            if rows < full:
                x = torch.cat([x, x[:1].expand(full - rows, *x.shape[1:])])
            x = to_model_input(x, mean, std)
            if accelerator is not None:
                with accelerator.autocast():
                    out = model(x)
            else:
                out = model(x)
            out = out.to(dtype).reshape(full, -1)
            out = out.reshape(full // (rows // b), rows // b, out.shape[1]).mean(dim=1)[:b]  # mean over crops
            part = {
                "index": batch["index"].to(mean.device),
                "pred": out[:, 0] if out.shape[1] == 1 else out,
                "label": batch["labels"].to(mean.device).double(),
            }
            parts.append(accelerator.gather_for_metrics(part) if accelerator is not None else part)
    model.train(was_training)
    if not parts:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    index = torch.cat([p["index"] for p in parts]).cpu().numpy()
    pred = torch.cat([p["pred"] for p in parts]).cpu().numpy()
    label = torch.cat([p["label"] for p in parts]).cpu().numpy()
    order = np.argsort(index, kind="stable")
    index, pred, label = index[order], pred[order], label[order]
    if np.unique(index).size != index.size:
        raise RuntimeError(
            "evaluation gathered duplicate rows: the eval loader was not prepared by Accelerate"
        )
    return index, pred, label


def score_metrics(pred: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """All IQA metrics of one eval set; never raises.

    Constant predictions give NaN correlations with a warning (kept under ``"warnings"``); fewer than
    two rows or non-finite predictions give NaN everywhere with the reason under ``"warnings"``.
    """
    out: dict[str, Any] = dict.fromkeys(METRIC_LABELS, math.nan)
    out["n"] = int(pred.size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out.update(iqa_metrics(pred, label))
        except ValueError as err:  # too few rows, NaN/inf predictions (diverged run), NaN labels
            warnings.warn(f"metrics undefined: {err}", stacklevel=2)
    messages = [str(w.message) for w in caught]
    for w in caught:  # re-emit for the caller and the log
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if messages:
        out["warnings"] = messages
    return out


def evaluate_loader(
    model: torch.nn.Module, loader: Iterable[dict[str, torch.Tensor]], accelerator: Any, mean, std
) -> dict[str, Any]:
    """Gathered predictions of ``loader`` -> :func:`score_metrics`."""
    _, pred, label = predict_batches(model, loader, mean, std, accelerator)
    return score_metrics(pred, label)


def json_safe(obj: Any) -> Any:
    """Recursively replace NaN/inf by None and numpy scalars by Python numbers (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
