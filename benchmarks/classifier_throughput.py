"""Throughput of the DGQA domain classifier: scoring and training, model compute only.

* ``score``: target images scored per second, each image = ``--crops`` crops of ``--crop-size``
  (5 x 224 as in DGQA), forward only, logits averaged per image;
* ``train``: training images per second, one crop per image, forward + backward + AdamW step.

Weights are random (built from the config; speed does not depend on them). Inputs are random
normalised tensors, so data loading and decoding are not included: this is the ceiling a
dataloader has to feed. Warm-up steps are excluded.

Usage::

    python benchmarks/classifier_throughput.py [--threads 2] [--steps 3] [--json]

``benchmarks/gpu_classifier_bench.py`` runs the same measurements on CUDA in bf16.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import torch

from dgqa_train.models import build_model


@dataclass
class Result:
    task: str
    backbone: str
    device: str
    precision: str
    batch_images: int
    crops: int
    crop_size: int
    images_per_s: float
    ms_per_batch: float


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device: str, precision: str):
    if precision == "fp32":
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, precision))


def bench_score(
    backbone: str,
    batch_images: int = 4,
    crops: int = 5,
    crop_size: int = 224,
    steps: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
) -> Result:
    """Images per second scored with ``crops`` crops each (forward, average of logits)."""
    model = build_model(backbone, task="classify", pretrained=False, crop_size=crop_size).eval().to(device)
    x = torch.randn(batch_images * crops, 3, crop_size, crop_size, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(device, precision):
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                tic = time.perf_counter()
            model(x).float().view(batch_images, crops, -1).mean(1)
        _sync(device)
    dt = (time.perf_counter() - tic) / steps
    return Result(
        "score", backbone, device, precision, batch_images, crops, crop_size, batch_images / dt, dt * 1e3
    )


def bench_train(
    backbone: str,
    batch_images: int = 8,
    crop_size: int = 224,
    steps: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
) -> Result:
    """Training images per second (cross-entropy over 26 classes, AdamW)."""
    model = build_model(backbone, task="classify", pretrained=False, crop_size=crop_size).train().to(device)
    x = torch.randn(batch_images, 3, crop_size, crop_size, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 26, (batch_images,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            tic = time.perf_counter()
        with _autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    dt = (time.perf_counter() - tic) / steps
    return Result(
        "train", backbone, device, precision, batch_images, 1, crop_size, batch_images / dt, dt * 1e3
    )


def markdown(results: list[Result], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| task | backbone | device | precision | batch (images) | crops x size | images/s | ms/batch |",
        "|---|---|---|---|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.task} | {r.backbone} | {r.device} | {r.precision} | {r.batch_images} | {r.crops} x {r.crop_size} "
            f"| {r.images_per_s:.2f} | {r.ms_per_batch:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Result]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--steps", type=int, default=3, help="timed batches per measurement")
    p.add_argument("--score-batch", type=int, default=4, help="images per scoring batch (x crops)")
    p.add_argument("--train-batch", type=int, default=8, help="images per training batch")
    p.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [
        bench_score("resnet50", batch_images=args.score_batch, steps=args.steps),
        bench_train("resnet50", batch_images=args.train_batch, steps=args.steps),
        bench_train("tiny-resnet", batch_images=args.train_batch * 4, steps=args.steps * 3),
        bench_train("tiny-resnet", batch_images=args.train_batch * 4, crop_size=32, steps=args.steps * 3),
    ]
    if args.json:
        print(
            json.dumps(
                {"threads": torch.get_num_threads(), "results": [asdict(r) for r in results]}, indent=2
            )
        )
    else:
        print(
            markdown(
                results,
                f"Domain classifier throughput (CPU, {torch.get_num_threads()} threads, random weights)",
            )
        )
    return results


if __name__ == "__main__":
    main()
