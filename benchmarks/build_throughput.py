"""Throughput and memory of ``dgqa build`` against a plain copy of the same bytes.

Generates (once, cached under ``--cache``) a KADID-10k-layout tree of N distorted 512x384 PNGs plus
their references, made from scikit-image photos with small per-image perturbations so that every
file's bytes differ; then, for each N:

* ``copy``: read every image file and write the bytes to one file, then ``os.sync()``;
* ``build``: ``dgqa build kadid10k`` (``dgqa_train.cli.main``) in a child process, then
  ``os.sync()``, timed inside the child after its imports (``build_s``; ``cli_wall_s`` adds the
  child's start-up, which is slow right after the page cache is dropped); its peak RSS comes from
  ``os.wait4`` (the child and the processes it reaped).

The page cache is dropped before each timed run when possible (root: ``/proc/sys/vm/drop_caches``);
otherwise the runs are warm and the table says so.

Usage::

    python benchmarks/build_throughput.py --sizes 2000 10000 --repeat 3 [--num-proc 1] [--json]

Targets: build throughput within 2x of the plain copy; peak RSS < 1.5 GB and flat in N.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (512, 384)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def _photos() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in PHOTOS:
        img = getattr(data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        out.append(np.asarray(Image.fromarray(img).resize(SIZE, Image.BICUBIC)))
    return out


_BASE: list[np.ndarray] = []


def _write(job: tuple[str, int]) -> int:
    """Write one PNG: a photo with a seeded +-2 perturbation on 1/8 of the pixels."""
    path, seed = job
    if not _BASE:
        _BASE.extend(_photos())
    rng = np.random.default_rng(seed)
    arr = _BASE[seed % len(_BASE)].astype(np.int16)
    mask = rng.random(arr.shape[:2]) < 0.125
    arr[mask] += rng.integers(-2, 3, size=(int(mask.sum()), 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="PNG", compress_level=1)
    Path(path).write_bytes(buf.getvalue())
    return len(buf.getvalue())


def generate(root: Path, n: int, workers: int) -> Path:
    """A KADID-10k-layout tree with ``n`` distorted images (cached: reused when complete)."""
    done = root / ".complete"
    if done.exists() and done.read_text().strip() == str(n):
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    refs = math.ceil(n / 125)
    jobs, lines = [], ["dist_img,ref_img,dmos,var"]
    for r in range(1, refs + 1):
        jobs.append((str(root / "images" / f"I{r:02d}.png"), r * 1000))
    k = 0
    for r in range(1, refs + 1):
        for t in range(1, 26):
            for lv in range(1, 6):
                if k == n:
                    break
                name = f"I{r:02d}_{t:02d}_{lv:02d}.png"
                jobs.append((str(root / "images" / name), r * 1000 + t * 10 + lv))
                lines.append(f"{name},I{r:02d}.png,{4.8 - 0.7 * (lv - 1):.2f},0.5")
                k += 1
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write, jobs, chunksize=16))
    done.write_text(str(n))
    return root


def drop_caches() -> bool:
    """Drop the page cache (needs root); False when not possible."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def time_copy(root: Path, dest: Path) -> float:
    files = sorted((root / "images").iterdir())
    start = time.perf_counter()
    with open(dest, "wb") as out:
        for path in files:
            out.write(path.read_bytes())
    os.sync()
    return time.perf_counter() - start


CHILD = (
    "import os, sys, time\n"
    "from dgqa_train.cli import main\n"
    "t = time.perf_counter()\n"
    "rc = main(sys.argv[1:])\n"
    "os.sync()\n"
    "print('BUILD_SECONDS', time.perf_counter() - t)\n"
    "sys.exit(rc)\n"
)


def time_build(root: Path, out: Path, num_proc: int) -> tuple[float, float, int]:
    """``dgqa build kadid10k`` in a child process: build seconds (after imports, incl. sync), wall
    seconds (incl. the child's start-up), peak RSS in bytes."""
    cmd = [sys.executable, "-c", CHILD, "build", "kadid10k", "--root", str(root)]
    cmd += ["--out", str(out), "--num-proc", str(num_proc), "--overwrite"]
    log_path = out.parent / "build.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"build failed, see {log_path}")
    line = next(x for x in log_path.read_text().splitlines() if x.startswith("BUILD_SECONDS"))
    return float(line.split()[1]), wall, usage.ru_maxrss * 1024


def import_seconds() -> float:
    """Start-up cost of the child process (imports), included in the build time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import dgqa_train.cli, dgqa_data.build"], check=True)
    return time.perf_counter() - start


def run(n: int, cache: Path, work: Path, num_proc: int, workers: int, repeat: int = 1) -> dict:
    root = generate(cache / f"kadid-{n}", n, workers)
    files = list((root / "images").iterdir())
    total = sum(p.stat().st_size for p in files)
    copies, builds = [], []
    for _ in range(repeat):  # interleaved; the minimum is the least disturbed run
        cold = drop_caches()
        copies.append(time_copy(root, work / "copy.bin"))
        (work / "copy.bin").unlink()
        drop_caches()
        builds.append(time_build(root, work / "out", num_proc))
        shutil.rmtree(work / "out")
    copy_s = min(copies)
    build_s, wall_s = min(b[0] for b in builds), min(b[1] for b in builds)
    rss = max(b[2] for b in builds)
    return {
        "n_distorted": n,
        "files": len(files),
        "mb": round(total / 1e6, 1),
        "cache": "cold" if cold else "warm",
        "copy_s": round(copy_s, 2),
        "copy_img_s": round(len(files) / copy_s),
        "build_s": round(build_s, 2),
        "build_img_s": round(len(files) / build_s),
        "ratio": round(build_s / copy_s, 2),
        "cli_wall_s": round(wall_s, 2),
        "peak_rss_mb": round(rss / 2**20),
        "num_proc": num_proc,
        "repeat": repeat,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "dgqa-bench")
    parser.add_argument("--num-proc", type=int, default=1, help="--num-proc of the build")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the minimum is reported")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
        results = [
            run(n, args.cache, Path(tmp), args.num_proc, args.workers, args.repeat) for n in args.sizes
        ]
    startup = round(import_seconds(), 2)
    if args.json:
        print(json.dumps({"startup_s": startup, "results": results}, indent=2))
        return
    print(f"child start-up (imports, warm): {startup} s, included in cli_wall_s only\n")
    cols = list(results[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
