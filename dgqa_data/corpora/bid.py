"""BID (Blurred Image Database): 586 authentic photos with realistic blur, MOS on a 0-5 scale."""

from __future__ import annotations

import dataclasses
import functools
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgqa_data.corpora.base import (
    Corpus,
    CorpusError,
    Item,
    Skip,
    blank_cell,
    parse_score,
    register,
    whole_number,
)
from dgqa_data.corpora.tables import Cell, read_table
from dgqa_data.schema import AUTHENTIC_DOMAIN, UNKNOWN_TYPE

#: The grades file, in the order looked for: the public copies ship the old binary Excel file; the
#: loaders' .xlsx (and some CSV) conversions are read the same way.
GRADE_FILES = ("DatabaseGrades.xls", "DatabaseGrades.xlsx", "DatabaseGrades.csv")
NUMBER, GRADE = "Image Number", "Average Subjective Grade"
IMAGE_NAME = "DatabaseImage{:04d}.JPG"
SUBFOLDER = "ImageDatabase"
#: how many mismatching rows the warning line names before "and N more"
WARN_NAMES = 10


@dataclass
class GradesReport:
    """What one build found in the grades file (shown in the card).

    Attributes:
        file: the grades file read.
        subjects: per-subject grade columns found (0: the file has only the mean).
        mismatches: rows whose published grade count disagrees with the grades present, as
            ``{"image_id", "where", "problem"}``; reported, never fixed.
    """

    file: str = ""
    subjects: int = 0
    mismatches: list[dict[str, str]] = field(default_factory=list)
    warned: bool = False


@dataclass(frozen=True)
class BidCorpus(Corpus):
    """BID's declaration; a build's copy also carries the :class:`GradesReport` its rows filled in."""

    grades: GradesReport | None = field(default=None, compare=False)


def grades_file(root: Path) -> Path:
    """The first of :data:`GRADE_FILES` present in ``root``."""
    for name in GRADE_FILES:
        if (root / name).is_file():
            return root / name
    raise CorpusError(f"missing BID grades file: none of {', '.join(GRADE_FILES)} is in {root}")


def mos_std(grades: list[float]) -> float | None:
    """Sample standard deviation (ddof=1) of the subjects' grades; None for fewer than two grades."""
    return statistics.stdev(grades) if len(grades) >= 2 else None


def _count_problem(count: Cell, present: int) -> str | None:
    """Why a published grade count disagrees with the ``present`` grades, or None."""
    if count is None:
        return f"the grade count is empty; {present} grade(s) present"
    number = whole_number(count)
    if number is None or number < 0:
        return f"the grade count {count!r} is not a whole number; {present} grade(s) present"
    if number != present:
        return f"the grade count is {number}; {present} grade(s) present"
    return None


def rows(root: Path) -> Iterator[Item | Skip]:
    """Rows of the grades file in sheet order; images in ``ImageDatabase/`` or the root.

    The grades file is ``DatabaseGrades.xls`` (public copies), else ``.xlsx``, else ``.csv``. It must
    have the columns ``Image Number`` and ``Average Subjective Grade`` (the published mean, kept as
    ``mos``). When at least two columns follow the mean, the first of them is the number of grades
    and every later one holds one subject's grade of each image (blank: not graded); ``mos_std`` is
    then the sample standard deviation (ddof=1) of the grades present. Rows whose count disagrees
    with the grades present are reported (a warning line and the card), not fixed.

    Args:
        root: the BID folder holding the grades file. Images are read from ``root/ImageDatabase/``
            when that folder exists, else from ``root`` itself.
    """
    return _rows(root, None)


