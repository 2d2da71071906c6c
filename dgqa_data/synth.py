"""``dgqa synth``: pristine images -> a KADIS-style synthetic dataset (25 types x 5 levels).

The work is cut into shards of consecutive references whose content depends only on the plan and
the seed, never on how many processes run them: every image is distorted with a generator seeded
by (reference, type, level), so the output is byte-identical for 1 process, ``--num-proc N``,
``--num-shards/--shard-index`` under any scheduler, or ``accelerate launch``. Finished shards are
written atomically into ``.<out>.partial/`` and skipped on rerun; the folder is renamed to ``out``
only when every shard is done.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import sys
import zlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

try:  # ISA-L deflate, 3x zlib's fastest level (a dependency; stdlib zlib where it cannot be installed)
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover
    _isal = None

from dgqa_data import __version__
from dgqa_data.csv_cells import escape
from dgqa_data.errors import CorpusError, DgqaError, OutputExistsError, at_least
from dgqa_data.paths import Skip, check_output, claim_lock, safe_path
from dgqa_data.schema import domain_of

if TYPE_CHECKING:
    import datasets

# Start-up: the modules above are all the main process needs before it distorts its first image;
# datasets, pyarrow and the card templates (a second or more to import) are imported by the
# background thread while the first images are distorted (:func:`_warm_imports`).

PLANS = ("kadis", "full", "random")
LABELS = ("none", "severity", "ms-ssim")
IMAGE_FORMATS = ("png", "webp", "bmp")
ENCODINGS = IMAGE_FORMATS  # the former name
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
KADIS_CSV = "kadis700k_ref_imgs.csv"


@dataclass(frozen=True)
class Reference:
    """One pristine image: its id, where its bytes are, and the type a KADIS CSV assigns it."""

    ref_id: str
    path: str | None = None  # a file, or
    dataset: str | None = None  # a dgqa dataset folder + row index
    index: int = -1
    csv_type: int | None = None
    stem: str = ""  # the name its images are written under (see :func:`unique_stems`)

    def load(self) -> np.ndarray:
        from dgqa_data.images import open_rgb

        if self.path is not None:
            return np.asarray(open_rgb(self.path, name=f"reference {self.ref_id}"))
        row = _open_dataset(self.dataset)[self.index]["image"]
        return np.asarray(
            open_rgb(row["bytes"] if row.get("bytes") else row["path"], name=f"reference {self.ref_id}")
        )


_DATASETS: dict[str, datasets.Dataset] = {}


def _open_dataset(folder: str) -> datasets.Dataset:
    """Pristine rows of a dgqa dataset folder (config ``pristine`` when it has one), images undecoded."""
    import datasets

    if folder not in _DATASETS:
        configs = [c["config_name"] for c in _card_configs(folder)]
        name = "pristine" if "pristine" in configs else None
        ds = datasets.load_dataset(folder, name, split="train")
        _DATASETS[folder] = ds.cast_column("image", datasets.Image(decode=False))
    return _DATASETS[folder]


def _card_configs(folder: str) -> list[dict]:
    from dgqa_data.hub_folder import read_card_metadata

    return read_card_metadata(folder).get("configs", [])


@dataclass
class SynthPlan:
    """Everything that determines the output; saved as ``plan.json`` and checked on resume."""

    source: str
    plan: str = "full"
    types: list[int] = field(default_factory=lambda: list(range(1, 26)))
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    types_per_reference: int = 1
    include_pristine: bool = True
    seed: int = 0
    encoding: str = "png"
    refs_per_shard: int = 32
    corpus: str = "synthetic"
    limit: int | None = None
    labels: str = "none"
    skip_bad: bool = False

    def key(self) -> str:
        """Identity of the output; ``skip_bad`` is left out, so a run that failed on a bad reference
        resumes with ``--skip-bad`` (finished shards had no bad reference)."""
        data = {k: v for k, v in asdict(self).items() if k != "skip_bad"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def find_references(source: str | Path, limit: int | None = None) -> list[Reference]:
    """Pristine references from a KADIS-700k root, a dgqa dataset folder, or a folder of images."""
    src = Path(source)
    if not src.is_dir():
        raise CorpusError(f"synth source {src} is not a folder")
    if (src / KADIS_CSV).exists():
        refs = _kadis_references(src)
    elif (src / "README.md").exists() and (src / "data").is_dir():
        ds = _open_dataset(str(src))
        refs = [Reference(i, dataset=str(src), index=k) for k, i in enumerate(ds["image_id"])]
    else:
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        refs = [Reference(p.relative_to(src).as_posix(), path=str(p)) for p in files]
    if not refs:
        raise CorpusError(f"no pristine images found in {src}")
    # the builders' rule: nothing from outside the source (a symlink out of it, ``..`` in a CSV name)
    outside = [s for r in refs if r.path and isinstance(s := safe_path(src, os.path.relpath(r.path, src), ""), Skip)]
    if outside:
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        raise CorpusError(f"synth source {src}: {outside[0].reason}{more}")
    return unique_stems(refs[:limit] if limit else refs)


def unique_stems(refs: list[Reference]) -> list[Reference]:
    """Give every reference the stem its images are named by: the official KADIS cut (the name up to
    its first dot); references whose cut would clash (``photo.jpg`` / ``photo.png``, ``img.v1.png`` /
    ``img.v2.png``) keep their whole name, dots as ``_``, with a note. A clash left after that is an error."""
    cut = Counter(_stem(r.ref_id) for r in refs)
    stems = [_stem(r.ref_id) if cut[_stem(r.ref_id)] == 1 else r.ref_id.replace(".", "_") for r in refs]
    renamed = [f"{r.ref_id} -> {s}" for r, s in zip(refs, stems, strict=True) if s != _stem(r.ref_id)]
    if renamed:
        print(
            f"note: {len(renamed)} reference(s) share a name up to the first dot; their images are named by "
            f"the whole name instead: {', '.join(renamed[:6])}{' ...' if len(renamed) > 6 else ''}",
            file=sys.stderr,
        )
    left = [s for s, n in Counter(stems).items() if n > 1]
    if left:
        clash = [r.ref_id for r, s in zip(refs, stems, strict=True) if s in left]
        raise CorpusError(f"references {', '.join(clash[:6])} would name their images alike ({left[0]}); rename one")
    return [replace(r, stem=s) for r, s in zip(refs, stems, strict=True)]


def _kadis_references(root: Path) -> list[Reference]:
    from dgqa_data.corpora.base import read_csv_rows

    refs = []
    for line, row in read_csv_rows(root / KADIS_CSV, ("ref_im", "dist_type_1")):
        second = (row.get("dist_type_2") or "").strip()
        first = (row.get("dist_type_1") or "").strip()
        try:  # the 7/8 quirk: rows reading "7,8" are type 8 in the authors' data
            tid = int(float(second or first))
        except ValueError:
            raise CorpusError(f"{KADIS_CSV} line {line}: distortion type {first!r} is not a number") from None
        if not 1 <= tid <= 25:
            raise CorpusError(f"{KADIS_CSV} line {line}: distortion type {tid} is outside 1..25")
        name = row["ref_im"].strip()
        refs.append(Reference(name, path=str(root / "ref_imgs" / name), csv_type=tid))
    return refs


def auto_refs_per_shard(num_refs: int) -> int:
    """The default shard size: about 16 shards for small sets, at most 32 references a shard."""
    return max(1, min(32, -(-num_refs // 16)))


def jobs_for(ref_no: int, ref: Reference, plan: SynthPlan) -> list[tuple[int, int]]:
    """(type, level) pairs to generate for one reference (0, 0 = the pristine copy)."""
    jobs = [(0, 0)] if plan.include_pristine else []
    if plan.plan == "full":
        types = plan.types
    elif plan.plan == "kadis":
        if ref.csv_type is not None:
            types = [ref.csv_type] if ref.csv_type in plan.types else []
        else:  # not a KADIS source: one seeded uniform draw per reference, as KADIS-700k's CSV looks
            types = [int(np.random.default_rng((plan.seed, ref_no)).choice(plan.types))]
    else:
        rng = np.random.default_rng((plan.seed, ref_no))
        n = min(plan.types_per_reference, len(plan.types))
        types = sorted(int(t) for t in rng.choice(plan.types, size=n, replace=False))
    jobs += [(t, lv) for t in types for lv in plan.levels]
    return jobs


def _encode(arr: np.ndarray, encoding: str) -> bytes:
    """One distorted image (H x W x 3, uint8) as the bytes of a ``png``, ``webp`` or ``bmp`` file.

    ``png`` and ``webp`` are lossless and compressed: Pillow, and so ``load_dataset``, decodes them to
    exactly ``arr``. Both release the GIL while they compress, so the background thread of
    :class:`_Background` runs them beside the distortions.
    """
    if encoding == "png":
        return _png(arr)
    out = io.BytesIO()
    if encoding == "webp":
        if max(arr.shape[:2]) > 16383:
            size = f"{arr.shape[1]} x {arr.shape[0]}"
            raise DgqaError(f"WebP holds at most 16383 x 16383 pixels, not {size}; use --image-format png")
        # lossless; quality 0 and method 0 are the fastest effort (the pixels are the same at any effort)
        Image.fromarray(arr).save(out, format="WEBP", lossless=True, quality=0, method=0, exact=True)
    else:
        Image.fromarray(arr).save(out, format="BMP")
    return out.getvalue()


def _png(arr: np.ndarray) -> bytes:
    """8-bit RGB PNG with one fixed filter (Up: each row minus the row above, one numpy subtraction)
    and deflate at level 1 by ISA-L (the ``isal`` wheel: about 3x faster than zlib's level 1 with the
    run-length strategy, for files about 2% larger; stdlib zlib where isal is missing). 4 to 8x faster
    than libpng's per-row adaptive filters (cv2 and Pillow at zlib level 1, used before), for files
    about 8% larger (benchmarks/synth_throughput.py). Lossless like any PNG."""
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {arr.dtype} {arr.shape}")
    h, w, _ = arr.shape
    rows = np.ascontiguousarray(arr).reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up (row 0 is predicted from zeros: itself)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # modulo 256, as PNG defines it
    idat = _deflate(raw)
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))  # 8-bit RGB
    return b"".join([b"\x89PNG\r\n\x1a\n", header, _chunk(b"IDAT", idat), _chunk(b"IEND", b"")])


def _deflate(data: np.ndarray) -> bytes:
    """A zlib stream of ``data`` (the PNG IDAT payload), at the fastest level that still compresses."""
    if _isal is not None:
        return _isal.compress(data, 1)
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return deflate.compress(data) + deflate.flush()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join([struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)])


def _stem(ref_id: str) -> str:
    """Name stem as the official KADIS script cuts it: everything before the first dot."""
    parent, _, name = ref_id.rpartition("/")
    return f"{parent}/{name.split('.')[0]}" if parent else name.split(".")[0]


def synth_features() -> datasets.Features:
    """Unified schema + the seed and the random draws of every image."""
    import datasets

    from dgqa_data.schema import base_features

    feats = base_features()
    feats["seed"] = datasets.Value("int64")
    feats["draws"] = datasets.Value("string")
    return feats


def _in_order(pool: ThreadPoolExecutor | None, fn: Callable, items: Sequence, ahead: int):
    """``map(fn, items)``, run by ``pool``'s threads with at most ``ahead`` items in flight (bounded
    memory), results in the order of ``items``; without a pool, in this thread."""
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # closed early (an error downstream, Ctrl-C): queued items are dropped, not run
        for fut in pending:
            fut.cancel()


#: Images distorted ahead of the one being written (a bound on the memory the threads hold).
DISTORT_AHEAD = 4


def distort_threads() -> int:
    """Threads that distort in one process: two where two cores are free to this process. OpenCV and
    NumPy release the GIL in the distortions' filters and arithmetic, so a second thread distorts at
    about 1.8x the rate of one (``benchmarks/synth_throughput.py``); more processes: ``--num-proc``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, cores)


