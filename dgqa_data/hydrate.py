"""Re-attach the images of an index-only dataset (``dgqa hydrate``) from the user's own download.

An index-only dataset (a subset or a build of a corpus whose terms forbid redistributing its images,
see :mod:`dgqa_data.subsets`) stores in ``image`` the path of every image relative to the corpus
root and in ``sha256`` the digest of its bytes. :func:`hydrate` reads every file once, checks it
against its digest and writes the dataset with the bytes embedded; if any image is missing or
altered, nothing is written and every bad file is named.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from dgqa_data.cards import INDEX_ONLY_BEGIN, INDEX_ONLY_END
from dgqa_data.corpora.base import CorpusError, Skip, find_corpus, safe_path
from dgqa_data.errors import DgqaError
from dgqa_data.hub_folder import HubFolderWriter, json_text, parse_card, render_card
from dgqa_data.paths import check_output
from dgqa_data.subsets import BATCH_ROWS, SourceFolder, SubsetError


class HydrateError(DgqaError):
    """Some images of an index-only dataset are missing or do not match their sha256.

    Attributes:
        problems: one line per bad image, naming its relative path and what is wrong.
    """

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


@dataclass
class HydrateReport:
    """What :func:`hydrate` wrote: the folder and rows per (config, split)."""

    out: Path
    counts: dict[tuple[str, str], int]

    @property
    def num_rows(self) -> int:
        return sum(self.counts.values())


class _Resolver:
    """Find an index-only row's file: ``root / image`` first, else the corpus' own metadata."""

    def __init__(self, root: Path):
        self.root = root
        self._by_id: dict[str, dict[str, Path]] = {}

    def __call__(self, rel: str, row: dict[str, Any]) -> Path | str:
        path = safe_path(self.root, rel, rel)
        if isinstance(path, Skip):
            return path.reason
        if path.is_file():
            return path
        found = self._index(row.get("corpus") or "").get(row.get("image_id") or "")
        if found is not None and found.is_file():
            return found
        return f"missing: {found if found is not None else path} does not exist"

    def _index(self, corpus_name: str) -> dict[str, Path]:
        if corpus_name not in self._by_id:
            corpus = find_corpus(corpus_name)
            index: dict[str, Path] = {}
            if corpus is not None:
                try:
                    for item in corpus.rows(self.root):
                        if not isinstance(item, Skip):
                            index.setdefault(item.row["image_id"], item.path)
                except (CorpusError, OSError):
                    pass  # the root does not hold this corpus' metadata: no fallback
            self._by_id[corpus_name] = index
        return self._by_id[corpus_name]


def hydrate(
    folder: str | Path,
    root: str | Path,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> HydrateReport:
    """Re-attach the images of an index-only dataset from a local copy of the official download.

    Every file is read once and checked against its ``sha256``. If any image is missing or does not
    match, nothing is written and :class:`HydrateError` lists every bad file by its relative path.

    Args:
        folder: an index-only dataset folder (``image`` = path relative to the corpus root).
        root: the user's unzipped official download.
        out: folder to write; default: replace ``folder`` in place (atomically, once complete).
        overwrite: replace ``out`` if it exists.
        progress: show a progress bar (images checked).

    Returns:
        A :class:`HydrateReport`.
    """
    src = SourceFolder.open(folder)
    root = Path(root).expanduser()
    if not src.index_only or "sha256" not in src.features:
        raise SubsetError(f"{src.folder} already holds image bytes; only index-only datasets are hydrated")
    if not root.is_dir():
        raise SubsetError(f"corpus root {root} does not exist or is not a folder")
    features = datasets.Features({k: v for k, v in src.features.items() if k != "sha256"})
    features["image"] = datasets.Image()
    target = Path(out).expanduser() if out is not None else src.folder
    # in place (no --out) is the documented mode: the folder is replaced only once complete
    check_output(
        target, {"corpus root": root, **({"index-only dataset": src.folder} if out is not None else {})}
    )
    resolve = _Resolver(root)
    problems: list[str] = []
    writer = HubFolderWriter(target, features, overwrite=overwrite or out is None)
    parts = {k: v for k, v in src.parts.items() if k[0] != "splits"}  # the image-less table: an extra file
    total = sum(pq.ParquetFile(f).metadata.num_rows for files in parts.values() for f in files)
    bar = tqdm(total=total, desc="hydrating", unit="img", disable=not progress)
    with writer, bar:
        for (config, split), files in parts.items():
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS):
                    bar.update(batch.num_rows)
                    for row in batch.to_pylist():
                        rel, digest = row.pop("image"), row.pop("sha256")
                        path = resolve(rel, row)
                        if isinstance(path, str):
                            problems.append(f"{rel}: {path}")
                            continue
                        data = path.read_bytes()
                        actual = hashlib.sha256(data).hexdigest()
                        if actual != digest:
                            problems.append(
                                f"{rel}: sha256 mismatch ({path} has {actual[:12]}..., expected {digest[:12]}...)"
                            )
                            continue
                        if not problems:
                            row["image"] = {"bytes": data, "path": rel}
                            writer.add(row, split, config)
        if problems:
            shown = "\n  ".join(problems[:50])
            more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
            raise HydrateError(
                f"{len(problems)} image(s) under {root} are missing or do not match their sha256; "
                f"nothing was written:\n  {shown}{more}",
                problems,
            )
        card = hydrated_card((src.folder / "README.md").read_text(encoding="utf-8"))
        extra: dict[str, str | bytes | Path] = {}
        for p in sorted(src.folder.rglob("*")):
            rel_parts = p.relative_to(src.folder).parts
            if p.is_file() and rel_parts[0] not in ("data", "README.md") and not rel_parts[0].startswith("."):
                extra[p.relative_to(src.folder).as_posix()] = p
        if "subset.json" in extra:
            info = json.loads(Path(extra["subset.json"]).read_text(encoding="utf-8"))
            extra["subset.json"] = json_text({**info, "index_only": False})
        writer.finish(card, extra)
    return HydrateReport(target, dict(writer.counts))


def hydrated_card(card: str) -> str:
    """The card without the index's ``dataset_info`` and with its index-only note replaced."""
    meta, body = parse_card(card)
    if meta:
        meta.pop("dataset_info", None)  # described the index; the writer describes what it wrote
        card = render_card(meta, body)
    start, end = card.find(INDEX_ONLY_BEGIN), card.find(INDEX_ONLY_END)
    if start < 0 or end < start:
        return card
    note = (
        "The images were re-attached with `dgqa hydrate` from a local copy of the official download; "
        "every file matched the sha256 recorded in the index."
    )
    return card[:start] + note + card[end + len(INDEX_ONLY_END) :]


# -- the command line -------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dgqa hydrate``."""
    p.add_argument("folder", help="index-only dataset folder")
    p.add_argument("--root", required=True, help="your unzipped official download of the corpus")
    p.add_argument("--out", default=None, help="folder to write (default: replace FOLDER in place)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> None:
    """``dgqa hydrate``: re-attach the images and print one line."""
    report = hydrate(args.folder, args.root, args.out, overwrite=args.overwrite)
    print(f"wrote {report.out}: {report.num_rows} images re-attached, every sha256 verified")
