"""What a target set really holds, where that is known, and how a selection compares with it.

A selection answers "which synthetic distortion types does this target hold?". Where the target's
rows record what was done to them, that answer can be checked:

* a dataset with a ``distortion_type`` column (KADID-style sets, planted test sets): every type
  that occurs is a family of its own;
* a CSV of ``image_id`` + ``families`` (names or type ids separated by ``;``), such as the demo's
  simulated camera captures (:data:`dgqa_data.camera.CAMERA_FAMILIES`: defocus, shake, noise,
  brighter, darker, jpeg), where a family is matched by one or more KADID types. An optional
  ``background`` column names what the rows carry that is not to be found (the demo's mild JPEG,
  quality 50-95, on every capture): selecting its types is neither a find nor an extra.

:func:`judge` then gives the family recall (families with at least one matching type selected), the
precision (selected types that match a carried family or the background) and the extras (selected
types that match neither). Torch-free.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.schema import DISTORTION_NAMES, NUM_CLASSES

#: The name of the column read by default from a truth dataset / a truth CSV.
DATASET_COLUMN = "distortion_type"
CSV_COLUMN = "families"


@dataclass
class Truth:
    """Degradation families a target carries: ``families[name]`` = the KADID types that match it,
    ``rows[name]`` = how many target rows carry it; ``total`` rows were read; ``background``: what
    the rows carry that is not to be found (its types are no extras)."""

    families: dict[str, list[int]]
    rows: dict[str, int]
    total: int
    source: str
    background: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type_family(value: Any, where: str) -> tuple[str, list[int]]:
    """A KADID type id (or name) as a family of its own."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        t = int(text)
        if not 1 <= t < NUM_CLASSES:
            raise DgqaError(f"{where}: type id {t} is not a KADID distortion type (1..{NUM_CLASSES - 1})")
        return DISTORTION_NAMES[t], [t]
    if text in DISTORTION_NAMES[1:]:
        return text, [DISTORTION_NAMES.index(text)]
    raise DgqaError(f"{where}: {text!r} is neither a KADID type (id or name) nor a known family")


def parse_family(value: str, where: str) -> tuple[str, list[int]]:
    """A family name of :data:`~dgqa_data.camera.CAMERA_FAMILIES`, a KADID type name or a type id."""
    from dgqa_data.camera import CAMERA_FAMILIES

    name = value.strip()
    if name in CAMERA_FAMILIES:
        return name, list(CAMERA_FAMILIES[name])
    return _type_family(name, where)


def truth_from_types(types: list[Any], source: str, ids: list[str] | None = None) -> Truth:
    """The truth of a ``distortion_type`` column: -1 / None (unknown, authentic) and 0 (pristine)
    rows carry nothing; any other value must be a KADID type id (a bad one is named by its row)."""
    families: dict[str, list[int]] = {}
    rows: dict[str, int] = {}
    for i, t in enumerate(types):
        if t is None or t in (-1, 0):
            continue
        where = f"{source}: row {i}" + (f" ({ids[i]})" if ids else "")
        if isinstance(t, bool) or not isinstance(t, int):
            raise DgqaError(f"{where}: distortion type {t!r} is not a whole number")
        name, family = _type_family(t, where)
        families[name] = family
        rows[name] = rows.get(name, 0) + 1
    if not families:
        raise DgqaError(f"{source}: no row records a distortion type, so there is no truth to compare with")
    return Truth(dict(sorted(families.items(), key=lambda kv: kv[1])), rows, len(types), source)


def truth_from_csv(path: str | Path, column: str = CSV_COLUMN) -> Truth:
    """The truth of a CSV with ``column``: families per row, separated by ``;`` (an empty cell: nothing
    was done to that image), and optionally ``background`` (carried, not to be found)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if column not in header:
                raise DgqaError(f"{path}: no column {column!r} (columns: {', '.join(header) or 'none'})")
            records = list(reader)
    except UnicodeDecodeError as err:
        raise DgqaError(f"{path}: not UTF-8 text ({err})") from None
    families: dict[str, list[int]] = {}
    background: dict[str, list[int]] = {}
    rows: dict[str, int] = {}
    for line, rec in enumerate(records, start=2):
        for col, found in ((column, families), ("background", background)):
            for value in filter(None, (v.strip() for v in (rec.get(col) or "").split(";"))):
                name, family = parse_family(value, f"{path}: line {line}, column {col}")
                found[name] = family
                rows[name] = rows.get(name, 0) + 1
    if not families:
        raise DgqaError(f"{path}: no row names a family, so there is no truth to compare with")
    return Truth(families, rows, len(records), str(path), background)


def load_truth(spec: str | Path, column: str | None = None) -> Truth:
    """The truth of a CSV file (``families`` column) or of a dataset folder / Hub id
    (``distortion_type`` column, or ``column``; ``PATH:SPLIT`` names a split)."""
    p = Path(spec)
    if p.is_file() and p.suffix.lower() == ".csv":
        return truth_from_csv(p, column or CSV_COLUMN)
    from dgqa_data.hub_folder import load_folder_or_hub
    from dgqa_data.specs import parse_spec

    parsed = parse_spec(spec)
    path, split = (str(parsed.local) if parsed.local is not None else parsed.path), parsed.split
    loaded = load_folder_or_hub(path, name=f"truth {spec}")
    split = split or (list(loaded)[0] if len(loaded) == 1 else "test" if "test" in loaded else None)
    if split not in loaded:
        raise MissingInputError(f"truth {spec}: name one split of {', '.join(loaded)} (PATH:SPLIT)")
    ds = loaded[split]
    col = column or DATASET_COLUMN
    if col not in ds.column_names:
        raise DgqaError(f"truth {spec}: no column {col!r} (columns: {', '.join(ds.column_names)})")
    ids = ds["image_id"] if "image_id" in ds.column_names else None
    return truth_from_types(ds[col], f"truth {spec}", ids)


def judge(selected: list[int], truth: Truth) -> dict[str, Any]:
    """How a selection compares with the truth: found / missed families, extras, recall, precision."""
    chosen = set(selected)
    found = [f for f, types in truth.families.items() if chosen & set(types)]
    missed = [f for f in truth.families if f not in found]
    matching = {t for group in (truth.families, truth.background) for types in group.values() for t in types}
    extras = sorted(chosen - matching)
    return {
        "families": len(truth.families),
        "found": found,
        "missed": missed,
        "extras": extras,
        "types_kept": len(chosen),
        "recall": len(found) / len(truth.families),
        "precision": (len(chosen & matching) / len(chosen)) if chosen else 0.0,
        "truth": truth.to_dict(),
    }


def format_judgement(j: dict[str, Any]) -> str:
    """One line: ``found 4 of 5 families (...), missed ..., 2 extra types [...], 9 types kept``."""
    extras = ", ".join(f"{t} {DISTORTION_NAMES[t]}" for t in j["extras"]) or "none"
    return (
        f"found {len(j['found'])} of {j['families']} families ({', '.join(j['found']) or 'none'}); "
        f"missed {', '.join(j['missed']) or 'none'}; {len(j['extras'])} extra type(s) ({extras}); "
        f"{j['types_kept']} types kept; recall {j['recall']:.2f}, precision {j['precision']:.2f}"
    )
