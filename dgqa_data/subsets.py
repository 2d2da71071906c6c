"""Curated subsets of a built corpus: DGQA selections and their controls, as Hub-layout folders.

A subset is written from a dataset folder made by ``dgqa build`` (its ``default`` config): the
source parquet is read in record batches with pyarrow, filtered, and streamed into a new folder by
:class:`~dgqa_data.hub_folder.HubFolderWriter`. Image bytes are copied as stored, never decoded.

Three kinds, one writer:

* ``selection``: the source domains (KADID distortion types) a :class:`~dgqa_data.selection.Selection`
  chose, named ``<source>-sel-<target>``;
* ``all``: every row, the 25-type baseline, named ``<source>-all``;
* ``random``: ``n`` rows drawn uniformly without replacement over the whole source with
  ``numpy.random.default_rng(seed).choice(N, n, replace=False)`` (rows keep the source order), named
  ``<source>-random-<n>-seed<seed>``; ``n`` is usually the size of a selected subset, so a benchmark
  compares like with like.

Rows of a corpus whose terms do not allow redistribution are written index-only unless embedding is
asked for explicitly: ``image`` holds the path relative to the corpus root and ``sha256`` the image
bytes' digest. :func:`dgqa_data.hydrate.hydrate` re-attaches the images from the user's own
download, verifying every checksum. The card of a subset is :func:`dgqa_data.cards.subset_card`.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from dgqa_data import __version__
from dgqa_data.cards import subset_card
from dgqa_data.corpora.base import find_corpus
from dgqa_data.errors import DgqaError, at_least
from dgqa_data.hub_folder import HubFolderWriter, json_text, read_card_metadata
from dgqa_data.paths import check_output
from dgqa_data.schema import DISTORTION_NAMES
from dgqa_data.selection import Selection, plot_selection

KINDS = ("selection", "all", "random")
DEFAULT_NAMESPACE = "dgqa"
BATCH_ROWS = 256


class SubsetError(DgqaError):
    """A subset cannot be written (bad source folder, empty selection, size too large, ...)."""


# -- names ------------------------------------------------------------------------------------
def subset_name(source: str, target: str) -> str:
    """Name of a selected subset: ``<source>-sel-<target>`` (e.g. ``kadid10k-sel-livec``).

    Characters a Hub repo name cannot hold become ``-`` (``"LIVE Challenge"`` -> ``LIVE-Challenge``).
    """
    return f"{source}-sel-{re.sub(r'[^A-Za-z0-9._-]+', '-', target).strip('-')}"


def all_name(source: str) -> str:
    """Name of the all-types control: ``<source>-all``."""
    return f"{source}-all"


def random_name(source: str, size: int, seed: int) -> str:
    """Name of a random control: ``<source>-random-<size>-seed<seed>``."""
    return f"{source}-random-{size}-seed{seed}"


# -- the source folder ------------------------------------------------------------------------
@dataclass
class SourceFolder:
    """A dataset folder written by dgqa, read lazily.

    Attributes:
        folder: the folder.
        name: its name (the folder name, e.g. ``kadid10k``).
        metadata: the card's YAML front matter.
        parts: ``{(config, split): [parquet files]}`` from the card's ``configs``.
        features: features stored in the parquet schema.
    """

    folder: Path
    name: str
    metadata: dict[str, Any]
    parts: dict[tuple[str, str], list[Path]]
    features: datasets.Features

    @classmethod
    def open(cls, folder: str | Path) -> SourceFolder:
        """Read a dataset folder's card and locate its parquet files per (config, split)."""
        folder = Path(folder).expanduser()
        if not (folder / "README.md").is_file():
            raise SubsetError(f"{folder} is not a dataset folder written by dgqa: no README.md")
        meta = read_card_metadata(folder)
        parts: dict[tuple[str, str], list[Path]] = {}
        for config in meta.get("configs") or []:
            for entry in config.get("data_files") or []:
                patterns = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
                files = sorted({f for p in patterns for f in folder.glob(p) if f.suffix == ".parquet"})
                parts[(config["config_name"], entry["split"])] = files
        if not any(parts.values()):
            raise SubsetError(f"{folder}: the card's configs list no parquet files")
        first = next(f for files in parts.values() for f in files)
        features = datasets.Features.from_arrow_schema(pq.read_schema(first))
        return cls(folder, folder.name, meta, parts, features)

    @property
    def index_only(self) -> bool:
        """Whether ``image`` holds relative paths (+ ``sha256``) instead of bytes."""
        return not isinstance(self.features["image"], datasets.Image)

    def config_parts(self, config: str = "default") -> list[tuple[str, list[Path]]]:
        """``[(split, files)]`` of one config, in card order."""
        found = [(split, files) for (c, split), files in self.parts.items() if c == config]
        if not found:
            raise SubsetError(f"{self.folder}: no config {config!r} in the card")
        return found

    def scan(self, config: str = "default") -> tuple[np.ndarray, list[str]]:
        """``distortion_type`` of every row (source order) and the distinct ``corpus`` values."""
        types: list[np.ndarray] = []
        corpora: set[str] = set()
        for _, files in self.config_parts(config):
            for f in files:
                table = pq.read_table(f, columns=["distortion_type", "corpus"])
                types.append(table["distortion_type"].to_numpy(zero_copy_only=False).astype(np.int64))
                corpora.update(v for v in table["corpus"].unique().to_pylist() if v is not None)
        return (np.concatenate(types) if types else np.zeros(0, np.int64)), sorted(corpora)


