"""The one on-disk format: a folder laid out as a Hub dataset repo (parquet shards + card).

``HubFolderWriter`` streams rows into ``data/<split>-NNNNN-of-NNNNN.parquet`` shards (non-default
configs under ``data/<config>/``) inside a temporary sibling folder, and renames it into place only
when :meth:`HubFolderWriter.finish` runs, so a crash never leaves a folder that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData

from dgqa_data.errors import DgqaError, MissingInputError, OutputExistsError
from dgqa_data.paths import OUTPUT_MARKER, check_folder, owner_alive, process_owner

SHARD_BYTES = 500 * 2**20  # Hub guidance: a few hundred MB per parquet file
ROW_GROUP_ROWS = 100  # small row groups keep image datasets streamable


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Parquet column paths (``image.bytes``, ``image.path``, ``mos``, ...) of an arrow schema."""

    def walk(prefix: str, typ: pa.DataType) -> list[str]:
        if pa.types.is_struct(typ):
            return [
                p
                for i in range(typ.num_fields)
                for p in walk(f"{prefix}.{typ.field(i).name}", typ.field(i).type)
            ]
        if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            return walk(f"{prefix}.list.element", typ.value_type)
        return [prefix]

    return [p for f in schema for p in walk(f.name, f.type)]


def _column(values: list[Any], typ: pa.DataType) -> pa.Array:
    """An arrow array of ``values``; structs of dicts (the image column) are built field by field,
    which avoids converting every image's bytes through a Python dict (2-3x faster than from_pylist)."""
    if pa.types.is_struct(typ) and values and all(isinstance(v, dict) for v in values):
        children = [_column([v.get(f.name) for v in values], f.type) for f in typ]
        return pa.StructArray.from_arrays(children, fields=list(typ))
    return pa.array(values, type=typ)


def data_glob(config: str, split: str) -> str:
    """Glob of one (config, split) inside a Hub-layout folder."""
    prefix = "data" if config == "default" else f"data/{config}"
    return f"{prefix}/{split}-*"


def dataset_info_yaml(
    features: datasets.Features,
    sizes: dict[tuple[str, str], tuple[int, int]],
    download: dict[tuple[str, str], int],
) -> list[dict[str, Any]]:
    """The card's ``dataset_info`` entries, one per config.

    Args:
        features: the features of every config.
        sizes: ``{(config, split): (num_examples, num_bytes)}``.
        download: ``{(config, split): bytes of its parquet files}``.
    """
    infos = []
    for config in dict.fromkeys(c for c, _ in sizes):
        keys = [k for k in sizes if k[0] == config]
        splits = datasets.SplitDict()
        for key in keys:
            splits.add(datasets.SplitInfo(name=key[1], num_bytes=sizes[key][1], num_examples=sizes[key][0]))
        info = datasets.DatasetInfo(
            features=features,
            config_name=config,
            splits=splits,
            download_size=sum(download[k] for k in keys),
            dataset_size=sum(sizes[k][1] for k in keys),
        )
        card_data = DatasetCardData()
        DatasetInfosDict({config: info}).to_dataset_card_data(card_data)  # what push_to_hub writes
        entry = {**card_data["dataset_info"], "config_name": config}  # dropped there for "default"
        infos.append({k: entry[k] for k in _INFO_FIELDS if k in entry})
    return infos


#: The order of a ``dataset_info`` entry's keys: that of :class:`datasets.DatasetInfo`'s fields.
_INFO_FIELDS = [f.name for f in dataclasses.fields(datasets.DatasetInfo)]


def config_files(folder: Path, entry: dict[str, Any]) -> dict[str, list[Path]]:
    """The files each split of a card config names inside ``folder``: ``{split: sorted paths}``."""
    items = entry.get("data_files") or []
    items = [items] if isinstance(items, (str, dict)) else items
    files: dict[str, list[Path]] = {}
    for item in items:
        split, patterns = (
            (item.get("split", "train"), item.get("path")) if isinstance(item, dict) else ("train", item)
        )
        patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
        files[split] = sorted({f for pattern in patterns for f in folder.glob(pattern)})
    return files


