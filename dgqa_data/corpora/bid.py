"""BID (Blurred Image Database): 586 authentic photos with realistic blur, MOS on a 0-5 scale."""

from __future__ import annotations

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
    parse_score,
    register,
    require,
)
from dgqa_data.schema import AUTHENTIC_DOMAIN, UNKNOWN_TYPE

GRADES = "DatabaseGrades.xlsx"
NUMBER, GRADE = "Image Number", "Average Subjective Grade"
IMAGE_NAME = "DatabaseImage{:04d}.JPG"
SUBFOLDER = "ImageDatabase"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _image_number(value: Any) -> int | None:
    """A cell holding a whole, non-negative number (``12``, ``12.0``, ``"12"``), else ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def _sheet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of the first worksheet as ``(row number, {header: value})``; checks the two columns."""
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as err:
        raise CorpusError(f"{path}: not a readable .xlsx workbook: {err}") from err
    try:
        sheet = book.worksheets[0]
        cells = sheet.iter_rows(values_only=True)
        header = [str(v).strip() if v is not None else "" for v in next(cells, ())]
        missing = [c for c in (NUMBER, GRADE) if c not in header]
        if missing:
            raise CorpusError(
                f"{path} (sheet {sheet.title!r}): missing column(s) {', '.join(repr(c) for c in missing)}; "
                f"header row is {header}"
            )
        columns = {name: header.index(name) for name in (NUMBER, GRADE)}
        for number, values in enumerate(cells, start=2):
            row = {name: values[i] if i < len(values) else None for name, i in columns.items()}
            if not all(_blank(v) for v in row.values()):
                yield number, row
    finally:
        book.close()


def rows(root: Path) -> Iterator[Item | Skip]:
    """Rows of ``DatabaseGrades.xlsx`` in sheet order; images in ``ImageDatabase/`` or the root.

    Args:
        root: the BID folder holding ``DatabaseGrades.xlsx``. Images are read from
            ``root/ImageDatabase/`` when that folder exists, else from ``root`` itself.
    """
    path = root / GRADES
    if not path.exists() and (root / "DatabaseGrades.xls").exists():
        raise CorpusError(
            f"{root / 'DatabaseGrades.xls'} is the old Excel format: save it as {GRADES} and rebuild"
        )
    require(path, f"BID grades file {GRADES}")
    folder = root / SUBFOLDER if (root / SUBFOLDER).is_dir() else root
    for line, rec in _sheet_rows(path):
        where = f"{GRADES} row {line}"
        number = _image_number(rec[NUMBER])
        if number is None:
            yield Skip(
                "" if rec[NUMBER] is None else str(rec[NUMBER]),
                where,
                f"{NUMBER} {rec[NUMBER]!r} is not a whole number",
            )
            continue
        name = IMAGE_NAME.format(number)
        if _blank(rec[GRADE]):
            yield Skip(name, where, f"{GRADE} is empty")
            continue
        grade = parse_score(rec[GRADE], name, where, GRADE)
        if isinstance(grade, Skip):
            yield grade
            continue
        yield Item(
            {
                "image_id": name,
                "reference_id": None,
                "mos": grade,
                "mos_std": None,
                "quality": BID.quality(grade),
                "distortion_type": UNKNOWN_TYPE,
                "distortion_level": 0,
                "domain": AUTHENTIC_DOMAIN,
                "corpus": "bid",
                "_where": where,
            },
            folder / name,
        )


BID = register(
    Corpus(
        name="bid",
        aliases=("blurred-image-database",),
        pretty_name="BID (Blurred Image Database)",
        score_name="Average Subjective Grade on a 0-5 scale (higher = better)",
        score_range=(0.0, 5.0),
        higher_is_better=True,
        license="other",
        license_note=(
            "No licence text was found for BID (neither in the download nor on the database page). "
            "dgqa therefore treats the images as not redistributable: build and use the dataset "
            "locally, publish index-only (paths + sha256), and cite the paper below."
        ),
        redistributable=False,
        citation="""@article{ciancio2011bid,
  title={No-Reference Blur Assessment of Digital Pictures Based on Multifeature Classifiers},
  author={Ciancio, Alexandre and da Costa, Andr{\\'e} Luiz N. Targino and da Silva, Eduardo A. B. and Said, Amir and Samadani, Ramin and Obrador, Pere},
  journal={IEEE Transactions on Image Processing},
  volume={20},
  number={1},
  pages={64--75},
  year={2011}
}""",
        homepage="http://www.lps.ufrj.br/profs/eduardo/ImageDatabase.htm",
        splits=(
            "No official split: all 586 images are `train`. Published protocols split them at random "
            "(80/20, 10 repeats). The DGQA target is all 586 images, resized so the short side is 512 "
            "(stored here as shipped, full size; resize at load time)."
        ),
        layout=(
            "BID/DatabaseGrades.xlsx (Image Number, Average Subjective Grade) + "
            "BID/ImageDatabase/DatabaseImage%04d.JPG (or the images directly in BID/)"
        ),
        rows=rows,
        image_format="jpeg",
    )
)
