"""The linear-probe protocol (as in CONTRIQUE and ARNIQA): a frozen pretrained backbone, features
extracted once and cached (:mod:`dgqa_train.features`), and a light head (ridge regression or a small
MLP) per training set.

On a CPU this is what makes many (training set x seed) comparisons affordable: the backbone runs
once per image, and every head trains in seconds. Features are cached per image, keyed by the
sha256 of its encoded bytes, so a subset of a dataset whose features are known costs nothing::

    dgqa probe --train hub/dgqa/kadid10k-sel-livec hub/dgqa/kadid10k-all --eval hub/dgqa/livec \\
        --backbone efficientnet-lite0 --crop_size 224 --seeds 3 --out runs/probe
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgqa_data.atomic import write_json
from dgqa_data.errors import DgqaError, at_least
from dgqa_data.paths import check_output, run_lock
from dgqa_train.data import load_iqa_dataset, reference_groups
from dgqa_train.evaluate import json_safe
from dgqa_train.features import FeatureCache, backbone_id, extract_features
from dgqa_train.models import build_model

HEADS = ("ridge", "mlp")
RIDGE_ALPHAS = tuple(10.0**k for k in range(0, 7))


# -- heads ----------------------------------------------------------------------------------------
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass
class Standardizer:
    """Per-feature z-scoring fitted on the training features."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        return cls(x.mean(0), x.std(0) + 1e-6)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale


def fit_ridge(
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str] | None = None,
    seed: int = 0,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    folds: int = 3,
) -> tuple[Predictor, dict]:
    """Ridge regression on z-scored features, the penalty chosen by ``folds``-fold cross-validation
    on the training set alone, with whole groups (reference images) kept in one fold.

    Grouping matters: every distorted version of a reference shares its content, so a plain
    (leave-one-image-out) criterion rewards memorising content and picks far too weak a penalty.

    Args:
        x, y: training features and labels.
        groups: group of every row (``reference_id``); None = every row its own group.
        seed: seeds the assignment of groups to folds.
        alphas: the penalties tried.
        folds: number of folds.

    Returns:
        ``(predict, {"alpha": chosen penalty, "cv_mse": its cross-validated MSE})``.
    """
    z = Standardizer.fit(x)
    xs = z(x).astype(np.float64)
    y = np.asarray(y, np.float64)
    keys = np.asarray(groups if groups is not None else np.arange(len(y)).astype(str))
    uniq, inverse = np.unique(keys, return_inverse=True)
    fold = np.random.default_rng(seed).permutation(len(uniq))[inverse] % max(2, min(folds, len(uniq)))
    sq_err = np.zeros(len(alphas))
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        mu = y[tr].mean()
        if tr.sum() >= xs.shape[1]:  # primal: eigenvectors of X'X (features x features)
            evals, evecs = np.linalg.eigh(xs[tr].T @ xs[tr])
            proj, coef = xs[te] @ evecs, evecs.T @ (xs[tr].T @ (y[tr] - mu))
        else:  # dual: eigenvectors of XX' (rows x rows), cheaper with fewer rows than features
            evals, evecs = np.linalg.eigh(xs[tr] @ xs[tr].T)
            proj, coef = xs[te] @ xs[tr].T @ evecs, evecs.T @ (y[tr] - mu)
        for i, a in enumerate(alphas):
            sq_err[i] += np.sum((proj @ (coef / (evals + a)) + mu - y[te]) ** 2)
    best = int(np.argmin(sq_err))
    alpha, mu = float(alphas[best]), float(y.mean())
    n, d = xs.shape
    if n >= d:
        w = np.linalg.solve(xs.T @ xs + alpha * np.eye(d), xs.T @ (y - mu))
    else:
        w = xs.T @ np.linalg.solve(xs @ xs.T + alpha * np.eye(n), y - mu)
    return (lambda f: z(f) @ w + mu), {"alpha": alpha, "cv_mse": float(sq_err[best] / len(y))}


