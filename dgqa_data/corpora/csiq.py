"""CSIQ: 30 references x 6 synthetic distortions at 4-5 levels (866 images), DMOS 0-1 (lower = better).

Scores come from the sheet ``all_by_image`` of ``csiq.DMOS.xlsx`` (columns ``image, dst_idx,
dst_type, dst_lev, dmos_std, dmos``). A row names its image by reference, type and level; the file is
``dst_imgs/<folder>/<image>.<TOKEN>.<lev>.png`` and the reference ``src_imgs/<image>.png``.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException

from dgqa_data.corpora.base import (
    Corpus,
    CorpusError,
    Item,
    Skip,
    blank_cell,
    parse_score,
    pristine_item,
    register,
    require,
    whole_number,
)

WORKBOOK = "csiq.DMOS.xlsx"
SHEET = "all_by_image"
REQUIRED = ("image", "dst_type", "dst_lev", "dmos")
OPTIONAL = ("dmos_std",)
HEADER_SEARCH_ROWS = 10  # the header row is looked for among the first rows of the sheet
REFERENCE_FOLDER = "src_imgs"
DISTORTED_FOLDER = "dst_imgs"
FLAT_FOLDER = "dst_imgs_all"  # a flattened copy seen in public re-uploads (all 866 files in one folder)

#: ``dst_type`` as the sheet spells it -> (folder under ``dst_imgs/``, token in the file name).
FILES: dict[str, tuple[str, str]] = {
    "noise": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}

#: ``dst_type`` -> (nearest KADID-10k type id, why). The CSIQ folder name stays in ``domain``.
TYPE_MAP: dict[str, tuple[int, str]] = {
    "noise": (11, "additive white Gaussian noise, as KADID white_noise"),
    "jpeg": (10, "JPEG compression, the same codec as KADID jpeg"),
    "jpeg 2000": (9, "JPEG2000 compression, the same codec as KADID jpeg2000"),
    "fnoise": (
        11,
        "additive pink (1/f) Gaussian noise: KADID has no spatially correlated noise; additive white "
        "noise is the nearest (the corpus label keeps the two CSIQ noises apart)",
    ),
    "blur": (1, "Gaussian blur, as KADID gaussian_blur"),
    "contrast": (25, "global contrast decrement, one direction of KADID contrast_change"),
}

_SPACES = re.compile(r"\s+")


def domain(dst_type: str) -> str:
    """Selection domain of a CSIQ ``dst_type``: the corpus' own label (its folder name)."""
    return f"csiq-{FILES[dst_type][0]}"


def distorted_name(image: str, dst_type: str, level: int) -> str:
    """``<image>.<TOKEN>.<lev>.png``, the official file name of one distorted image."""
    return f"{image}.{FILES[dst_type][1]}.{level}.png"


def _image_name(value: Any) -> str | None:
    """The reference name of a row: text as is, a number (``1600`` read as 1600.0) as digits."""
    if isinstance(value, bool) or blank_cell(value):
        return None
    if isinstance(value, (int, float)):
        number = whole_number(value)
        return None if number is None else str(number)
    name = str(value).strip()
    if "/" in name or "\\" in name or name in (".", ".."):
        return None
    return name


