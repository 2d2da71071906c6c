"""Score a target set with a domain classifier: per-image raw logits averaged over random crops.

A classifier trained on content-centred features (``--centre_features``) has its logits centred by
the target's mean; ``dgqa-corrected`` then refines that mean with the target's mixture.

The output folder holds ``scores.parquet`` (``image_id``, ``logits`` (26 floats), ``predicted``,
``predicted_domain``, in dataset order) and ``scores.json`` (classifier path + sha256, target, crops,
seed). Multi-process runs gather exactly (no padded duplicates, no dropped images)::

    dgqa score --classifier runs/cls --target hub/dgqa/livec --out scores/livec
    accelerate launch -m dgqa_train.score --classifier kadis-700k_model_best.pth.tar --target ... --out ...
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script path (accelerate launch dgqa_train/<this>.py): this folder is sys.path[0], and its
    # data.py / evaluate.py / config.py would shadow the installed packages of those names.
    sys.path.pop(0)

import argparse
import json
import os
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dgqa_data import __version__
from dgqa_data.errors import DgqaError, MissingInputError, at_least
from dgqa_data.hub_folder import file_digest
from dgqa_data.paths import check_output, run_lock
from dgqa_data.schema import NUM_CLASSES
from dgqa_data.scores import CONFUSION_FILE, SCORES_FILE, SCORES_META, Scores
from dgqa_data.scores import write_scores as _write  # the table lives in the data layer
from dgqa_data.selection import check_held_out
from dgqa_data.versions import library_versions
from dgqa_train.config import make_accelerator
from dgqa_train.data import CropDataset, load_iqa_dataset, make_loader, norm_tensors
from dgqa_train.evaluate import predict_batches
from dgqa_train.models import WEIGHTS_NAME, IQAModel, load_model
from dgqa_train.official import load_official_dgqa_checkpoint

OFFICIAL_SUFFIXES = (".tar", ".pth", ".pt")


def load_classifier(path: str | Path) -> tuple[IQAModel, dict[str, Any]]:
    """A 26-way classifier and its identity.

    Args:
        path: a folder written by :func:`dgqa_train.models.save_model`, or the official DGQA
            ``.pth.tar`` checkpoint.

    Returns:
        ``(model in eval mode, {"path", "sha256", "format", "backbone"})``; the sha256 is that of
        ``model.safetensors`` (or of the official checkpoint file).
    """
    p = Path(path)
    if p.is_file() and p.suffix in OFFICIAL_SUFFIXES:
        model, weights, fmt = load_official_dgqa_checkpoint(p), p, "official-dgqa"
    elif p.is_dir():
        model, weights, fmt = load_model(p), p / WEIGHTS_NAME, "dgqa"
    else:
        raise MissingInputError(
            f"classifier {p} is neither a saved dgqa model folder nor a .pth.tar checkpoint"
        )
    if model.task != "classify" or model.config.num_outputs != NUM_CLASSES:
        raise DgqaError(
            f"{p} is a {model.task} model with {model.config.num_outputs} outputs, not a {NUM_CLASSES}-way domain classifier"
        )
    identity = {
        "path": str(p.resolve()),
        "sha256": file_digest(weights),
        "format": fmt,
        "backbone": model.config.backbone,
    }
    return model.eval(), identity


def held_out_confusion(classifier: str | Path) -> dict[str, Any] | None:
    """The held-out record saved beside a classifier (confusion matrix and training prior; None: the
    official checkpoint, or a classifier trained without a held-out set)."""
    path = Path(classifier) / CONFUSION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        check_held_out(data, str(path))
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise DgqaError(f"{path}: not a confusion matrix written by dgqa ({err})") from None
    return data


def score(
    classifier: str | Path,
    target: str,
    out: str | Path,
    crops: int = 5,
    crop_size: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    num_workers: int = 0,
    mixed_precision: str = "no",
    overwrite: bool = False,
) -> Scores:
    """Score every image of ``target`` with ``classifier`` and write ``scores.parquet`` + ``scores.json``.

    Each image gets ``crops`` seeded random crops (the same on any number of processes); the raw
    logits of its crops are averaged. Under ``accelerate launch`` the images are split over the
    processes and gathered exactly. ``out`` follows the output-folder rule
    (:func:`dgqa_data.paths.check_folder`); process 0 holds its lock, and a run that fails before
    writing leaves no folder behind.

    Args:
        classifier: saved model folder or official ``.pth.tar`` checkpoint.
        target: dataset folder or Hub id, optionally ``"<spec>:<split>"``.
        out: output folder.
        crops: random crops per image.
        crop_size: crop side; default: the classifier's ``crop_size``.
        batch_size: images per process and step (each contributes ``crops`` crops).
        seed: seed of the crops.
        num_workers: dataloader workers.
        mixed_precision: ``no``, ``fp16`` or ``bf16``.
        overwrite: write into a non-empty folder that is not an earlier ``dgqa score`` output (files
            dgqa did not write are never replaced).

    Returns:
        The scores (on every process).
    """
    out = Path(out)
    check_output(out, {"classifier": classifier, "target": target})
    claim = {"verb": "score", "overwrite": overwrite, "writes": (SCORES_FILE, SCORES_META), "known": (SCORES_META,)}
    with run_lock(out, main_process=int(os.environ.get("RANK", "0")) == 0, claim=claim):
        return _score(classifier, target, out, crops, crop_size, batch_size, seed, num_workers, mixed_precision)


def _score(classifier, target, out: Path, crops, crop_size, batch_size, seed, num_workers, mixed_precision) -> Scores:
    accelerator = make_accelerator(out, mixed_precision=mixed_precision, seed=seed)
    model, identity = load_classifier(classifier)
    crop_size = crop_size or model.config.crop_size
    with accelerator.main_process_first():
        ds = load_iqa_dataset(target, role="target")
    if len(ds) == 0:
        raise DgqaError(f"target {target} has no images")
    dataset = CropDataset(ds, crop_size, crops, train=False, label="distortion_type", seed=seed, name=f"target {target}")
    loader = accelerator.prepare(make_loader(dataset, batch_size, seed, False, num_workers))
    model = model.to(accelerator.device)  # inference only: the model is not wrapped for DDP
    mean, std = norm_tensors(model, accelerator.device)
    bar = tqdm(loader, desc="scoring", unit="batch", disable=not accelerator.is_local_main_process)
    index, logits, _ = predict_batches(model, bar, mean, std, accelerator)
    if not np.array_equal(index, np.arange(len(ds))):
        raise RuntimeError(f"scoring gathered {len(index)} results for {len(ds)} images")
    confusion = held_out_confusion(classifier)
    centring = (confusion or {}).get("centring")
    if centring is not None:  # trained on content-centred features: centre by the target's mean (rules refine it)
        logits = logits - (logits.mean(0) - np.asarray(centring["bias"]))
    logits = logits.astype(np.float32)
    image_ids = ds["image_id"] if "image_id" in ds.column_names else [str(i) for i in range(len(ds))]
    meta = {
        "classifier": identity,
        "target": target,
        "num_images": len(ds),
        "crops": crops,
        "crop_size": crop_size,
        "seed": seed,
        "mixed_precision": mixed_precision,
        "num_processes": accelerator.num_processes,
        "dgqa_version": __version__,
        "versions": library_versions(),
        "confusion": confusion,
        "centred": centring is not None,
    }
    if accelerator.is_main_process:
        _write(out, image_ids, logits, meta)
        accelerator.print(f"scored {len(ds)} images of {target} -> {out / SCORES_FILE}")
    accelerator.wait_for_everyone()
    return Scores(image_ids, logits, meta)


def run(args: argparse.Namespace) -> Scores:
    """Run :func:`score` from parsed flags."""
    return score(
        args.classifier,
        args.target,
        args.out,
        crops=args.crops,
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        seed=args.seed,
        num_workers=args.num_workers,
        mixed_precision=args.mixed_precision,
        overwrite=args.overwrite,
    )


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa score`` (also those of ``accelerate launch dgqa_train/score.py``)."""
    p.add_argument("--classifier", required=True, help="saved classifier folder or official DGQA .pth.tar")
    p.add_argument(
        "--target", required=True, help="target dataset folder or Hub id, optionally '<spec>:<split>'"
    )
    p.add_argument("--out", required=True, help="output folder (scores.parquet + scores.json)")
    p.add_argument("--crops", type=at_least(1), default=5, help="random crops per image (default 5)")
    p.add_argument(
        "--crop-size", "--crop_size", type=at_least(1), default=None, help="default: the classifier's (224)"
    )
    p.add_argument(
        "--batch-size", "--batch_size", type=at_least(1), default=16, help="images per process and step"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random crops")
    p.add_argument("--num-workers", "--num_workers", type=at_least(0), default=0, help="dataloader workers")
    p.add_argument("--mixed-precision", "--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty folder that dgqa score did not write (its files are kept)",
    )
    return p


def main(argv: list[str] | None = None) -> Scores:
    """Entry point of ``accelerate launch dgqa_train/score.py`` / ``-m dgqa_train.score``."""
    parser = add_arguments(
        argparse.ArgumentParser(prog="dgqa score", description=__doc__.splitlines()[0], allow_abbrev=False)
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    from dgqa_data.cli import guarded

    sys.exit(guarded("dgqa score", main))