def _shard_rows(
    shard: int,
    refs: Sequence[Reference],
    plan: SynthPlan,
    skipped: list[dict[str, str]],
    pool: ThreadPoolExecutor | None = None,
):
    """Rows of one shard; with ``plan.skip_bad`` an unreadable reference goes to ``skipped`` instead.
    With ``pool``, its threads distort (results in order: the bytes do not depend on the threads)."""
    from dgqa_data.distortions import distort_with_draws, seed_for

    ext = plan.encoding
    start = shard * plan.refs_per_shard
    for ref_no in range(start, min(start + plan.refs_per_shard, len(refs))):
        ref = refs[ref_no]
        try:
            pristine = ref.load()
        except (OSError, ValueError) as err:
            reason = str(err).removeprefix(f"reference {ref.ref_id}: ")
            if plan.skip_bad:
                skipped.append({"reference": ref.ref_id, "reason": reason})
                continue
            raise CorpusError(
                f"reference {ref.ref_id}: {reason} (use --skip-bad to record and skip it)"
            ) from None
        stem = ref.stem

        def make(job: tuple[int, int], ref: Reference = ref, pristine: np.ndarray = pristine, stem: str = stem):
            tid, level = job
            if tid == 0:
                img, draws, seed, name = pristine, {}, 0, f"{stem}.{ext}"
            else:
                seed = seed_for(ref.ref_id, tid, level, plan.seed)
                img, draws = distort_with_draws(pristine, tid, level, seed)
                name = f"{stem}_{tid:02d}_{level:02d}.{ext}"
            return img, draws, seed, name, _label(plan.labels, tid, level, img, pristine)

        jobs = jobs_for(ref_no, ref, plan)
        for (tid, level), (img, draws, seed, name, mos) in zip(jobs, _in_order(pool, make, jobs, DISTORT_AHEAD)):
            yield ref, tid, level, seed, draws, name, img, mos