def _rows(root: Path, report: GradesReport | None) -> Iterator[Item | Skip]:
    path = grades_file(root)
    table = read_table(path)
    columns = table.columns((NUMBER, GRADE))
    at_number, at_grade = columns[NUMBER], columns[GRADE]
    after = [i for i in range(at_grade + 1, len(table.header)) if i != at_number]
    at_count, at_subjects = (after[0], after[1:]) if len(after) >= 2 else (None, [])
    mismatches: list[dict[str, str]] = []
    folder = root / SUBFOLDER if (root / SUBFOLDER).is_dir() else root
    for line, cells in table.rows:
        where = table.where(line)
        number_cell, grade_cell = cells[at_number], cells[at_grade]
        if blank_cell(number_cell) and blank_cell(grade_cell):
            continue  # e.g. a footer of per-subject statistics
        number = whole_number(number_cell)
        if number is None or number < 0:
            yield Skip(
                "" if number_cell is None else str(number_cell),
                where,
                f"{NUMBER} {number_cell!r} is not a whole number",
            )
            continue
        name = IMAGE_NAME.format(number)
        if blank_cell(grade_cell):
            yield Skip(name, where, f"{GRADE} is empty")
            continue
        grade = parse_score(grade_cell, name, where, GRADE)
        if isinstance(grade, Skip):
            yield grade
            continue
        grades = [
            parse_score(cells[i], name, where, f"subject grade in column {table.header[i] or i + 1!r}")
            for i in at_subjects
            if cells[i] is not None
        ]
        bad = next((g for g in grades if isinstance(g, Skip)), None)
        low, high = BID.score_range or (0.0, 5.0)
        if bad is None and any(not low <= g <= high for g in grades):
            outside = next(g for g in grades if not low <= g <= high)
            bad = Skip(name, where, f"subject grade {outside:g} is outside the scale {low:g}..{high:g}")
        if bad is not None:
            yield bad
            continue
        if at_count is not None:
            problem = _count_problem(cells[at_count], len(grades))
            if problem is not None:
                mismatches.append({"image_id": name, "where": where, "problem": problem})
        yield Item(
            {
                "image_id": name,
                "reference_id": None,
                "mos": grade,
                "mos_std": mos_std(grades),
                "quality": BID.quality(grade),
                "distortion_type": UNKNOWN_TYPE,
                "distortion_level": 0,
                "domain": AUTHENTIC_DOMAIN,
                "corpus": "bid",
                "_where": where,
            },
            folder / name,
        )
    if report is not None:
        report.file, report.subjects, report.mismatches = path.name, len(at_subjects), mismatches
        if mismatches and not report.warned:
            report.warned = True  # a build reads the rows twice; one warning
            print(_warning(path, mismatches), file=sys.stderr)


def _warning(path: Path, mismatches: list[dict[str, str]]) -> str:
    """One line naming the rows (the first :data:`WARN_NAMES`) whose grade count disagrees."""
    named = ", ".join(
        f"{m['where'].removeprefix(path.name).strip()} ({m['image_id']})" for m in mismatches[:WARN_NAMES]
    )
    more = f" and {len(mismatches) - WARN_NAMES} more" if len(mismatches) > WARN_NAMES else ""
    return (
        f"warning: bid: {len(mismatches)} row(s) of {path.name} give a grade count that disagrees with "
        f"the grades present: {named}{more}; mos is kept as published and mos_std uses the grades "
        "present (all listed in the card)"
    )


def configure(corpus: Corpus, **_: Any) -> Corpus:
    """The declaration one build uses: its rows report into a fresh :class:`GradesReport`."""
    report = GradesReport()

    @functools.wraps(rows)
    def build_rows(root: Path) -> Iterator[Item | Skip]:
        return _rows(root, report)

    return dataclasses.replace(corpus, rows=build_rows, grades=report)


BID = register(
    BidCorpus(
        name="bid",
        aliases=("blurred-image-database",),
        pretty_name="BID (Blurred Image Database)",
        kind="NR, authentic (blur)",
        size="586",
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
            "BID/DatabaseGrades.xls (Image Number, Average Subjective Grade, number of grades, one "
            "column per subject; or a .xlsx / .csv conversion, possibly with the first two columns only) + "
            "BID/ImageDatabase/DatabaseImage%04d.JPG (or the images directly in BID/)"
        ),
        rows=rows,
        image_format="jpeg",
        configure=configure,
    )
)
