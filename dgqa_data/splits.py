"""Published train/test splits of dgqa datasets: the seeded protocol, the splits table, CSV import/export.

The protocol (what ``dgqa build`` writes and ``PATH:split-NN`` loads):

* 10 splits, ``split_00`` .. ``split_09``, each 80 % train / 20 % test.
* Rows are grouped: by ``reference_id`` for full-reference corpora (all distorted versions of a
  reference on one side, so no reference is in both train and test), by ``image_id`` for
  no-reference corpora (a row without a reference is its own group).
* Split ``k`` permutes the sorted unique group keys with ``numpy.random.default_rng((SPLIT_SEED, k))``
  and puts the first ``round(0.8 * groups)`` groups in train (at least one group on each side when
  there are two or more), the rest in test. ``SPLIT_SEED`` is 1414.
* The splits cover the rows of the ``default`` config (every split of it), except rows that every
  published protocol leaves out (:data:`EXCLUDED`: LIVEC's 7 rater-training images); those rows
  have no value (empty) in the split columns.

The table, ``splits.csv`` beside the data (and ``splits.parquet``, the same table as the card's
``splits`` config, so ``load_dataset(path, "splits")`` gives it without images), has the columns
``image_id, mos, mos_std, split_00 .. split_09`` (``train`` / ``test``), ``official`` when the
default config has several splits (the split each row is in: ``train`` / ``validation`` / ``test``),
and ``user_<name>_<column>`` for split sets imported with ``dgqa splits import``. A dataset built
before splits existed gets the same seeded splits computed on the fly (:func:`load_split_table`).

``dgqa splits export`` writes the common CSV format (``name, mos, std`` + one column per split,
values ``train`` / ``val`` / ``test``); ``dgqa splits import`` checks such a file against a dataset
and adds its split columns to the dataset's table.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dgqa_data.errors import DgqaError, MissingInputError, OutputExistsError

#: Seed of the published splits (split ``k`` uses ``numpy.random.default_rng((SPLIT_SEED, k))``).
SPLIT_SEED = 1414
NUM_SPLITS = 10
TRAIN_FRACTION = 0.8

TABLE_CSV = "splits.csv"
TABLE_PARQUET = "splits.parquet"
CONFIG_NAME = "splits"
#: The card's ``configs`` entry of the table (``load_dataset(path, "splits", split="train")``).
SPLITS_CONFIG: dict[str, Any] = {
    "config_name": CONFIG_NAME,
    "data_files": [{"split": "train", "path": TABLE_PARQUET}],
}
SCORE_COLUMNS = ("mos", "mos_std")
OFFICIAL = "official"
USER_PREFIX = "user_"
PARTS = ("train", "val", "test")

#: ``(corpus, split of the default config) -> why`` its rows are left out of the seeded splits.
EXCLUDED: dict[tuple[str, str], str] = {
    ("livec", "train"): (
        "the 7 images shown to the raters for training (t1.bmp..t7.bmp), which every published "
        "protocol leaves out"
    ),
}

_PART_OF = {
    "train": "train", "training": "train", "0": "train",
    "val": "val", "valid": "val", "validation": "val", "1": "val",
    "test": "test", "testing": "test", "2": "test",
    "": "",
}  # fmt: skip
_SEEDED_NAME = re.compile(r"^split-(\d{1,2})(?:-(train|val|validation|test))?$")


def seeded_column(k: int) -> str:
    """Column name of seeded split ``k``: ``split_03``."""
    return f"split_{k:02d}"


def seeded_name(k: int) -> str:
    """How a dataset spec names seeded split ``k``: ``split-03`` (as in ``PATH:split-03``)."""
    return f"split-{k:02d}"


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


def group_keys(reference_ids: Sequence[str | None], image_ids: Sequence[str]) -> list[str]:
    """The group of every row: its ``reference_id``, or its ``image_id`` when it has none."""
    if len(reference_ids) != len(image_ids):
        raise ValueError(f"{len(reference_ids)} reference ids for {len(image_ids)} image ids")
    return [str(r) if r not in (None, "") else str(i) for r, i in zip(reference_ids, image_ids)]


def seeded_splits(
    reference_ids: Sequence[str | None],
    image_ids: Sequence[str],
    n: int = NUM_SPLITS,
    train_fraction: float = TRAIN_FRACTION,
    seed: int = SPLIT_SEED,
) -> list[np.ndarray]:
    """The ``n`` seeded train/test splits of some rows (pure and deterministic).

    Args:
        reference_ids: per row, its reference image (None / empty for no-reference rows).
        image_ids: per row, its image id.
        n: number of splits.
        train_fraction: share of the groups that go to train.
        seed: base seed; split ``k`` permutes the sorted group keys with ``default_rng((seed, k))``.

    Returns:
        ``n`` arrays of ``"train"`` / ``"test"``, one value per row. A group (reference, or image
        without one) is never on both sides. With two or more groups each side gets at least one.
    """
    keys = group_keys(reference_ids, image_ids)
    groups = sorted(set(keys))
    index = {g: j for j, g in enumerate(groups)}
    row_group = np.array([index[k] for k in keys], dtype=np.int64)
    num = len(groups)
    n_train = round(train_fraction * num)
    if num >= 2:
        n_train = min(max(n_train, 1), num - 1)
    out = []
    for k in range(n):
        perm = np.random.default_rng((seed, k)).permutation(num)
        is_train = np.zeros(num, dtype=bool)
        is_train[perm[:n_train]] = True
        out.append(np.where(is_train[row_group], "train", "test") if num else np.array([], dtype="<U5"))
    return out


def score_text(value: float | None) -> str:
    """A score as the table stores it: the shortest text of its float32 value (as the dataset
    stores ``mos``), empty for None / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(np.float32(value))