def restricted_corpora(corpora: list[str]) -> list[str]:
    """The registered corpora among ``corpora`` whose terms forbid redistributing their images.

    A ``corpus`` value that names no registered corpus (a synthetic set, a ``folder`` build of your
    own photos) is yours to share: its images are embedded.
    """
    return [name for name in corpora if (c := find_corpus(name)) is not None and not c.redistributable]


def index_only_features(features: datasets.Features) -> datasets.Features:
    """``features`` with ``image`` as a relative path string plus a ``sha256`` column."""
    feats = datasets.Features(features)
    feats["image"] = datasets.Value("string")
    if "sha256" not in feats:
        feats["sha256"] = datasets.Value("string")
    return feats


# -- writing subsets --------------------------------------------------------------------------
@dataclass
class SubsetReport:
    """What a subset run wrote.

    Attributes:
        out: the dataset folder.
        name: its name (``kadid10k-sel-livec``, ...).
        kind: ``selection``, ``all`` or ``random``.
        counts: rows per (config, split).
        domain_counts: rows per distortion type id.
        index_only: whether images are stored as paths + sha256.
        missing_types: selected types with no row in the source.
    """

    out: Path
    name: str
    kind: str
    counts: dict[tuple[str, str], int]
    domain_counts: dict[int, int]
    index_only: bool
    missing_types: list[int] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(self.counts.values())


