"""An "authentic-like" camera pipeline simulation and full-reference pseudo-MOS for demo targets.

``simulate_capture`` degrades a clean photo the way a phone camera does: defocus, hand-shake
motion, exposure error, sensor noise, then JPEG, each applied with a seeded probability and
strength, usually several at once, and records what it did in units that
:mod:`dgqa_data.severity` turns into a quality label on the same scale as KADID-style images.
``pseudo_mos`` labels any distorted image against its reference with MS-SSIM (Wang et al. 2003,
:mod:`dgqa_data.msssim`: numpy, torch-free) mapped to a 1-5 scale.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from dgqa_data.errors import DgqaError
from dgqa_data.images import opened

#: The degradation families of a capture and the KADID types that match each: the truth a selection
#: is measured against (:mod:`dgqa_data.truth`). The severity labels place each family on the level
#: scale of one of these types (:data:`dgqa_data.severity.CAMERA_ANCHORS`).
CAMERA_FAMILIES: dict[str, tuple[int, ...]] = {
    "defocus": (1, 2),  # gaussian blur, lens blur
    "shake": (3,),  # motion blur
    "noise": (11, 12),  # white noise, white noise in a colour component
    "brighter": (16,),  # brighten
    "darker": (17,),  # darken
    "jpeg": (10,),  # every capture ends in a JPEG encode
}

#: The step recorded in :attr:`Capture.steps` that says a capture carries a family.
FAMILY_STEPS = {
    "defocus": "defocus_radius",
    "shake": "shake_length",
    "noise": "noise_sigma",
    "brighter": "brighter_stops",
    "darker": "darker_stops",
    "jpeg": "jpeg_quality",
}


def capture_families(steps: dict[str, float]) -> list[str]:
    """The families a capture carries, from what :func:`simulate_capture` recorded."""
    return [family for family, key in FAMILY_STEPS.items() if key in steps]


@dataclass
class Capture:
    """A simulated capture and what was applied (JSON-serialisable).

    ``steps`` holds the drawn parameters and, in the units of
    :data:`dgqa_data.severity.CAMERA_ANCHORS`, the measured strength of each degradation
    (``noise_rms``, ``brighter_stops`` / ``darker_stops``, ...).
    """

    image: np.ndarray
    steps: dict[str, float]

    @property
    def quality(self) -> float:
        """The severity label in [0, 1] (:func:`dgqa_data.severity.capture_quality`)."""
        from dgqa_data.severity import capture_quality

        return capture_quality(self.steps)


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    k = (x**2 + y**2 <= radius**2).astype(np.float32)
    return k / k.sum()


def _motion(length: float, angle: float) -> np.ndarray:
    n = int(np.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    for t in np.linspace(-length / 2, length / 2, 4 * n):
        x = c + t * np.cos(np.deg2rad(angle))
        y = c - t * np.sin(np.deg2rad(angle))
        k[int(round(y)), int(round(x))] = 1
    return k / k.sum()


def simulate_capture(image: np.ndarray, seed: int) -> Capture:
    """Degrade a clean uint8 RGB image like a camera would (seeded).

    One dominant degradation, drawn uniformly from defocus (disk radius 1-6 px), hand shake (line
    2-10 px), exposure error (0.3-1.4 stops either way) and luminance-dependent sensor noise
    (sigma 0.02-0.1); a second one with probability 1/4; then JPEG at quality 50-95.
    """
    rng = np.random.default_rng(seed)
    x = image.astype(np.float32) / 255
    steps: dict[str, float] = {}
    kinds = ["defocus", "shake", "exposure", "noise"]
    chosen = [str(k) for k in rng.choice(kinds, size=2 if rng.random() < 0.25 else 1, replace=False)]
    if "defocus" in chosen:
        steps["defocus_radius"] = r = float(rng.uniform(1.0, 6.0))
        x = cv2.filter2D(x, -1, _disk(r), borderType=cv2.BORDER_REPLICATE)
    if "shake" in chosen:
        steps["shake_length"] = length = float(rng.uniform(2, 10))
        steps["shake_angle"] = angle = float(rng.uniform(0, 180))
        x = cv2.filter2D(x, -1, _motion(length, angle), borderType=cv2.BORDER_REPLICATE)
    if "exposure" in chosen:
        steps["exposure_ev"] = ev = float(rng.choice([-1, 1]) * rng.uniform(0.3, 1.4))
        before = float(x.mean()) + 1e-6
        x = np.clip(x * 2**ev, 0, 1) if ev > 0 else x ** (1 - ev * 0.8)
        stops = float(np.log2((float(x.mean()) + 1e-6) / before))
        steps["brighter_stops" if stops >= 0 else "darker_stops"] = abs(stops)
    if "noise" in chosen:
        steps["noise_sigma"] = sigma = float(rng.uniform(0.02, 0.1))
        lum = x.mean(axis=2, keepdims=True)
        scale = sigma * np.sqrt(np.clip(lum, 0.05, 1))
        steps["noise_rms"] = float(np.sqrt(np.mean(scale**2)))
        x = x + rng.normal(0, 1, x.shape).astype(np.float32) * scale
    out = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    steps["jpeg_quality"] = q = int(rng.integers(50, 96))
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=q)
    with opened(buf.getvalue(), "capture") as img:
        return Capture(np.asarray(img.convert("RGB")), steps)


def pseudo_mos(distorted: np.ndarray, reference: np.ndarray) -> float:
    """Full-reference pseudo-MOS in [1, 5]: 3-scale MS-SSIM mapped linearly from [0.4, 1] to [1, 5].

    The first three scale weights of the standard five (renormalised) and a window shrunk for
    small crops keep demo-sized images (>= 33 px) valid; the mapping is monotone, so rank metrics
    (SRCC) are those of MS-SSIM itself. MS-SSIM is :func:`dgqa_data.msssim.ms_ssim` (numpy, float64).
    """
    from dgqa_data.msssim import MS_SSIM_WEIGHTS, ms_ssim

    weights = [w / 0.6305 for w in MS_SSIM_WEIGHTS[:3]]
    # a side > (win - 1) * 16: the largest odd window up to 11 that fits (the rule of the 5-scale
    # reference implementation, kept so that the labels do not change)
    win = min(11, (min(reference.shape[:2]) - 1) // 16 + 1)
    win -= 1 - win % 2
    if win < 3:
        raise DgqaError(f"pseudo_mos needs images of at least 33 px a side, got {reference.shape[:2]}")
    score = ms_ssim(distorted, reference, data_range=255, weights=weights, win_size=win)
    return float(1 + 4 * np.clip((score - 0.4) / 0.6, 0, 1))