def normalise_part(value: Any) -> str | None:
    """``train`` / ``val`` / ``test`` / ``""`` for a split value (``training``, ``validation``,
    ``0/1/2`` ... accepted), None when it is none of these."""
    return _PART_OF.get(str(value if value is not None else "").strip().lower())


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


@dataclass
class SplitTable:
    """``splits.csv`` in memory: one row per image of the default config, every cell as text.

    Attributes:
        image_ids: the rows.
        columns: ``mos``, ``mos_std``, then the split columns (``split_00`` .., ``official``,
            ``user_*``), each a list of text cells (``""`` = empty).
    """

    image_ids: list[str]
    columns: dict[str, list[str]] = field(default_factory=dict)

    def split_columns(self) -> list[str]:
        """The split columns, in table order."""
        return [c for c in self.columns if c not in SCORE_COLUMNS]

    def seeded_columns(self) -> list[str]:
        return [c for c in self.columns if re.fullmatch(r"split_\d{2}", c)]

    def parts(self, column: str) -> list[str]:
        """The normalised values (``train`` / ``val`` / ``test`` / ``""``) of a split column."""
        return [normalise_part(v) or "" for v in self.columns[column]]

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image_id", *self.columns])
        cols = list(self.columns.values())
        for i, image_id in enumerate(self.image_ids):
            w.writerow([image_id, *(c[i] for c in cols)])
        return buf.getvalue()

    def to_arrow(self):
        """The table as arrow: ``mos`` / ``mos_std`` float32, every other column string (null = empty)."""
        import pyarrow as pa

        arrays = {"image_id": pa.array(self.image_ids, type=pa.string())}
        for name, cells in self.columns.items():
            if name in SCORE_COLUMNS:
                arrays[name] = pa.array([float(v) if v != "" else None for v in cells], type=pa.float32())
            else:
                arrays[name] = pa.array([v if v != "" else None for v in cells], type=pa.string())
        return pa.table(arrays)

    def to_parquet(self) -> bytes:
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(self.to_arrow(), buf, compression="zstd")
        return buf.getvalue()

    @classmethod
    def from_csv(cls, text: str, where: str = TABLE_CSV) -> SplitTable:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if not header or header[0] != "image_id":
            raise DgqaError(f"{where}: not a dgqa splits table (the header must start with image_id)")
        columns: dict[str, list[str]] = {name: [] for name in header[1:]}
        ids = []
        for line, cells in enumerate(reader, start=2):
            if len(cells) != len(header):
                raise DgqaError(f"{where} line {line}: {len(cells)} cells, the header has {len(header)}")
            ids.append(cells[0])
            for name, cell in zip(header[1:], cells[1:]):
                columns[name].append(cell)
        return cls(ids, columns)


@dataclass
class SplitRow:
    """What the protocol needs of one row of the default config."""

    image_id: str
    reference_id: str | None
    mos: float | None
    mos_std: float | None
    split: str
    corpus: str | None


