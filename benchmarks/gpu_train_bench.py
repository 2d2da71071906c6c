"""GPU training throughput with real data loading vs. the model alone (not a test; needs CUDA).

One command, a few minutes, no download: builds a synthetic KADID-like dataset folder (default 2,000
512x384 JPEG images), then for ResNet-50 and ViT-B/16 (random init, bf16 autocast, 224 crops) times

- ``model``: forward + L1 + backward + AdamW on uint8 batches already on the GPU;
- ``both``: the same step fed by dgqa_train's training loader (decode + crop in workers, pinned
  uint8 batches, normalisation on the GPU);
- ``pipeline``: the loader alone.

Target: ``both / model >= 0.90`` for every backbone (exit status 0 when met, 1 when not).

Usage:
    python benchmarks/gpu_train_bench.py [--backbones resnet50,vit-b16] [--batch-size 128]
        [--workers N] [--images 2000] [--batches 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import make_synthetic_dataset, markdown, measure  # noqa: E402

TARGET = 0.90


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="resnet50,vit-b16")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=max(1, min(16, (os.cpu_count() or 4) - 2)))
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches before each measurement")
    p.add_argument(
        "--cudnn-benchmark", action="store_true", help="let cuDNN autotune (training leaves it off)"
    )
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--cpu-smoke-test", action="store_true", help=argparse.SUPPRESS)  # code path check only
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_smoke_test:
        print(
            "gpu_train_bench: CUDA is not available (torch.cuda.is_available() is False): this benchmark "
            "measures GPU training throughput and needs an NVIDIA GPU with a CUDA build of torch. "
            "For a CPU measurement run benchmarks/train_throughput.py.",
            file=sys.stderr,
        )
        return 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
    if shm is not None and shm.f_bsize * shm.f_blocks < 2**30:
        print(f"warning: /dev/shm is only {shm.f_bsize * shm.f_blocks / 2**20:.0f} MiB; DataLoader workers "
              "may fail (docker: --shm-size=8g) or stall", file=sys.stderr)  # fmt: skip
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dgqa-gpu-bench-") as tmp:
        ds = make_synthetic_dataset(Path(tmp) / "ds", args.images)
        print(f"built {args.images} JPEG images (512x384) in {time.perf_counter() - t0:.1f}s", flush=True)
        rows = []
        for backbone in [b.strip() for b in args.backbones.split(",") if b.strip()]:
            t = time.perf_counter()
            row = measure(
                ds,
                backbone,
                args.batch_size,
                args.batches,
                args.workers,
                device=device,
                bf16=True,
                warmup=args.warmup,
            )
            row["seconds"] = round(time.perf_counter() - t, 1)
            row["meets_target"] = row["both_over_model"] >= TARGET
            rows.append(row)
            print(markdown([row]).splitlines()[-1], flush=True)
    print()
    print(markdown(rows))
    ok = all(r["meets_target"] for r in rows)
    for r in rows:
        verdict = "meets" if r["meets_target"] else "MISSES"
        print(
            f"{r['backbone']}: real-data throughput is {r['both_over_model']:.0%} of model-only ({verdict} {TARGET:.0%})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"target": TARGET, "rows": rows}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