def fit_mlp(
    x: np.ndarray, y: np.ndarray, seed: int = 0, hidden: int = 256, epochs: int = 60, lr: float = 1e-3
) -> tuple[Predictor, dict]:
    """One-hidden-layer MLP (ReLU, dropout 0.1) on z-scored features, AdamW, MSE, batches of 64; the
    seed sets the initialisation and the batch order.

    It has its own few-line loop, not the training loop (:mod:`dgqa_train.loop`), by design: the
    features are cached and already in memory, so there is no input pipeline (no decoding, crops,
    augmentation or workers); a fit takes seconds on a CPU in one process, so there is nothing to
    distribute, checkpoint or resume; and it is deterministic for a seed, as the per-seed comparison
    needs. Accelerate, mixed precision, checkpoints and trackers would add set-up and settings, no
    benefit.

    Returns:
        ``(predict, {"epochs": epochs, "hidden": hidden})``.
    """
    z = Standardizer.fit(x)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(hidden, 1),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    xt = torch.from_numpy(z(x).astype(np.float32))
    yt = torch.from_numpy(np.asarray(y, np.float32))
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            loss = torch.nn.functional.mse_loss(net(xt[idx]).squeeze(-1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def predict(f: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(z(f).astype(np.float32))).squeeze(-1).numpy()

    return predict, {"epochs": epochs, "hidden": hidden}


def fit_head(
    head: str, x: np.ndarray, y: np.ndarray, seed: int = 0, groups: Sequence[str] | None = None
) -> tuple[Predictor, dict]:
    """Fit ``ridge`` (the seed sets its cross-validation folds) or ``mlp`` (the seed sets init and order)."""
    if head == "ridge":
        return fit_ridge(x, y, groups=groups, seed=seed)
    if head == "mlp":
        return fit_mlp(x, y, seed=seed)
    raise DgqaError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")


# -- the protocol ---------------------------------------------------------------------------------
def labelled(ds: Any, spec: str, role: str) -> np.ndarray:
    """The ``quality`` column as float32, or an error naming the dataset, its role and the rows."""
    q = ds["quality"] if "quality" in ds.column_names else [None] * len(ds)
    missing = [i for i, v in enumerate(q) if v is None]
    if missing:
        raise DgqaError(
            f"{role} dataset {spec}: {len(missing)} of {len(q)} row(s) have no quality label "
            f"(first rows {missing[:3]}); the linear probe needs labelled {role} data"
        )
    return np.asarray(q, np.float32)


def probe(
    train: Sequence[str],
    eval_spec: str,
    *,
    backbone: str = "efficientnet-lite0",
    pretrained: bool = True,
    features: str = "multilevel",
    crop_size: int = 224,
    head: str = "ridge",
    seeds: Sequence[int] = (0, 1, 2),
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Fit a head on each training set and seed, and evaluate it on ``eval_spec``.

    Args:
        train: training dataset folders / Hub ids (``<spec>:<split>`` allowed).
        eval_spec: the labelled evaluation set.
        backbone, pretrained: the frozen backbone (see :func:`dgqa_train.backbones.build_backbone`).
        features: ``multilevel`` (pooled output + mean/std of every stage, the default: they carry
            the low-level statistics quality depends on) or ``pooled``.
        crop_size: centre-crop side fed to the backbone.
        head: ``ridge`` or ``mlp``.
        seeds: one fit per seed (a ridge head gives the same result for every seed).
        cache_dir: feature cache folder (default: none, features recomputed).
        progress: show progress bars.

    Returns:
        One record per (training set, seed): ``train``, ``seed``, ``train_images``, ``srcc``,
        ``plcc`` and the other :func:`dgqa_train.metrics.iqa_metrics`, and the head's settings.
    """
    from dgqa_train.metrics import iqa_metrics

    if head not in HEADS:
        raise DgqaError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    # every dataset is loaded and checked before the backbone runs: a bad one fails fast, writing nothing
    eval_ds = load_iqa_dataset(eval_spec, role="evaluation")
    y_eval = labelled(eval_ds, eval_spec, "evaluation")
    train_sets = []
    for spec in train:
        ds = load_iqa_dataset(spec)
        train_sets.append((spec, ds, labelled(ds, spec, "training")))
    model = build_model(
        backbone, task="regress", pretrained=pretrained, crop_size=crop_size, features=features
    )
    cache = FeatureCache(cache_dir, backbone_id(model, crop_size)) if cache_dir else None
    x_eval = extract_features(
        model, eval_ds, crop_size, cache, desc=f"features {eval_spec}", progress=progress
    )
    records = []
    for spec, ds, y in train_sets:
        x = extract_features(model, ds, crop_size, cache, desc=f"features {spec}", progress=progress)
        groups = reference_groups(ds)
        for seed in seeds:
            predict, info = fit_head(head, x, y, seed, groups)
            pred = predict(x_eval)
            metrics = iqa_metrics(pred, y_eval)
            records.append(
                {"train": spec, "seed": int(seed), "train_images": len(y), "head": head, **info, **metrics}
            )
            undefined = [k for k, v in metrics.items() if not math.isfinite(v)]
            if undefined:  # written as null, with the reason
                constant = [n for n, a in (("predictions", pred), ("evaluation labels", y_eval)) if np.ptp(a) == 0]
                records[-1]["undefined"] = (
                    f"{', '.join(undefined)} undefined (null): the {' and the '.join(constant) or 'inputs'} "
                    "are constant, so there is no ranking or linear trend to measure"
                )
    return records


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa probe``."""
    p.add_argument("--train", nargs="+", required=True, help="training dataset folder(s) or Hub id(s)")
    p.add_argument("--eval", required=True, help="labelled evaluation dataset, optionally '<spec>:<split>'")
    p.add_argument("--out", required=True, help="output folder (probe.json)")
    p.add_argument(
        "--backbone", default="efficientnet-lite0", help="frozen backbone (default efficientnet-lite0)"
    )
    p.add_argument(
        "--no-pretrained", "--no_pretrained", action="store_true", help="random backbone weights (a baseline)"
    )
    p.add_argument(
        "--features",
        choices=["multilevel", "pooled"],
        default="multilevel",
        help="multilevel (pooled output + mean/std of every stage; default) or pooled",
    )
    p.add_argument(
        "--crop-size",
        "--crop_size",
        type=at_least(1),
        default=224,
        help="centre-crop side in pixels (default 224)",
    )
    p.add_argument(
        "--head", choices=HEADS, default="ridge", help="ridge (GCV penalty) or mlp (default ridge)"
    )
    p.add_argument(
        "--seeds", type=at_least(1), default=3, help="fits per training set, seeds 0..N-1 (default 3)"
    )
    p.add_argument(
        "--cache-dir", "--cache_dir", default=None, help="feature cache folder (default <out>/features)"
    )
    return p


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``dgqa probe``: fit, print a table, write ``<out>/probe.json``."""
    out = Path(args.out)
    inputs = {f"training dataset {i + 1}": s for i, s in enumerate(args.train)} | {"eval dataset": args.eval}
    check_output(out, inputs)
    if args.cache_dir:
        check_output(args.cache_dir, inputs, "--cache-dir")
    with run_lock(out, claim={"verb": "probe", "known": ("probe.json",)}):  # a failed run leaves no folder it made
        records = probe(
            args.train,
            args.eval,
            backbone=args.backbone,
            pretrained=not args.no_pretrained,
            features=args.features,
            crop_size=args.crop_size,
            head=args.head,
            seeds=range(args.seeds),
            cache_dir=args.cache_dir or out / "features",
        )
        write_json(out / "probe.json", json_safe(records))  # a second run into the same folder replaces it whole
    for r in records:
        print(
            f"{r['train']}  seed {r['seed']}  SRCC {r['srcc']:.4f}  PLCC {r['plcc']:.4f}  ({r['train_images']} images)"
            + (f"  note: {r['undefined']}" if "undefined" in r else "")
        )
    print(f"wrote {out / 'probe.json'}")
    return records
