"""PIPAL (public training set): 200 references x 116 restoration / GAN / traditional outputs, Elo."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import datasets

from dgqa_data.corpora.base import Corpus, CorpusError, Item, Skip, parse_score, read_text, register, require
from dgqa_data.schema import domain_of

NAME_RE = re.compile(r"^(A\d{4})_(\d{2})_(\d{2})\.bmp$")
REF_RE = re.compile(r"^A\d{4}\.bmp$")
DIST_DIRS = tuple(f"Distortion_{k}" for k in range(1, 5))
#: Observed Elo 916.71-1835.99 over the 23,200 training images; the declared range rounds it out.
ELO_RANGE = (900.0, 1850.0)


def group_domain(group: int) -> str:
    """Selection domain of a PIPAL group code (the code -> category mapping is unpublished)."""
    return f"pipal-group-{group:02d}"


def _index(root: Path) -> tuple[dict[str, Path], list[Skip]]:
    """name -> path over ``Distortion_1..4``; a name found in two folders is a :class:`Skip`."""
    folders = [root / d for d in DIST_DIRS if (root / d).is_dir()]
    if not folders:
        raise CorpusError(f"missing PIPAL image folders: none of {', '.join(DIST_DIRS)} exists under {root}")
    index: dict[str, Path] = {}
    clashes = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.name in index:
                first = index[path.name].parent.name
                clashes.append(Skip(path.name, f"{folder.name}/{path.name}", f"also in {first}/"))
                continue
            index[path.name] = path
    return index, clashes


def _row(name: str, ref: str, elo: float | None, tid: int, group: int | None, sub: int | None, where: str):
    return {
        "image_id": name,
        "reference_id": ref,
        "mos": elo,
        "mos_std": None,
        "quality": PIPAL.quality(elo),
        "distortion_type": tid,
        "distortion_level": 0,
        "domain": group_domain(group) if group is not None else domain_of(tid),
        "corpus": "pipal",
        "pipal_group": group,
        "pipal_subtype": sub,
        "_where": where,
    }


def rows(root: Path) -> Iterator[Item | Skip]:
    """Scored images in label-file order (config ``default``), then ``Train_Ref`` (``pristine``)."""
    labels = require(root / "Train_Label", "PIPAL label folder Train_Label/")
    refs = require(root / "Train_Ref", "PIPAL reference folder Train_Ref/")
    index, clashes = _index(root)
    yield from clashes
    label_files = sorted(labels.glob("*.txt"))
    if not label_files:
        raise CorpusError(f"no label files (A####.txt) in {labels}")
    for label_file in label_files:
        text = read_text(label_file)
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"Train_Label/{label_file.name} line {line_no}"
            name, sep, value = (part.strip() for part in line.partition(","))
            if not sep:
                yield Skip(name, where, f"expected '<image>,<elo>', got {line.strip()!r}")
                continue
            m = NAME_RE.match(name)
            if m is None:
                yield Skip(name, where, "name does not match A####_GG_SS.bmp")
                continue
            elo = parse_score(value, name, where, "Elo score")
            if isinstance(elo, Skip):
                yield elo
                continue
            path = index.get(name)
            if path is None:
                yield Skip(name, where, f"listed image is missing (not in any of {', '.join(DIST_DIRS)})")
                continue
            ref, group, sub = f"{m.group(1)}.bmp", int(m.group(2)), int(m.group(3))
            yield Item(_row(name, ref, elo, -1, group, sub, where), path)
    for path in sorted(refs.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        where = f"Train_Ref/{path.name}"
        if not REF_RE.match(path.name):
            yield Skip(path.name, where, "reference name does not match A####.bmp")
            continue
        yield Item(_row(path.name, path.name, None, 0, None, None, where), path, config="pristine")


PIPAL = register(
    Corpus(
        name="pipal",
        aliases=("pipal-train",),
        pretty_name="PIPAL (training set)",
        kind="FR, synthetic + GAN outputs",
        size="23,200 (200 references)",
        score_name="Elo score from pairwise human preferences (higher = better; observed 916.7-1836.0)",
        score_range=ELO_RANGE,
        bounded_scale=False,
        higher_is_better=True,
        license="other",
        license_note=(
            "Licence NOT FOUND: the PIPAL download states no licence. Treat the images as not "
            "redistributable; publish index-only builds (paths + sha256) unless the authors allow it."
        ),
        redistributable=False,
        citation="""@inproceedings{gu2020pipal,
  title={PIPAL: a Large-Scale Image Quality Assessment Dataset for Perceptual Image Restoration},
  author={Gu, Jinjin and Cai, Haoming and Chen, Haoyu and Ye, Xiaoxing and Ren, Jimmy S. and Dong, Chao},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2020}
}""",
        homepage="https://github.com/HaomingCai/PIPAL-dataset",
        splits=(
            "The public training set only (200 references), as split `train`; the NTIRE validation "
            "and test labels are not in this download. The config `pristine` holds the references "
            "from Train_Ref (distortion_type 0). Split by `reference_id` (116 images per reference)."
        ),
        layout=(
            "PIPAL/Train_Ref/A####.bmp + PIPAL/Distortion_1..4/A####_GG_SS.bmp + "
            "PIPAL/Train_Label/A####.txt (lines A0001_00_00.bmp,1520.0648, no header)"
        ),
        rows=rows,
        extra_features={"pipal_group": datasets.Value("int8"), "pipal_subtype": datasets.Value("int8")},
        image_format="bmp",
    )
)