def build_table(rows: Iterable[SplitRow]) -> tuple[SplitTable, dict[str, Any]]:
    """The splits table of some rows (in their order) and a summary for the card.

    Returns:
        ``(table, info)``; ``info`` has ``seed``, ``num_splits``, ``train_fraction``, ``group_by``
        (``reference`` / ``image`` / ``mixed``), ``official`` (whether the column exists), ``excluded``
        (``[{"rows", "reason"}]``) and ``splits`` (per split: train/test images and groups).
    """
    rows = list(rows)
    keep = [i for i, r in enumerate(rows) if (r.corpus, r.split) not in EXCLUDED]
    refs = [rows[i].reference_id for i in keep]
    ids = [rows[i].image_id for i in keep]
    seeded = seeded_splits(refs, ids)
    columns: dict[str, list[str]] = {
        "mos": [score_text(r.mos) for r in rows],
        "mos_std": [score_text(r.mos_std) for r in rows],
    }
    for k, values in enumerate(seeded):
        cells = [""] * len(rows)
        for i, v in zip(keep, values.tolist()):
            cells[i] = v
        columns[seeded_column(k)] = cells
    official = len({r.split for r in rows}) > 1
    if official:
        columns[OFFICIAL] = [r.split for r in rows]
    table = SplitTable([r.image_id for r in rows], columns)

    with_ref = sum(r not in (None, "") for r in refs)
    group_by = "reference" if with_ref == len(refs) and refs else ("image" if not with_ref else "mixed")
    keys = group_keys(refs, ids)
    per_split = []
    for k, values in enumerate(seeded):
        train = [key for key, v in zip(keys, values.tolist()) if v == "train"]
        test = [key for key, v in zip(keys, values.tolist()) if v == "test"]
        per_split.append(
            {
                "name": seeded_column(k),
                "train": len(train),
                "test": len(test),
                "train_groups": len(set(train)),
                "test_groups": len(set(test)),
            }
        )
    excluded = Counter(EXCLUDED[(r.corpus, r.split)] for r in rows if (r.corpus, r.split) in EXCLUDED)
    info = {
        "seed": SPLIT_SEED,
        "num_splits": NUM_SPLITS,
        "train_fraction": TRAIN_FRACTION,
        "group_by": group_by,
        "groups": len(set(keys)),
        "official": official,
        "excluded": [{"rows": n, "reason": why} for why, n in excluded.items()],
        "splits": per_split,
    }
    return table, info


def _rows_of_loaded(loaded: Any) -> list[SplitRow]:
    """The protocol's rows of a loaded default config (a ``DatasetDict`` or ``IterableDatasetDict``)."""
    wanted = ("image_id", "reference_id", "mos", "mos_std", "corpus")
    rows = []
    for split, ds in loaded.items():
        names = ds.column_names or list((ds.features or {}).keys())
        if "image_id" not in names:
            raise DgqaError(f"split {split!r} has no image_id column; not a dgqa dataset")
        cols = [c for c in wanted if c in names]
        part = ds.select_columns(cols)
        if hasattr(part, "to_dict"):  # map-style: one columnar read, no image bytes
            data = part.to_dict()
            records = ({c: data[c][i] for c in cols} for i in range(part.num_rows))
        else:
            records = iter(part)
        for rec in records:
            rows.append(
                SplitRow(
                    str(rec["image_id"]),
                    rec.get("reference_id"),
                    rec.get("mos"),
                    rec.get("mos_std"),
                    split,
                    rec.get("corpus"),
                )
            )
    return rows


def table_of_loaded(loaded: Any) -> SplitTable:
    """The seeded splits of a dataset computed from its rows (a dataset built without ``splits.csv``
    gets exactly the table a build writes)."""
    return build_table(_rows_of_loaded(loaded))[0]


def local_folder(path: str | Path) -> Path | None:
    """``path`` as a local dataset folder, or None (a Hub id)."""
    p = Path(path).expanduser()
    return p if p.is_dir() else None


def read_table_file(path: str | Path) -> SplitTable | None:
    """The stored ``splits.csv`` of a local folder or Hub dataset, or None when it has none (or the
    Hub cannot be reached)."""
    folder = local_folder(path)
    if folder is not None:
        csv_path = folder / TABLE_CSV
        if not csv_path.is_file():
            return None
        return SplitTable.from_csv(csv_path.read_text(encoding="utf-8"), str(csv_path))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        local = hf_hub_download(str(path), TABLE_CSV, repo_type="dataset")
    except (OSError, ValueError, HfHubHTTPError):
        return None
    return SplitTable.from_csv(Path(local).read_text(encoding="utf-8"), f"{path}/{TABLE_CSV}")


