"""Score images with a trained regressor: ``dgqa predict --model DIR IMAGES... | --dataset D``.

The score of an image is the mean over ``crops`` seeded random crops (the same crops the training
run's evaluation uses for the same seed), clipped to [0, 1]: the ``quality`` scale of dgqa datasets.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from dgqa_data.atomic import write_atomic
from dgqa_data.csv_cells import escape_row
from dgqa_data.errors import DgqaError, MissingInputError, OutputExistsError, at_least
from dgqa_data.paths import check_output
from dgqa_train.data import CropDataset, make_loader, norm_tensors
from dgqa_train.evaluate import predict_batches
from dgqa_train.models import IQAModel, load_model


def _scores(
    model: IQAModel,
    ds: datasets.Dataset,
    crops: int,
    seed: int,
    batch_size: int,
    workers: int,
    progress: bool = True,
) -> np.ndarray:
    if model.task != "regress":
        raise DgqaError(
            f"the model is a {model.task} model with {model.config.num_outputs} outputs (a domain classifier?), "
            "not a quality regressor: `dgqa score` gives a classifier's domain logits"
        )
    device = next(model.parameters()).device
    data = CropDataset(ds, model.config.crop_size, crops, train=False, seed=seed)
    loader = make_loader(data, batch_size, seed, train=False, num_workers=workers)
    mean, std = norm_tensors(model, device)
    batches = tqdm(loader, desc="predicting", unit="batch", disable=not progress or len(ds) <= batch_size)
    _, pred, _ = predict_batches(model, batches, mean, std)
    return np.clip(pred, 0.0, 1.0)


def predict_files(
    model: IQAModel | str | Path,
    paths: Sequence[str | Path],
    crops: int = 5,
    seed: int = 123,
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> list[float]:
    """Quality in [0, 1] of each image file, in order.

    Args:
        model: a regressor or a folder written by training (``load_model``).
        paths: image files (any format Pillow reads).
        crops: seeded crops averaged per image.
        seed: crop seed (training uses ``--seed``, 123 by default).
        batch_size: images per forward pass.
        num_workers: DataLoader workers decoding images.
        progress: show a progress bar (batches) when there is more than one batch.
    """
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise MissingInputError(f"image file(s) not found: {', '.join(missing[:10])}")
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    rows = {"image": [{"bytes": None, "path": str(p)} for p in paths], "quality": [float("nan")] * len(paths)}
    feats = datasets.Features({"image": datasets.Image(decode=False), "quality": datasets.Value("float32")})
    ds = datasets.Dataset.from_dict(rows, features=feats)
    return _scores(model, ds, crops, seed, batch_size, num_workers, progress).tolist()


def predict_dataset(
    model: IQAModel | str | Path,
    spec: str,
    crops: int = 5,
    seed: int = 123,
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> list[tuple[str, float]]:
    """``(image_id, quality in [0, 1])`` for every row of a dgqa dataset split (``PATH[:SPLIT]``)."""
    from dgqa_train.data import load_iqa_dataset

    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    ds = load_iqa_dataset(spec, role="prediction")
    if "quality" not in ds.column_names or any(q is None for q in ds["quality"]):
        ds = ds.remove_columns([c for c in ("quality",) if c in ds.column_names])
        ds = ds.add_column("quality", [float("nan")] * len(ds))  # unlabeled target sets score fine
    scores = _scores(model, ds, crops, seed, batch_size, num_workers, progress)
    return list(zip(ds["image_id"], scores.tolist()))


def run(args: argparse.Namespace) -> None:
    """``dgqa predict``: one ``image<TAB>quality`` line per image on stdout, optionally a CSV."""
    if bool(args.images) == bool(args.dataset):
        raise DgqaError("give image files or --dataset (exactly one of them)")
    if args.out:
        inputs = {"model": args.model, "dataset": args.dataset, **{f"image {p}": p for p in args.images}}
        check_output(args.out, inputs)
        _check_csv_out(Path(args.out), args.overwrite)
    model = load_model(args.model)
    if torch.cuda.is_available():
        model = model.cuda()
    kw = {
        "crops": args.crops,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
    }
    skipped: list[tuple[str, str]] = []
    images = list(args.images)
    if args.skip_bad and images:
        from dgqa_data.images import ImageDecodeError, open_rgb

        for path in list(images):
            try:
                open_rgb(path)
            except (ImageDecodeError, OSError) as err:
                skipped.append((path, str(err)))
                images.remove(path)
    if args.dataset:
        rows = predict_dataset(model, args.dataset, **kw)
    else:
        rows = list(zip(images, predict_files(model, images, **kw))) if images else []
    for name, q in rows:
        sys.stdout.write(f"{name}\t{q:.6f}\n")
    for name, reason in skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if args.out:
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(CSV_HEADER)
        w.writerows(escape_row((name, f"{q:.6f}", "")) for name, q in rows)
        w.writerows(escape_row((name, "", reason)) for name, reason in skipped)
        write_atomic(args.out, buf.getvalue())


#: The header of the CSV ``--out`` writes (how a later run knows the file is predict's own).
CSV_HEADER = ["image", "quality", "skipped"]


def _check_csv_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that exists and is not an earlier ``dgqa predict`` CSV, unless ``--overwrite``."""
    if out.is_dir():
        raise OutputExistsError(f"--out {out} is a folder; give the CSV file to write")
    if not out.exists() or overwrite:
        return
    try:
        with open(out, newline="", encoding="utf-8") as f:
            own = next(csv.reader(f), None) == CSV_HEADER
    except (UnicodeDecodeError, csv.Error):
        own = False
    if not own:
        raise OutputExistsError(
            f"--out {out} exists and is not a CSV written by dgqa predict; pass --overwrite to replace it"
        )


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa predict``."""
    p.add_argument("images", nargs="*", help="image files to score")
    p.add_argument("--model", required=True, help="folder written by `dgqa train`")
    p.add_argument("--dataset", help="score every row of this dataset (PATH[:SPLIT]) instead of files")
    p.add_argument("--out", help="also write a CSV (image,quality)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out even if it is not an earlier predict CSV"
    )
    p.add_argument("--crops", type=at_least(1), default=5, help="seeded crops averaged per image")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip images that cannot be decoded (listed on stderr and in --out) instead of failing",
    )
    p.add_argument("--seed", type=int, default=123, help="crop seed")
    p.add_argument("--batch-size", type=at_least(1), default=16)
    p.add_argument("--num-workers", type=at_least(0), default=0)
    return p
