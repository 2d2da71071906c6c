"""Sharpness and contrast distortions: 24 high sharpen, 25 contrast change."""

from __future__ import annotations

import cv2
import numpy as np

from .common import F32, Source, curves_pair, gaussian_filter, lab2rgb, rgb2lab


def high_sharpen(src: Source, amount: float, rng, draws: dict) -> np.ndarray:
    """24 High sharpen: ``imsharpen(I, 'Radius', 3, 'Amount', a)`` then truncate.

    Unsharp mask on Lab L* only: ``L + a (L - G_3 * L)``, Gaussian sigma 3, size 13, replicate borders,
    threshold 0; back to RGB and clipped.
    """
    lum, a, b = cv2.split(rgb2lab(src))
    lum = lum + F32(amount) * (lum - gaussian_filter(lum, 3.0))
    return lab2rgb(cv2.merge([lum, a, b]))


def contrast_change(src: Source, amount: float, rng, draws: dict) -> np.ndarray:
    """25 Contrast change: ``curves(I, [0.25 - a/4, 0.75 + a/4])``, a not-a-knot cubic, clipped."""
    return src.pointwise(lambda v: curves_pair(v, 0.25 - amount / 4.0, 0.75 + amount / 4.0))
