"""AGIQA-3K: 2,982 AI-generated images (6 generators), perceptual-quality and text-alignment MOS."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import datasets

from dgqa_data.corpora.base import (
    Corpus,
    CorpusError,
    Item,
    Skip,
    parse_score,
    read_csv_rows,
    register,
    require,
    safe_path,
)
from dgqa_data.schema import UNKNOWN_TYPE

META = "data.csv"
COLUMNS = ("name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align", "std_align")
#: where public copies put the images, relative to data.csv; "auto" takes the one holding most of them
IMAGE_DIRS = ("", "images", "AGIQA-3K")
#: ``<generator>_<variant>_<nnn>.<ext>``, e.g. ``sd1.5_highcorr_012.jpg``
NAME_RE = re.compile(r"^(.+)_(normal|highcorr|lowcorr|lowstep)_(\d+)\.[A-Za-z]+$")
SCALE = (0.0, 5.0)


def aigc_domain(generator: str) -> str:
    """Selection domain of a generator: ``aigc/<generator>``."""
    return f"aigc/{generator}"


def image_folder(root: Path, names: list[str], image_dir: str) -> Path:
    """The folder holding the images: ``image_dir`` when given, else whichever of ``root``,
    ``root/images`` and ``root/AGIQA-3K`` holds most of the listed ``names``."""
    if image_dir != "auto":
        folder = safe_path(root, image_dir, "option image_dir")
        if isinstance(folder, Skip):
            raise CorpusError(f"agiqa3k: image_dir {image_dir!r} escapes the corpus root {root}")
        if not folder.is_dir():
            raise CorpusError(f"agiqa3k: image_dir {image_dir!r}: {folder} is not a folder")
        return folder
    wanted = set(names)
    best, found = None, 0
    for sub in IMAGE_DIRS:
        folder = root / sub if sub else root
        if not folder.is_dir():
            continue
        n = len(wanted.intersection(os.listdir(folder)))
        if n > found:
            best, found = folder, n
    if best is None:
        where = ", ".join(str(root / s) if s else str(root) for s in IMAGE_DIRS)
        raise CorpusError(
            f"missing AGIQA-3K images: none of the images listed in {META} is in {where} "
            "(or name the folder with --option image_dir=...)"
        )
    return best


def _optional(rec: dict[str, str], column: str, name: str, where: str) -> float | None | Skip:
    """A score cell that may be empty (None); non-numeric is a :class:`Skip`."""
    value = rec[column].strip()
    return parse_score(value, name, where, column) if value else None


def rows(root: Path, *, image_dir: str = "auto") -> Iterator[Item | Skip]:
    """Rows of ``data.csv`` in file order, all in split ``train`` (no official split).

    Args:
        root: the folder holding ``data.csv``.
        image_dir: the image folder relative to ``root`` (``""`` for ``root`` itself); ``"auto"``
            picks whichever of ``root``, ``images/`` and ``AGIQA-3K/`` holds most listed images.
    """
    meta = require(root / META, f"AGIQA-3K metadata file {META}")
    records = list(read_csv_rows(meta, COLUMNS))
    folder = image_folder(root, [rec["name"].strip() for _, rec in records if rec.get("name")], image_dir)
    for line, rec in records:
        where = f"{META} line {line}"
        if None in rec or any(v is None for v in rec.values()):
            n = sum(v is not None for k, v in rec.items() if k is not None) + len(rec.get(None) or [])
            shown = rec.get("name") or ""
            yield Skip(shown, where, f"expected {len(COLUMNS)} fields, got {n} (quote prompts with commas)")
            continue
        name = rec["name"].strip()
        m = NAME_RE.match(name)
        if m is None:
            yield Skip(
                name, where, "name does not match <generator>_<normal|highcorr|lowcorr|lowstep>_<n>.<ext>"
            )
            continue
        generator, variant = m.group(1), m.group(2)
        mos = parse_score(rec["mos_quality"], name, where, "mos_quality")
        values = {c: _optional(rec, c, name, where) for c in ("std_quality", "mos_align", "std_align")}
        path = safe_path(folder, name, where)
        bad = next((v for v in (mos, *values.values(), path) if isinstance(v, Skip)), None)
        if bad is not None:
            yield bad
            continue
        align = values["mos_align"]
        if align is not None and not SCALE[0] <= align <= SCALE[1]:
            yield Skip(name, where, f"mos_align {align:g} is outside the declared scale 0..5")
            continue
        negative = next((c for c in ("std_quality", "std_align") if (values[c] or 0) < 0), None)
        if negative is not None:
            yield Skip(name, where, f"{negative} {values[negative]:g} is negative")
            continue
        yield Item(
            {
                "image_id": name,
                "reference_id": None,
                "mos": mos,
                "mos_std": values["std_quality"],
                "quality": AGIQA3K.quality(mos),
                "distortion_type": UNKNOWN_TYPE,
                "distortion_level": 0,
                "domain": aigc_domain(generator),
                "corpus": "agiqa3k",
                "mos_align": align,
                "std_align": values["std_align"],
                "prompt": rec["prompt"],
                "adj1": rec["adj1"].strip() or None,
                "adj2": rec["adj2"].strip() or None,
                "style": rec["style"].strip() or None,
                "generator": generator,
                "variant": variant,
                "_where": where,
            },
            path,
        )


AGIQA3K = register(
    Corpus(
        name="agiqa3k",
        aliases=("agiqa-3k", "agiqa"),
        pretty_name="AGIQA-3K",
        kind="NR, AI-generated",
        size="2,982",
        score_name=(
            "perceptual-quality MOS (`mos_quality`) on a 0-5 scale (higher = better; observed 0-4.49)"
        ),
        score_range=SCALE,
        higher_is_better=True,
        license="other",
        license_note=(
            "The authors' GitHub repository (lcysyzxdxc/AGIQA-3k-Database, which holds data.csv) is under "
            "the MIT licence; the terms of the images (downloaded separately from Baidu / Google Drive) "
            "are not stated, and they were made with generators that carry their own terms (Midjourney, "
            "DALL-E 2, Stable Diffusion, ...). dgqa therefore treats the images as not redistributable: "
            "build and use the dataset locally, publish index-only (paths + sha256), and cite the paper below."
        ),
        redistributable=False,
        citation="""@article{li2023agiqa3k,
  title={{AGIQA-3K}: An Open Database for {AI}-Generated Image Quality Assessment},
  author={Li, Chunyi and Zhang, Zicheng and Wu, Haoning and Sun, Wei and Min, Xiongkuo and Liu, Xiaohong and Zhai, Guangtao and Lin, Weisi},
  journal={IEEE Transactions on Circuits and Systems for Video Technology},
  year={2023}
}""",
        homepage="https://github.com/lcysyzxdxc/AGIQA-3k-Database",
        splits=(
            "No official split: all 2,982 images are `train`. Published protocols split at random "
            "(e.g. 80/20 by image, 10 repeats); no reference images (no-reference corpus)."
        ),
        layout=(
            "AGIQA-3K/data.csv (name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align) "
            "+ the images (AttnGAN_normal_000.jpg ...) next to data.csv or in images/ or AGIQA-3K/"
        ),
        rows=rows,
        extra_features={
            "mos_align": datasets.Value("float32"),
            "std_align": datasets.Value("float32"),
            "prompt": datasets.Value("string"),
            "adj1": datasets.Value("string"),
            "adj2": datasets.Value("string"),
            "style": datasets.Value("string"),
            "generator": datasets.Value("string"),
            "variant": datasets.Value("string"),
        },
        image_format="jpeg",
    )
)
