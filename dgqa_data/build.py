"""``dgqa build``: an official corpus download -> a Hub-layout dataset folder."""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import inspect
import io
import itertools
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dgqa_data import __version__
from dgqa_data.cards import build_card, card_metadata
from dgqa_data.corpora.base import Corpus, CorpusError, Item, Skip, get_corpus, safe_path
from dgqa_data.csv_cells import escape_row
from dgqa_data.errors import DgqaError, at_least
from dgqa_data.hub_folder import HubFolderWriter
from dgqa_data.imagecheck import check_image_bytes
from dgqa_data.paths import check_output
from dgqa_data.schema import DISTORTION_NAMES
from dgqa_data.splits import SPLITS_CONFIG, TABLE_CSV, TABLE_PARQUET, SplitRow, build_table
from dgqa_data.workers import exit_with_parent, quiet_broken_pool_race


class BuildError(CorpusError):
    """A bad item stopped the build (rerun with ``--skip-bad`` to record and skip such items)."""


@dataclass
class BuildReport:
    """What a build wrote and what it skipped."""

    out: Path
    counts: dict[tuple[str, str], int]
    skipped: list[Skip] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(self.counts.values())


def _read(
    path: str, full: bool = False, transform: Callable[[bytes], bytes] | None = None
) -> tuple[bytes | None, str | None]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, "listed image is missing"
    except OSError as err:
        return None, f"cannot read image: {err}"
    reason = check_image_bytes(data, full=full)
    if reason or transform is None:
        return (None, reason) if reason else (data, None)
    try:
        return transform(data), None
    except (OSError, ValueError) as err:
        return None, f"cannot transform image: {str(err).removeprefix('image: ')}"


def build_corpus(
    name: str | Corpus,
    root: str | Path,
    out: str | Path,
    /,
    *,
    num_proc: int = 1,
    skip_bad: bool = False,
    index_only: bool = False,
    verify: str = "fast",
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> BuildReport:
    """Build one corpus from its official download.

    Args:
        name: registry name (``kadid10k``, ``livec``, ...) or a :class:`Corpus`.
        root: the unzipped official download.
        out: the dataset folder to write (e.g. ``hub/dgqa/kadid10k``).
        num_proc: processes reading and checking image files.
        skip_bad: record bad items in ``skipped.csv`` and the card instead of failing.
        index_only: store image paths + sha256 instead of the image bytes.
        verify: ``"fast"`` checks headers and end markers; ``"full"`` decodes every image.
        overwrite: replace ``out`` if it exists (only once the new build is complete).
        progress: show a progress bar.
        **options: corpus-specific options (e.g. ``resolution`` for KonIQ-10k; ``name`` for ``folder``,
            which is why ``name``, ``root`` and ``out`` are positional-only).

    Returns:
        A :class:`BuildReport` with row counts per (config, split) and the skipped items.
    """
    corpus = (name if isinstance(name, Corpus) else get_corpus(name)).for_build(**options)
    root, out = Path(root).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} does not exist or is not a folder")
    check_output(out, {"corpus root": root})
    _check_options(corpus, options)
    if index_only and corpus.transform is not None:
        raise CorpusError(
            f"{corpus.name}: --index-only stores the shipped files, but these options change the images "
            f"({', '.join(f'{k}={v}' for k, v in options.items())}): build with one or the other"
        )
    # Pass 1, metadata only: every bad row and duplicate is known before an image is read, and
    # nothing but the names is kept, so memory stays flat in the corpus size (700k rows for KADIS).
    skipped: list[Skip] = []
    seen: dict[str, str] = {}
    type_counts: Counter = Counter()
    for entry in _inside(corpus.rows(root, **options), root):
        if isinstance(entry, Skip):
            skipped.append(entry)
            continue
        image_id = entry.row["image_id"]
        problem = corpus.score_problem(entry.row)
        if problem is not None:
            skipped.append(Skip(image_id, entry.row.get("_where", ""), problem))
            continue
        if image_id in seen:
            skipped.append(
                Skip(image_id, entry.row.get("_where", ""), f"duplicate name (first at {seen[image_id]})")
            )
            continue
        seen[image_id] = entry.row.get("_where", "")
        type_counts[entry.row["distortion_type"]] += 1
    _fail_or_record(skipped, skip_bad)
    num_items = len(seen)
    if not num_items:
        raise CorpusError(f"{corpus.name}: no images found under {root}")
    del seen

    # Pass 2 streams the same rows (``rows`` is deterministic) into the writer.
    items, ahead = itertools.tee(_unique_items(_inside(corpus.rows(root, **options), root), corpus))

    features = corpus.features(index_only)
    # the published splits (splits.csv) cover the scored corpora's default config
    split_rows: list[SplitRow] | None = [] if corpus.score_range is not None else None
    writer = HubFolderWriter(
        out, features, overwrite=overwrite, compress_images=corpus.image_format in ("bmp", "mixed")
    )
    with writer:
        read = partial(_read, full=verify == "full", transform=corpus.transform)
        paths = (str(it.path) for it in ahead)
        if num_proc > 1:
            quiet_broken_pool_race()
            pool: Executor = ProcessPoolExecutor(
                num_proc,
                mp_context=get_context("spawn"),
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )
            results = _bounded_map(pool, read, paths, num_proc)
        else:
            # one process; two threads read ahead so that disk waits overlap the parquet writes
            pool = ThreadPoolExecutor(2)
            results = _bounded_map(pool, read, paths, 2)
        try:
            bar = tqdm(
                zip(items, results), total=num_items, desc=f"build {corpus.name}", disable=not progress
            )
            for item, (data, reason) in bar:
                row = {k: v for k, v in item.row.items() if not k.startswith("_")}
                if reason is not None:
                    skipped.append(Skip(row["image_id"], item.row.get("_where", str(item.path)), reason))
                    _fail_or_record(skipped[-1:], skip_bad)
                    continue
                if index_only:
                    row["image"] = _relative(item.path, root)
                    row["sha256"] = hashlib.sha256(data).hexdigest()
                else:
                    row["image"] = {"bytes": data, "path": row["image_id"]}
                writer.add(row, item.split, item.config)
                if split_rows is not None and item.config == "default":
                    ids = (row["image_id"], row.get("reference_id"))
                    scores = (row.get("mos"), row.get("mos_std"))
                    split_rows.append(SplitRow(*ids, *scores, item.split, row.get("corpus")))
        finally:
            pool.shutdown(cancel_futures=True)
        counts = dict(writer.counts)
        extra: dict[str, str | bytes | Path] = {"skipped.csv": skipped_csv(skipped)} if skipped else {}
        splits = None
        if split_rows:
            table, splits = build_table(split_rows)
            extra[TABLE_CSV], extra[TABLE_PARQUET] = table.to_csv(), table.to_parquet()
        card = corpus_card(corpus, writer.parts(), counts, skipped, type_counts, index_only, splits)
        writer.finish(card, extra)
    return BuildReport(Path(out), counts, skipped)


