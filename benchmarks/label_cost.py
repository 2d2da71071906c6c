"""Cost of quality labels in ``dgqa synth``: ``--labels none`` vs ``severity`` vs ``ms-ssim``.

Synthesises the full plan (pristine + 25 types x 5 levels) of ``--refs`` 512 x 384 crops of
scikit-image photos, once per labelling, one process, and prints seconds and images per second.

Usage::

    python benchmarks/label_cost.py [--refs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=2, help="reference images (default 2: 252 images)")
    args = parser.parse_args()
    import skimage.data

    from dgqa_data.synth import synthesize

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket(), skimage.data.chelsea()]
    with tempfile.TemporaryDirectory() as tmp:
        refs = Path(tmp) / "refs"
        refs.mkdir()
        for i in range(args.refs):
            img = photos[i % len(photos)]
            crop = np.ascontiguousarray(img[:384, :512] if img.shape[1] >= 512 else img[:300, :400])
            Image.fromarray(crop).save(refs / f"ref{i}.png")
        for labels in ("none", "severity", "ms-ssim"):
            tic = time.perf_counter()
            synthesize(refs, Path(tmp) / labels, labels=labels, progress=False)
            dt = time.perf_counter() - tic
            n = args.refs * 126
            print(f"--labels {labels:8s} {dt:6.1f} s  {n / dt:5.1f} images/s  ({n} images)")


if __name__ == "__main__":
    main()