def write_subset(
    source: str | Path,
    *,
    kind: str = "selection",
    selection: Selection | None = None,
    size: int | None = None,
    seed: int = 0,
    target: str | None = None,
    out: str | Path | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    embed_restricted: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> SubsetReport:
    """Write a selected subset or a control of a built corpus as a Hub-layout folder.

    Args:
        source: dataset folder written by ``dgqa build`` (its ``default`` config is used).
        kind: ``selection`` (rows of ``selection.selected``), ``all`` or ``random``.
        selection: the selection (``selection`` kind); for ``random`` without ``size`` it gives
            the size (the row count the selection keeps).
        size: rows of a ``random`` control.
        seed: seed of the ``random`` control.
        target: target name used in the subset name (default: ``selection.target``).
        out: folder to write (default: ``<source parent>/<name>``).
        namespace: Hub namespace used in the card (``load_dataset("<namespace>/<name>")``).
        embed_restricted: embed images of corpora whose terms forbid redistribution (otherwise
            such rows are written index-only).
        overwrite: replace ``out`` once the new folder is complete.
        progress: show a progress bar (rows written).

    Returns:
        A :class:`SubsetReport`.
    """
    if kind not in KINDS:
        raise SubsetError(f"unknown subset kind {kind!r}; choose one of {', '.join(KINDS)}")
    src = SourceFolder.open(source)
    types, corpora = src.scan()
    total = len(types)
    if total == 0:
        raise SubsetError(f"{src.folder}: the default config has no rows")

    missing: list[int] = []
    sampled_from: int | None = None
    if kind == "selection":
        if selection is None:
            raise SubsetError("a selected subset needs a selection (--selection or --paper)")
        target = target or selection.target
        keep = np.isin(types, selection.selected)
        present = set(np.unique(types).tolist())
        missing = [t for t in selection.selected if t not in present]
        if not keep.any():
            raise SubsetError(
                f"{src.folder}: no rows of the selected types {selection.selected} in the source"
            )
        name = subset_name(src.name, target)
    elif kind == "all":
        keep = np.ones(total, dtype=bool)
        name = all_name(src.name)
    else:
        if size is None:
            if selection is None:
                raise SubsetError("a random control needs --size or a selection to match in size")
            size = int(np.isin(types, selection.selected).sum())
            target = target or selection.target
        if not 0 < size <= total:
            raise SubsetError(f"random control size {size} is outside 1..{total} (rows in {src.folder})")
        rng = np.random.default_rng(seed)
        keep = np.zeros(total, dtype=bool)
        keep[rng.choice(total, size=size, replace=False)] = True
        sampled_from = total
        name = random_name(src.name, size, seed)

    restricted = restricted_corpora(corpora)
    to_index = bool(restricted) and not embed_restricted and not src.index_only
    index_only = src.index_only or to_index
    features = index_only_features(src.features) if to_index else src.features
    out = Path(out).expanduser() if out is not None else src.folder.parent / name
    check_output(out, {"source dataset": src.folder})
    compress = any((c := find_corpus(n)) is not None and c.image_format in ("bmp", "mixed") for n in corpora)

    writer = HubFolderWriter(out, features, overwrite=overwrite, compress_images=compress and not index_only)
    bar = tqdm(total=int(keep.sum()), desc=f"writing {name}", unit="img", disable=not progress)
    with writer, bar:
        offset = 0
        for split, files in src.config_parts():
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS):
                    mask = keep[offset : offset + batch.num_rows]
                    offset += batch.num_rows
                    if not mask.any():
                        continue
                    for row in batch.filter(pa.array(mask)).to_pylist():
                        writer.add(_to_index_only(row, f) if to_index else row, split)
                    bar.update(int(mask.sum()))
        kept_types = types[keep]
        domain_counts = dict(sorted(Counter(kept_types.tolist()).items()))
        info = {
            "name": name,
            "kind": kind,
            "source": src.name,
            "source_rows": total,
            "rows": int(keep.sum()),
            "target": target,
            "seed": seed if kind == "random" else None,
            "sampling": (
                "numpy.random.default_rng(seed).choice(source_rows, rows, replace=False); source order kept"
                if kind == "random"
                else None
            ),
            "selected": list(selection.selected) if kind == "selection" else None,
            "size_of": subset_name(src.name, target) if (kind == "random" and target) else None,
            "domain_counts": {
                DISTORTION_NAMES[t] if t >= 0 else "authentic": n for t, n in domain_counts.items()
            },
            "index_only": index_only,
            "dgqa_version": __version__,
        }
        extra: dict[str, str | bytes | Path] = {"subset.json": json_text(info)}
        with tempfile.TemporaryDirectory() as tmp:
            if kind == "selection":
                extra["selection.json"] = selection.to_json()
                extra["similarity.png"] = plot_selection(selection, Path(tmp) / "similarity.png").read_bytes()
            card = subset_card(
                source=src.name,
                source_metadata=src.metadata,
                name=name,
                kind=kind,
                selection=selection if kind == "selection" else None,
                target=target,
                size=int(keep.sum()),
                seed=seed,
                sampled_from=sampled_from,
                parts=writer.parts(),
                counts=dict(writer.counts),
                domain_counts=domain_counts,
                corpora=corpora,
                restricted=restricted,
                index_only=index_only,
                namespace=namespace,
            )
            writer.finish(card, extra)
    return SubsetReport(out, name, kind, dict(writer.counts), domain_counts, index_only, missing)