def _check_options(corpus: Corpus, options: dict[str, Any]) -> None:
    """Reject options the corpus' ``rows`` does not take, naming the ones it does."""
    params = list(inspect.signature(corpus.rows).parameters.values())[1:]  # after ``root``
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise CorpusError(
            f"{corpus.name}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(known) if known else 'none'}"
        )


def _inside(entries: Iterator[Item | Skip], root: Path) -> Iterator[Item | Skip]:
    """The one rule of every builder: an image that resolves outside the corpus root (a symlink
    out of it, ``..`` in a metadata name) is a bad item, never read."""
    for entry in entries:
        if isinstance(entry, Item):
            checked = safe_path(
                root, os.path.relpath(entry.path, root), entry.row.get("_where", str(entry.path))
            )
            if isinstance(checked, Skip):
                entry = Skip(entry.row["image_id"], checked.where, checked.reason)
        yield entry


def _unique_items(entries: Iterator[Item | Skip], corpus: Corpus) -> Iterator[Item]:
    """The items of ``entries`` that pass 1 kept: first occurrence of each ``image_id``, scores on
    the corpus' scale (pass 2 of a build)."""
    done: set[str] = set()
    for entry in entries:
        if isinstance(entry, Skip) or corpus.score_problem(entry.row) is not None:
            continue
        if entry.row["image_id"] not in done:
            done.add(entry.row["image_id"])
            yield entry


def _read_chunk(read: Callable, paths: list[str]) -> list[tuple[bytes | None, str | None]]:
    return [read(p) for p in paths]


