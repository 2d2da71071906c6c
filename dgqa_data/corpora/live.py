"""LIVE IQA release 2: 29 references x 5 synthetic distortions (779 images), DMOS (lower = better).

The five folders hold ``img1.bmp .. img{n}.bmp``; the three .mat files list the 982 entries of all
folders one after the other in the fixed order below (entry k of a folder is ``<folder>/img{k}.bmp``).
203 entries (``orgs == 1``) are copies of the reference images and are left out of the scored rows;
the 29 references themselves form the config ``pristine``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from dgqa_data.corpora.base import (
    Corpus,
    CorpusError,
    Item,
    Skip,
    parse_score,
    pristine_item,
    register,
    require,
)

#: The official folders in the order the .mat files list them, with their number of entries.
FOLDERS: tuple[tuple[str, int], ...] = (
    ("jp2k", 227),
    ("jpeg", 233),
    ("wn", 174),
    ("gblur", 174),
    ("fastfading", 174),
)
NUM_ENTRIES = sum(n for _, n in FOLDERS)  # 982

#: LIVE folder -> (nearest KADID-10k type id, why). The folder itself stays in ``domain``.
TYPE_MAP: dict[str, tuple[int, str]] = {
    "jp2k": (9, "JPEG2000 compression, the same codec as KADID jpeg2000"),
    "jpeg": (10, "JPEG compression, the same codec as KADID jpeg"),
    "wn": (11, "additive white Gaussian noise on the RGB channels, as KADID white_noise"),
    "gblur": (1, "circular-symmetric 2-D Gaussian blur, as KADID gaussian_blur"),
    "fastfading": (
        9,
        "JPEG2000 bit streams sent over a simulated Rayleigh fast-fading channel: JPEG2000 compression "
        "plus transmission errors that wipe out wavelet detail; KADID has no transmission-error type and "
        "jpeg2000 is the nearest (the corpus label keeps the two apart)",
    ),
}

REFERENCE_FOLDER = "refimgs"
NAMES_FILE, NAMES_VAR = "refnames_all.mat", "refnames_all"
#: ``dmos`` option -> (file, score variable, std variable or None).
DMOS_FILES: dict[str, tuple[str, str, str | None]] = {
    "realigned": ("dmos_realigned.mat", "dmos_new", "dmos_std"),
    "original": ("dmos.mat", "dmos", None),
}
#: Declared DMOS scales. Original DMOS: 0-100 (observed 17.9-84.5 on the 779 images). Realigned
#: DMOS is not bounded by construction: the published values run from -2.64 to 111.77 (779 images),
#: so the declared scale is -5..115; a value outside it is refused as a bad row, never clipped.
SCALES: dict[str, tuple[float, float]] = {"realigned": (-5.0, 115.0), "original": (0.0, 100.0)}
SCORE_NAMES: dict[str, str] = {
    "realigned": (
        "realigned DMOS (`dmos_new` of `dmos_realigned.mat`, spread `dmos_std`; `--option dmos=realigned`, "
        "the default, as HyperIQA / TReS / ARNIQA use; lower = better)"
    ),
    "original": (
        "original DMOS (`dmos` of `dmos.mat`, no spread published; `--option dmos=original`, as pyiqa "
        "uses; lower = better)"
    ),
}


def domain(folder: str) -> str:
    """Selection domain of a LIVE folder: the corpus' own distortion label."""
    return f"live-{folder}"


def entry_path(index: int) -> str:
    """``<folder>/img{k}.bmp`` of 0-based entry ``index`` of the .mat files."""
    for folder, count in FOLDERS:
        if index < count:
            return f"{folder}/img{index + 1}.bmp"
        index -= count
    raise IndexError(index)


def configure(corpus: Corpus, *, dmos: str = "realigned", **_: Any) -> Corpus:
    """The declaration for ``--option dmos=realigned|original``: its score name and scale."""
    if dmos not in DMOS_FILES:
        raise CorpusError(f"live: dmos must be 'realigned' or 'original', got {dmos!r}")
    return dataclasses.replace(corpus, score_name=SCORE_NAMES[dmos], score_range=SCALES[dmos])


