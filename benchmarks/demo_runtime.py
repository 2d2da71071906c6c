"""Wall time of ``dgqa demo`` as a new user runs it, per stage, with the report's numbers.

Runs the demo in a fresh temporary folder (nothing reused) for each mode and prints the total wall
time, the time of every stage and the regressors' target SRCC/PLCC per arm. ``--keep DIR`` keeps the
runs (``DIR/default``, ``DIR/fast``) to read their report.md.

Usage::

    python benchmarks/demo_runtime.py [--modes default fast finetune] [--keep runs/demo-bench] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The flags of each mode: ``finetune`` is the reduced end-to-end fine-tuning run a 2-core CPU affords.
MODES = {"default": [], "fast": ["--fast"], "finetune": ["--fast", "--finetune", "--seeds", "2"]}


def run_demo(mode: str, out: Path) -> dict:
    """Run ``dgqa demo`` with the flags of ``mode`` into ``out``; return the timings and numbers."""
    cmd = [sys.executable, "-m", "dgqa_train.cli", "demo", "--out", str(out), *MODES[mode]]
    tic = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - tic
    from dgqa_data.selection import Selection
    from dgqa_train.demo import DEMO_RULES, summarize

    results = json.loads((out / "regressors.json").read_text())
    accuracy = [
        json.loads(p.read_text())["epochs"][-1]["eval_accuracy"]
        for p in sorted((out / "classifier").glob("seed*/results.json"))
    ]
    rules = {}
    for rule in DEMO_RULES:
        sel = Selection.load(out / "selection" / rule / "selection.json")
        ev = sel.evaluation or {}
        rules[rule] = {
            "selected": sel.selected,
            "found": ev.get("found"),
            "missed": ev.get("missed"),
            "extras": ev.get("extras"),
            "jaccard_mean": (sel.stability or {}).get("jaccard_mean"),
        }
    return {
        "mode": mode,
        "wall_s": round(wall, 1),
        "stages_s": json.loads((out / ".stages" / "times.json").read_text()),
        "classifier_heldout_accuracy": accuracy,
        "rules": rules,
        "arms": {
            arm: {k: round(v, 4) for k, v in s.items() if k.endswith(("_mean", "_std"))}
            for arm, s in summarize(results).items()
        },
        "verdict": (out / "verdict.txt").read_text().strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["default", "fast"])
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs under this folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dgqa-demo-bench-") as tmp:
        root = args.keep or Path(tmp)
        records = []
        for mode in args.modes:
            out = root / mode
            if out.exists():
                raise SystemExit(f"{out} exists: pass another --keep folder (the benchmark runs from scratch)")
            records.append(run_demo(mode, out))
    if args.json:
        print(json.dumps(records, indent=2))
        return
    for r in records:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages_s"].items())
        print(f"{r['mode']}: {r['wall_s']:.0f} s wall ({stages})")
        acc = r["classifier_heldout_accuracy"]
        print(f"  classifier held-out accuracy per seed {[round(a, 3) for a in acc]}")
        for rule, v in r["rules"].items():
            print(
                f"  {rule}: kept {len(v['selected'])} {v['selected']}; found {v['found']}, missed {v['missed']}, "
                f"extras {v['extras']}; seeds' Jaccard {v['jaccard_mean']}"
            )
        for arm, s in r["arms"].items():
            print(
                f"  {arm:9s} SRCC {s['srcc_mean']:.3f} +- {s['srcc_std']:.3f}  PLCC {s['plcc_mean']:.3f} +- {s['plcc_std']:.3f}"
            )
        print(f"  {r['verdict']}")


if __name__ == "__main__":
    main()
