"""SPAQ: 11,125 smartphone photos (66 phones), lab MOS on 0-100 plus five attribute scores."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import datasets

from dgqa_data.corpora.base import Corpus, CorpusError, Item, Skip, parse_score, register, safe_path
from dgqa_data.corpora.tables import Table, read_table
from dgqa_data.schema import AUTHENTIC_DOMAIN, UNKNOWN_TYPE

IMAGES, ANNOTATIONS = "TestImage", "Annotations"
MOS_FILE = "MOS and Image attribute scores.xlsx"
SCENE_FILE = "Scene category labels.xlsx"
EXIF_FILE = "EXIF_tags.xlsx"
NAME, MOS = "Image name", "MOS"
#: column of the MOS file -> extra column of the dataset (each 0-100, like the MOS)
ATTRIBUTES = {
    "Brightness": "brightness",
    "Colorfulness": "colorfulness",
    "Contrast": "contrast",
    "Noisiness": "noisiness",
    "Sharpness": "sharpness",
}
#: column of the scene file -> field of ``scene`` (fractions of the raters choosing the category)
SCENES = {
    "Animal": "animal",
    "Cityscape": "cityscape",
    "Human": "human",
    "Indoor scene": "indoor_scene",
    "Landscape": "landscape",
    "Night scene": "night_scene",
    "Plant": "plant",
    "Still-life": "still_life",
    "Others": "others",
}
#: column of the EXIF file -> field of ``exif``; the two (unnamed) columns after ``Flash`` are
#: ``time_0`` and ``time_1``
EXIF_TAGS = {
    "Focal length": "focal_length",
    "F-number": "f_number",
    "Exposure time": "exposure_time",
    "ISO": "iso",
    "Brightness": "brightness",
    "Flash": "flash",
}
EXIF_TIME = ("time_0", "time_1")
SCALE = (0.0, 100.0)


@dataclass(frozen=True)
class SpaqCorpus(Corpus):
    """SPAQ's declaration; ``resize_note`` tells a resized build's card how its images were made."""

    resize_note: str = ""


def spaq_folder(root: Path) -> Path:
    """The folder holding ``TestImage/`` and ``Annotations/``: ``root`` itself or ``root/SPAQ``."""
    for folder in (root, root / "SPAQ"):
        if (folder / IMAGES).is_dir() or (folder / ANNOTATIONS).is_dir():
            return folder
    raise CorpusError(
        f"missing SPAQ folders: neither {root} nor {root / 'SPAQ'} holds {IMAGES}/ and {ANNOTATIONS}/"
    )


def parse_resize(value: Any) -> int | None:
    """The ``resize`` option: the target short side in pixels, or None (as shipped)."""
    if value is None or str(value).strip().lower() in ("", "none", "0", "false", "no"):
        return None
    try:
        size = int(str(value).strip())
    except ValueError:
        size = 0
    if size < 1:
        raise CorpusError(f"spaq: resize must be a short side in pixels (e.g. 512) or none, got {value!r}")
    return size


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """``(width, height)`` with the short side ``short`` and the long side ``round(long * short /
    old short)`` (halves up); images whose short side is already ``<= short`` keep their size."""
    old = min(width, height)
    if old <= short:
        return width, height

    def scale(side: int) -> int:
        return short if side == old else (2 * side * short + old) // (2 * old)

    return scale(width), scale(height)


def resize_bytes(data: bytes, short: int) -> bytes:
    """A shipped image, resized (see :func:`resized_size`), as PNG bytes: the build's transform.

    The EXIF orientation is applied first (as ``datasets`` does when it decodes the original), then
    Pillow's BICUBIC resampling; the PNG keeps the ICC profile.
    """
    from PIL import Image, ImageOps

    from dgqa_data.images import opened, to_rgb8

    with opened(data) as shipped:  # the one guarded decoder (a decompression bomb is refused)
        image = ImageOps.exif_transpose(shipped)
        icc = shipped.info.get("icc_profile")
        if image.mode not in ("RGB", "L"):
            image = to_rgb8(image)  # mode-aware: a 16-bit image keeps its range, not clipped to white
        size = resized_size(*image.size, short)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, format="PNG", **({"icc_profile": icc} if icc else {}))
    return out.getvalue()


def _side_table(path: Path, names: dict[str, str], extra: tuple[str, ...] = ()) -> tuple[dict, tuple]:
    """``image name -> [(where, {field: cell}), ...]`` of an optional per-image file (scene or EXIF
    labels) and its field names. ``extra`` fields take the columns right after the named ones."""
    table = read_table(path)
    columns = table.columns((NAME, *names))
    fields = {names[c]: i for c, i in columns.items() if c != NAME}
    last = max(fields.values())
    for k, name in enumerate(extra):
        if last + 1 + k < len(table.header):
            fields[name] = last + 1 + k
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for line, cells in table.rows:
        name = cells[columns[NAME]]
        if isinstance(name, str):
            entry = (f"{ANNOTATIONS}/{table.where(line)}", {f: cells[i] for f, i in fields.items()})
            found.setdefault(name.strip(), []).append(entry)
    return found, (*names.values(), *extra)


def _side_values(
    entries: list[tuple[str, dict[str, Any]]], fields: tuple[str, ...], name: str, where: str, what: str
) -> dict[str, float | None] | Skip:
    """The numeric fields of one image's row in a scene or EXIF file (blank cell -> None)."""
    if not entries:
        return Skip(name, where, f"not listed in {what} (remove that file to build without it)")
    if len(entries) > 1:
        return Skip(name, where, f"listed {len(entries)} times in {what}: {', '.join(w for w, _ in entries)}")
    side_where, cells = entries[0]
    out: dict[str, float | None] = {}
    for f in fields:
        if cells.get(f) is None:
            out[f] = None
            continue
        value = parse_score(cells[f], name, side_where, f)
        if isinstance(value, Skip):
            return value
        out[f] = value
    return out