def _to_index_only(row: dict[str, Any], where: Path) -> dict[str, Any]:
    image = row["image"] or {}
    data = image.get("bytes")
    if data is None:
        raise SubsetError(f"{where}: row {row.get('image_id')!r} has no image bytes to checksum")
    row["image"] = image.get("path") or row["image_id"]
    row["sha256"] = hashlib.sha256(data).hexdigest()
    return row


def select_subset(source: str | Path, selection: Selection, **kwargs: Any) -> SubsetReport:
    """The rows of the selected domains (``<source>-sel-<target>``); see :func:`write_subset`."""
    return write_subset(source, kind="selection", selection=selection, **kwargs)


def all_control(source: str | Path, **kwargs: Any) -> SubsetReport:
    """Every row of the source's default config (``<source>-all``); see :func:`write_subset`."""
    return write_subset(source, kind="all", **kwargs)


def random_control(source: str | Path, size: int | Selection, seed: int = 0, **kwargs: Any) -> SubsetReport:
    """``size`` rows drawn uniformly with ``seed`` (``<source>-random-<n>-seed<s>``).

    ``size`` may be a :class:`Selection`: the control then has as many rows as that selected subset.
    """
    if isinstance(size, Selection):
        return write_subset(source, kind="random", selection=size, seed=seed, **kwargs)
    return write_subset(source, kind="random", size=size, seed=seed, **kwargs)


# -- the command line -------------------------------------------------------------------------------


def subset_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``subset``."""
    p.add_argument(
        "--source", required=True, help="dataset folder written by `dgqa build`, e.g. hub/dgqa/kadid10k"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--selection", help="selection.json of a selection run")
    which.add_argument(
        "--paper",
        metavar="TARGET",
        help="a selection published by DGQA: livec, koniq10k, bid, pipal1..pipal6",
    )
    p.add_argument(
        "--control",
        choices=["all", "random"],
        help="write a control instead: all types, or a seeded random sample of --size rows "
        "(default size: that of the --selection/--paper subset)",
    )
    p.add_argument("--size", type=at_least(1), default=None, help="rows of a random control")
    p.add_argument("--seed", type=int, default=0, help="seed of a random control")
    p.add_argument(
        "--target", default=None, help="target in the name <source>-sel-<target> (default: the selection's)"
    )
    p.add_argument(
        "--out", default=None, help="folder to write (default: beside --source, named after the subset)"
    )
    p.add_argument("--namespace", default="dgqa", help="Hub namespace named in the card (load_dataset id)")
    p.add_argument(
        "--embed-restricted",
        action="store_true",
        help="embed images of corpora whose terms forbid redistribution (default: index-only, path + sha256)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out once the new folder is complete")


def run_subset(args: argparse.Namespace) -> None:
    from dgqa_data.schema import DISTORTION_NAMES
    from dgqa_data.selection import Selection, paper_selection

    selection = None
    if args.selection:
        selection = Selection.load(args.selection)
    elif args.paper:
        selection = paper_selection(args.paper)
    kind = args.control or "selection"
    if kind == "selection" and selection is None:
        raise DgqaError("give --selection, --paper or --control")
    if kind == "all" and (selection is not None or args.size is not None):
        raise DgqaError("--control all takes no --selection, --paper or --size")
    if kind == "selection" and args.size is not None:
        raise DgqaError("--size is for --control random")
    report = write_subset(
        args.source,
        kind=kind,
        selection=selection,
        size=args.size,
        seed=args.seed,
        target=args.target,
        out=args.out,
        namespace=args.namespace,
        embed_restricted=args.embed_restricted,
        overwrite=args.overwrite,
    )
    mode = ", index-only" if report.index_only else ""
    print(f"wrote {report.out}: {report.name}, {report.num_rows} rows{mode}")
    for t, n in report.domain_counts.items():
        print(f"  {t:>2} {DISTORTION_NAMES[t] if t >= 0 else 'authentic'}: {n}")
    if report.missing_types:
        print(f"  warning: selected type(s) {report.missing_types} have no rows in {args.source}")
