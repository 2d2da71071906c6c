"""Training throughput: input pipeline alone vs. model step alone vs. both (not a test).

Builds a small synthetic KADID-like dataset folder (512x384 JPEG photos from scikit-image, randomly
shifted and blurred, with a ``quality`` label) and measures images/s of

- ``pipeline``: the training DataLoader of dgqa_train.train (decode + random crop + flip in workers,
  uint8 to the device, normalise there), no model;
- ``model``: forward + L1 loss + backward + AdamW step on synthetic uint8 tensors already on the device;
- ``both``: the real training step fed by the real loader.

If ``both`` is well below ``model``, the input pipeline starves the model.

Usage:
    python benchmarks/train_throughput.py [--backbones tiny-resnet,resnet50] [--batch-size 16]
        [--batches 4] [--workers 2] [--images 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def make_synthetic_dataset(
    folder: str | Path, n: int, size: tuple[int, int] = (512, 384), seed: int = 0
) -> str:
    """A dgqa dataset folder of ``n`` KADID-like JPEG images (W x H = ``size``) with quality labels.

    Each image is a randomly zoomed and shifted view of a scikit-image photo, blurred by a random
    amount, JPEG-encoded at quality 90; ``quality`` decreases with the blur.
    """
    import datasets
    from skimage import data

    from dgqa_data.schema import base_features

    rng = np.random.default_rng(seed)
    w, h = size
    photos = []
    for name in PHOTOS:
        img = getattr(data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        photos.append(Image.fromarray(img))
    rows = {k: [] for k in base_features()}
    views: dict[tuple[int, int], Image.Image] = {}  # (photo, zoom) -> resized photo, reused
    for i in range(n):
        key = (i % len(photos), int(rng.integers(0, 4)))
        if key not in views:
            src = photos[key[0]]
            scale = max(w / src.width, h / src.height) * (1.0 + 0.2 * key[1])
            views[key] = src.resize(
                (round(src.width * scale) + 1, round(src.height * scale) + 1), Image.BILINEAR
            )
        big = views[key]
        x, y = int(rng.integers(0, big.width - w + 1)), int(rng.integers(0, big.height - h + 1))
        level = int(rng.integers(1, 6))
        img = big.crop((x, y, x + w, y + h)).filter(ImageFilter.GaussianBlur(0.5 * (level - 1)))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        name = f"img{i:05d}.jpg"
        quality = 1.0 - 0.2 * (level - 1)
        values = {
            "image": {"bytes": buf.getvalue(), "path": name},
            "image_id": name,
            "reference_id": None,
            "mos": 1 + 4 * quality,
            "mos_std": None,
            "quality": quality,
            "distortion_type": 1,
            "distortion_level": level,
            "domain": "gaussian_blur",
            "corpus": "synthetic",
        }
        for k in rows:
            rows[k].append(values[k])
    out = Path(folder)
    (out / "data").mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset.from_dict(rows, features=base_features())
    ds.to_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    return str(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    dataset: str,
    backbone: str,
    batch_size: int,
    batches: int,
    workers: int,
    crop: int = 224,
    device: str | None = None,
    bf16: bool = False,
    warmup: int = 2,
) -> dict:
    """images/s of pipeline-only, model-only and both for one backbone (steps as in dgqa_train.train)."""
    from dgqa_train.data import CropDataset, load_iqa_dataset, make_loader, to_model_input
    from dgqa_train.train import TrainConfig, build_optimizer, build_regressor, loss_fn

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = TrainConfig(train_dataset=dataset, backbone=backbone, pretrained=False, crop_size=crop)
    model = build_regressor(cfg).to(dev).train()
    opt = build_optimizer(model, cfg)
    mean = torch.tensor(model.normalization[0], device=dev).view(3, 1, 1)
    std = torch.tensor(model.normalization[1], device=dev).view(3, 1, 1)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with amp:
            pred = model(to_model_input(x, mean, std))
        loss = loss_fn("l1", pred, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ds = load_iqa_dataset(dataset)
    loader = make_loader(CropDataset(ds, crop, 1, train=True, seed=0), batch_size, 0, True, workers)

    def batches_forever():
        epoch = 0
        while True:
            loader.sampler.set_epoch(epoch)
            for b in loader:
                yield b["pixel_values"].to(dev, non_blocking=True), b["labels"].to(dev, non_blocking=True)
            epoch += 1

    def timed(fn, n: int) -> float:
        for _ in range(warmup):
            fn()
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(dev)
        return n * batch_size / (time.perf_counter() - t0)

    it = batches_forever()

    def pipeline_only() -> None:
        x, _ = next(it)
        to_model_input(x, mean, std)

    x_syn = torch.randint(0, 256, (batch_size, 3, crop, crop), dtype=torch.uint8, device=dev)
    y_syn = torch.rand(batch_size, device=dev)
    result = {"backbone": backbone, "batch_size": batch_size, "workers": workers, "crop": crop}
    result["device"] = (
        torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    )
    result["pipeline_img_s"] = timed(pipeline_only, batches)
    result["model_img_s"] = timed(lambda: step(x_syn, y_syn), batches)
    result["both_img_s"] = timed(lambda: step(*next(it)), batches)
    result["both_over_model"] = result["both_img_s"] / result["model_img_s"]
    return result


def markdown(rows: list[dict]) -> str:
    """A markdown table of :func:`measure` results."""
    out = [
        "| backbone | device | batch | workers | pipeline img/s | model img/s | both img/s | both / model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['backbone']} | {r['device']} | {r['batch_size']} | {r['workers']} | {r['pipeline_img_s']:.1f} | "
            f"{r['model_img_s']:.1f} | {r['both_img_s']:.1f} | {r['both_over_model']:.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="tiny-resnet,resnet50")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=4, help="timed batches per measurement (after 2 warm-up)")
    p.add_argument("--workers", type=int, default=max(1, min(4, (os.cpu_count() or 2) - 1)))
    p.add_argument("--images", type=int, default=64, help="images in the synthetic dataset")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dgqa-throughput-") as tmp:
        ds = make_synthetic_dataset(Path(tmp) / "ds", args.images)
        rows = [
            measure(ds, b.strip(), args.batch_size, args.batches, args.workers, args.crop)
            for b in args.backbones.split(",")
        ]
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
