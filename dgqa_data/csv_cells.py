"""Spreadsheet-safe cells for every CSV file dgqa writes for users (split files, predictions,
splits tables, leaderboards, skip reports).

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula
by spreadsheets (CSV injection). Such a cell gets a leading single quote, the usual escape, unless it
is a plain number (``-0.5`` and ``+1e-3`` stay numbers). Text that already starts with quotes before
one of those characters gets one more quote, so :func:`unescape` gives back exactly what was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _risky(text: str) -> bool:
    bare = text.lstrip("'")
    return bare.startswith(_TRIGGERS) and not _NUMBER.fullmatch(bare)


def escape(value: Any) -> Any:
    """``value`` as a cell no spreadsheet runs (non-text values are returned as they are)."""
    return "'" + value if isinstance(value, str) and _risky(value) else value


def unescape(text: str) -> str:
    """The text :func:`escape` was given (cells it did not change come back as they are)."""
    return text[1:] if text.startswith("'") and _risky(text) else text


def escape_row(cells: Iterable[Any]) -> list[Any]:
    """:func:`escape` of every cell of a row (for ``csv.writer.writerow``)."""
    return [escape(c) for c in cells]
