"""Speed of the 25 KADID/KADIS distortions on one core (not a test).

Pins the process to one CPU core, limits OpenCV / torch / OpenMP to one thread, distorts one 512x384
photo (skimage astronaut, resized) at every (type, level) and reports the median time of a few
repeats, the totals, and end-to-end generation throughput (distort + lossless encode + write).

Usage:
    python benchmarks/distortion_speed.py [--repeats 5] [--json out.json] [--core 0]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from dgqa_data.distortions import DISTORTIONS, distort, seed_for, tune_allocator  # noqa: E402

KADIS_IMAGES = 700_000
ARNIQA_TYPES = [t for t in DISTORTIONS if t not in (6, 15)]


def test_image(width: int = 512, height: int = 384) -> np.ndarray:
    """skimage astronaut resized to (height, width) with area interpolation."""
    from skimage import data

    return cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)


def pin_one_core(core: int) -> None:
    """Restrict this process and its libraries to a single core / thread."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def calibration_ms(img: np.ndarray, repeats: int = 7, clock=time.thread_time) -> float:
    """Median ms of a fixed reference job (Pillow PNG zlib-6 encode), to compare machines/load."""
    samples = []
    for _ in range(repeats):
        t0 = clock()
        Image.fromarray(img).save(io.BytesIO(), format="PNG", compress_level=6)
        samples.append((clock() - t0) * 1e3)
    return statistics.median(samples)


def time_variants(
    img: np.ndarray, repeats: int, types: list[int], clock=time.thread_time
) -> dict[tuple[int, int], float]:
    """Median ms per (type, level) on ``clock`` (thread CPU time by default: robust to other load)."""
    out = {}
    for t in types:
        for lvl in range(1, 6):
            seed = seed_for("bench", t, lvl)
            distort(img, t, lvl, seed)  # warm-up
            samples = []
            for _ in range(repeats):
                t0 = clock()
                distort(img, t, lvl, seed)
                samples.append((clock() - t0) * 1e3)
            out[(t, lvl)] = statistics.median(samples)
    return out


def encoders() -> dict[str, tuple[str, dict]]:
    """Lossless storage encodings to compare: name -> (Pillow format, save kwargs)."""
    return {
        "png_zlib6": ("PNG", {"compress_level": 6}),
        "png_zlib1": ("PNG", {"compress_level": 1}),
        "png_zlib0": ("PNG", {"compress_level": 0}),
        "bmp": ("BMP", {}),
    }


