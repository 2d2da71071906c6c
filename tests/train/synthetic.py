"""Small synthetic dgqa datasets for training/scoring tests, built from real scikit-image photos.

``make_source`` writes a KADIS-style pool (pristine + distortion types x levels, labelled);
``make_target`` writes an unlabeled target whose images carry a known set of distortions.
Both are Hub-layout folders written with :class:`dgqa_data.hub_folder.HubFolderWriter`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dgqa_data.hub_folder import HubFolderWriter, configs_yaml, render_card
from dgqa_data.schema import AUTHENTIC_DOMAIN, DISTORTION_NAMES, UNKNOWN_TYPE, base_features

DistortFn = Callable[[np.ndarray, int, int, int], np.ndarray]

#: Scenes the classifier trains on, and different scenes used only for targets.
TRAIN_SCENES = ("astronaut", "coffee", "rocket", "immunohistochemistry")
HELDOUT_SCENES = ("chelsea", "stereo_motorcycle")


def simple_distort(image: np.ndarray, type_id: int, level: int, seed: int = 0) -> np.ndarray:
    """A cheap stand-in with the ``distort`` signature (labels only matter, not the algorithm)."""
    from tests.fixtures.official import simple_distortion

    return simple_distortion(image, type_id, level)


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3])


def scene_crops(
    scenes: Sequence[str], size: int = 64, per_scene: int = 4, scale: float = 4.0, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """``per_scene`` seeded ``size`` x ``size`` crops of each photo, downscaled so its short side is
    ``scale * size`` (a crop shows a meaningful part of the scene). Returns ``(reference_id, crop)``."""
    rng = np.random.default_rng(seed)
    out = []
    for name in scenes:
        img = _photo(name)
        h, w = img.shape[:2]
        s = scale * size / min(h, w)
        arr = np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.BICUBIC))
        for k in range(per_scene):
            y = int(rng.integers(0, arr.shape[0] - size + 1))
            x = int(rng.integers(0, arr.shape[1] - size + 1))
            out.append((f"{name}_{k:02d}", np.ascontiguousarray(arr[y : y + size, x : x + size])))
    return out


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_folder(
    out: str | Path, rows: Iterable[dict], corpus: str = "synthetic", split: str = "train"
) -> Path:
    """Write rows ``{"image": uint8 array, "image_id", "reference_id", "distortion_type",
    "distortion_level"}`` (and optionally ``quality``, also stored as ``mos``) as a dgqa dataset folder."""
    writer = HubFolderWriter(out, base_features())
    for row in rows:
        t = int(row["distortion_type"])
        writer.add(
            {
                "image": {"bytes": png(row["image"]), "path": row["image_id"]},
                "image_id": row["image_id"],
                "reference_id": row.get("reference_id"),
                "mos": row.get("quality"),
                "mos_std": None,
                "quality": row.get("quality"),
                "distortion_type": t,
                "distortion_level": int(row.get("distortion_level", 0)),
                "domain": DISTORTION_NAMES[t] if t >= 0 else AUTHENTIC_DOMAIN,
                "corpus": corpus,
            },
            split=split,
        )
    card = render_card(
        {"configs": configs_yaml(writer.parts()), "license": "other"}, f"# {corpus} (test data)"
    )
    return writer.finish(card)


def make_source(
    out: str | Path,
    refs: Sequence[tuple[str, np.ndarray]],
    types: Iterable[int] = range(1, 26),
    levels: Iterable[int] = (3,),
    distort: DistortFn | None = None,
    pristine_copies: int = 1,
    seed: int = 0,
) -> Path:
    """KADIS-style labelled pool: each reference ``pristine_copies`` times as class 0, plus every
    (type, level) distortion of it (``distort`` defaults to :func:`simple_distort`)."""
    distort = distort or simple_distort
    types, levels = list(types), list(levels)

    def rows():
        for r, (ref_id, img) in enumerate(refs):
            for c in range(pristine_copies):
                yield {
                    "image": img,
                    "image_id": f"{ref_id}_p{c}.png",
                    "reference_id": ref_id,
                    "distortion_type": 0,
                }
            for t in types:
                for lv in levels:
                    yield {
                        "image": distort(img, t, lv, seed * 100_003 + r * 1000 + t * 10 + lv),
                        "image_id": f"{ref_id}_{t:02d}_{lv:02d}.png",
                        "reference_id": ref_id,
                        "distortion_type": t,
                        "distortion_level": lv,
                    }

    return write_folder(out, rows())


def make_target(
    out: str | Path,
    refs: Sequence[tuple[str, np.ndarray]],
    planted: Mapping[int, int],
    distort: DistortFn | None = None,
    seed: int = 0,
) -> Path:
    """Unlabeled target: every reference distorted with every planted ``{type: level}``; the rows
    carry ``distortion_type = -1`` (unknown) like an authentic corpus."""
    distort = distort or simple_distort

    def rows():
        for r, (ref_id, img) in enumerate(refs):
            for t, lv in planted.items():
                yield {
                    "image": distort(img, t, lv, seed * 100_003 + r * 1000 + t * 10 + lv),
                    "image_id": f"target/{ref_id}_{t:02d}.png",
                    "reference_id": None,
                    "distortion_type": UNKNOWN_TYPE,
                }

    return write_folder(out, rows(), corpus="target", split="test")