def synth_images(refs: Sequence[Reference], plan: SynthPlan):
    """Every image ``plan`` makes of ``refs``, in order, as one shard makes them: yields
    ``(ref, type, level, seed, draws, name, image, label)`` (the label of ``plan.labels``, None for
    ``none``); an unreadable reference raises."""
    whole = replace(plan, refs_per_shard=max(1, len(refs)), skip_bad=False)
    yield from _shard_rows(0, refs, whole, [])


def image_row(
    plan: SynthPlan,
    ref: Reference,
    tid: int,
    level: int,
    seed: int,
    draws: dict,
    name: str,
    img: np.ndarray | None,
    mos: float | None,
) -> dict:
    """The row of one synthetic image (:func:`synth_features`), encoded as ``plan.encoding``
    (``img`` None: the bytes are left None, for an encoder that fills them in later)."""
    return {
        "image": {"bytes": None if img is None else _encode(img, plan.encoding), "path": name},
        "image_id": name,
        "reference_id": ref.ref_id,
        "mos": mos,
        "mos_std": None,
        "quality": None if mos is None else (mos - 1) / 4,
        "distortion_type": tid,
        "distortion_level": level,
        "domain": domain_of(tid),
        "corpus": plan.corpus,
        "seed": seed,
        "draws": json.dumps(draws, sort_keys=True),
    }


