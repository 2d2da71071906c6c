"""The unified example schema shared by every dataset dgqa writes (one row = one image)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dgqa_data.errors import DgqaError

if TYPE_CHECKING:  # imported where used: the distortions need this module, not datasets
    import datasets

#: KADID-10k / KADIS-700k distortion types, id -> snake-case name (ids 1..25; 0 = pristine).
DISTORTION_NAMES: tuple[str, ...] = (
    "pristine",
    "gaussian_blur",
    "lens_blur",
    "motion_blur",
    "color_diffusion",
    "color_shift",
    "color_quantization",
    "color_saturation_1",
    "color_saturation_2",
    "jpeg2000",
    "jpeg",
    "white_noise",
    "white_noise_color_component",
    "impulse_noise",
    "multiplicative_noise",
    "denoise",
    "brighten",
    "darken",
    "mean_shift",
    "jitter",
    "non_eccentricity_patch",
    "pixelate",
    "quantization",
    "color_block",
    "high_sharpen",
    "contrast_change",
)
NUM_CLASSES = len(DISTORTION_NAMES)  # 26: pristine + 25 synthetic domains

#: KADID-10k distortion groups, group -> type ids.
DISTORTION_GROUPS: dict[str, tuple[int, ...]] = {
    "blur": (1, 2, 3),
    "color_distortion": (4, 5, 6, 7, 8),
    "compression": (9, 10),
    "noise": (11, 12, 13, 14, 15),
    "brightness_change": (16, 17, 18),
    "spatial_distortion": (19, 20, 21, 22, 23),
    "sharpness_contrast": (24, 25),
}
GROUP_OF: dict[int, str] = {t: g for g, ids in DISTORTION_GROUPS.items() for t in ids}

UNKNOWN_TYPE = -1  # authentic / unknown distortion
AUTHENTIC_DOMAIN = "authentic"

COLUMNS = (
    "image",
    "image_id",
    "reference_id",
    "mos",
    "mos_std",
    "quality",
    "distortion_type",
    "distortion_level",
    "domain",
    "corpus",
)


def distortion_label() -> datasets.ClassLabel:
    """ClassLabel over the 26 classes; -1 encodes unknown/authentic."""
    import datasets

    return datasets.ClassLabel(names=list(DISTORTION_NAMES))


def base_features(index_only: bool = False) -> datasets.Features:
    """Features of the unified schema.

    Args:
        index_only: store the image as a path + sha256 instead of embedded bytes.
    """
    import datasets

    image = datasets.Value("string") if index_only else datasets.Image()
    feats = {
        "image": image,
        "image_id": datasets.Value("string"),
        "reference_id": datasets.Value("string"),
        "mos": datasets.Value("float32"),
        "mos_std": datasets.Value("float32"),
        "quality": datasets.Value("float32"),
        "distortion_type": distortion_label(),
        "distortion_level": datasets.Value("int8"),
        "domain": datasets.Value("string"),
        "corpus": datasets.Value("string"),
    }
    if index_only:
        feats["sha256"] = datasets.Value("string")
    return datasets.Features(feats)


def type_id(name_or_id: str | int) -> int:
    """Resolve a distortion type given as id (``3``, ``"03"``) or name (``"motion_blur"``)."""
    if isinstance(name_or_id, int) or str(name_or_id).strip().isdigit():
        tid = int(name_or_id)
        if not 0 <= tid < NUM_CLASSES:
            raise DgqaError(f"distortion type id {tid} is outside 0..{NUM_CLASSES - 1}")
        return tid
    name = str(name_or_id).strip().lower()
    if name not in DISTORTION_NAMES:
        raise DgqaError(f"unknown distortion type {name_or_id!r}; known: {', '.join(DISTORTION_NAMES)}")
    return DISTORTION_NAMES.index(name)


def domain_of(type_id_: int) -> str:
    """Selection domain of a KADID type id (its snake-case name)."""
    return DISTORTION_NAMES[type_id_] if type_id_ >= 0 else AUTHENTIC_DOMAIN


def to_quality(mos: float | None, lo: float, hi: float, higher_is_better: bool = True) -> float | None:
    """Map a score on the corpus scale [lo, hi] to [0, 1], higher = better."""
    if mos is None or (isinstance(mos, float) and math.isnan(mos)):
        return None
    q = (float(mos) - lo) / (hi - lo)
    return q if higher_is_better else 1.0 - q
