"""Throughput of the whole ``dgqa synth`` command against a plain distort-and-encode loop (not a test).

Makes ``--refs`` references of 384x256 from scikit-image photos, then, ``--repeat`` times, alternating:

* ``loop``: in this process, after its imports, one Python loop that loads each reference, distorts
  it at every job of ``--plan full`` (the pristine copy + 25 types x 5 levels, the same seeds as
  synth) and encodes the result as uncompressed BMP (Pillow), the bytes kept in memory;
* ``command``: ``python -m dgqa_data synth --plan full --num-proc 1 --image-format FMT`` in a child
  process, timed from its start to its exit (interpreter start-up, imports, the card and the rename
  included); CPU time (user + sys) from ``os.wait4``.

Prints both rates and two ratios per round and their medians: wall clock (command rate / loop
rate, as slow as the machine is busy); CPU (loop CPU / command CPU: all the work of each, every
thread of the command included). The loop runs on one thread; the command distorts and encodes on
``dgqa_data.synth.distort_threads()`` threads (two on a 2-core machine) and writes on one more, so
its wall ratio can exceed its CPU ratio. Then a breakdown of where the command's time goes (one
pass, one stage at a time, in this process): start-up imports (a child process), reading the
references, distortion, encoding in each lossless format, labels, the parquet write and the card.

Usage::

    python benchmarks/synth_throughput.py [--refs 8] [--repeat 3] [--image-format png] [--json]

``--repo DIR`` runs the command from another checkout; ``--compare DIR`` runs a second checkout's
command in the same rounds (e.g. an older commit exported with ``git archive``: before and after in
one run).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SIZE = (384, 256)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "camera")


def make_references(folder: Path, n: int) -> Path:
    """``n`` PNG references of 384x256 (scikit-image photos, area-resized; grey ones as RGB)."""
    import cv2
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = getattr(data, PHOTOS[i % len(PHOTOS)])()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        img = cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA)
        if i >= len(PHOTOS):  # a different image per reference past the photo list
            img = np.ascontiguousarray(img[:, ::-1])
        Image.fromarray(img).save(folder / f"ref{i:02d}.png")
    return folder


def _jobs(folder: Path):
    """(reference id, pristine array, [(type, level, seed)]) as ``synth --plan full`` plans them."""
    from dgqa_data.distortions import seed_for
    from dgqa_data.images import open_rgb
    from dgqa_data.synth import SynthPlan, find_references, jobs_for

    plan = SynthPlan(source=str(folder), plan="full")
    for ref_no, ref in enumerate(find_references(folder)):
        pristine = np.asarray(open_rgb(ref.path, name=ref.ref_id))
        jobs = [(t, lv, seed_for(ref.ref_id, t, lv, 0) if t else 0) for t, lv in jobs_for(ref_no, ref, plan)]
        yield ref.ref_id, pristine, jobs


def reference_loop(folder: Path) -> tuple[int, float, float]:
    """Distort every job and encode it as BMP in one loop: (images, wall s, CPU s of the process)."""
    from dgqa_data.distortions import distort_with_draws

    n, keep = 0, []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ref_id, pristine, jobs in _jobs(folder):
        for tid, level, seed in jobs:
            img = pristine if tid == 0 else distort_with_draws(pristine, tid, level, seed)[0]
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="BMP")
            keep.append(buf.getvalue())
            n += 1
    return n, time.perf_counter() - wall, time.process_time() - cpu


def command(folder: Path, out: Path, fmt: str, repo: Path) -> tuple[float, float]:
    """``python -m dgqa_data synth --plan full --num-proc 1`` in a child: (wall s, CPU s of the
    process)."""
    cmd = [sys.executable, "-m", "dgqa_data", "synth", "--source", str(folder), "--out", str(out)]
    cmd += ["--plan", "full", "--num-proc", "1"]
    if fmt != "default":
        cmd += ["--image-format", fmt]
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"synth failed:\n{err}")
    return wall, usage.ru_utime + usage.ru_stime


def _distort_threads(repo: Path) -> str:
    """How many threads the command distorts on (``dgqa_data.synth.distort_threads``; 1 before it)."""
    code = "import dgqa_data.synth as s; print(getattr(s, 'distort_threads', lambda: 1)())"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()


def startup_seconds(repo: Path) -> float:
    """A child that only imports what the synth command imports, and exits."""
    code = (
        "import dgqa_data.cli, dgqa_data.synth, dgqa_data.distortions, dgqa_data.cards, datasets, "
        "pyarrow.parquet"
    )
    env = {**os.environ, "PYTHONPATH": str(repo)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def encoders() -> dict:
    """Name -> bytes of one RGB array, for the breakdown."""
    from dgqa_data import synth

    def bmp(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="BMP")
        return buf.getvalue()

    out = {"bmp (Pillow)": bmp}
    for name in getattr(synth, "IMAGE_FORMATS", ("png",)):
        if name != "bmp":
            out[f"{name} (synth)"] = lambda a, name=name: synth._encode(a, name)

    def png_cv2(a):  # the encoder synth used before (zlib level 1, RLE, libpng's adaptive filters)
        import cv2

        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        return cv2.imencode(".png", np.ascontiguousarray(a[..., ::-1]), params)[1].tobytes()

    def png_pillow1(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    out["png (cv2 zlib-1 RLE, before)"] = png_cv2
    out["png (Pillow compress_level=1)"] = png_pillow1
    return out


def breakdown(folder: Path, work: Path, fmt: str, repo: Path) -> dict:
    """Seconds per stage for the whole plan, measured one stage at a time in this process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dgqa_data import synth
    from dgqa_data.distortions import distort_with_draws

    res: dict = {"startup (imports, child)": startup_seconds(repo)}
    t = time.perf_counter()
    refs = list(_jobs(folder))
    res["read references"] = time.perf_counter() - t
    images, t = [], time.perf_counter()
    for _ref_id, pristine, jobs in refs:
        for tid, level, seed in jobs:
            images.append(pristine if tid == 0 else distort_with_draws(pristine, tid, level, seed)[0])
    res["distortion"] = time.perf_counter() - t
    sizes = {}
    chosen = None
    for name, enc in encoders().items():
        t = time.perf_counter()
        blobs = [enc(a) for a in images]
        res[f"encode: {name}"] = time.perf_counter() - t
        sizes[name] = sum(map(len, blobs)) / len(blobs) / 1024
        if name.startswith(f"{fmt} (synth)") or (chosen is None and name.startswith("png (synth)")):
            chosen = blobs
    t = time.perf_counter()
    from dgqa_data.severity import quality_to_mos, synthetic_quality

    [quality_to_mos(synthetic_quality(tid, lv)) for _r, _p, jobs in refs for tid, lv, _s in jobs]
    res["labels: severity (none: 0)"] = time.perf_counter() - t
    # the parquet write, one shard per reference as the default shard size gives for 8 references
    rows, k = [], 0
    for ref_id, _p, jobs in refs:
        shard = []
        for tid, level, seed in jobs:
            name = f"{ref_id}_{tid:02d}_{level:02d}.{fmt}"
            shard.append(
                {
                    "image": {"bytes": chosen[k], "path": name},
                    "image_id": name,
                    "reference_id": ref_id,
                    "mos": None,
                    "mos_std": None,
                    "quality": None,
                    "distortion_type": tid,
                    "distortion_level": level,
                    "domain": "x",
                    "corpus": "synthetic",
                    "seed": seed,
                    "draws": "{}",
                }
            )
            k += 1
        rows.append(shard)
    schema = synth.synth_features().arrow_schema
    (work / "data").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for i, shard in enumerate(rows):
        table = pa.Table.from_pylist(shard, schema=schema)
        comp = {n: ("none" if n == "image" else "zstd") for n in table.column_names}
        path = work / "data" / f"train-{i:05d}-of-{len(rows):05d}.parquet"
        if hasattr(synth, "_write_table"):
            synth._write_table(shard, path, fmt)
        else:
            pq.write_table(table, path, row_group_size=100, compression=comp)
    res["parquet write"] = time.perf_counter() - t
    t = time.perf_counter()
    from collections import Counter

    cfg = synth.SynthPlan(source=str(folder))
    synth.synth_card(cfg, Counter({0: len(refs), **{i: 5 * len(refs) for i in range(1, 26)}}), len(refs), work)
    res["card (+ fingerprint of the shards)"] = time.perf_counter() - t
    return {"seconds": res, "kb_per_image": sizes, "images": len(images)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", type=int, default=8, help="references (x126 images each)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of loop + command; medians reported")
    ap.add_argument("--image-format", default="default", help="--image-format of the command (default: its default)")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout the command runs from")
    ap.add_argument(
        "--compare", type=Path, default=None, help="another checkout whose command runs in the same rounds"
    )
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    fmt = args.image_format
    with tempfile.TemporaryDirectory(prefix="dgqa-synth-bench-") as tmp:
        folder = make_references(Path(tmp) / "refs", args.refs)
        rounds, compared = [], []
        for r in range(args.repeat):
            n, loop_wall, loop_cpu = reference_loop(folder)
            out = Path(tmp) / f"out{r}"
            if args.compare is not None:
                other = command(folder, out, "default", args.compare)
                shutil.rmtree(out)
                compared.append({"ratio_wall": loop_wall / other[0], "ratio_cpu": loop_cpu / other[1]})
                print(
                    f"round {r + 1}: {args.compare}: ratio {compared[-1]['ratio_wall']:.2f} wall, "
                    f"{compared[-1]['ratio_cpu']:.2f} CPU",
                    flush=True,
                )
            cmd_wall, cmd_cpu = command(folder, out, fmt, args.repo)
            files = sorted((out / "data").glob("*.parquet"))
            mb = sum(f.stat().st_size for f in files) / 1e6
            shutil.rmtree(out)
            rounds.append(
                {
                    "load_1min": os.getloadavg()[0],
                    "images": n,
                    "loop_img_s": n / loop_wall,
                    "command_img_s": n / cmd_wall,
                    "ratio_wall": loop_wall / cmd_wall,
                    "ratio_cpu": loop_cpu / cmd_cpu,
                    "loop_cpu_s": loop_cpu,
                    "command_cpu_s": cmd_cpu,
                    "parquet_mb": mb,
                }
            )
            x = rounds[-1]
            print(
                f"round {r + 1}: loop {x['loop_img_s']:.1f} img/s, command {x['command_img_s']:.1f} img/s, "
                f"ratio {x['ratio_wall']:.2f} (CPU: loop {loop_cpu:.1f} s, command {cmd_cpu:.1f} s, "
                f"ratio {x['ratio_cpu']:.2f}); parquet {mb:.1f} MB; load average {x['load_1min']:.1f}",
                flush=True,
            )
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        threads = _distort_threads(args.repo)
        print(
            f"\nmedians of {args.repeat}, {med['images']:.0f} images ({args.refs} references of "
            f"{SIZE[0]}x{SIZE[1]}), --image-format {fmt}, command from {args.repo}:\n"
            f"  loop (distort + BMP) {med['loop_img_s']:.1f} img/s; whole command {med['command_img_s']:.1f} "
            f"img/s; ratio {med['ratio_wall']:.2f} wall, {med['ratio_cpu']:.2f} CPU\n"
            f"  (wall: as measured, and as slow as the machine is busy; CPU: all the work of each; the loop "
            f"on one thread, the command distorting on {threads} threads)"
        )
        result = {"rounds": rounds, "median": med, "image_format": fmt, "repo": str(args.repo), "distort_threads": threads}
        if compared:
            result["compared"] = {k: statistics.median(c[k] for c in compared) for k in compared[0]}
            result["compared_repo"] = str(args.compare)
            c = result["compared"]
            print(
                f"  {args.compare} in the same rounds: ratio {c['ratio_wall']:.2f} wall, {c['ratio_cpu']:.2f} CPU"
            )
        if not args.no_breakdown:
            bd = breakdown(folder, Path(tmp) / "bd", "png" if fmt == "default" else fmt, args.repo)
            n = bd["images"]
            print(f"\n## Where the time goes ({n} images, one pass, this process)\n")
            print("| stage | s | ms / image | KB / image |")
            print("|---|---|---|---|")
            for stage, s in bd["seconds"].items():
                kb = next((f"{v:.0f}" for k, v in bd["kb_per_image"].items() if stage == f"encode: {k}"), "")
                print(f"| {stage} | {s:.2f} | {s / n * 1e3:.2f} | {kb} |")
            result["breakdown"] = bd
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