def load_split_table(path: str | Path, loaded: Any = None, streaming: bool = False) -> SplitTable:
    """The splits table of a dataset: its ``splits.csv``, else computed from its rows.

    Args:
        path: a local dataset folder or a Hub id.
        loaded: its default config, already loaded (``DatasetDict`` / ``IterableDatasetDict``).
        streaming: how to load it when ``loaded`` is None.
    """
    table = read_table_file(path)
    if table is not None:
        return table
    if loaded is None:
        import datasets

        loaded = datasets.load_dataset(str(path), streaming=streaming)
    return table_of_loaded(loaded)


# --------------------------------------------------------------------------------------------------
# Dataset specs: PATH:split-03, PATH:split-03-test, PATH:official, PATH:user_x_split_01-val
# --------------------------------------------------------------------------------------------------


def resolve_name(name: str, table: SplitTable) -> tuple[str, str | None] | None:
    """``(column, part)`` a split name refers to in ``table``, or None.

    ``split-NN`` is the column ``split_NN``; any split column is also named as is; an optional
    ``-train`` / ``-val`` / ``-test`` suffix names a part (``-validation`` = ``-val``).
    """
    m = _SEEDED_NAME.fullmatch(name)
    if m:
        column, part = seeded_column(int(m.group(1))), m.group(2)
    else:
        column, part = name, None
        if column not in table.columns:
            head, sep, tail = name.rpartition("-")
            if sep and tail in _PART_OF and tail not in ("0", "1", "2", ""):
                column, part = head, tail
    if column not in table.split_columns():
        return None
    return column, (normalise_part(part) if part else None)


def available_names(table: SplitTable) -> str:
    """The split names of a table, for error messages."""
    seeded = table.seeded_columns()
    out = []
    if seeded:
        first, last = seeded_name(int(seeded[0][-2:])), seeded_name(int(seeded[-1][-2:]))
        out.append(f"the seeded splits {first} .. {last} (each -train / -test)")
    out += [c for c in table.split_columns() if c not in seeded]
    return ", ".join(out)


def select_split(loaded: Any, path: str, name: str, role: str | None = None) -> Any:
    """The rows of split ``name`` of a dataset's splits table, from its loaded default config.

    Args:
        loaded: the default config (``DatasetDict`` / ``IterableDatasetDict``; all its splits).
        path: the dataset (local folder or Hub id): where ``splits.csv`` is looked for.
        name: ``split-NN``, ``split-NN-train`` / ``-test``, or a column of the table
            (``official``, ``user_*``), optionally with ``-train`` / ``-val`` / ``-test``.
        role: None for a training load (default part ``train``); an evaluation or target load gets
            ``test`` (``val`` when the column has no test rows).

    Raises:
        DgqaError: unknown name (listing the available ones), empty part, or a table that lists
            images the dataset does not have.
    """
    import datasets

    streaming = isinstance(next(iter(loaded.values())), datasets.IterableDataset)
    table = load_split_table(path, loaded, streaming)
    resolved = resolve_name(name, table)
    if resolved is None:
        raise MissingInputError(
            f"{path} has no split {name!r}; it has {', '.join(loaded.keys())}"
            + (f" and {available_names(table)}" if table.split_columns() else "")
        )
    column, part = resolved
    values = table.parts(column)
    if part is None:
        part = "train" if role is None else ("val" if "test" not in values and "val" in values else "test")
    keep = {i for i, v in zip(table.image_ids, values) if v == part}
    if not keep:
        found = sorted(set(values) - {""})
        raise DgqaError(
            f"{path}:{name}: no {part} rows in split column {column!r} (it has {', '.join(found)})"
        )
    ds = (
        datasets.concatenate_datasets(list(loaded.values()))
        if len(loaded) > 1
        else next(iter(loaded.values()))
    )
    if streaming:
        return ds.filter(lambda i: i in keep, input_columns="image_id")
    ids = ds["image_id"]
    rows = [i for i, x in enumerate(ids) if x in keep]
    if len(rows) != len(keep):
        missing = sorted(keep - set(ids))
        raise DgqaError(
            f"{path}/{TABLE_CSV} lists {len(missing)} image(s) that the dataset does not have (first: "
            f"{', '.join(missing[:3])}); it belongs to another build"
        )
    return ds.select(rows)


