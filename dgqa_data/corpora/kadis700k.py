"""KADIS-700k: 140,000 pristine references, each distorted with one KADID type at 5 levels, no MOS.

The official download ships the references and the MATLAB generator; the 700,000 distorted images
(``dist_imgs/<stem>_<TT>_<LL>.bmp``) exist only once generated (with the official code or
``dgqa synth``). A build without ``dist_imgs/`` holds the references only.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import datasets

from dgqa_data.corpora.base import (
    Corpus,
    Item,
    Skip,
    parse_bool,
    read_csv_rows,
    register,
    require,
    safe_path,
)
from dgqa_data.schema import domain_of

META = "kadis700k_ref_imgs.csv"
COLUMNS = ("ref_im", "dist_type_1", "dist_type_2")
DIST_RE = re.compile(r"^(.+)_(\d{2})_(\d{2})\.bmp$", re.IGNORECASE)


def csv_type(rec: dict[str, str]) -> int | None:
    """The type a CSV row declares: ``dist_type_2`` when present, else ``dist_type_1``.

    Type 8 never appears in ``dist_type_1``: the rows of type 8 read ``7,8`` (the official
    classifier loader reads only ``dist_type_1`` and so never sees type 8; do not copy that).
    Returns ``None`` when the cell is not an integer.
    """
    cell = (rec.get("dist_type_2") or "").strip() or (rec.get("dist_type_1") or "").strip()
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _stem(ref_im: str) -> str:
    # the generator names outputs after split(ref_im, '.'){1}: everything before the first dot
    return Path(ref_im).name.split(".")[0]


def _scan(folder: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Generated files by reference stem: (type, level, file name), plus ``""`` for odd names."""
    found: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            m = DIST_RE.match(entry.name)
            if m is None:
                found[""].append((0, 0, entry.name))
            else:
                found[m.group(1)].append((int(m.group(2)), int(m.group(3)), entry.name))
    for files in found.values():
        files.sort(key=lambda f: (f[1], f[0], f[2]))
    return found


def _row(image_id: str, ref: str, tid: int, level: int, file_type: int, csv_tid: int, where: str) -> dict:
    return {
        "image_id": image_id,
        "reference_id": ref,
        "mos": None,
        "mos_std": None,
        "quality": None,
        "distortion_type": tid,
        "distortion_level": level,
        "domain": domain_of(tid),
        "corpus": "kadis700k",
        "kadis_file_type": file_type,
        "kadis_csv_type": csv_tid,
        "_where": where,
    }


def rows(root: Path, include_references: bool | str = True) -> Iterator[Item | Skip]:
    """Per CSV row: the reference (type 0) then its generated images found in ``dist_imgs/``.

    Args:
        root: the unzipped ``kadis700k/`` folder.
        include_references: also write the references as ``distortion_type`` 0 (``pristine``).
    """
    include_refs = parse_bool(include_references, "include_references")
    meta = require(root / META, f"KADIS-700k metadata file {META}")
    ref_dir = require(root / "ref_imgs", "KADIS-700k reference folder ref_imgs/")
    dist_dir = root / "dist_imgs"
    generated = _scan(dist_dir) if dist_dir.is_dir() else {}
    for name in (n for _, _, n in generated.pop("", [])):
        yield Skip(name, f"dist_imgs/{name}", "name does not match <ref>_<TT>_<LL>.bmp")
    for line, rec in read_csv_rows(meta, COLUMNS):
        where = f"{META} line {line}"
        ref = (rec["ref_im"] or "").strip()
        tid = csv_type(rec)
        if not ref:
            yield Skip("", where, "empty ref_im")
            continue
        if tid is None or not 1 <= tid <= 25:
            cells = f"{rec['dist_type_1']!r},{rec['dist_type_2']!r}"
            yield Skip(ref, where, f"dist_type_1,dist_type_2 = {cells}: no distortion type in 1..25")
            continue
        path = safe_path(ref_dir, ref, where)
        if isinstance(path, Skip):
            yield path
            continue
        if include_refs:
            yield Item(_row(ref, ref, 0, 0, 0, tid, where), path)
        for file_tid, level, name in generated.pop(_stem(ref), []):
            file_where = f"dist_imgs/{name} ({where})"
            if not (1 <= file_tid <= 25 and 1 <= level <= 5):
                yield Skip(name, file_where, f"type {file_tid} / level {level} outside 1..25 / 1..5")
                continue
            # The file name's TT is what was generated, except for the `7,8` rows: the official
            # generator names their outputs after dist_type_1 (07) but they are type 8.
            label = 8 if (file_tid == 7 and tid == 8) else file_tid
            yield Item(_row(name, ref, label, level, file_tid, tid, file_where), dist_dir / name)
    for stem, files in sorted(generated.items()):
        for _, _, name in files:
            yield Skip(name, f"dist_imgs/{name}", f"no row for reference {stem!r} in {META}")


KADIS700K = register(
    Corpus(
        name="kadis700k",
        aliases=("kadis-700k", "kadis"),
        pretty_name="KADIS-700k",
        kind="FR, synthetic, unlabelled",
        size="700,000 (140,000 references)",
        score_name="none: KADIS-700k has no human scores (`mos` and `quality` are null)",
        score_range=None,
        higher_is_better=True,
        license="other",
        license_note=(
            "Licence NOT FOUND: the official download states no licence for the reference images. "
            "Treat the images as not redistributable; publish index-only builds (paths + sha256) "
            "unless you have the rights holders' permission."
        ),
        redistributable=False,
        citation="""@article{lin2020deepfl,
  title={DeepFL-IQA: Weak Supervision for Deep IQA Feature Learning},
  author={Lin, Hanhe and Hosu, Vlad and Saupe, Dietmar},
  journal={arXiv preprint arXiv:2001.08113},
  year={2020}
}""",
        homepage="https://database.mmsp-kn.de/kadid-10k-database.html",
        splits=(
            "No official split and no scores. One config `default`, split `train`: every reference "
            "(distortion_type 0, domain `pristine`) followed by its generated images. Split by "
            "`reference_id` for any train/test protocol."
        ),
        layout=(
            "kadis700k/kadis700k_ref_imgs.csv (ref_im,dist_type_1,dist_type_2) + kadis700k/ref_imgs/*.png "
            "+ kadis700k/dist_imgs/<stem>_<TT>_<LL>.bmp once generated"
        ),
        rows=rows,
        extra_features={
            "kadis_file_type": datasets.Value("int8"),
            "kadis_csv_type": datasets.Value("int8"),
        },
        image_format="bmp",
    )
)
