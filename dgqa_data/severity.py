"""Quality labels that follow what was done to an image, on one scale for synthetic and camera images.

Full-reference scores such as MS-SSIM depend on content (a smooth photo hardly changes under
blur), so a regressor trained on them learns the photo rather than the degradation. The severity
label instead is a function of the applied degradation and its strength only:

* every KADID type has a severity in [0, 1] at each official level (``level / 5``, except where the
  official level is the identity or the level table is not monotone: :data:`TYPE_SEVERITY`);
* every camera degradation of :func:`dgqa_data.camera.simulate_capture` is placed on the severity
  scale of its matching KADID type by interpolating its strength between that type's official level
  values, in the same physical unit (disk radius, line length, noise standard deviation, JPEG
  quality, mean-luminance change in stops: :data:`CAMERA_ANCHORS`);
* an image's quality is ``prod(1 - LOSS * s)`` over its degradations (``LOSS = 0.8``: one
  degradation at level 5 leaves quality 0.2), and ``mos = 1 + 4 * quality`` (a 1-5 scale).

The exposure anchors are the median mean-luminance change (log2 of the mean-intensity ratio) of the
KADID brighten/darken levels over the colour photos shipped with scikit-image, measured once with
``python scripts/calibrate_severity.py`` (which prints this table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from dgqa_data.errors import DgqaError

#: Quality lost by one degradation of severity 1.
LOSS = 0.8

_DEFAULT = (0.2, 0.4, 0.6, 0.8, 1.0)

#: Severity of KADID type id at levels 1..5 where it is not ``level / 5``.
TYPE_SEVERITY: dict[int, tuple[float, float, float, float, float]] = {
    3: (0.0, 0.4, 0.6, 0.8, 1.0),  # motion blur: level 1 (line length 1) is the identity
    8: (0.0, 0.4, 0.6, 0.8, 1.0),  # Lab saturation: level 1 (factor 1) is the identity
    18: (0.8, 0.43, 0.0, 0.43, 0.8),  # mean shift +-0.15, +-0.08, 0: |offset| / 0.15 * 0.8
    25: (
        0.5,
        0.25,
        0.1,
        0.67,
        1.0,
    ),  # contrast change 0.3, 0.15, 0 (mild S-curve), -0.4, -0.6: |amount| / 0.6
}

#: Camera step -> (matching KADID type, the step's strength with no effect, then the strengths of that
#: type's official levels 1..5, in the step's unit). A step's severity interpolates the type's level
#: severities; strengths past level 5 count as severity 1.
CAMERA_ANCHORS: dict[str, tuple[int, tuple[float, ...]]] = {
    "defocus_radius": (2, (0.0, 1.0, 2.0, 4.0, 6.0, 8.0)),  # KADID lens blur disk radius (px)
    "shake_length": (3, (1.0, 1.0, 2.0, 4.0, 6.0, 10.0)),  # KADID motion blur line length (px)
    "noise_rms": (11, (0.0, 0.0316, 0.0447, 0.0548, 0.0707, 0.1)),  # KADID white noise sqrt(variance)
    "jpeg_quality": (10, (100.0, 43.0, 36.0, 24.0, 7.0, 4.0)),  # KADID JPEG quality
    "brighter_stops": (16, (0.0, 0.115, 0.226, 0.427, 0.673, 0.857)),  # KADID brighten, log2 mean ratio
    "darker_stops": (17, (0.0, 0.061, 0.115, 0.228, 0.497, 1.172)),  # KADID darken, -log2 mean ratio
}


def type_severity(type_id: int, level: int) -> float:
    """Severity in [0, 1] of KADID type ``type_id`` (1..25) at official level ``level`` (1..5); 0 for pristine."""
    if type_id == 0:
        return 0.0
    if not 1 <= type_id <= 25 or not 1 <= level <= 5:
        raise DgqaError(f"type {type_id} level {level}: expected type 1..25 and level 1..5")
    return TYPE_SEVERITY.get(type_id, _DEFAULT)[level - 1]


def camera_severity(step: str, value: float) -> float:
    """Severity in [0, 1] of one camera step (a key of :data:`CAMERA_ANCHORS`) of strength ``value``."""
    if step not in CAMERA_ANCHORS:
        raise DgqaError(f"unknown camera step {step!r}; known: {', '.join(CAMERA_ANCHORS)}")
    tid, strengths = CAMERA_ANCHORS[step]
    x = np.asarray(strengths, dtype=np.float64)
    y = np.array([0.0] + [type_severity(tid, lv) for lv in range(1, 6)])
    if x[0] > x[-1]:  # strength falls as severity rises (JPEG quality)
        x, value = -x, -value
    keep = np.r_[True, np.diff(x) > 0]  # an identity level repeats the no-effect strength
    return float(np.interp(value, x[keep], y[keep], left=0.0, right=1.0))


def quality_from_severities(severities: Iterable[float]) -> float:
    """``prod(1 - LOSS * s)``: quality in [1 - LOSS, 1] per degradation, multiplied over degradations."""
    q = 1.0
    for s in severities:
        q *= 1.0 - LOSS * float(np.clip(s, 0.0, 1.0))
    return q


def synthetic_quality(type_id: int, level: int) -> float:
    """Quality label of a KADID-style image with one distortion (``type_id`` 0 = pristine -> 1.0)."""
    return quality_from_severities([type_severity(type_id, level)] if type_id else [])


def capture_severities(steps: Mapping[str, float]) -> dict[str, float]:
    """Severity of every degradation recorded by :func:`dgqa_data.camera.simulate_capture`."""
    return {k: camera_severity(k, v) for k, v in steps.items() if k in CAMERA_ANCHORS}


def capture_quality(steps: Mapping[str, float]) -> float:
    """Quality label of a simulated capture from its recorded steps."""
    return quality_from_severities(capture_severities(steps).values())


def quality_to_mos(quality: float) -> float:
    """The 1-5 scale the labels are stored on (``mos``): ``1 + 4 * quality``."""
    return 1.0 + 4.0 * quality