def _load(path: Path, variables: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Variables of an official .mat file, each a clear :class:`CorpusError` when absent."""
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError or MatReadError on a bad file
        raise CorpusError(f"{path}: not a readable .mat file: {err}") from err
    missing = [v for v in variables if v not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise CorpusError(f"{path}: no variable {', '.join(map(repr, missing))}; the file holds {found}")
    values = {v: np.asarray(mat[v]) for v in variables}
    for v, arr in values.items():
        if arr.size != NUM_ENTRIES:
            raise CorpusError(
                f"{path}: variable {v!r} has {arr.size} entries; release 2 lists {NUM_ENTRIES} "
                f"({', '.join(f'{f} {n}' for f, n in FOLDERS)})"
            )
        if arr.ndim != 2 or 1 not in arr.shape:  # the same count in another shape is another layout
            raise CorpusError(
                f"{path}: variable {v!r} has shape {' x '.join(map(str, arr.shape))}; release 2 holds a "
                f"1 x {NUM_ENTRIES} vector"
            )
    return {v: arr.ravel() for v, arr in values.items()}


def _name(cell: Any) -> str | None:
    """The string held by one cell of a MATLAB cell array of strings, else None."""
    flat = np.asarray(cell).ravel()
    if flat.size != 1 or not isinstance(flat[0], str):
        return None
    return str(flat[0]).strip()


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def rows(root: Path, *, dmos: str = "realigned") -> Iterator[Item | Skip]:
    """The 779 distorted entries in .mat order (config ``default``), then the references (``pristine``).

    Args:
        root: the ``databaserelease2`` folder (holding ``refimgs/``, the five type folders and the .mat files).
        dmos: ``"realigned"`` (``dmos_realigned.mat``: ``dmos_new`` and ``dmos_std``) or ``"original"``
            (``dmos.mat``: ``dmos``, no spread).
    """
    corpus = LIVE.for_build(dmos=dmos)
    score_file, score_var, std_var = DMOS_FILES[dmos]
    require(root / REFERENCE_FOLDER, f"LIVE reference folder {REFERENCE_FOLDER}/")
    for folder, _ in FOLDERS:
        require(root / folder, f"LIVE image folder {folder}/")
    names = _load(require(root / NAMES_FILE, f"LIVE metadata file {NAMES_FILE}"), (NAMES_VAR,))[NAMES_VAR]
    variables = (score_var, "orgs") + ((std_var,) if std_var else ())
    scores = _load(require(root / score_file, f"LIVE metadata file {score_file}"), variables)
    refs: dict[str, str] = {}
    for i in range(NUM_ENTRIES):
        where = f"{score_file} entry {i + 1}"
        image_id = entry_path(i)
        orgs = _scalar(scores["orgs"][i])
        if orgs not in (0, 1):
            yield Skip(image_id, where, f"orgs is {orgs!r}, expected 0 (distorted) or 1 (reference copy)")
            continue
        if orgs == 1:  # a copy of the reference image: not a scored distorted image
            continue
        ref = _name(names[i])
        if not ref or "/" in ref or "\\" in ref or ref in (".", ".."):
            yield Skip(
                image_id, f"{NAMES_FILE} entry {i + 1}", f"{NAMES_VAR} holds {names[i]!r}, not a file name"
            )
            continue
        score = parse_score(_scalar(scores[score_var][i]), image_id, where, f"{score_var} ({score_file})")
        spread = (
            parse_score(_scalar(scores[std_var][i]), image_id, where, f"{std_var} ({score_file})")
            if std_var
            else None
        )
        bad = next((v for v in (score, spread) if isinstance(v, Skip)), None)
        if bad is not None:
            yield bad
            continue
        if spread is not None and spread < 0:
            yield Skip(image_id, where, f"{std_var} {spread:g} is negative")
            continue
        path = root / image_id
        if not path.is_file():
            yield Skip(image_id, where, "listed image is missing")
            continue
        folder = image_id.split("/")[0]
        refs.setdefault(ref, f"{NAMES_FILE} entry {i + 1}")
        yield Item(
            {
                "image_id": image_id,
                "reference_id": ref,
                "mos": score,
                "mos_std": spread,
                "quality": corpus.quality(score),
                "distortion_type": TYPE_MAP[folder][0],
                "distortion_level": 0,
                "domain": domain(folder),
                "corpus": "live",
                "_where": where,
            },
            path,
        )
    for ref, where in refs.items():
        path = root / REFERENCE_FOLDER / ref
        if not path.is_file():
            yield Skip(ref, where, f"reference image {REFERENCE_FOLDER}/{ref} is missing")
            continue
        yield pristine_item(ref, path, "live", f"{where} ({REFERENCE_FOLDER}/{ref})")


LIVE = register(
    Corpus(
        name="live",
        aliases=("liveiqa", "live-iqa", "live-r2", "live2", "databaserelease2"),
        pretty_name="LIVE Image Quality Assessment Database (release 2)",
        kind="FR, synthetic",
        size="779 (29 references)",
        score_name=SCORE_NAMES["realigned"],
        score_range=SCALES["realigned"],
        higher_is_better=False,
        license="other",
        license_note=(
            "No licence text allowing redistribution was confirmed for LIVE release 2 (the database is "
            "obtained from LIVE, The University of Texas at Austin, for research use). dgqa therefore "
            "treats the images as not redistributable: build and use the dataset locally, publish "
            "index-only (paths + sha256), acknowledge LIVE and cite the papers below."
        ),
        redistributable=False,
        citation="""@article{sheikh2006statistical,
  title={A Statistical Evaluation of Recent Full Reference Image Quality Assessment Algorithms},
  author={Sheikh, Hamid R. and Sabir, Muhammad F. and Bovik, Alan C.},
  journal={IEEE Transactions on Image Processing},
  volume={15},
  number={11},
  pages={3440--3451},
  year={2006}
}
@misc{sheikh2005live,
  title={LIVE Image Quality Assessment Database Release 2},
  author={Sheikh, Hamid R. and Wang, Zhou and Cormack, Lawrence and Bovik, Alan C.},
  howpublished={\\url{http://live.ece.utexas.edu/research/quality}},
  year={2005}
}""",
        homepage="http://live.ece.utexas.edu/research/quality/subjective.htm",
        splits=(
            "No official split: the 779 distorted images are `train`; the config `pristine` holds the 29 "
            "references (distortion_type 0). Split by `reference_id` for any train/test protocol "
            "(published protocols: 80/20 of the references, i.e. 23/6, 10 repeats)."
        ),
        layout=(
            "databaserelease2/{jp2k,jpeg,wn,gblur,fastfading}/img{k}.bmp + refimgs/*.bmp + "
            "refnames_all.mat (refnames_all, 1x982 cell) + dmos_realigned.mat (dmos_new, dmos_std, orgs) "
            "+ dmos.mat (dmos, orgs)"
        ),
        rows=rows,
        image_format="bmp",
        configure=configure,
    )
)