def grouping(path: str) -> str | None:
    """How the seeded splits of a dataset group its rows: ``"reference"``, ``"image"`` (or
    ``"mixed"``); None when it cannot be told without downloading the dataset."""
    folder = local_folder(path.rpartition(":")[0] if not local_folder(path) and ":" in path else path)
    try:
        if folder is not None:
            import pyarrow.parquet as pq

            files = sorted((folder / "data").glob("*.parquet"))
            refs = [
                r for f in files for r in pq.read_table(f, columns=["reference_id"]).column(0).to_pylist()
            ]
        else:
            import datasets

            first = next(iter(datasets.load_dataset(path, streaming=True).values()))
            refs = [next(iter(first))["reference_id"]]
    except Exception:  # noqa: BLE001 - only a label depends on it
        return None
    with_ref = sum(r not in (None, "") for r in refs)
    return "reference" if refs and with_ref == len(refs) else ("image" if not with_ref else "mixed")


# --------------------------------------------------------------------------------------------------
# Writing the table into a dataset folder
# --------------------------------------------------------------------------------------------------


def write_table(folder: str | Path, table: SplitTable) -> list[Path]:
    """Store ``table`` in a dataset folder: ``splits.parquet``, ``splits.csv``, then the card's
    ``splits`` config and its ``dataset_info`` (features and sizes: ``datasets`` keys its cache of a
    local folder on them, so a changed table is never served from the cache). Each file is written
    beside its final name and renamed into place."""
    from dgqa_data.hub_folder import parquet_config_info, parse_card, render_card

    folder = Path(folder)
    card_path = folder / "README.md"
    if not card_path.is_file():
        raise MissingInputError(f"{folder}: no README.md; not a dataset folder written by dgqa")
    meta, body = parse_card(card_path.read_text(encoding="utf-8"))
    if not meta.get("configs"):
        raise DgqaError(f"{card_path}: the card has no configs; not a dataset folder written by dgqa")

    def put(name: str, data: bytes) -> Path:
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)
        return folder / name

    done = [put(TABLE_PARQUET, table.to_parquet()), put(TABLE_CSV, table.to_csv().encode())]
    meta["configs"] = [c for c in meta["configs"] if c.get("config_name") != CONFIG_NAME] + [SPLITS_CONFIG]
    infos = meta.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else list(infos)
    meta["dataset_info"] = [i for i in infos if i.get("config_name", "default") != CONFIG_NAME] + [
        parquet_config_info(folder, SPLITS_CONFIG)
    ]
    done.append(put("README.md", render_card(meta, body).encode()))
    return done


# --------------------------------------------------------------------------------------------------
# The common CSV format: export / import
# --------------------------------------------------------------------------------------------------

#: Header names accepted for the image name (first found wins), the score and its spread.
NAME_HEADERS = (
    "name", "image_id", "image_name", "img_name", "dist_name", "dis_img_path", "dist_img",
    "distorted_image", "filename", "file_name", "image", "path",
)  # fmt: skip
MOS_HEADERS = ("mos", "dmos", "score", "elo_score")
STD_HEADERS = ("std", "mos_std", "sd", "dmos_std", "var")
_SPLIT_HEADER = re.compile(r"(?:.*[_-])?split(?:[_-]?\d+)?|set", re.IGNORECASE)


def export_table(table: SplitTable, name: str | None = None) -> str:
    """The common CSV (``name, mos, std`` + split columns, values ``train`` / ``val`` / ``test``).

    Args:
        table: a dataset's splits table.
        name: export the split set imported under this name (its columns under their original
            names) instead of the dataset's own splits.
    """
    if name is None:
        cols = {c: c for c in table.split_columns() if not c.startswith(USER_PREFIX)}
    else:
        prefix = f"{USER_PREFIX}{name}_"
        cols = {c: c[len(prefix) :] for c in table.split_columns() if c.startswith(prefix)}
        if not cols:
            imported = sorted(
                {
                    c[len(USER_PREFIX) :].split("_")[0]
                    for c in table.split_columns()
                    if c.startswith(USER_PREFIX)
                }
            )
            raise DgqaError(
                f"no split set imported under the name {name!r}"
                + (f"; imported: {', '.join(imported)}" if imported else "; none was imported")
            )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "mos", "std", *cols.values()])
    parts = [table.parts(c) for c in cols]
    blank = [""] * len(table.image_ids)
    mos, std = table.columns.get("mos", blank), table.columns.get("mos_std", blank)
    for i, image_id in enumerate(table.image_ids):
        w.writerow([image_id, mos[i], std[i], *(p[i] for p in parts)])
    return buf.getvalue()


