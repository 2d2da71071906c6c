"""Brightness distortions: 16 brighten, 17 darken, 18 mean shift."""

from __future__ import annotations

import cv2
import numpy as np

from .common import F32, Source, curves_scalar, lab2rgb, rgb2lab


def brighten(src: Source, amount: float, rng, draws: dict) -> np.ndarray:
    """16 Brighten: ``(2 B + A) / 3`` with ``c = 0.5 + amount/2``.

    ``A = truncate(lab2rgb(100 curves(L/100, c), a, b))`` (Lab route) and ``B = curves(I, c)`` per RGB
    channel, where ``curves`` is the parabola through (0,0), (0.5,c), (1,1), clipped.
    """
    c = 0.5 + amount / 2.0
    lum, la, lb = cv2.split(rgb2lab(src))
    lum = F32(100.0) * curves_scalar(lum * F32(0.01), c)
    a = lab2rgb(cv2.merge([lum, la, lb]))
    b = src.pointwise(lambda v: curves_scalar(v, c))
    return (F32(2.0 / 3.0) * b + F32(1.0 / 3.0) * a).astype(F32, copy=False)


def darken(src: Source, amount: float, rng, draws: dict) -> np.ndarray:
    """17 Darken: ``curves(I, 0.5 - amount/2)`` per RGB channel (MATLAB body not found; as the ports)."""
    c = 0.5 - amount / 2.0
    return src.pointwise(lambda v: curves_scalar(v, c))


def mean_shift(src: Source, offset: float, rng, draws: dict) -> np.ndarray:
    """18 Mean shift: ``truncate(I + offset)``; the output mapmm turns this into a gain with clipping."""
    return src.pointwise(lambda v: np.clip(v + offset, 0.0, 1.0))