def parquet_config_info(folder: Path, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The ``dataset_info`` of a card config whose data files are parquet files in ``folder``
    (features from their schema, rows and bytes from their metadata); None when a file is missing
    or not parquet."""
    sizes: dict[tuple[str, str], tuple[int, int]] = {}
    download: dict[tuple[str, str], int] = {}
    schema = None
    for split, files in config_files(folder, entry).items():
        if not files or any(f.suffix != ".parquet" or not f.is_file() for f in files):
            return None
        metas = [pq.read_metadata(f) for f in files]
        schema = schema or metas[0].schema.to_arrow_schema()
        key = (entry["config_name"], split)
        sizes[key] = (
            sum(m.num_rows for m in metas),
            sum(m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups)),
        )
        download[key] = sum(f.stat().st_size for f in files)
    if schema is None:
        return None
    return dataset_info_yaml(datasets.Features.from_arrow_schema(schema), sizes, download)[0]


#: How a card config records the content of its data files (its ``description``, see below).
FINGERPRINT_PREFIX = "dgqa content sha256:"


@lru_cache(maxsize=4096)
def _file_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(2**22):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, remembered while its path, size, times and inode stay the same
    (a writer that hashes each file as it finishes it leaves the card's fingerprint little to read)."""
    st = os.stat(path)
    return _file_digest(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def content_fingerprint(folder: Path, entry: dict[str, Any]) -> str:
    """sha256 over the names and the sha256 of the bytes of every file a card config names (split by
    split)."""
    digest = hashlib.sha256()
    for split, files in sorted(config_files(folder, entry).items()):
        for f in files:
            digest.update(f"{split}\0{f.relative_to(folder).as_posix()}\0{file_digest(f)}\0".encode())
    return digest.hexdigest()


def stamp_fingerprints(meta: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Record the content of each config's data files in the card (``description`` of the config).

    ``datasets`` keys its cache of a local folder on the card's ``configs`` and ``dataset_info``
    only, never on the files, so a rewrite with the same sizes (corrected labels, a second folder
    of the same name) would load the old cached rows. A config's ``description`` is passed to its
    builder config and so enters that key: with the content's hash there, a plain
    ``load_dataset(folder)`` loads what is on disk now.
    """
    for entry in meta.get("configs") or []:
        entry["description"] = FINGERPRINT_PREFIX + content_fingerprint(folder, entry)[:32]
    return meta


def is_stamped(meta: dict[str, Any]) -> bool:
    """Whether every config of a card carries its content fingerprint (cards written before
    fingerprints existed do not, and must not be served from the datasets cache)."""
    configs = meta.get("configs") or []
    return bool(configs) and all(
        str(c.get("description", "")).startswith(FINGERPRINT_PREFIX) for c in configs
    )


#: Inside every temporary folder a dataset writer makes (``.<name>.tmp-*``, ``.<name>.old-*``):
#: :func:`recover_interrupted` touches no folder without it.
TEMP_MARKER = ".dgqa-temporary"
#: What :data:`~dgqa_data.paths.OUTPUT_MARKER` of a dataset folder names as its writer.
DATASET_VERB = "dataset"


def _mark_temporary(folder: Path) -> None:
    (folder / TEMP_MARKER).write_text("a temporary folder of dgqa; removed or restored by the next run\n")


def recover_interrupted(out: Path) -> list[str]:
    """Clean up after runs that were killed while writing ``out``; returns what was done.

    Only folders carrying :data:`TEMP_MARKER` are touched (a user's ``.mydata.old-2024`` is not):

    * ``.<name>.old-*``: a replacement killed between its two renames. When ``out`` is missing this
      is the last complete dataset and is moved back; otherwise it is garbage and removed.
    * ``.<name>.tmp-<host>-<pid>-*``: the unfinished folder of a run on this host whose process is
      gone; removed (a live run's folder is left alone).
    """
    done = []
    parent = out.parent
    for old in sorted(parent.glob(f".{out.name}.old-*")):
        if not (old / TEMP_MARKER).is_file():
            continue
        if not out.exists():
            old.rename(out)
            done.append(f"restored {out} from {old.name}")
        else:
            shutil.rmtree(old, ignore_errors=True)
            done.append(f"removed {old.name}")
    (out / TEMP_MARKER).unlink(missing_ok=True)  # left in place by a run killed around its renames
    for tmp in sorted(parent.glob(f".{out.name}.tmp-*")):
        owner = tmp.name.removeprefix(f".{out.name}.tmp-").rsplit("-", 1)[0]
        if (tmp / TEMP_MARKER).is_file() and not owner_alive(owner):
            shutil.rmtree(tmp, ignore_errors=True)
            done.append(f"removed {tmp.name}")
    return done


def dataset_files(folder: Path) -> set[str] | None:
    """The files (relative paths) an earlier dgqa dataset writer put in ``folder``, as its
    :data:`~dgqa_data.paths.OUTPUT_MARKER` lists them; every file of a folder whose card carries
    content fingerprints but no marker (written before markers existed); None: not a dgqa dataset."""
    marker = folder / OUTPUT_MARKER
    if marker.is_file():
        verb, *files = marker.read_text(encoding="utf-8").splitlines()
        return set(files) if verb == DATASET_VERB else None
    card = folder / "README.md"
    try:
        text = card.read_text(encoding="utf-8") if card.is_file() else ""
        stamped = text.startswith("---") and is_stamped(parse_card(text)[0])
    except (UnicodeDecodeError, ValueError, yaml.YAMLError):
        stamped = False
    return (
        {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()} if stamped else None
    )


def _kept_files(old: Path, new: Path) -> list[str]:
    """Files of the folder ``old`` (about to be replaced by ``new``) that no dgqa dataset writer
    wrote: they move into the new folder. Refused if the new folder has a file of the same name."""
    ours = dataset_files(old) or set()
    kept = sorted(
        rel
        for p in old.rglob("*")
        if (p.is_symlink() or not p.is_dir())  # a symlinked folder is kept as the link it is
        and (rel := p.relative_to(old).as_posix()) not in ours
        and rel != OUTPUT_MARKER
    )
    clash = [rel for rel in kept if (new / rel).exists() or (new / rel).is_symlink()]
    if clash:
        raise OutputExistsError(
            f"{old} holds {', '.join(clash[:5])}, which dgqa did not write and the new dataset would replace; "
            "--overwrite never replaces files dgqa did not write: move them away or choose another --out"
        )
    return kept


def _link_or_copy(src: Path, dest: Path) -> None:
    if src.is_symlink():
        dest.symlink_to(src.readlink())
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


class HubFolderWriter:
    """Write rows of one or more (config, split) parts into a Hub-layout folder, atomically.

    Args:
        out: final folder. Must not exist unless ``overwrite``.
        features: ``datasets.Features`` of every row (all parts share them).
        overwrite: replace an existing ``out`` at :meth:`finish` (never before). Without it, an ``out``
            that another run created meanwhile is kept and this run's folder discarded (checked at
            the final rename).
        compress_images: zstd-compress the image column (worth it for BMP; PNG/JPEG are already
            compressed, so the default stores their bytes as is).
    """

    def __init__(
        self,
        out: str | Path,
        features: datasets.Features,
        overwrite: bool = False,
        compress_images: bool = False,
        shard_bytes: int = SHARD_BYTES,
    ):
        self.out = Path(out)
        self.overwrite = overwrite
        if self.out.parent.is_dir():
            recover_interrupted(self.out)
        if self.out.exists() and not overwrite:
            raise OutputExistsError(
                f"{self.out} already exists; pass overwrite=True (--overwrite) to replace it (files dgqa "
                "did not write stay)"
            )
        if self.out.exists() and not self.out.is_dir():
            raise OutputExistsError(f"{self.out} is a file, not a dataset folder")
        if self.out.is_dir() and dataset_files(self.out) is None:  # another folder: keep every file
            check_folder(self.out, DATASET_VERB, overwrite=True, writes=("README.md", "data"))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # the temporary folder names its owner (host, pid) so that a later run can tell it is stale
        self.tmp = self.out.parent / f".{self.out.name}.tmp-{process_owner()}-{uuid.uuid4().hex[:8]}"
        (self.tmp / "data").mkdir(parents=True)
        _mark_temporary(self.tmp)
        self.features = features
        self.schema = features.arrow_schema
        self.shard_bytes = shard_bytes
        self.compression: Any = {
            name: ("zstd" if name != "image" or compress_images else "none") for name in self.schema.names
        }
        # Dictionary encoding and min/max statistics of image bytes hash / compare large unique
        # values and are then dropped (dictionary too big, statistics too long): small columns only.
        self._small_columns = [
            path for path in _leaf_paths(self.schema) if not path.startswith("image.bytes")
        ]
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self._buffers: dict[tuple[str, str], list[dict]] = defaultdict(list)
        self._writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self._shard_files: dict[tuple[str, str], list[Path]] = defaultdict(list)
        self._shard_sizes: dict[tuple[str, str], int] = defaultdict(int)
        self._part_bytes: dict[tuple[str, str], int] = defaultdict(int)

    # -- rows -------------------------------------------------------------------------------
    def add(self, row: dict[str, Any], split: str = "train", config: str = "default") -> None:
        """Buffer one row (image as ``{"bytes": ..., "path": ...}`` or a path string)."""
        key = (config, split)
        self._buffers[key].append(row)
        self.counts[key] += 1
        if len(self._buffers[key]) >= ROW_GROUP_ROWS:
            self._flush(key)

    def _flush(self, key: tuple[str, str]) -> None:
        rows = self._buffers.pop(key, [])
        if not rows:
            return
        table = pa.Table.from_arrays(
            [_column([r.get(f.name) for r in rows], f.type) for f in self.schema], schema=self.schema
        )
        writer = self._writers.get(key)
        if writer is None:
            config, split = key
            folder = self.tmp / ("data" if config == "default" else f"data/{config}")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{split}-{len(self._shard_files[key]):05d}.parquet.part"
            writer = pq.ParquetWriter(
                path,
                self.schema,
                compression=self.compression,
                use_dictionary=self._small_columns,
                write_statistics=self._small_columns,
            )
            self._writers[key] = writer
            self._shard_files[key].append(path)
            self._shard_sizes[key] = 0
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._shard_sizes[key] += table.nbytes
        self._part_bytes[key] += table.nbytes
        if self._shard_sizes[key] >= self.shard_bytes:
            writer.close()
            del self._writers[key]

    # -- finishing --------------------------------------------------------------------------
    def finish(self, card: str, extra_files: dict[str, str | bytes | Path] | None = None) -> Path:
        """Close shards, write ``README.md`` and extra files, then move the folder into place."""
        for key in list(self._buffers):
            self._flush(key)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        for key, files in self._shard_files.items():
            n = len(files)
            for i, part in enumerate(files):
                part.rename(part.with_name(f"{key[1]}-{i:05d}-of-{n:05d}.parquet"))
        for name, content in (extra_files or {}).items():
            dest = self.tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, dest)
            elif isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                dest.write_text(content, encoding="utf-8")
        # after the extra files: a card config may name one of them (the ``splits`` table)
        (self.tmp / "README.md").write_text(self._with_dataset_info(card), encoding="utf-8")
        if self.out.exists() and not self.overwrite:
            # another run finished into the same folder while this one was writing: keep theirs
            self.abort()
            raise OutputExistsError(
                f"{self.out} appeared while this run was writing it (another run?); it was left as it is and "
                "this run's output discarded: rerun with --overwrite to replace it"
            )
        kept = []
        if self.out.exists():
            try:
                kept = _kept_files(self.out, self.tmp)
            except OutputExistsError:
                self.abort()
                raise
        written = sorted(p.relative_to(self.tmp).as_posix() for p in self.tmp.rglob("*") if not p.is_dir())
        (self.tmp / OUTPUT_MARKER).write_text(
            "\n".join([DATASET_VERB, *(f for f in written if f != TEMP_MARKER)]) + "\n", encoding="utf-8"
        )
        for rel in kept:  # linked (or copied) before the renames: a crash loses none of them
            (self.tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(self.out / rel, self.tmp / rel)
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            _mark_temporary(self.out)
            self.out.rename(old)
            self.tmp.rename(self.out)
            shutil.rmtree(old)
        else:
            self.tmp.rename(self.out)
        (self.out / TEMP_MARKER).unlink()
        return self.out

    def dataset_info(self) -> list[dict[str, Any]]:
        """The card's ``dataset_info``: features, split sizes and parquet bytes per config (what the
        Hub shows; the cache key comes from :func:`stamp_fingerprints`)."""
        sizes = {k: (self.counts[k], self._part_bytes[k]) for k in self.counts}
        download = {k: sum(f.stat().st_size for f in self._final_files(k)) for k in self.counts}
        return dataset_info_yaml(self.features, sizes, download)

    def _final_files(self, key: tuple[str, str]) -> list[Path]:
        n = len(self._shard_files[key])
        return [
            p.with_name(f"{key[1]}-{i:05d}-of-{n:05d}.parquet") for i, p in enumerate(self._shard_files[key])
        ]

    def _with_dataset_info(self, card: str) -> str:
        meta, body = parse_card(card)
        if not meta:
            return card
        if "dataset_info" not in meta:
            infos = self.dataset_info()
            written = {c for c, _ in self.counts}
            for entry in meta.get("configs") or []:  # e.g. ``splits``: a parquet file among the extras
                if entry.get("config_name") not in written:
                    info = parquet_config_info(self.tmp, entry)
                    if info is not None:
                        infos.append(info)
            meta["dataset_info"] = infos
        return render_card(stamp_fingerprints(meta, self.tmp), body)

    def abort(self) -> None:
        """Remove the temporary folder (the final folder, if any, is untouched)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> HubFolderWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def parts(self) -> list[tuple[str, str]]:
        """(config, split) pairs written so far, in first-seen order."""
        return list(self.counts)


def configs_yaml(parts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The card's ``configs`` entry for the written parts (``default`` first)."""
    by_config: dict[str, list[str]] = {}
    for config, split in parts:
        by_config.setdefault(config, []).append(split)
    order = sorted(by_config, key=lambda c: (c != "default", c))
    return [
        {
            "config_name": c,
            **({"default": True} if c == "default" else {}),
            "data_files": [{"split": s, "path": data_glob(c, s)} for s in by_config[c]],
        }
        for c in order
    ]


def size_category(n: int) -> str:
    """Hub ``size_categories`` bucket for ``n`` rows."""
    for limit, label in [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ]:
        if n < limit:
            return label
    return "n>10M"


def render_card(metadata: dict[str, Any], body: str) -> str:
    """A dataset card: YAML front matter + markdown body."""
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body.strip()}\n"


def parse_card(text: str) -> tuple[dict[str, Any], str]:
    """``(front matter, markdown body)`` of a card, parsed by huggingface_hub as the Hub parses it
    (``({}, text)`` when the card has no YAML header)."""
    from huggingface_hub import RepoCard

    card = RepoCard(text)
    return card.data.to_dict(), card.text


def read_card_metadata(path: str | Path) -> dict[str, Any]:
    """The YAML front matter of a card: ``path`` is the card or the folder holding ``README.md``."""
    path = Path(path)
    card = path / "README.md" if path.is_dir() else path
    return parse_card(card.read_text(encoding="utf-8"))[0]


def json_text(obj: Any) -> str:
    """Stable, readable JSON for files stored beside the data."""
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def load_folder_or_hub(path: str | Path, streaming: bool = False, name: str | None = None) -> Any:
    """``datasets.load_dataset(path)`` for a dataset folder or a Hub id, with one clear error when it
    is neither (a missing folder, or a Hub id that cannot be reached, e.g. offline).

    Args:
        path: the folder or Hub id.
        streaming: stream instead of loading.
        name: how the error names the dataset (default ``path``), e.g. the spec it came from.

    A folder whose card has no content fingerprints (written before dgqa stamped them, or by hand)
    is read from its files, not from the datasets cache.
    """
    card = Path(path) / "README.md"
    fresh = None
    if not streaming and card.is_file() and not is_stamped(parse_card(card.read_text(encoding="utf-8"))[0]):
        fresh = "force_redownload"  # a card without content fingerprints: the cache may hold old rows
    try:
        return datasets.load_dataset(str(path), streaming=streaming, download_mode=fresh)
    except (FileNotFoundError, ConnectionError) as err:  # also DatasetNotFoundError, OfflineModeIsEnabled
        raise MissingInputError(
            f"dataset {name or path}: neither a dataset folder with data files nor a Hub dataset reachable "
            f"from here ({err})"
        ) from None
    except datasets.exceptions.DatasetGenerationError as err:  # e.g. a parquet file with no rows
        files = sorted(Path(path).rglob("*.parquet")) if Path(path).is_dir() else []
        empty = [f for f in files if pq.read_metadata(f).num_rows == 0]
        what = f"{empty[0]} has 0 rows (no images)" if empty else f"cannot be read ({err.__cause__ or err})"
        raise DgqaError(f"dataset {name or path}: {what}") from None
