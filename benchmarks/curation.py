"""Time and peak memory of the SynDR-IQA curation steps (:mod:`dgqa_data.curate`) on given features.

* DRC at ``--drc-rows`` (default 10,000 and 100,000) rows of random 512-d float32 features with
  planted near-duplicate clusters (20% of the rows, clusters of 2 to 60 rows, labels uniform on
  [0, 10]);
* DDC with 81 training references x 1,000 candidates (512-d, drawn around a shared mean so the
  cosine distances spread as backbone features do).

Peak memory is what numpy allocates during the call (``tracemalloc``), the input features
excluded; an N x N float32 similarity matrix would be 0.4 GB at 10k rows and 40 GB at 100k.

Usage::

    python benchmarks/curation.py [--drc-rows 10000 100000] [--dim 512] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from dgqa_data.curate import ddc, drc, transfer_labels


def planted_rows(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Random unit-free features + labels with near-duplicate clusters over 20% of the rows.

    Returns ``(features, labels, rows planted in clusters)``.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    labels = rng.uniform(0, 10, n)
    start, budget = 0, n // 5
    while start < budget:
        size = min(int(rng.integers(2, 61)), budget - start)
        rows = slice(start, start + size)
        x[rows] = x[start] + 0.05 * rng.standard_normal((size, dim), dtype=np.float32)
        labels[rows] = labels[start] + rng.uniform(0, 0.3, size)
        start += size
    return x, labels, budget


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(result, seconds, peak MiB allocated during the call)``."""
    tracemalloc.start()
    tic = time.perf_counter()
    try:
        out = fn()
        seconds = time.perf_counter() - tic
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return out, seconds, peak


def bench_drc(n: int, dim: int) -> dict[str, Any]:
    x, labels, planted = planted_rows(n, dim)
    res, seconds, peak = measure(lambda: drc(x, labels, seed=0))
    return {
        "step": "drc",
        "size": f"{n:,} rows x {dim}",
        "seconds": round(seconds, 2),
        "peak_mib": round(peak, 1),
        "nxn_float32_mib": round(n * n * 4 / 2**20),
        "result": f"{res.report['clusters']} clusters over {res.report['rows_in_clusters']} rows "
        f"({planted} planted), kept {res.report['kept']:,}",
    }


def bench_ddc(refs: int, cands: int, dim: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    mean = rng.standard_normal(dim, dtype=np.float32)
    t = mean + 0.8 * rng.standard_normal((refs, dim), dtype=np.float32)
    a = mean + 0.8 * rng.standard_normal((cands, dim), dtype=np.float32)
    ref_labels = rng.uniform(0, 1, (refs, 25 * 3))

    def run():
        res = ddc(t, a)
        return res, transfer_labels(res, ref_labels)

    (res, _), seconds, peak = measure(run)
    return {
        "step": "ddc + label transfer",
        "size": f"{refs} refs x {cands:,} candidates x {dim}",
        "seconds": round(seconds, 3),
        "peak_mib": round(peak, 1),
        "nxn_float32_mib": None,
        "result": f"rule 1 kept {len(res.rule1)}, rule 2 dropped {len(res.dropped)}, chose {len(res.chosen)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drc-rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--refs", type=int, default=81)
    parser.add_argument("--cands", type=int, default=1000)
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = [bench_drc(n, args.dim) for n in args.drc_rows]
    rows.append(bench_ddc(args.refs, args.cands, args.dim))
    print(f"{'step':22s} {'size':36s} {'seconds':>8s} {'peak MiB':>9s}  result")
    for r in rows:
        print(f"{r['step']:22s} {r['size']:36s} {r['seconds']:8.2f} {r['peak_mib']:9.1f}  {r['result']}")
    if args.json:
        meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "numpy": np.__version__}
        with open(args.json, "w") as fh:
            json.dump({"machine": meta, "rows": rows}, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