def _mos_rows(table: Table, images: Path) -> Iterator[Item | Skip]:
    """Rows of the MOS file (no image resizing yet)."""
    columns = table.columns((NAME, MOS, *ATTRIBUTES))
    for line, cells in table.rows:
        where = f"{ANNOTATIONS}/{table.where(line)}"
        raw = cells[columns[NAME]]
        if not isinstance(raw, str):
            yield Skip("" if raw is None else str(raw), where, f"{NAME} {raw!r} is not a file name")
            continue
        name = raw.strip()
        mos = parse_score(cells[columns[MOS]], name, where, MOS) if cells[columns[MOS]] is not None else None
        if mos is None:
            yield Skip(name, where, f"{MOS} is empty")
            continue
        values: dict[str, Any] = {}
        for column, key in ATTRIBUTES.items():
            cell = cells[columns[column]]
            value = (
                parse_score(cell, name, where, column)
                if cell is not None
                else Skip(name, where, f"{column} is empty")
            )
            if not isinstance(value, Skip) and not SCALE[0] <= value <= SCALE[1]:
                value = Skip(name, where, f"{column} {value:g} is outside the attribute scale 0..100")
            values[key] = value
        path = safe_path(images, name, where)
        bad = next((v for v in (mos, *values.values(), path) if isinstance(v, Skip)), None)
        if bad is not None:
            yield bad
            continue
        yield Item(
            {
                "image_id": name,
                "reference_id": None,
                "mos": mos,
                "mos_std": None,
                "quality": SPAQ.quality(mos),
                "distortion_type": UNKNOWN_TYPE,
                "distortion_level": 0,
                "domain": AUTHENTIC_DOMAIN,
                "corpus": "spaq",
                **values,
                "scene": None,
                "exif": None,
                "_where": where,
            },
            path,
        )


