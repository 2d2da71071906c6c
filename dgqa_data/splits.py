"""Published train/test splits of dgqa datasets: the seeded protocol and the splits table.

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
and ``user_<name>_<column>`` for split sets imported with ``dgqa splits import``
(:mod:`dgqa_data.split_files`). A dataset built before splits existed gets the same seeded splits
computed on the fly (:func:`load_split_table`).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dgqa_data.csv_cells import escape_row, unescape
from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.specs import OFFICIAL, PART_NAMES, parse_spec, parse_split_name

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
PARTS = ("train", "val", "test")

#: ``(corpus, split of the default config) -> why`` its rows are left out of the seeded splits.
EXCLUDED: dict[tuple[str, str], str] = {
    ("livec", "train"): (
        "the 7 images shown to the raters for training (t1.bmp..t7.bmp), which every published "
        "protocol leaves out"
    ),
}

#: A split value of a table or an imported file -> its part (the part names of specs, and 0 / 1 / 2).
_PART_OF = {**PART_NAMES, "0": "train", "1": "val", "2": "test", "": ""}


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
        w.writerow(escape_row(["image_id", *self.columns]))
        cols = list(self.columns.values())
        for i, image_id in enumerate(self.image_ids):
            w.writerow(escape_row([image_id, *(c[i] for c in cols)]))
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
        reader = ([unescape(c) for c in cells] for cells in csv.reader(io.StringIO(text)))
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
        from dgqa_data.hub_folder import load_folder_or_hub

        loaded = load_folder_or_hub(path, streaming=streaming)
    return table_of_loaded(loaded)


# --------------------------------------------------------------------------------------------------
# Dataset specs: PATH:split-03, PATH:split-03-test, PATH:official, PATH:user_x_split_01-val
# --------------------------------------------------------------------------------------------------


def resolve_name(name: str, table: SplitTable) -> tuple[str, str | None] | None:
    """``(column, part)`` a split name refers to in ``table``, or None.

    ``split-NN`` is the column ``split_NN``; any split column is also named as is; an optional
    ``-train`` / ``-val`` / ``-test`` suffix names a part (``-validation`` = ``-val``); the name is
    read by :func:`dgqa_data.specs.parse_split_name`.
    """
    parsed = parse_split_name(name)
    if parsed.fold is not None or name not in table.columns:
        column, part = parsed.column, parsed.part
    else:
        column, part = name, None
    if column not in table.split_columns():
        return None
    return column, part


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
    path = parse_spec(path).path
    folder = local_folder(path)
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
    """Store ``table`` in a dataset folder: ``splits.parquet``, ``splits.csv`` and the card's
    ``splits`` config, its ``dataset_info`` and the content fingerprints (so a changed table is never
    served from the datasets cache), all or none of them.

    Every file is first written to a temporary beside its final name; the tables are then renamed into
    place (the old ones kept aside) and the card is written. Should any write fail (a full disk), the
    old files are renamed back (renames need no space): the folder is as it was, and the error is one
    line."""
    from dgqa_data.hub_folder import parquet_config_info, parse_card, render_card, stamp_fingerprints

    folder = Path(folder)
    card_path = folder / "README.md"
    if not card_path.is_file():
        raise MissingInputError(f"{folder}: no README.md; not a dataset folder written by dgqa")
    meta, body = parse_card(card_path.read_text(encoding="utf-8"))
    if not meta.get("configs"):
        raise DgqaError(f"{card_path}: the card has no configs; not a dataset folder written by dgqa")
    temps: list[Path] = []
    placed: list[tuple[Path, Path | None]] = []  # (final file, its old content aside, or None)

    def temp(name: str, data: bytes) -> Path:
        temps.append(folder / f".{name}.tmp-{os.getpid()}")
        temps[-1].write_bytes(data)
        return temps[-1]

    try:
        staged = [(TABLE_PARQUET, temp(TABLE_PARQUET, table.to_parquet())),
                  (TABLE_CSV, temp(TABLE_CSV, table.to_csv().encode()))]  # fmt: skip
        for name, tmp in staged:
            final, old = folder / name, folder / f".{name}.old-{os.getpid()}"
            if final.exists():
                os.replace(final, old)
            placed.append((final, old if old.exists() else None))
            os.replace(tmp, final)
        configs = [c for c in meta["configs"] if c.get("config_name") != CONFIG_NAME]
        meta["configs"] = configs + [copy.deepcopy(SPLITS_CONFIG)]  # stamping writes into it
        infos = meta.get("dataset_info") or []
        infos = [infos] if isinstance(infos, dict) else list(infos)
        meta["dataset_info"] = [i for i in infos if i.get("config_name", "default") != CONFIG_NAME] + [
            parquet_config_info(folder, SPLITS_CONFIG)
        ]
        os.replace(temp("README.md", render_card(stamp_fingerprints(meta, folder), body).encode()), card_path)
    except OSError as err:
        for final, old in reversed(placed):
            if old is not None:
                os.replace(old, final)
            else:
                final.unlink(missing_ok=True)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise DgqaError(
            f"{folder}: could not write the splits table ({err.strerror or err}); the dataset is unchanged"
        ) from None
    for _, old in placed:
        if old is not None:
            old.unlink()
    return [folder / TABLE_PARQUET, folder / TABLE_CSV, card_path]