def _sheet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of ``all_by_image`` after its header row as ``(row number, {column: value})``."""
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as err:
        raise CorpusError(f"{path}: not a readable .xlsx workbook: {err}") from err
    try:
        names = {n.strip().lower(): n for n in book.sheetnames}
        if SHEET not in names:
            raise CorpusError(f"{path}: no sheet {SHEET!r}; the workbook has sheets {book.sheetnames}")
        sheet = book[names[SHEET]]
        cells = sheet.iter_rows(values_only=True)
        columns: dict[str, int] = {}
        seen = []
        header_row = 0
        for header_row, values in enumerate(cells, start=1):
            header = [str(v).strip().lower() if v is not None else "" for v in values]
            if all(c in header for c in REQUIRED):
                columns = {c: header.index(c) for c in (*REQUIRED, *OPTIONAL) if c in header}
                break
            seen.append([v for v in values if v is not None])
            if header_row >= HEADER_SEARCH_ROWS:
                break
        if not columns:
            raise CorpusError(
                f"{path} (sheet {sheet.title!r}): no header row with the columns {', '.join(REQUIRED)} "
                f"in the first {HEADER_SEARCH_ROWS} rows; rows read: {seen[:3]}"
            )
        for number, values in enumerate(cells, start=header_row + 1):
            row = {c: values[i] if i < len(values) else None for c, i in columns.items()}
            if not all(blank_cell(row[c]) for c in REQUIRED):
                yield number, row
    finally:
        book.close()


class _Finder:
    """Finds CSIQ files in the official layout or a known variant, exact name first, then ignoring case.

    Distorted images: ``dst_imgs/<folder>/`` (any case of the folder or of its token, e.g. ``AWGN/``),
    then ``dst_imgs/`` itself and ``dst_imgs_all/`` (flattened copies).
    """

    def __init__(self, root: Path):
        self.root = root
        self._listing: dict[Path, dict[str, list[str]]] = {}
        top = root / DISTORTED_FOLDER
        self.subfolders = {p.lower(): top / p for p in self._names(top)} if top.is_dir() else {}

    def _names(self, folder: Path) -> list[str]:
        return sorted(e.name for e in os.scandir(folder))

    def _in(self, folder: Path, name: str) -> Path | None:
        if folder not in self._listing:
            index: dict[str, list[str]] = {}
            if folder.is_dir():
                for entry in self._names(folder):
                    index.setdefault(entry.lower(), []).append(entry)
            self._listing[folder] = index
        found = self._listing[folder].get(name.lower(), [])
        if name in found:
            return folder / name
        return folder / found[0] if len(found) == 1 else None

    def distorted_folders(self, dst_type: str) -> list[Path]:
        """Where to look, in order; the official ``dst_imgs/<folder>`` comes first even when absent."""
        folder, token = FILES[dst_type]
        named = [self.subfolders[k] for k in dict.fromkeys((folder, token.lower())) if k in self.subfolders]
        return [
            *(named or [self.root / DISTORTED_FOLDER / folder]),
            self.root / DISTORTED_FOLDER,
            self.root / FLAT_FOLDER,
        ]

    def distorted(self, dst_type: str, name: str) -> Path | None:
        for folder in self.distorted_folders(dst_type):
            path = self._in(folder, name)
            if path is not None and path.is_file():
                return path
        return None

    def reference(self, name: str) -> Path | None:
        path = self._in(self.root / REFERENCE_FOLDER, name)
        return path if path is not None and path.is_file() else None


def rows(root: Path) -> Iterator[Item | Skip]:
    """Rows of ``all_by_image`` in sheet order (config ``default``), then the references (``pristine``).

    Args:
        root: the CSIQ folder holding ``csiq.DMOS.xlsx``, ``src_imgs/`` and ``dst_imgs/``.
    """
    book = require(root / WORKBOOK, f"CSIQ metadata file {WORKBOOK}")
    require(root / REFERENCE_FOLDER, f"CSIQ reference folder {REFERENCE_FOLDER}/")
    if not (root / DISTORTED_FOLDER).is_dir() and not (root / FLAT_FOLDER).is_dir():
        raise CorpusError(
            f"missing CSIQ image folder {DISTORTED_FOLDER}/: {root / DISTORTED_FOLDER} does not exist "
            f"(nor the flattened {FLAT_FOLDER}/)"
        )
    finder = _Finder(root)
    refs: dict[str, str] = {}
    for line, rec in _sheet_rows(book):
        where = f"{WORKBOOK} sheet {SHEET} row {line}"
        image = _image_name(rec["image"])
        if image is None:
            yield Skip(
                "" if rec["image"] is None else str(rec["image"]),
                where,
                f"image {rec['image']!r} is not a reference name",
            )
            continue
        dst_type = _SPACES.sub(" ", str(rec["dst_type"] or "").strip().lower())
        if dst_type not in FILES:
            yield Skip(
                image, where, f"dst_type {rec['dst_type']!r} is not one of {', '.join(map(repr, FILES))}"
            )
            continue
        level = whole_number(rec["dst_lev"])
        if level is None or not 1 <= level <= 5:
            yield Skip(image, where, f"dst_lev {rec['dst_lev']!r} is not a level 1..5")
            continue
        name = distorted_name(image, dst_type, level)
        score = parse_score(rec["dmos"], name, where, "dmos")
        spread = (
            None if blank_cell(rec.get("dmos_std")) else parse_score(rec["dmos_std"], name, where, "dmos_std")
        )
        bad = next((v for v in (score, spread) if isinstance(v, Skip)), None)
        if bad is not None:
            yield bad
            continue
        path = finder.distorted(dst_type, name)
        if path is None:
            looked = ", ".join(
                f"{p.relative_to(root).as_posix()}/" for p in finder.distorted_folders(dst_type)
            )
            yield Skip(name, where, f"listed image is missing (looked in {looked})")
            continue
        refs.setdefault(f"{image}.png", where)
        yield Item(
            {
                "image_id": name,
                "reference_id": f"{image}.png",
                "mos": score,
                "mos_std": spread,
                "quality": CSIQ.quality(score),
                "distortion_type": TYPE_MAP[dst_type][0],
                "distortion_level": level,
                "domain": domain(dst_type),
                "corpus": "csiq",
                "_where": where,
            },
            path,
        )
    for ref, where in refs.items():
        path = finder.reference(ref)
        if path is None:
            yield Skip(ref, where, f"reference image {REFERENCE_FOLDER}/{ref} is missing")
            continue
        yield pristine_item(ref, path, "csiq", f"{where} ({REFERENCE_FOLDER}/{ref})")


CSIQ = register(
    Corpus(
        name="csiq",
        aliases=("csiq-iqa",),
        pretty_name="CSIQ (Categorical Subjective Image Quality)",
        kind="FR, synthetic",
        size="866 (30 references)",
        score_name="DMOS on a 0-1 scale (column `dmos` of `csiq.DMOS.xlsx`, spread `dmos_std`; lower = better)",
        score_range=(0.0, 1.0),
        higher_is_better=False,
        license="other",
        license_note=(
            "No licence text was found for CSIQ (neither in the download nor on the database page); the "
            "database is distributed by its authors for research. dgqa therefore treats the images as "
            "not redistributable: build and use the dataset locally, publish index-only (paths + sha256), "
            "and cite the paper below."
        ),
        redistributable=False,
        citation="""@article{larson2010most,
  title={Most apparent distortion: full-reference image quality assessment and the role of strategy},
  author={Larson, Eric C. and Chandler, Damon M.},
  journal={Journal of Electronic Imaging},
  volume={19},
  number={1},
  pages={011006},
  year={2010}
}""",
        homepage="http://vision.okstate.edu/csiq",
        splits=(
            "No official split: the 866 distorted images are `train`; the config `pristine` holds the 30 "
            "references (distortion_type 0). Split by `reference_id` for any train/test protocol "
            "(published protocols: 80/20 of the references, 10 repeats)."
        ),
        layout=(
            "CSIQ/csiq.DMOS.xlsx (sheet all_by_image: image, dst_idx, dst_type, dst_lev, dmos_std, dmos) + "
            "CSIQ/src_imgs/<image>.png + CSIQ/dst_imgs/{awgn,jpeg,jpeg2000,fnoise,blur,contrast}/"
            "<image>.<TOKEN>.<lev>.png"
        ),
        rows=rows,
        image_format="png",
    )
)
