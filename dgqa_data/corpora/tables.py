"""Label tables of official downloads (.xls, .xlsx, .csv), read with polars.

Workbooks go through polars' ``calamine`` engine (the ``fastexcel`` package), which reads both the
old binary ``.xls`` (BIFF) and ``.xlsx``. Each sheet is read twice: once as text (headers and
non-numeric cells exactly as written) and once as numbers (every numeric cell at full double
precision; calamine's text rendering of a number keeps only about 10 significant digits). No
cell is coerced silently: a cell that is not a number comes back as its text, for the caller to
report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgqa_data.corpora.base import CorpusError

#: A cell: a finite number, the text of a non-numeric cell, or None for a blank cell.
Cell = float | str | None

WORKBOOK_SUFFIXES = (".xls", ".xlsx", ".xlsm", ".xlsb", ".ods")


@dataclass(frozen=True)
class Table:
    """One sheet (or CSV file): its header and its non-blank rows after the header.

    Attributes:
        path: the file read.
        sheet: the sheet name (None for a CSV file).
        header: header cells as text, stripped ("" for a blank header cell).
        rows: ``(number, cells)`` for every row after the header that has a non-blank cell, where
            ``number`` is the spreadsheet row number (the header is row 1) or the CSV line number,
            and ``cells`` has one :data:`Cell` per header column.
    """

    path: Path
    sheet: str | None
    header: list[str]
    rows: list[tuple[int, tuple[Cell, ...]]]

    def where(self, number: int) -> str:
        """``"<file> row N"`` (``line N`` for a CSV file): how errors name a row."""
        return f"{self.path.name} {'line' if self.sheet is None else 'row'} {number}"

    def columns(self, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, int]:
        """Index of each named column (case and surrounding spaces ignored; first match wins).

        Raises:
            CorpusError: naming the file, the sheet, the missing columns and the header row.
        """
        lowered = [h.lower() for h in self.header]
        found = {
            name: lowered.index(name.lower()) for name in (*required, *optional) if name.lower() in lowered
        }
        missing = [name for name in required if name not in found]
        if missing:
            sheet = f" (sheet {self.sheet!r})" if self.sheet is not None else ""
            raise CorpusError(
                f"{self.path}{sheet}: missing column(s) {', '.join(repr(c) for c in missing)}; "
                f"header row is {self.header}"
            )
        return found


def read_table(path: Path, *, sheet: str | None = None) -> Table:
    """Read a label table: a workbook sheet (``.xls``, ``.xlsx``, ...) or a CSV file with a header row.

    The header is the first row of the sheet's used range (row 1 in every official file dgqa
    reads; calamine starts the range at the first non-blank cell). Blank rows are dropped but keep
    their place in the row numbering.

    Args:
        path: the file; its suffix picks the reader (a workbook suffix, else CSV).
        sheet: sheet name for workbooks (case ignored); default: the first sheet.

    Raises:
        CorpusError: the file is unreadable, the sheet is absent, or the table is empty.
    """
    if path.suffix.lower() in WORKBOOK_SUFFIXES:
        name, text, numbers = _read_workbook(path, sheet)
    else:
        name, text, numbers = None, _read_csv(path), None
    if not text:
        where = f"{path} (sheet {name!r})" if name is not None else str(path)
        raise CorpusError(f"{where}: the table is empty (no header row)")
    header = ["" if v is None else str(v).replace("\ufeff", "").strip() for v in text[0]]
    rows = []
    for i in range(1, len(text)):
        cells = tuple(
            _cell(text[i][j], numbers[i][j] if numbers is not None else None, numbers is None)
            for j in range(len(header))
        )
        if any(c is not None for c in cells):
            rows.append((i + 1, cells))
    return Table(path, name, header, rows)


def _cell(text: Any, number: Any, from_csv: bool) -> Cell:
    """One cell from its text (and, for workbooks, its full-precision number)."""
    if from_csv and text is not None:
        try:
            number = float(text)
        except ValueError:
            number = None
    if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
        return float(number)
    if text is None or not str(text).strip():
        return None
    return str(text)


def _read_workbook(path: Path, sheet: str | None) -> tuple[str, list[tuple], list[tuple]]:
    """``(sheet name, rows as text, rows as numbers)`` of one sheet, header row included."""
    import fastexcel
    import polars as pl

    kind = path.suffix.lower()
    errors = (fastexcel.FastExcelError, pl.exceptions.PolarsError, OSError, ValueError)
    try:
        names = fastexcel.read_excel(path).sheet_names
    except errors as err:
        raise CorpusError(f"{path}: not a readable {kind} workbook: {_first_line(err)}") from err
    if not names:
        raise CorpusError(f"{path}: the workbook has no sheet")
    if sheet is None:
        name = names[0]
    else:
        by_lower = {n.strip().lower(): n for n in names}
        if sheet.strip().lower() not in by_lower:
            raise CorpusError(f"{path}: no sheet {sheet!r}; the workbook has sheets {names}")
        name = by_lower[sheet.strip().lower()]
    common: dict[str, Any] = {
        "sheet_name": name,
        "engine": "calamine",
        "has_header": False,
        "drop_empty_rows": False,
        "drop_empty_cols": False,
        "raise_if_empty": False,
    }
    try:
        text = pl.read_excel(path, infer_schema_length=0, **common)
        numbers = pl.read_excel(path, read_options={"dtypes": "float"}, **common)
    except errors as err:
        raise CorpusError(f"{path} (sheet {name!r}): not readable: {_first_line(err)}") from err
    if text.shape != numbers.shape:  # both reads see the same range; anything else is a reader bug
        raise CorpusError(f"{path} (sheet {name!r}): inconsistent reads {text.shape} and {numbers.shape}")
    return name, text.rows(), numbers.rows()


def _read_csv(path: Path) -> list[tuple]:
    """Rows of a CSV file as text (header included); blank lines are kept as blank rows."""
    import polars as pl

    try:
        return pl.read_csv(path, has_header=False, infer_schema=False, raise_if_empty=False).rows()
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise CorpusError(f"{path}: not a readable CSV file: {_first_line(err)}") from err


def _first_line(err: BaseException) -> str:
    """The first line of an error message (calamine appends a multi-line context)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