def _sanitise(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.strip().lower()).strip("_")


@dataclass
class ImportReport:
    """What ``import_splits`` added."""

    columns: dict[str, str]  # file column -> table column
    counts: dict[str, dict[str, int]]  # table column -> part -> rows
    rows: int
    unknown: list[str]
    score_column: str | None
    ignored: list[str]


def _match_names(
    names: list[tuple[int, str]], image_ids: list[str], where: str
) -> tuple[dict[int, int], list[str]]:
    """``{file line: table row}`` for names that are an image_id, end with one (``dir/<image_id>``),
    equal exactly one image_id but for letter case, or whose file name is the file name of exactly
    one image_id; and the names that match none."""
    by_id = {i: n for n, i in enumerate(image_ids)}
    by_file: dict[str, list[int]] = {}
    by_lower: dict[str, list[int]] = {}
    for n, i in enumerate(image_ids):
        by_file.setdefault(i.replace("\\", "/").rsplit("/", 1)[-1], []).append(n)
        by_lower.setdefault(i.lower(), []).append(n)
    out: dict[int, int] = {}
    unknown = []
    seen: dict[int, int] = {}
    for line, raw in names:
        name = raw.strip().replace("\\", "/")
        parts = name.split("/")
        row = by_id.get(name)
        if row is None:  # dir/<image_id>: the longest trailing path that is an image_id
            row = next((by_id[t] for j in range(1, len(parts)) if (t := "/".join(parts[j:])) in by_id), None)
        if row is None and len(by_lower.get(name.lower(), [])) == 1:  # TID2013 names vary in case
            row = by_lower[name.lower()][0]
        if row is None:
            hits = by_file.get(parts[-1], [])
            if len(hits) == 1:
                row = hits[0]
            elif len(hits) > 1:
                raise DgqaError(
                    f"{where} line {line}: {raw!r} matches {len(hits)} images by file name "
                    f"({', '.join(image_ids[h] for h in hits[:3])}); give the image_id"
                )
        if row is None:
            unknown.append(f"line {line}: {raw!r}")
            continue
        if row in seen:
            raise DgqaError(
                f"{where} line {line}: {raw!r} names the image {image_ids[row]!r} again (first at line {seen[row]})"
            )
        seen[row] = line
        out[line] = row
    return out, unknown


