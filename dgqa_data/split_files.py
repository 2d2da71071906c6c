"""Split files in the common CSV format (``name, mos, std`` + one column per split): ``dgqa splits
export`` writes a dataset's splits as such a file, ``dgqa splits import`` checks a file (ours, pyiqa's
meta-info CSVs and similar) against a dataset name by name and score by score and adds its split
columns to the dataset's splits table (:mod:`dgqa_data.splits`) as ``user_<name>_<column>``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dgqa_data.atomic import write_atomic
from dgqa_data.csv_cells import escape_row, unescape
from dgqa_data.errors import DgqaError, MissingInputError, OutputExistsError
from dgqa_data.paths import check_output
from dgqa_data.specs import USER_PREFIX
from dgqa_data.splits import (
    PARTS,
    TABLE_CSV,
    SplitTable,
    load_split_table,
    local_folder,
    normalise_part,
    score_text,
    write_table,
)

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
    w.writerow(escape_row(["name", "mos", "std", *cols.values()]))
    parts = [table.parts(c) for c in cols]
    blank = [""] * len(table.image_ids)
    mos, std = table.columns.get("mos", blank), table.columns.get("mos_std", blank)
    for i, image_id in enumerate(table.image_ids):
        w.writerow(escape_row([image_id, mos[i], std[i], *(p[i] for p in parts)]))
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
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DgqaError(f"{file} is not a CSV text file (not UTF-8: {err.reason} at byte {err.start})") from None
    reader = ([unescape(c) for c in cells] for cells in csv.reader(io.StringIO(text)))  # ours are escaped
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
        if out is not None:
            check_output(out, {"dataset": args.dataset})
        if out is not None and out.exists() and not args.overwrite:
            raise OutputExistsError(f"--out {out} exists; pass --overwrite to replace it")
        folder = local_folder(args.dataset)
        if folder is None and Path(args.dataset).expanduser().exists():
            raise DgqaError(f"{args.dataset} is a file, not a dataset folder")
        text = export_table(load_split_table(args.dataset), args.name)
        if out is None:
            sys.stdout.write(text)
            return 0
        write_atomic(out, text)
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