def rows(root: Path, *, resize: Any = None) -> Iterator[Item | Skip]:
    """Rows of ``MOS and Image attribute scores.xlsx`` in sheet order.

    With ``Annotations/Scene category labels.xlsx`` and/or ``Annotations/EXIF_tags.xlsx`` present,
    every image must be listed there too; their values fill ``scene`` and ``exif`` (else null).

    Args:
        root: the SPAQ folder (holding ``TestImage/`` and ``Annotations/``) or its parent.
        resize: short side in pixels (e.g. ``512``) for the resized variant (made by the build's
            read workers, see :func:`configure`); default: images as shipped.
    """
    folder = spaq_folder(root)
    parse_resize(resize)  # a bad value is refused before anything is read
    mos_path = folder / ANNOTATIONS / MOS_FILE
    if not mos_path.is_file():
        raise CorpusError(f"missing SPAQ metadata file {ANNOTATIONS}/{MOS_FILE}: {mos_path} does not exist")
    images = folder / IMAGES
    if not images.is_dir():
        raise CorpusError(f"missing SPAQ image folder {IMAGES}/: {images} does not exist")
    sides = []
    for file, names, extra, key in (
        (SCENE_FILE, SCENES, (), "scene"),
        (EXIF_FILE, EXIF_TAGS, EXIF_TIME, "exif"),
    ):
        if (folder / ANNOTATIONS / file).is_file():
            found, fields = _side_table(folder / ANNOTATIONS / file, names, extra)
            sides.append((file, key, found, fields))
    entries: list[Item | Skip] = []
    for entry in _mos_rows(read_table(mos_path), images):
        if isinstance(entry, Item):
            for file, key, found, fields in sides:
                name, where = entry.row["image_id"], entry.row["_where"]
                value = _side_values(found.get(name, []), fields, name, where, file)
                if isinstance(value, Skip):
                    entry = value
                    break
                entry.row[key] = value
        entries.append(entry)
    yield from entries


def configure(corpus: Corpus, *, resize: Any = None, **_: Any) -> Corpus:
    """The declaration for ``--option resize=N``: PNG images and the card's note on how they were made."""
    short = parse_resize(resize)
    if short is None:
        return corpus
    return dataclasses.replace(
        corpus,
        image_format="png",
        transform=partial(resize_bytes, short=short),
        resize_note=(
            f"every image was oriented by its EXIF orientation tag, then resized with Pillow's BICUBIC "
            f"filter (`Image.Resampling.BICUBIC`, antialiased) so that its short side is {short} pixels "
            f"and its long side `round(long * {short} / short)` (halves up); images whose short side is "
            f"already {short} or less keep their size. The result is stored losslessly as PNG (with the "
            "original's ICC profile, without EXIF); `image_id` still names the original JPEG"
        ),
    )


SPAQ = register(
    SpaqCorpus(
        name="spaq",
        pretty_name="SPAQ (Smartphone Photography Attribute and Quality)",
        kind="NR, authentic (smartphones)",
        size="11,125",
        score_name="MOS on a 0-100 scale (column `MOS`; higher = better)",
        score_range=SCALE,
        higher_is_better=True,
        license="other",
        license_note=(
            "No licence text was found: the authors' repository (github.com/h4nwei/SPAQ), which links "
            "the download, states no terms and asks to cite the paper. dgqa therefore treats the images "
            "as not redistributable: build and use the dataset locally, publish index-only (paths + "
            "sha256), and cite the paper below."
        ),
        redistributable=False,
        citation="""@inproceedings{fang2020spaq,
  title={Perceptual Quality Assessment of Smartphone Photography},
  author={Fang, Yuming and Zhu, Hanwei and Zeng, Yan and Ma, Kede and Wang, Zhou},
  booktitle={IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={3677--3686},
  year={2020}
}""",
        homepage="https://github.com/h4nwei/SPAQ",
        splits=(
            "No official split: all 11,125 images are `train`. Published protocols split them at random "
            "by image (80/20, 10 repeats, e.g. 8,900 / 2,225; ARNIQA 7,787 / 1,113 / 2,225). The DGQA "
            "target is all images, resized so the short side is 512 (`--option resize=512`)."
        ),
        layout=(
            "SPAQ/TestImage/00001.jpg ... 11125.jpg + SPAQ/Annotations/MOS and Image attribute scores.xlsx "
            "(Image name, MOS, Brightness, Colorfulness, Contrast, Noisiness, Sharpness) "
            "[+ Annotations/Scene category labels.xlsx, Annotations/EXIF_tags.xlsx]"
        ),
        rows=rows,
        extra_features={
            **{key: datasets.Value("float32") for key in ATTRIBUTES.values()},
            "scene": {key: datasets.Value("float32") for key in SCENES.values()},
            "exif": {key: datasets.Value("float32") for key in (*EXIF_TAGS.values(), *EXIF_TIME)},
        },
        image_format="jpeg",
        configure=configure,
    )
)
