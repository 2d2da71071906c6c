"""Any folder of images, e.g. a user's own target domain: unlabeled, or scored by a CSV ``image,mos``.

Options (``--option KEY=VALUE``):
    labels: CSV with columns ``image,mos`` (optional ``mos_std``), relative to the root or absolute;
        ``image`` is the path relative to the root.
    score_range: ``LO,HI``, the declared range of ``mos`` (required with ``labels``).
    higher_is_better: ``true`` (default) or ``false``.
    domain: the ``domain`` column (default ``authentic``).
    name: the ``corpus`` column and the dataset's name (default ``folder``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dgqa_data.corpora.base import (
    Corpus,
    CorpusError,
    Item,
    Skip,
    parse_bool,
    parse_score,
    read_csv_rows,
    register,
    safe_path,
)
from dgqa_data.schema import AUTHENTIC_DOMAIN, UNKNOWN_TYPE, to_quality

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class FolderOptions:
    """The parsed build options of one ``folder`` build."""

    labels: Path | None
    score_range: tuple[float, float] | None
    higher_is_better: bool
    domain: str
    name: str


def parse_options(
    root: Path | None = None,
    labels: str | Path | None = None,
    score_range: str | tuple[float, float] | None = None,
    higher_is_better: bool | str = True,
    domain: str = AUTHENTIC_DOMAIN,
    name: str = "folder",
    **_other: Any,
) -> FolderOptions:
    """Validate the options; errors say which option is wrong and how to write it."""
    rng = None
    if score_range is not None and score_range != "":
        parts = score_range.split(",") if isinstance(score_range, str) else list(score_range)
        try:
            lo, hi = (float(p) for p in parts)
        except (TypeError, ValueError):
            raise CorpusError(f"option score_range={score_range!r}: expected LO,HI, e.g. 0,100") from None
        if not lo < hi:
            raise CorpusError(f"option score_range={score_range!r}: LO must be below HI")
        rng = (lo, hi)
    path = None
    if labels:
        path = Path(labels)
        if not path.is_absolute() and root is not None:
            path = root / path
        if rng is None:
            raise CorpusError(
                f"option labels={labels} needs the declared score range: add score_range=LO,HI "
                "(e.g. --option score_range=0,100) so that `quality` can be computed"
            )
    elif rng is not None:
        raise CorpusError("option score_range is only used with labels=FILE (no labels were given)")
    if not NAME_RE.match(str(name)):
        raise CorpusError(f"option name={name!r}: use letters, digits, '.', '_' or '-'")
    if not str(domain).strip():
        raise CorpusError("option domain is empty")
    return FolderOptions(path, rng, parse_bool(higher_is_better, "higher_is_better"), str(domain), str(name))


def configure(corpus: Corpus, **options: Any) -> Corpus:
    """The declaration of one build: its name and, with labels, its score range and direction."""
    opts = parse_options(**options)
    if opts.labels is None:
        return dataclasses.replace(corpus, name=opts.name)
    return dataclasses.replace(
        corpus,
        name=opts.name,
        score_name=f"score from `{opts.labels.name}` (column `mos`), as declared with score_range",
        score_range=opts.score_range,
        higher_is_better=opts.higher_is_better,
    )


def scan(root: Path) -> list[str]:
    """Image files under ``root`` (recursive, hidden entries ignored), as sorted POSIX paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for fname in filenames:
            if not fname.startswith(".") and fname.lower().endswith(EXTENSIONS):
                found.append((rel_dir / fname).as_posix())
    return sorted(found)


def _read_labels(root: Path, opts: FolderOptions) -> Iterator[tuple[str, str, float | Skip, Any]]:
    path = opts.labels
    assert path is not None
    if not path.is_file():
        raise CorpusError(f"missing labels file: {path} does not exist")
    lo, hi = opts.score_range or (0.0, 1.0)
    for line, rec in read_csv_rows(path, ("image", "mos")):
        where = f"{path.name} line {line}"
        image = (rec["image"] or "").strip().replace("\\", "/").removeprefix("./")
        mos = parse_score(rec["mos"], image, where, "mos")
        if not isinstance(mos, Skip) and not lo <= mos <= hi:
            mos = Skip(image, where, f"mos {mos:g} is outside the declared score_range {lo:g},{hi:g}")
        std_cell = (rec.get("mos_std") or "").strip()
        std = parse_score(std_cell, image, where, "mos_std") if std_cell else None
        yield image, where, mos, std


def rows(
    root: Path,
    labels: str | Path | None = None,
    score_range: str | tuple[float, float] | None = None,
    higher_is_better: bool | str = True,
    domain: str = AUTHENTIC_DOMAIN,
    name: str = "folder",
) -> Iterator[Item | Skip]:
    """Every image under ``root`` in sorted path order; with labels, each must have a label row."""
    opts = parse_options(root, labels, score_range, higher_is_better, domain, name)
    images = scan(root)
    labelled: dict[str, tuple[str, float | Skip, Any]] = {}
    if opts.labels is not None:
        for image, where, mos, std in _read_labels(root, opts):
            if image in labelled:
                yield Skip(image, where, f"second label row (first at {labelled[image][0]})")
                continue
            labelled[image] = (where, mos, std)
    on_disk = set(images)
    for image_id in sorted(on_disk | set(labelled)):
        where, mos, std = labelled.get(image_id, (image_id, None, None))
        if opts.labels is not None and image_id not in labelled:
            yield Skip(image_id, image_id, f"no row for this image in {opts.labels.name}")
            continue
        for value in (mos, std):
            if isinstance(value, Skip):
                yield value
                break
        else:
            path = safe_path(root, image_id, where)
            if isinstance(path, Skip):
                yield path
                continue
            quality = (
                None
                if opts.score_range is None
                else to_quality(mos, *opts.score_range, opts.higher_is_better)
            )
            yield Item(
                {
                    "image_id": image_id,
                    "reference_id": None,
                    "mos": mos,
                    "mos_std": std,
                    "quality": quality,
                    "distortion_type": UNKNOWN_TYPE,
                    "distortion_level": 0,
                    "domain": opts.domain,
                    "corpus": opts.name,
                    "_where": where,
                },
                path,
            )


FOLDER = register(
    Corpus(
        name="folder",
        aliases=("images", "imagefolder"),
        pretty_name="Image folder",
        kind="your own images",
        size="any",
        score_name="none (unlabeled: `mos` and `quality` are null)",
        score_range=None,
        higher_is_better=True,
        license="other",
        license_note=(
            "Your own images: the terms are whatever applies to them. Set the card's `license` "
            "before publishing, and publish index-only if you may not redistribute the images."
        ),
        redistributable=False,
        citation="% your own images: add the reference that describes them here",
        homepage="https://github.com/Li-aobo/DGQA",
        splits=(
            "One config `default`, split `train`: every image found under the folder (recursive, "
            "sorted by path). Unlabeled folders are DGQA targets: score them, select source domains."
        ),
        layout=(
            "<root>/**/*.{jpg,jpeg,png,bmp,tif,tiff,webp} (+ optional labels CSV image,mos[,mos_std] "
            "with option labels=FILE and score_range=LO,HI)"
        ),
        rows=rows,
        image_format="mixed",
        configure=configure,
        card_template="folder",
    )
)
