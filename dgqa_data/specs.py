"""Dataset specs: the one parser of the text that names a dataset (and a split of it) on the command
line, in configs and in ``scores.json``.

A spec is ``PATH`` or ``PATH:SPLIT``. ``PATH`` is a local dataset folder (or file) or a Hub id
(``org/name``); ``SPLIT`` is a split of the dataset (``test``) or one of its published split sets
(:mod:`dgqa_data.splits`): ``split-03`` (seeded split 3; ``split-*``, all of them, in
``dgqa bench``), ``official``, ``user_<name>_<column>``, each with an optional part ``-train`` /
``-val`` / ``-test`` (``-training``, ``-valid``, ``-validation``, ``-testing`` are the same parts).

How a spec is split into ``PATH`` and ``SPLIT``:

1. A spec that names an existing file or folder is a path, colons and all (a folder ``a:b``).
2. Otherwise the last colon separates them, unless what follows it holds a slash or a backslash
   (a split name never does): then the colon is part of the path, as in the Windows paths
   ``C:\\data\\livec`` and ``C:/data/livec`` (while ``C:/data/livec:test`` is split ``test`` of
   ``C:/data/livec``). A bare drive ``C:`` is a path too.
3. Neither part may be empty.

Whether a split name exists is only known once the dataset (and its splits table) is read; the
parser says what the name means if it is a split set (:class:`SplitName`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from dgqa_data.errors import DgqaError

#: Part suffixes of a split-set name (``official-val``) -> the part: ``train`` / ``val`` / ``test``.
PART_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
OFFICIAL = "official"
USER_PREFIX = "user_"

_SEEDED = re.compile(r"split-(\*|\d{1,2})(?:-([a-z]+))?")
_DRIVE = re.compile(r"[A-Za-z]")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class SplitName(NamedTuple):
    """What a split name means if it names a split set (:func:`parse_split_name`).

    Attributes:
        column: the splits-table column it names: ``split_03`` for ``split-03``, ``official``,
            ``user_x_y``; for any other name the name without its part suffix (``test`` for
            ``test``); None for ``split-*``.
        fold: the seeded split's index (``split-03``: 3); None otherwise.
        all_folds: the name is ``split-*`` (every seeded split).
        part: ``train`` / ``val`` / ``test`` when the name ends in a part suffix, else None.
    """

    column: str | None
    fold: int | None = None
    all_folds: bool = False
    part: str | None = None


def parse_split_name(name: str) -> SplitName:
    """What ``name`` means as a split-set name: ``split-03-test`` -> ``SplitName("split_03", 3,
    False, "test")``, ``official-val`` -> ``SplitName("official", part="val")``, ``test`` ->
    ``SplitName("test")``, ``split-*`` -> ``SplitName(None, all_folds=True)``."""
    m = _SEEDED.fullmatch(name)
    if m and (m.group(2) is None or m.group(2) in PART_NAMES):
        part = PART_NAMES[m.group(2)] if m.group(2) else None
        if m.group(1) == "*":
            return SplitName(None, None, True, part)
        fold = int(m.group(1))
        return SplitName(f"split_{fold:02d}", fold, False, part)
    head, sep, tail = name.rpartition("-")
    if sep and head and tail in PART_NAMES:
        return SplitName(head, part=PART_NAMES[tail])
    return SplitName(name)


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec (:func:`parse_spec`).

    Attributes:
        text: the spec as given.
        path: the dataset as written: a local file or folder, or a Hub id.
        split: the split name after the colon, or None.
        column, fold, all_folds, part: what ``split`` means as a split-set name
            (:class:`SplitName`); None / False without a split.
    """

    text: str
    path: str
    split: str | None = None
    column: str | None = None
    fold: int | None = None
    all_folds: bool = False
    part: str | None = None

    @property
    def kind(self) -> str | None:
        """``"seeded"`` (``split-NN``, ``split-*``), ``"official"``, ``"user"`` (an imported split
        set), ``"split"`` (any other name: a split of the dataset, or an unknown one), or None (no split)."""
        if self.split is None:
            return None
        if self.fold is not None or self.all_folds:
            return "seeded"
        if self.column == OFFICIAL:
            return "official"
        return "user" if (self.column or "").startswith(USER_PREFIX) else "split"

    @property
    def local(self) -> Path | None:
        """The local file or folder ``path`` names (``~`` expanded), or None (a Hub id, or missing)."""
        p = Path(self.path).expanduser()
        return p if p.exists() else None

    @property
    def name(self) -> str:
        """The dataset's own name: the last component of its path (``hub/dgqa/livec:test`` -> ``livec``)."""
        local = self.local
        if local is not None:
            return local.name
        return re.split(r"[/\\]", self.path.rstrip("/\\"))[-1]

    @property
    def hub_id(self) -> str | None:
        """``path`` as a Hub id (``org/name``, trailing slash dropped) when it is not a local path
        and has that form, else None."""
        hub = self.path.rstrip("/")
        return hub if self.local is None and _HUB_ID.fullmatch(hub) else None

    def with_split(self, split: str | None) -> str:
        """The spec text of split ``split`` of the same dataset (``PATH`` alone for None)."""
        return self.path if split is None else f"{self.path}:{split}"


def parse_spec(text: str | Path) -> DatasetSpec:
    """Parse a dataset spec (see the module docstring for the rules).

    Raises:
        DgqaError: an empty spec, or an empty path or split name around the colon.
    """
    text = str(text)
    if not text:
        raise DgqaError("empty dataset spec: give PATH or PATH:SPLIT")
    if Path(text).expanduser().exists():
        return DatasetSpec(text, text)
    head, sep, tail = text.rpartition(":")
    if not sep or "/" in tail or "\\" in tail or (not tail and _DRIVE.fullmatch(head)):
        return DatasetSpec(text, text)
    if not head:
        raise DgqaError(f"dataset spec {text!r}: no dataset before ':' (PATH:SPLIT)")
    if not tail:
        raise DgqaError(
            f"dataset spec {text!r}: no split name after ':' (PATH:SPLIT, or PATH for the whole dataset)"
        )
    return DatasetSpec(text, head, tail, *parse_split_name(tail))
