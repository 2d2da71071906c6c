"""Atomic file writes: the content goes to a hidden temporary sibling that is renamed over the target,
so a reader (or a run killed half-way) sees the old file or the new one, never part of one."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temp_sibling(path: Path) -> Path:
    """The temporary name :func:`write_atomic` writes ``path`` under (hidden, per process, same suffix)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], Any]) -> Path:
    """Write ``data`` to ``path`` atomically; its folder is created if needed.

    ``data`` is text (written as UTF-8), bytes, or a function that writes the file it is given
    (``lambda p: pq.write_table(table, p)``). On any error the temporary file is removed and the
    old ``path``, if any, is untouched.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``obj`` as JSON (strict: NaN and infinity are refused, use null) atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False)
    return write_atomic(path, text + "\n")
