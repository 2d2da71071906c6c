"""LIVE In the Wild Image Quality Challenge (CLIVE): 1,162 authentic photos, crowd MOS on ~0-100."""

from __future__ import annotations

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
    register,
    require,
    safe_path,
)
from dgqa_data.schema import AUTHENTIC_DOMAIN, UNKNOWN_TYPE

NAMES_FILE, MOS_FILE, STD_FILE = "AllImages_release", "AllMOS_release", "AllStdDev_release"
TRAINING_IMAGES = ("keep", "drop")


def _load_mat(data: Path, key: str) -> np.ndarray:
    """Variable ``key`` of ``data/<key>.mat`` (each official file holds one variable named as the file)."""
    path = require(data / f"{key}.mat", f"LIVE Challenge metadata file Data/{key}.mat")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError or MatReadError on a bad file
        raise CorpusError(f"{path}: not a readable .mat file: {err}") from err
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise CorpusError(f"{path}: no variable {key!r}; the file holds {found}")
    return mat[key]


def _names(cells: np.ndarray, path: Path) -> list[str]:
    """File names from a MATLAB cell array of strings ((N,1): ``cells[i][0][0]`` is the name)."""
    names = []
    for i, cell in enumerate(np.asarray(cells, dtype=object).ravel(), start=1):
        flat = np.asarray(cell).ravel()
        if flat.size != 1 or not isinstance(flat[0], str):
            raise CorpusError(f"{path} entry {i}: expected an image file name, got {cell!r}")
        names.append(str(flat[0]))
    return names


def _scalars(values: np.ndarray) -> list[Any]:
    """A (1,N) MATLAB vector as Python scalars (bad cells are reported per row by ``parse_score``)."""
    return [v.item() if isinstance(v, np.generic) else v for v in np.asarray(values).ravel()]


def rows(root: Path, *, training_images: str = "keep") -> Iterator[Item | Skip]:
    """The 1,169 entries of the .mat files in their order: ``t1..t7`` -> ``train``, the rest -> ``test``.

    Args:
        root: the ``ChallengeDB_release`` folder.
        training_images: ``"keep"`` the 7 images shown to train the raters (split ``train``) or
            ``"drop"`` them, as every published protocol does.
    """
    if training_images not in TRAINING_IMAGES:
        raise CorpusError(f"livec: training_images must be 'keep' or 'drop', got {training_images!r}")
    data = root / "Data"
    require(root / "Images", "LIVE Challenge image folder Images/")
    names = _names(_load_mat(data, NAMES_FILE), data / f"{NAMES_FILE}.mat")
    mos = _scalars(_load_mat(data, MOS_FILE))
    std = _scalars(_load_mat(data, STD_FILE))
    if not len(names) == len(mos) == len(std):
        raise CorpusError(
            f"{data}: the .mat files disagree in length: {NAMES_FILE}.mat has {len(names)} names, "
            f"{MOS_FILE}.mat {len(mos)} scores, {STD_FILE}.mat {len(std)} standard deviations"
        )
    for i, (name, m, s) in enumerate(zip(names, mos, std), start=1):
        where = f"Data/{NAMES_FILE}.mat entry {i}"
        training = name.startswith("t")  # official rule: t1.bmp..t7.bmp live in Images/trainingImages/
        if training and training_images == "drop":
            continue
        score = parse_score(m, name, where, f"MOS (Data/{MOS_FILE}.mat)")
        spread = parse_score(s, name, where, f"std (Data/{STD_FILE}.mat)")
        folder = root / "Images" / "trainingImages" if training else root / "Images"
        path = safe_path(folder, name, where)
        bad = next((v for v in (score, spread, path) if isinstance(v, Skip)), None)
        if bad is not None:
            yield bad
            continue
        yield Item(
            {
                "image_id": name,
                "reference_id": None,
                "mos": score,
                "mos_std": spread,
                "quality": LIVEC.quality(score),
                "distortion_type": UNKNOWN_TYPE,
                "distortion_level": 0,
                "domain": AUTHENTIC_DOMAIN,
                "corpus": "livec",
                "_where": where,
            },
            path,
            split="train" if training else "test",
        )


LIVEC = register(
    Corpus(
        name="livec",
        aliases=("clive", "live-challenge", "livechallenge", "challengedb"),
        pretty_name="LIVE In the Wild Image Quality Challenge (CLIVE)",
        kind="NR, authentic",
        size="1,162 (+ 7 rater-training images)",
        official_split="`test` 1,162 / `train` 7",
        score_name="MOS of ~175 crowd ratings per image on a continuous ~0-100 scale (higher = better)",
        score_range=(0.0, 100.0),
        higher_is_better=True,
        license="other",
        license_note=(
            "LIVE copyright notice (permissive with attribution), from the official README: "
            '"Permission is hereby granted, without written agreement and without license or royalty '
            "fees, to use, copy, modify, and distribute this database (the images, the results and the "
            "source files) and its documentation for any purpose, provided that the copyright notice in "
            'its entirety appear in all copies" and that the original source (LIVE, The University of '
            "Texas at Austin) is acknowledged. Keep the README's notice with any copy and cite the paper below."
        ),
        redistributable=True,
        citation="""@article{ghadiyaram2016massive,
  title={Massive Online Crowdsourced Study of Subjective and Objective Picture Quality},
  author={Ghadiyaram, Deepti and Bovik, Alan C.},
  journal={IEEE Transactions on Image Processing},
  volume={25},
  number={1},
  pages={372--387},
  year={2016}
}""",
        homepage="http://live.ece.utexas.edu/research/ChallengeDB/index.html",
        splits=(
            "No official train/test split. `test` holds the 1,162 test images (the DGQA target set, and "
            "what every benchmark evaluates on); `train` holds the 7 images t1.bmp..t7.bmp that were shown "
            "to the raters for training (drop them with `--option training_images=drop`). Published "
            "protocols split the 1,162 at random (80/20, 10 repeats)."
        ),
        layout=(
            "ChallengeDB_release/Data/{AllImages_release,AllMOS_release,AllStdDev_release}.mat "
            "+ Images/ (1,162 images, mixed .bmp/.JPG) + Images/trainingImages/ (t1.bmp..t7.bmp)"
        ),
        rows=rows,
        image_format="mixed",
    )
)