def end_to_end(img: np.ndarray, n_refs: int, types: list[int]) -> dict[str, dict]:
    """Images/s for distort + encode + write, KADIS-style (one type per reference, all 5 levels)."""
    results = {}
    enc_ms = {}
    for name, (fmt, kw) in encoders().items():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, **kw)
        samples = []
        for _ in range(5):
            buf = io.BytesIO()
            t0 = time.thread_time()
            Image.fromarray(img).save(buf, format=fmt, **kw)
            samples.append((time.thread_time() - t0) * 1e3)
        enc_ms[name] = (statistics.median(samples), buf.tell())
    with tempfile.TemporaryDirectory() as tmp:
        for name, (fmt, kw) in encoders().items():
            ext = "bmp" if fmt == "BMP" else "png"
            count = 0
            t0, c0 = time.perf_counter(), time.thread_time()
            for r in range(n_refs):
                t = types[r % len(types)]
                for lvl in range(1, 6):
                    out = distort(img, t, lvl, seed_for(f"ref{r}", t, lvl))
                    Image.fromarray(out).save(Path(tmp) / f"ref{r}_{t:02d}_{lvl:02d}.{ext}", format=fmt, **kw)
                    count += 1
            cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
            results[name] = {
                "images_per_s": count / cpu,
                "images_per_s_wall": count / wall,
                "encode_ms": enc_ms[name][0],
                "bytes_per_image": enc_ms[name][1],
                "kadis_700k_core_hours": KADIS_IMAGES / (count / cpu) / 3600,
            }
    return results


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--e2e-refs", type=int, default=25, help="references in the end-to-end run (x5 levels)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--no-tune-allocator",
        action="store_true",
        help="keep glibc malloc defaults (slower; see tune_allocator)",
    )
    ap.add_argument(
        "--only", type=str, default="", help="comma-separated type ids to time (skips end to end)"
    )
    args = ap.parse_args(argv)

    pin_one_core(args.core)
    tuned = False if args.no_tune_allocator else tune_allocator()
    img = test_image()
    calib = calibration_ms(img)
    calib_wall = calibration_ms(img, clock=time.perf_counter)
    only = [int(t) for t in args.only.split(",") if t]
    ms = time_variants(img, args.repeats, only or list(DISTORTIONS))
    print(
        f"allocator tuned: {tuned}. Times are thread CPU time (wall clock inflates when other processes share "
        f"the core). Calibration, Pillow PNG zlib-6 encode of the image: {calib:.1f} ms CPU, {calib_wall:.1f} ms "
        "wall (perf-limits.md: 40.9 ms on an idle core).\n"
    )
    print(f"## Distortion CPU time, one core, {img.shape[1]}x{img.shape[0]}, median of {args.repeats} (ms)\n")
    print("| id | name | L1 | L2 | L3 | L4 | L5 | sum |")
    print("|---|---|---|---|---|---|---|---|")
    for t, spec in DISTORTIONS.items():
        if (t, 1) not in ms:
            continue
        row = [ms[(t, lvl)] for lvl in range(1, 6)]
        print(f"| {t:02d} | {spec.name} | " + " | ".join(f"{v:.1f}" for v in row) + f" | {sum(row):.1f} |")
    total_23 = sum(v for (t, _), v in ms.items() if t in ARNIQA_TYPES)
    total_125 = sum(ms.values())
    denoise = sum(v for (t, _), v in ms.items() if t == 15)
    quant = sum(v for (t, _), v in ms.items() if t == 6)
    per_image = total_125 / 125
    print()
    print(f"- 23 ARNIQA-covered types x 5 levels: **{total_23:.0f} ms**")
    print(
        f"- all 125 variants: **{total_125:.0f} ms** (denoise 15: {denoise:.0f} ms, colour quantization 06: {quant:.0f} ms)"
    )
    print(
        f"- 125 variants without denoise: {total_125 - denoise:.0f} ms; mean per variant {per_image:.1f} ms"
    )

    if only:
        return {"ms": {f"{t:02d}_{lvl}": v for (t, lvl), v in ms.items()}}
    e2e = end_to_end(img, args.e2e_refs, list(DISTORTIONS))
    print(
        f"\n## End to end (distort + encode + write), one core, {args.e2e_refs} references x 5 levels, "
        "types cycling 1..25 (KADIS-style: one type per reference)\n"
    )
    print("| encoding | encode ms | KB/image | images/s (CPU) | images/s (wall) | KADIS-700k core-hours |")
    print("|---|---|---|---|---|---|")
    for name, r in e2e.items():
        print(
            f"| {name} | {r['encode_ms']:.1f} | {r['bytes_per_image'] / 1024:.0f} | {r['images_per_s']:.1f} | "
            f"{r['images_per_s_wall']:.1f} | {r['kadis_700k_core_hours']:.1f} |"
        )
    result = {
        "image_size": [img.shape[1], img.shape[0]],
        "allocator_tuned": tuned,
        "clock": "thread_time",
        "calibration_png6_ms": calib,
        "calibration_png6_wall_ms": calib_wall,
        "repeats": args.repeats,
        "ms": {f"{t:02d}_{lvl}": v for (t, lvl), v in ms.items()},
        "total_23x5_ms": total_23,
        "total_125_ms": total_125,
        "denoise_ms": denoise,
        "end_to_end": e2e,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