def _label(labels: str, tid: int, level: int, img: np.ndarray, pristine: np.ndarray) -> float | None:
    """``mos`` (1-5) of one image under the plan's labelling, or None."""
    if labels == "severity":
        from dgqa_data.severity import quality_to_mos, synthetic_quality

        return quality_to_mos(synthetic_quality(tid, level))
    if labels == "ms-ssim":
        from dgqa_data.camera import pseudo_mos

        return pseudo_mos(img, pristine)
    return None


class _Background:
    """One thread beside the distortions that writes finished shards, in order, and encodes the
    images where no distorting threads do (a worker process, one core).

    ISA-L, libwebp and the parquet writer release the GIL, so on a second core the encoding and the
    writing cost little time on the first, which distorts; one thread (and the order it keeps) makes
    every shard's bytes the same as writing it inline. Its first job imports what the writing needs
    (:func:`_warm_imports`), again beside the distortions. At most ``max_bytes`` of images wait: a
    distortion that outruns the encoder waits for it. A failure is raised in the caller, at the next
    :meth:`submit` or at :meth:`close`.
    """

    def __init__(self, max_bytes: int = 128 << 20) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dgqa-synth-writer")
        self.pending: deque[tuple[Future, int]] = deque()
        self.queued = 0
        self.max_bytes = max_bytes
        self.error: BaseException | None = None
        self.submit(_warm_imports)

    def _run(self, fn: Callable, *args):
        """In the thread: after a failure nothing more runs (no shard after a failed one is written)."""
        if self.error is not None:
            raise self.error
        try:
            return fn(*args)
        except BaseException as err:
            self.error = err
            raise

    def submit(self, fn: Callable, *args, nbytes: int = 0) -> Future:
        if self.error is not None:
            raise self.error
        fut = self.pool.submit(self._run, fn, *args)
        self.pending.append((fut, nbytes))
        self.queued += nbytes
        while self.pending and (self.pending[0][0].done() or self.queued > self.max_bytes):
            done, size = self.pending.popleft()
            self.queued -= size
            done.result()  # waits, and raises what failed there
        return fut

    def wait(self) -> None:
        """Every job submitted so far has finished (its failure raised here)."""
        while self.pending:
            self.pending.popleft()[0].result()
        self.queued = 0

    def close(self, finish: bool = True) -> None:
        """End the thread after the queued jobs, or (``finish=False``: the caller stops on an error or
        Ctrl-C) after the running one only: a shard not yet written is left to the resume."""
        self.pool.shutdown(wait=True, cancel_futures=not finish)


def _warm_imports() -> None:
    """Import, in the background thread while the first images are distorted, what the writing of
    a shard and the card need (datasets, pyarrow, the card templates): half a second of start-up.
    The main thread has imported everything the distortions need before
    (:func:`_main_thread_imports`), so no two threads import the same modules."""
    import pyarrow.parquet  # noqa: F401

    import dgqa_data.cards  # noqa: F401  (datasets, hub_folder, the templates)

    _arrow_schema()


@lru_cache(maxsize=1)
def _arrow_schema():
    return synth_features().arrow_schema


