"""GPU benchmark of the DGQA domain classifier (CUDA, bf16): scoring and training throughput.

One command, a few minutes on one GPU::

    python benchmarks/gpu_classifier_bench.py [--json] [--out results.json]

Measures, for ResNet-50 (random weights) at 224: images scored per second (5 crops each, batch of
64 images = 320 crops) and training images per second (batch 128), in bf16 autocast with
channels-last, plus the fp32 baseline for each. Exits with status 2 and a message when CUDA is not
available (nothing is measured on CPU; use ``classifier_throughput.py`` there).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classifier_throughput import bench_score, bench_train, markdown  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--score-batch", type=int, default=64, help="images per scoring batch (x 5 crops)")
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None, help="also write the JSON results here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "gpu_classifier_bench: CUDA is not available; nothing measured (run on a GPU machine)",
            file=sys.stderr,
        )
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    common = {"device": "cuda", "steps": args.steps, "warmup": 5, "channels_last": True}
    results = []
    for precision in ("bf16", "fp32"):
        results.append(bench_score("resnet50", batch_images=args.score_batch, precision=precision, **common))
        results.append(bench_train("resnet50", batch_images=args.train_batch, precision=precision, **common))
    name = torch.cuda.get_device_name()
    payload = {"gpu": name, "torch": torch.__version__, "results": [asdict(r) for r in results]}
    if args.out:
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2) if args.json else markdown(results, f"Domain classifier on {name}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
