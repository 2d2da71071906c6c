"""Score a target set with a domain classifier: per-image raw logits averaged over random crops.

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
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dgqa_data import __version__
from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.paths import check_output
from dgqa_data.schema import DISTORTION_NAMES, NUM_CLASSES
from dgqa_train.config import make_accelerator
from dgqa_train.data import CropDataset, load_iqa_dataset
from dgqa_train.models import WEIGHTS_NAME, IQAModel, load_model, load_official_dgqa_checkpoint

SCORES_FILE = "scores.parquet"
SCORES_META = "scores.json"
OFFICIAL_SUFFIXES = (".tar", ".pth", ".pt")


def sha256_file(path: str | Path, chunk: int = 2**20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
        "sha256": sha256_file(weights),
        "format": fmt,
        "backbone": model.config.backbone,
    }
    return model.eval(), identity


@dataclass
class Scores:
    """Per-image averaged logits of a target set, in dataset order."""

    image_ids: list[str]
    logits: np.ndarray  # (M, 26) float32
    meta: dict[str, Any]

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(1)


def load_scores(folder: str | Path) -> Scores:
    """Read a folder written by :func:`score`."""
    folder = Path(folder)
    for name in (SCORES_FILE, SCORES_META):
        if not (folder / name).is_file():
            raise MissingInputError(f"{folder / name} not found: not a folder written by `dgqa score`")
    table = pq.read_table(folder / SCORES_FILE)
    if "logits" not in table.column_names or "image_id" not in table.column_names:
        raise DgqaError(f"{folder / SCORES_FILE}: no image_id/logits columns; not written by `dgqa score`")
    rows = table.column("logits").to_pylist()
    bad = [i for i, r in enumerate(rows) if r is None or len(r) != NUM_CLASSES]
    if bad:
        raise DgqaError(
            f"{folder / SCORES_FILE}: row {bad[0]} has {len(rows[bad[0]] or [])} logits, not {NUM_CLASSES} "
            f"({len(bad)} such row(s)); scores of a {NUM_CLASSES}-way domain classifier are needed"
        )
    logits = np.asarray(rows, dtype=np.float32).reshape(-1, NUM_CLASSES)
    meta = json.loads((folder / SCORES_META).read_text())
    return Scores(table.column("image_id").to_pylist(), logits, meta)


def _write(folder: Path, image_ids: list[str], logits: np.ndarray, meta: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pred = logits.argmax(1)
    table = pa.table(
        {
            "image_id": pa.array(image_ids, pa.string()),
            "logits": pa.array(list(logits), pa.list_(pa.float32(), NUM_CLASSES)),
            "predicted": pa.array(pred, pa.int16()),
            "predicted_domain": pa.array([DISTORTION_NAMES[t] for t in pred], pa.string()),
        }
    )
    tmp = folder / f".{SCORES_FILE}.tmp"
    pq.write_table(table, tmp)
    tmp.replace(folder / SCORES_FILE)
    (folder / SCORES_META).write_text(json.dumps(meta, indent=2) + "\n")


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
) -> Scores:
    """Score every image of ``target`` with ``classifier`` and write ``scores.parquet`` + ``scores.json``.

    Each image gets ``crops`` seeded random crops (the same on any number of processes); the raw
    logits of its crops are averaged. Under ``accelerate launch`` the images are split over the
    processes and gathered exactly.

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

    Returns:
        The scores (on every process).
    """
    out = Path(out)
    check_output(out, {"classifier": classifier, "target": target})
    accelerator = make_accelerator(out, mixed_precision=mixed_precision, seed=seed)
    model, identity = load_classifier(classifier)
    crop_size = crop_size or model.config.crop_size
    with accelerator.main_process_first():
        ds = load_iqa_dataset(target, role="target")
    if len(ds) == 0:
        raise DgqaError(f"target {target} has no images")
    mean, std = model.normalization
    dataset = CropDataset(
        ds, crop_size, num_crops=crops, train=False, label="distortion_type", mean=mean, std=std, seed=seed
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    loader = accelerator.prepare(loader)  # inference only: the model is not wrapped for DDP
    model = model.to(accelerator.device)

    from tqdm.auto import tqdm

    all_logits, all_index = [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc="scoring", disable=not accelerator.is_local_main_process):
            x = batch["pixel_values"]
            if x.ndim == 4:  # crops == 1
                x = x.unsqueeze(1)
            b, n = x.shape[:2]
            with accelerator.autocast():
                logits = model(x.flatten(0, 1))
            logits = logits.float().view(b, n, -1).mean(1)
            logits, index = accelerator.gather_for_metrics((logits, batch["index"]))
            all_logits.append(logits.cpu())
            all_index.append(index.cpu())
    index = torch.cat(all_index).numpy()
    order = np.argsort(index, kind="stable")
    index = index[order]
    if len(index) != len(ds) or not np.array_equal(index, np.arange(len(ds))):
        dup = len(index) - len(np.unique(index))
        missing = len(ds) - len(np.unique(index))
        raise RuntimeError(
            f"scoring gathered {len(index)} results for {len(ds)} images ({dup} duplicated, {missing} missing)"
        )
    logits = torch.cat(all_logits).numpy()[order].astype(np.float32)
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
    )


def main(argv: list[str] | None = None) -> Scores:
    """Entry point of ``accelerate launch dgqa_train/score.py`` / ``-m dgqa_train.score``."""
    from dgqa_train.commands import add_score_arguments

    parser = add_score_arguments(
        argparse.ArgumentParser(prog="dgqa score", description=__doc__.splitlines()[0])
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