def _write_table(rows: list[dict], path: Path, encoding: str) -> None:
    """One shard's rows as parquet at ``path`` (the images of ``png`` and ``webp`` are compressed
    already, so their column is stored as is; everything else, ``bmp`` images too, with zstd)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=_arrow_schema())
    compression = {n: ("none" if n == "image" and encoding != "bmp" else "zstd") for n in table.column_names}
    # no dictionary (hashing every image only to find no repeats) nor min/max statistics on the bytes
    small = [n for n in table.column_names if n != "image"] + ["image.path"]
    pq.write_table(
        table, path, row_group_size=100, compression=compression, use_dictionary=small, write_statistics=small
    )


def _main_thread_imports(labels: str) -> None:
    """What the distorting threads import, imported before a :class:`_Background` starts importing
    (two threads importing modules that import each other can deadlock)."""
    import dgqa_data.distortions  # noqa: F401
    import dgqa_data.images  # noqa: F401

    if labels == "severity":
        import dgqa_data.severity  # noqa: F401
    elif labels == "ms-ssim":
        import dgqa_data.camera  # noqa: F401
        import dgqa_data.msssim  # noqa: F401
        import dgqa_data.severity  # noqa: F401
    Image.init()  # every Pillow plugin (the distortions save JPEG and JPEG 2000)


def _write_shard(
    shard: int,
    refs: Sequence[Reference],
    plan: SynthPlan,
    work: Path,
    num_shards: int,
    background: _Background | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> int:
    """Generate one shard into ``work`` (atomically); returns the rows generated.

    The images are encoded and the shard is written by ``background`` while the caller goes on to
    the next shard (call its ``wait()`` before counting the shard as done); without one, a thread
    of its own does it and the shard is on disk when this returns.
    """
    final = work / "data" / f"train-{shard:05d}-of-{num_shards:05d}.parquet"
    empty = _empty_marker(work, shard)
    if final.exists() or empty.exists():
        return 0
    own = background is None
    if own:
        _main_thread_imports(plan.labels)
    bg = _Background() if own else background
    try:
        rows, images, skipped = [], [], []
        for ref, tid, level, seed, draws, name, img, mos in _shard_rows(shard, refs, plan, skipped, pool):
            if pool is not None:  # encoded by the distorting threads (queued behind the distortions ahead)
                images.append(pool.submit(_encode, img, plan.encoding))
            else:
                images.append(bg.submit(_encode, img, plan.encoding, nbytes=img.nbytes))
            rows.append(image_row(plan, ref, tid, level, seed, draws, name, None, mos))  # bytes: below
        bg.submit(_finish_shard, final, empty, rows, images, skipped, plan.encoding, work, shard)
        if own:
            bg.wait()
    except BaseException:
        if own:
            bg.close(finish=False)
        raise
    if own:
        bg.close()
    return len(rows)


def _finish_shard(
    final: Path,
    empty: Path,
    rows: list[dict],
    images: list[Future],
    skipped: list[dict[str, str]],
    encoding: str,
    work: Path,
    shard: int,
) -> None:
    """Write a generated shard atomically (in the background thread, after its images' encoding)."""
    if not rows:  # every reference of the shard was skipped: no empty parquet (datasets cannot read one)
        _record_skipped(work, shard, skipped)
        empty.write_text("")
        return
    for row, image in zip(rows, images, strict=True):
        row["image"]["bytes"] = image.result()
    tmp = final.with_suffix(f".tmp-{os.getpid()}")
    _write_table(rows, tmp, encoding)
    _record_skipped(work, shard, skipped)  # before the shard counts as done
    tmp.rename(final)
    from dgqa_data.hub_folder import file_digest

    file_digest(final)  # hashed now, beside the next shard's distortions, not in the card's fingerprint


def _empty_marker(work: Path, shard: int) -> Path:
    """Marks a finished shard without rows (all its references skipped)."""
    return work / "data" / f".empty-{shard:05d}"


def _record_skipped(work: Path, shard: int, skipped: list[dict[str, str]]) -> None:
    if skipped:
        (work / "skipped").mkdir(exist_ok=True)
        tmp = work / "skipped" / f"shard-{shard:05d}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(skipped))
        tmp.rename(work / "skipped" / f"shard-{shard:05d}.json")


def _write_shard_files(
    shard: int,
    refs: Sequence[Reference],
    plan: SynthPlan,
    work: Path,
    num_shards: int,
    pool: ThreadPoolExecutor | None = None,
) -> int:
    """``--format kadis-files``: ``dist_imgs/<stem>_<TT>_<LL>.bmp`` as the official script names them."""
    marker = work / ".done" / f"shard-{shard:05d}"
    if marker.exists():
        return 0
    n, skipped = 0, []
    for _ref, tid, _level, _seed, _draws, name, img, _mos in _shard_rows(shard, refs, plan, skipped, pool):
        if tid == 0:
            continue
        dest = work / "dist_imgs" / name
        tmp = dest.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(_encode(img, "bmp"))
        tmp.rename(dest)
        n += 1
    _record_skipped(work, shard, skipped)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(str(n))
    return n


def synthesize(
    source: str | Path,
    out: str | Path,
    *,
    plan: str = "full",
    types: Sequence[int] | None = None,
    levels: Sequence[int] | None = None,
    types_per_reference: int = 1,
    include_pristine: bool = True,
    seed: int = 0,
    fmt: str = "dataset",
    encoding: str = "png",
    refs_per_shard: int | None = None,
    num_proc: int = 1,
    num_shards: int | None = None,
    shard_index: int | None = None,
    limit: int | None = None,
    corpus: str = "synthetic",
    labels: str = "none",
    skip_bad: bool = False,
    progress: bool = True,
) -> Path | None:
    """Generate a KADIS-style synthetic dataset.

    Args:
        source: KADIS-700k root (``kadis700k_ref_imgs.csv`` + ``ref_imgs/``), a dgqa dataset folder
            (its ``pristine`` config when present), or any folder of images.
        out: output folder (Hub layout, or the KADIS layout with ``fmt="kadis-files"``).
        plan: ``kadis`` (one type per reference, from the CSV or a seeded draw; 5 levels), ``full``
            (every type x level), ``random`` (``types_per_reference`` seeded types per reference).
        types, levels: restrict to these type ids / levels.
        include_pristine: add each reference as class 0.
        seed: base seed; each image uses ``seed_for(reference, type, level, seed)``.
        fmt: ``dataset`` (parquet shards + card) or ``kadis-files`` (``dist_imgs/*.bmp``).
        encoding: the image format inside the parquet shards (``--image-format``): ``png`` (lossless,
            zlib level 1), ``webp`` (lossless WebP: smaller, faster to encode and decode) or ``bmp``
            (uncompressed). Pillow, and so ``load_dataset``, decodes each to the distorted pixels exactly.
        refs_per_shard: references per shard (the unit of resume and distribution); default: from the
            number of references only (:func:`auto_refs_per_shard`), so every process has work.
        num_proc: local worker processes.
        num_shards, shard_index: run only shards ``s`` with ``s % num_shards == shard_index``
            (defaults: ``WORLD_SIZE`` / ``RANK`` under ``accelerate launch`` or torchrun, else all).
        limit: use only the first ``limit`` references.
        corpus: value of the ``corpus`` column.
        labels: ``none`` (no scores, as KADIS-700k), ``severity`` (``mos`` from the applied type and
            level, :func:`dgqa_data.severity.synthetic_quality`: one scale with simulated camera
            captures) or ``ms-ssim`` (MS-SSIM against the reference mapped to 1-5,
            :func:`dgqa_data.camera.pseudo_mos`).
        skip_bad: record unreadable references in ``skipped.csv`` (and the card) instead of failing.
        progress: show a progress bar.

    Returns:
        ``out`` once every shard is done, else ``None`` (other shards are still to run).
    """
    if plan not in PLANS:
        raise DgqaError(f"unknown plan {plan!r}; choose one of {', '.join(PLANS)}")
    if fmt not in ("dataset", "kadis-files"):
        raise DgqaError(f"unknown format {fmt!r}; choose dataset or kadis-files")
    if labels not in LABELS:
        raise DgqaError(f"unknown labels {labels!r}; choose one of {', '.join(LABELS)}")
    if encoding not in IMAGE_FORMATS:
        raise DgqaError(f"unknown image format {encoding!r}; choose one of {', '.join(IMAGE_FORMATS)}")
    bad_types = [t for t in (types or []) if not 1 <= int(t) <= 25]
    bad_levels = [lv for lv in (levels or []) if not 1 <= int(lv) <= 5]
    if bad_types or bad_levels:
        raise DgqaError(
            f"types must be in 1..25 and levels in 1..5; got types {bad_types}, levels {bad_levels}"
        )
    source, out = Path(source).expanduser(), Path(out).expanduser()
    check_output(out, {"synth source": source})
    if out.exists():
        raise OutputExistsError(
            f"{out} already exists (a finished synth, or another folder); synth writes a new folder: "
            "choose another --out, or remove it to regenerate"
        )
    refs = find_references(source, limit)
    # the shard size depends on the number of references only, never on the processes: the output stays
    # byte-identical for any --num-proc, and small sets still give every process work
    refs_per_shard = refs_per_shard or auto_refs_per_shard(len(refs))
    cfg = SynthPlan(
        source=str(Path(source).resolve()),
        plan=plan,
        types=sorted(int(t) for t in types) if types else list(range(1, 26)),
        levels=sorted(int(lv) for lv in levels) if levels else [1, 2, 3, 4, 5],
        types_per_reference=types_per_reference,
        include_pristine=include_pristine,
        seed=seed,
        encoding=encoding if fmt == "dataset" else "bmp",
        refs_per_shard=refs_per_shard,
        corpus=corpus,
        limit=limit,
        labels=labels,
        skip_bad=skip_bad,
    )
    total_shards = -(-len(refs) // refs_per_shard)
    if num_shards is None and shard_index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        num_shards, shard_index = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    num_shards, shard_index = num_shards or 1, shard_index or 0
    if not 0 <= shard_index < num_shards:
        raise DgqaError(f"--shard-index {shard_index} must be in 0..{num_shards - 1}")

    work = out.parent / f".{out.name}.partial"
    _prepare_work(work, cfg, fmt)
    mine = [s for s in range(total_shards) if s % num_shards == shard_index]
    writer: Callable = _write_shard if fmt == "dataset" else _write_shard_files

    def size(s: int) -> int:  # images of shard s
        first = s * refs_per_shard
        return sum(len(jobs_for(i, refs[i], cfg)) for i in range(first, min(first + refs_per_shard, len(refs))))

    desc = "synth" if num_shards == 1 else f"synth (shards {shard_index + 1}/{num_shards})"
    bar = tqdm(total=sum(size(s) for s in mine), desc=desc, unit="img", disable=not progress)
    if num_proc > 1:
        from dgqa_data.workers import pool_initializer, quiet_broken_pool_race

        quiet_broken_pool_race()
        setup = pickle.dumps((_init_worker, (writer, refs, cfg, work, total_shards)))
        with ProcessPoolExecutor(
            num_proc, mp_context=get_context("spawn"), initializer=pool_initializer, initargs=(os.getpid(), setup)
        ) as pool:
            for s, _ in zip(mine, pool.map(_worker_shard, mine)):
                bar.update(size(s))
    else:  # one process: threads distort; the next shard is distorted while the last is encoded and written
        _main_thread_imports(cfg.labels)
        threads = distort_threads()
        pool = ThreadPoolExecutor(threads, thread_name_prefix="dgqa-distort") if threads > 1 else None
        background = _Background() if fmt == "dataset" else None
        try:
            for s in mine:
                if background is not None:
                    _write_shard(s, refs, cfg, work, total_shards, background, pool)
                else:
                    _write_shard_files(s, refs, cfg, work, total_shards, pool)
                bar.update(size(s))
            if background is not None:
                background.wait()
        except BaseException:
            if background is not None:
                background.close(finish=False)
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if background is not None:
            background.close()
    bar.close()
    return _finalize(work, out, cfg, fmt, refs, total_shards)


#: The lock file of the one process that finalizes (a killed finalizer's lock is taken over).
FINALIZING = ".finalizing"

_WORKER: tuple = ()


def _init_worker(*args) -> None:
    """Worker set-up: the references and plan travel once per worker, not once per shard."""
    global _WORKER
    _WORKER = args
    import cv2

    cv2.setNumThreads(1)


def _worker_shard(shard: int) -> int:
    writer, refs, cfg, work, total = _WORKER
    return writer(shard, refs, cfg, work, total)


def _prepare_work(work: Path, cfg: SynthPlan, fmt: str) -> None:
    plan_file = work / "plan.json"
    # a synth's partial output has its plan (or, while another process of this run starts, its first
    # folder); anything else is not synth's to write into
    first = ("data", "dist_imgs")
    if not plan_file.is_file() and work.is_dir() and any(
        p.name not in first and not p.name.startswith("plan.tmp-") for p in work.iterdir()
    ):
        raise OutputExistsError(
            f"{work} exists and is not the partial output of a dgqa synth (no plan.json); synth would "
            "write into it: move it away or choose another --out"
        )
    (work / ("data" if fmt == "dataset" else "dist_imgs")).mkdir(parents=True, exist_ok=True)
    state = {"plan": asdict(cfg), "format": fmt, "key": cfg.key()}
    if plan_file.exists():
        old = json.loads(plan_file.read_text())
        if old.get("key") != state["key"] or old.get("format") != fmt:
            raise DgqaError(
                f"{work} holds partial output of a different plan; rerun with the same arguments to resume, "
                "or delete it to start over"
            )
    else:
        tmp = plan_file.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.rename(plan_file)


def _finalize(
    work: Path, out: Path, cfg: SynthPlan, fmt: str, refs: Sequence[Reference], total_shards: int
) -> Path | None:
    if fmt == "dataset":
        done = len(list((work / "data").glob("train-*.parquet"))) + len(
            list((work / "data").glob(".empty-*"))
        )
    else:
        done = len(list((work / ".done").glob("shard-*"))) if (work / ".done").exists() else 0
    if done < total_shards:
        return None
    if claim_lock(work / FINALIZING) is not None:  # exactly one process finalizes
        return None
    # every shard is done, so a temporary file left now is from a killed run: never ship it
    for leftover in [*work.glob("data/*.tmp-*"), *work.glob("dist_imgs/*.tmp-*"), *work.glob("plan.tmp-*")]:
        leftover.unlink()
    skipped = [s for f in sorted(work.glob("skipped/shard-*.json")) for s in json.loads(f.read_text())]
    if fmt == "dataset" and not list((work / "data").glob("train-*.parquet")):
        (work / FINALIZING).unlink()
        raise CorpusError(
            f"no reference could be read ({len(skipped)} skipped); see the reasons in {work / 'skipped'}"
        )
    for marker in (work / "data").glob(".empty-*"):
        marker.unlink()
    bad = {s["reference"] for s in skipped}
    counts: Counter = Counter()
    for ref_no, ref in enumerate(refs):
        for tid, _ in jobs_for(ref_no, ref, cfg) if ref.ref_id not in bad else ():
            counts[tid] += 1
    shutil.rmtree(work / "skipped", ignore_errors=True)
    if skipped:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["reference", "reason"])
        writer.writeheader()
        writer.writerows({k: escape(v) for k, v in s.items()} for s in skipped)
        (work / "skipped.csv").write_text(buf.getvalue())
    if fmt == "kadis-files":
        _write_kadis_csv(work, [r for r in refs if r.ref_id not in bad], cfg)
    else:
        card = synth_card(cfg, counts, len(refs) - len(bad), work, skipped=len(skipped))
        (work / "README.md").write_text(card, encoding="utf-8")
    (work / FINALIZING).unlink()
    shutil.rmtree(work / ".done", ignore_errors=True)
    work.rename(out)
    return out


def _write_kadis_csv(work: Path, refs: Sequence[Reference], cfg: SynthPlan) -> None:
    lines = ["ref_im,dist_type_1,dist_type_2"]
    for ref_no, ref in enumerate(refs):
        types = sorted({t for t, _ in jobs_for(ref_no, ref, cfg) if t})
        lines += [f"{ref.ref_id},{t}," for t in types]
    (work / KADIS_CSV).write_text("\n".join(lines) + "\n")
    ref_dir = work / "ref_imgs"
    ref_dir.mkdir(exist_ok=True)
    for ref in refs:
        dest = ref_dir / ref.ref_id
        dest.parent.mkdir(parents=True, exist_ok=True)
        if ref.path is not None:
            shutil.copyfile(ref.path, dest)
        else:
            Image.fromarray(ref.load()).save(dest.with_suffix(".png"))


def synth_card(cfg: SynthPlan, counts: Counter, num_refs: int, work: Path, skipped: int = 0) -> str:
    """README.md of a synthetic dataset: plan, counts per type, the distortion registry.

    The front matter carries ``dataset_info`` (row count and parquet bytes) and the content
    fingerprint of the data files (:func:`dgqa_data.hub_folder.stamp_fingerprints`), so a rerun or
    a second output of the same name never loads old cached rows.
    """
    from dgqa_data.cards import build_card, card_metadata
    from dgqa_data.distortions import DISTORTIONS
    from dgqa_data.hub_folder import dataset_info_yaml, stamp_fingerprints

    num_rows = sum(counts.values())
    meta = card_metadata(
        pretty_name=f"dgqa synthetic KADIS-style set ({cfg.plan})",
        license="other",
        parts=[("default", "train")],
        num_rows=num_rows,
        tags=["synthetic", "kadis700k"],
        extra={"dgqa": {"plan": asdict(cfg)}},
    )
    files = sorted((work / "data").glob("train-*.parquet"))
    size = sum(f.stat().st_size for f in files)
    meta["dataset_info"] = dataset_info_yaml(
        synth_features(), {("default", "train"): (num_rows, size)}, {("default", "train"): size}
    )
    stamp_fingerprints(meta, work)
    specs = [
        {
            "id": s.id,
            "name": s.name,
            "group": s.group,
            "levels": ", ".join(f"{v:g}" for v in s.levels),
            "random": s.random,
            "exact": s.exact,
            "note": s.note,
            "count": counts.get(s.id, 0),
        }
        for s in sorted(DISTORTIONS.values(), key=lambda s: s.id)
    ]
    return build_card(
        "synthetic",
        meta,
        plan=cfg,
        num_refs=num_refs,
        skipped=skipped,
        num_rows=num_rows,
        pristine=counts.get(0, 0),
        specs=specs,
        version=__version__,
    )


# -- the command line -------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``synth``."""
    p.add_argument(
        "--source", required=True, help="KADIS-700k root, a dgqa dataset folder, or a folder of images"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--plan", choices=["kadis", "full", "random"], default="full")
    p.add_argument("--types", default=None, help="comma-separated type ids or names (default: all 25)")
    p.add_argument("--levels", default=None, help="comma-separated levels (default: 1,2,3,4,5)")
    p.add_argument("--types-per-reference", type=at_least(1), default=1, help="for --plan random")
    p.add_argument("--no-pristine", action="store_true", help="do not include the references as class 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["dataset", "kadis-files"], default="dataset")
    p.add_argument(
        "--image-format",
        "--encoding",  # the former spelling, kept
        dest="encoding",
        choices=IMAGE_FORMATS,
        default="png",
        help="image file format inside the parquet shards: png (lossless, the default), webp (lossless, "
        "smaller and faster to encode and decode) or bmp (uncompressed); --encoding is the former spelling",
    )
    p.add_argument(
        "--refs-per-shard",
        type=at_least(1),
        default=None,
        help="references per shard, the unit of resume and distribution (default: about 16 shards, "
        "at most 32 references each)",
    )
    p.add_argument(
        "--num-proc",
        type=at_least(1),
        default=1,
        help="worker processes (default 1: one process, distorting on two threads where two cores are free)",
    )
    p.add_argument("--num-shards", type=at_least(1), default=None, help="split the work for a scheduler")
    p.add_argument("--shard-index", type=at_least(0), default=None)
    p.add_argument("--limit", type=at_least(1), default=None, help="use only the first N references")
    p.add_argument("--corpus", default="synthetic", help="value of the corpus column")
    p.add_argument(
        "--labels",
        choices=["none", "severity", "ms-ssim"],
        default="none",
        help="quality labels (mos, 1-5): none (as KADIS-700k), severity (from the applied type and level, "
        "the scale of dgqa_data.severity) or ms-ssim (full-reference pseudo-MOS); default none",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="record unreadable references in skipped.csv and the card instead of failing",
    )


def run(args: argparse.Namespace) -> None:
    from dgqa_data.schema import type_id

    types = [type_id(t) for t in args.types.split(",")] if args.types else None
    levels = [int(v) for v in args.levels.split(",")] if args.levels else None
    out = synthesize(
        args.source,
        args.out,
        plan=args.plan,
        types=types,
        levels=levels,
        types_per_reference=args.types_per_reference,
        include_pristine=not args.no_pristine,
        seed=args.seed,
        fmt=args.format,
        encoding=args.encoding,
        refs_per_shard=args.refs_per_shard,
        num_proc=args.num_proc,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        limit=args.limit,
        corpus=args.corpus,
        labels=args.labels,
        skip_bad=args.skip_bad,
    )
    print(f"wrote {out}" if out else "shard(s) done; the dataset is finalised when every shard has run")