def _pick(header: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    return next((lower[w] for w in wanted if w in lower), None)


def import_splits(
    file: str | Path,
    dataset: str | Path,
    name: str | None = None,
    allow_unknown: bool = False,
) -> ImportReport:
    """Check a split file against a dataset and add its split columns to the dataset's table.

    The file is CSV with a header: an image-name column (``name``, ``image_name``, ``img_name``,
    ``dist_name``, ``dis_img_path``, ...), optionally a score (``mos`` / ``dmos`` / ``score``) and
    its spread (``std`` / ``mos_std`` / ``sd``), and one or more split columns (``split``,
    ``split_0``, ``split_00``, ``official_split``, ``ratio802_seed123_split_01``, ``set``) with the
    values ``train`` / ``val`` / ``test`` (or ``0`` / ``1`` / ``2``, ``training`` / ``validation``;
    empty = not in that split). Other columns are ignored.

    Every name must be a row's ``image_id``, end with ``/<image_id>``, or have the file name of
    exactly one row; scores, when present, must match the dataset's ``mos`` (or another score
    column of it, e.g. KonIQ's ``mos_zscore``) within 1e-4. The columns are stored as
    ``user_<name>_<column>``: the dataset's own columns are never replaced.

    Args:
        file: the split file.
        dataset: a local dataset folder (its ``splits.csv`` is written; made if missing).
        name: names the imported set (default: the file's stem).
        allow_unknown: skip names that match no row (listed in the report) instead of refusing.
    """
    file, folder = Path(file), local_folder(dataset)
    if folder is None:
        raise MissingInputError(
            f"--dataset {dataset}: not a local dataset folder (import writes its splits.csv)"
        )
    text = file.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if not header:
        raise DgqaError(f"{file}: empty file")
    name_col = _pick(header, NAME_HEADERS)
    if name_col is None:
        raise DgqaError(
            f"{file}: no image-name column; expected one of {', '.join(NAME_HEADERS)} (header: {header})"
        )
    mos_col, std_col = _pick(header, MOS_HEADERS), _pick(header, STD_HEADERS)
    split_cols = [h for h in header if h not in (name_col, mos_col, std_col) and _SPLIT_HEADER.fullmatch(h)]
    if not split_cols:
        raise DgqaError(
            f"{file}: no split column (split, split_0, split_00, official_split, ratio802_seed123_split_01, set, ...); "
            f"header: {header}"
        )
    ignored = [h for h in header if h not in (name_col, mos_col, std_col, *split_cols)]
    if len(set(header)) != len(header):
        raise DgqaError(f"{file}: repeated column name(s) in the header {header}")
    idx = {h: i for i, h in enumerate(header)}
    records = []
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DgqaError(f"{file} line {line}: {len(cells)} cells, the header has {len(header)}")
        records.append((line, cells))

    name = _sanitise(name if name is not None else file.stem)
    if not name:
        raise DgqaError("--name must contain a letter or digit")
    new_cols = {c: f"{USER_PREFIX}{name}_{_sanitise(c) or 'split'}" for c in split_cols}
    if len(set(new_cols.values())) != len(new_cols):
        raise DgqaError(f"{file}: split columns {split_cols} collide once named {sorted(new_cols.values())}")

    table = load_split_table(folder)
    taken = [c for c in new_cols.values() if c in table.columns]
    if taken:
        raise OutputExistsError(
            f"{folder}/{TABLE_CSV} already has {', '.join(taken)}: a split set was imported under the name "
            f"{name!r} already; choose another --name"
        )
    matched, unknown = _match_names(
        [(line, cells[idx[name_col]]) for line, cells in records], table.image_ids, str(file)
    )
    if unknown and not allow_unknown:
        raise DgqaError(
            f"{file}: {len(unknown)} name(s) match no image of {folder} ({'; '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}); pass --allow-unknown to skip them"
        )
    if not matched:
        raise DgqaError(f"{file}: no name matches an image of {folder}")

    # values
    values: dict[str, list[str]] = {c: [""] * len(table.image_ids) for c in split_cols}
    for line, cells in records:
        if line not in matched:
            continue
        for c in split_cols:
            part = normalise_part(cells[idx[c]])
            if part is None:
                raise DgqaError(
                    f"{file} line {line} ({cells[idx[name_col]]}): split column {c!r} has {cells[idx[c]]!r}; "
                    "expected train, val or test (or 0, 1, 2)"
                )
            values[c][matched[line]] = part

    score_column = (
        _check_scores(file, folder, table, records, matched, idx, mos_col, name_col) if mos_col else None
    )
    for c in split_cols:
        table.columns[new_cols[c]] = values[c]
    write_table(folder, table)
    counts = {new_cols[c]: dict(Counter(v for v in values[c] if v)) for c in split_cols}
    return ImportReport(new_cols, counts, len(matched), unknown, score_column, ignored)


def _check_scores(file, folder, table, records, matched, idx, mos_col, name_col) -> str:
    """Which score column of the dataset the file's scores are (``mos``, else e.g. ``mos_zscore``);
    raises naming the rows when none matches every row."""
    given: dict[int, tuple[int, str, float]] = {}
    for line, cells in records:
        if line in matched and cells[idx[mos_col]].strip():
            try:
                given[matched[line]] = (line, cells[idx[name_col]], float(cells[idx[mos_col]]))
            except ValueError:
                raise DgqaError(
                    f"{file} line {line}: {mos_col} {cells[idx[mos_col]]!r} is not a number"
                ) from None
    mos = table.columns.get("mos", [""] * len(table.image_ids))
    mismatches = _mismatches(given, mos)
    if not mismatches:
        return "mos"
    for col, cells in _other_scores(folder, table).items():
        if not _mismatches(given, cells):
            return col
    shown = "; ".join(
        f"line {line} ({n}): {mos_col} {v:g}, dataset mos {mos[row] or 'empty'}"
        for row, (line, n, v) in mismatches[:5]
    )
    raise DgqaError(
        f"{file}: {len(mismatches)} score(s) differ from the dataset's mos by more than 1e-4 ({shown}"
        f"{' ...' if len(mismatches) > 5 else ''}); is it a split file of another corpus or build?"
    )


def _mismatches(given: dict[int, tuple[int, str, float]], cells: list[str]) -> list:
    out = []
    for row, (line, n, v) in sorted(given.items(), key=lambda kv: kv[1][0]):
        have = cells[row]
        if have != "" and not math.isclose(v, float(have), rel_tol=1e-6, abs_tol=1e-4):
            out.append((row, (line, n, v)))
    return out


def _other_scores(folder: Path, table: SplitTable) -> dict[str, list[str]]:
    """Other float score columns of the dataset (``mos_*``), as table-ordered text cells."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((folder / "data").glob("*.parquet"))
    if not files:
        return {}
    schema = pq.read_schema(files[0])
    cols = [
        f.name
        for f in schema
        if f.name.startswith("mos_") and f.name != "mos_std" and pa.types.is_floating(f.type)
    ]
    if not cols:
        return {}
    data = pa.concat_tables(pq.read_table(f, columns=["image_id", *cols]) for f in files).to_pydict()
    pos = {i: n for n, i in enumerate(data["image_id"])}
    return {c: [score_text(data[c][pos[i]]) if i in pos else "" for i in table.image_ids] for c in cols}


# --------------------------------------------------------------------------------------------------
# The verb: dgqa splits export / import
# --------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa splits``."""
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ex = sub.add_parser(
        "export",
        help="write a dataset's splits as CSV (name, mos, std, split columns)",
        allow_abbrev=False,
        description="Write the published splits of a dataset in the common CSV format: name, mos, std and "
        "one column per split (split_00 .. split_09, official) with the values train / val / test.",
    )
    ex.add_argument("dataset", help="dataset folder (or Hub id), e.g. hub/dgqa/koniq10k")
    ex.add_argument("--out", required=True, help="CSV file to write (- for stdout)")
    ex.add_argument(
        "--name",
        default=None,
        help="export the split set imported under this name instead of the dataset's own",
    )
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    im = sub.add_parser(
        "import",
        help="check a split CSV against a dataset and add its split columns to the dataset's splits.csv",
        allow_abbrev=False,
        description="Add the split columns of a CSV (pyiqa meta-info files and similar: name/image_name/"
        "dis_img_path, mos/dmos, std, split columns with train/val/test or 0/1/2) to a dataset's splits.csv "
        "as user_<name>_<column>, after checking every name and score against the dataset.",
    )
    im.add_argument("file", help="the split CSV")
    im.add_argument("--dataset", required=True, help="local dataset folder, e.g. hub/dgqa/livec")
    im.add_argument("--name", default=None, help="name of the imported set (default: the file's stem)")
    im.add_argument(
        "--allow-unknown",
        action="store_true",
        help="skip names that match no image instead of refusing the file",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """``dgqa splits export|import``."""
    if args.action == "export":
        out = None if args.out == "-" else Path(args.out)
        if out is not None and out.exists() and not args.overwrite:
            raise OutputExistsError(f"--out {out} exists; pass --overwrite to replace it")
        folder = local_folder(args.dataset)
        if folder is None and Path(args.dataset).expanduser().exists():
            raise DgqaError(f"{args.dataset} is a file, not a dataset folder")
        text = export_table(load_split_table(args.dataset), args.name)
        if out is None:
            sys.stdout.write(text)
            return 0
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
        print(f"wrote {out}: {text.count(chr(10)) - 1} rows, columns {text.splitlines()[0]}")
        return 0
    report = import_splits(args.file, args.dataset, args.name, args.allow_unknown)
    print(
        f"imported {len(report.columns)} split column(s) for {report.rows} image(s) into {Path(args.dataset) / TABLE_CSV}:"
    )
    for src, dest in report.columns.items():
        counts = ", ".join(
            f"{p} {report.counts[dest].get(p, 0)}" for p in PARTS if report.counts[dest].get(p)
        )
        print(f"  {src} -> {dest} ({counts}); load it as {args.dataset}:{dest}-train / -test")
    if report.score_column:
        print(f"  scores match the dataset's {report.score_column}")
    if report.unknown:
        print(f"  skipped {len(report.unknown)} name(s) that match no image: {'; '.join(report.unknown[:5])}")
    if report.ignored:
        print(f"  ignored column(s): {', '.join(report.ignored)}")
    return 0