def _bounded_map(
    pool: Executor, read: Callable, paths: Iterator[str], num_proc: int, chunk: int = 16
) -> Iterator[tuple[bytes | None, str | None]]:
    """``map(read, paths)`` on ``pool``, in order, with at most ``4 * num_proc`` chunks in flight.

    ``Executor.map`` submits every task up front, so image bytes pile up in memory whenever the
    workers read faster than the writer writes; the window keeps memory flat in the corpus size.
    """
    pending: deque = deque()
    for batch in iter(lambda: list(itertools.islice(paths, chunk)), []):
        pending.append(pool.submit(_read_chunk, read, batch))
        if len(pending) >= 4 * num_proc:
            yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the corpus root (POSIX), as index-only datasets store it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _fail_or_record(skipped: list[Skip], skip_bad: bool) -> None:
    if skipped and not skip_bad:
        s = skipped[0]
        raise BuildError(f"{s.where}: {s.image_id}: {s.reason} (use --skip-bad to record and skip bad items)")


def skipped_csv(skipped: list[Skip]) -> str:
    """``skipped.csv``: image_id, where, reason."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image_id", "where", "reason"])
    w.writerows(escape_row((s.image_id, s.where, s.reason)) for s in skipped)
    return buf.getvalue()


def corpus_card(
    corpus: Corpus,
    parts: list[tuple[str, str]],
    counts: dict[tuple[str, str], int],
    skipped: list[Skip],
    type_counts: Counter,
    index_only: bool,
    splits: dict[str, Any] | None = None,
) -> str:
    """The README.md of a built corpus; ``splits`` is the summary of its ``splits.csv``
    (:func:`dgqa_data.splits.build_table`), which adds the ``splits`` config."""
    meta = card_metadata(
        pretty_name=corpus.pretty_name,
        license=corpus.license,
        parts=parts,
        num_rows=sum(counts.values()),
        tags=[corpus.name],
    )
    if splits is not None:
        meta["configs"].append(copy.deepcopy(SPLITS_CONFIG))
    types = [
        {"id": t, "name": DISTORTION_NAMES[t] if t >= 0 else "authentic / unknown", "count": n}
        for t, n in sorted(type_counts.items())
    ]
    return build_card(
        corpus.card_template or corpus.name,
        meta,
        corpus=corpus,
        counts=[{"config": c, "split": s, "rows": n} for (c, s), n in counts.items()],
        num_rows=sum(counts.values()),
        skipped=skipped,
        type_counts=types,
        index_only=index_only,
        splits=splits,
        version=__version__,
    )


# -- the command line -------------------------------------------------------------------------------


#: The registered corpora (``dgqa_data.corpora.list_corpora()``; spelled out so that ``--help`` stays
#: fast: a test keeps the two equal).
CORPUS_NAMES = (
    "agiqa3k", "bid", "csiq", "folder", "kadid10k", "kadis700k", "koniq10k", "live", "livec", "pipal",
    "spaq", "tid2013",
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``build``."""
    p.add_argument("name", help=f"corpus name ({', '.join(CORPUS_NAMES)})")
    p.add_argument("--root", required=True, help="the unzipped official download")
    p.add_argument("--out", required=True, help="dataset folder to write, e.g. hub/dgqa/kadid10k")
    p.add_argument(
        "--num-proc", type=at_least(1), default=1, help="processes reading and checking images (default 1)"
    )
    p.add_argument(
        "--skip-bad", action="store_true", help="record bad items in skipped.csv instead of failing"
    )
    p.add_argument("--index-only", action="store_true", help="store paths + sha256 instead of image bytes")
    p.add_argument("--verify", choices=["fast", "full"], default="fast", help="full = decode every image")
    p.add_argument("--overwrite", action="store_true", help="replace --out once the new build is complete")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="corpus-specific option, e.g. resolution=512x384 (koniq10k), score_range=0,100 (folder)",
    )


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` with a clear error on a malformed pair."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DgqaError(f"--option expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> None:
    report = build_corpus(
        args.name,
        args.root,
        args.out,
        num_proc=args.num_proc,
        skip_bad=args.skip_bad,
        index_only=args.index_only,
        verify=args.verify,
        overwrite=args.overwrite,
        **parse_options(args.option),
    )
    print(f"wrote {report.out}: {report.num_rows} rows")
    for (config, split), n in report.counts.items():
        print(f"  {config}/{split}: {n}")
    if report.skipped:
        print(f"  skipped {len(report.skipped)} item(s), listed in {report.out / 'skipped.csv'}")
