"""Multi-scale structural similarity (MS-SSIM, Wang, Simoncelli and Bovik 2003) in numpy, torch-free.

The method, with the conventions of the widely used reference implementations:

* SSIM statistics (means, variances, covariance) under an ``win_size``-tap Gaussian window of
  standard deviation ``sigma`` (separable, normalised to sum 1), applied as a *valid* filter (no
  padding: a statistic exists only where the whole window fits);
* ``C1 = (K1 L)^2`` and ``C2 = (K2 L)^2`` with ``L`` the data range, ``K1 = 0.01``, ``K2 = 0.03``;
* at every scale but the coarsest, the mean contrast-structure term ``cs``; at the coarsest, the
  mean SSIM; both clamped at 0 and raised to the scale's weight, the powers multiplied;
* between scales, 2 x 2 average pooling; a side of odd length is first padded with one zero row or
  column at its start (the zero counts in the average);
* colour images: every channel on its own, the per-channel MS-SSIM values averaged.

The default weights are the five of the paper (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); fewer
weights mean fewer scales. Computed in float64; the Gaussian filtering runs in OpenCV (already a
dependency of the data layer), whose separable filter is several times faster than a numpy or
scipy one on these sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dgqa_data.errors import DgqaError

#: The five scale weights of Wang et al. (2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(size: int, sigma: float = 1.5) -> np.ndarray:
    """The 1-D Gaussian window: ``exp(-x^2 / (2 sigma^2))`` at ``x = -(size // 2) .. size - 1 - size // 2``,
    normalised to sum 1."""
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _pool(x: np.ndarray) -> np.ndarray:
    """2 x 2 average pooling of a 2-D array; an odd side gets one leading zero row / column first."""
    h, w = x.shape
    if h % 2 or w % 2:
        x = np.pad(x, ((h % 2, 0), (w % 2, 0)))
    out = x[0::2, 0::2] + x[1::2, 0::2]
    out += x[0::2, 1::2]
    out += x[1::2, 1::2]
    out *= 0.25
    return out


def _channel_terms(
    x: np.ndarray, y: np.ndarray, window: np.ndarray, c1: float, c2: float, last: bool
) -> float:
    """Mean ``cs`` (or, at the last scale, mean SSIM) of two float64 2-D arrays."""
    h, w = x.shape
    r = len(window) // 2
    # the five maps stacked vertically and filtered at once; the rows where one map's window would
    # reach into the next lie in the discarded (invalid) border
    maps = np.empty((5, h, w))
    maps[0], maps[1] = x, y
    np.multiply(x, x, out=maps[2])
    np.multiply(y, y, out=maps[3])
    np.multiply(x, y, out=maps[4])
    blurred = cv2.sepFilter2D(
        maps.reshape(5 * h, w), cv2.CV_64F, window, window, borderType=cv2.BORDER_CONSTANT
    )
    mx, my, exx, eyy, exy = blurred.reshape(5, h, w)[:, r : h - r, r : w - r]
    mxx, myy, mxy = mx * mx, my * my, mx * my
    cs = exy - mxy
    cs *= 2
    cs += c2
    den = exx + eyy
    den -= mxx
    den -= myy
    den += c2
    cs /= den
    if not last:
        return float(cs.mean())
    lum = mxy * 2 + c1
    lum /= mxx + myy + c1
    lum *= cs
    return float(lum.mean())


def ms_ssim(
    x: np.ndarray,
    y: np.ndarray,
    *,
    data_range: float = 255.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    win_size: int = 11,
    sigma: float = 1.5,
    k: tuple[float, float] = (0.01, 0.03),
) -> float:
    """MS-SSIM of two images of the same shape, ``(H, W)`` or ``(H, W, C)`` (any real dtype).

    Args:
        x, y: the images (symmetric: the order does not matter).
        data_range: ``L``, the range of the pixel values (255 for 8-bit images).
        weights: one per scale, finest first (default: the five of the paper).
        win_size: taps of the Gaussian window (odd).
        sigma: its standard deviation.
        k: ``(K1, K2)``.

    Raises:
        DgqaError: shapes differ, the window is even, or the coarsest scale is smaller than the window.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != y.shape or x.ndim not in (2, 3):
        raise DgqaError(
            f"MS-SSIM needs two (H, W) or (H, W, C) images of one shape, got {x.shape} and {y.shape}"
        )
    if win_size % 2 != 1:
        raise DgqaError(f"MS-SSIM needs an odd window, got {win_size}")
    levels = len(weights)
    side = min(x.shape[:2])
    for _ in range(levels - 1):
        side = (side + 1) // 2
    if side < win_size:
        raise DgqaError(
            f"MS-SSIM over {levels} scales with an {win_size}-tap window needs a coarsest scale of at least "
            f"{win_size} px; images of {x.shape[:2]} give {side} px"
        )
    window = gaussian_window(win_size, sigma)
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    w = np.asarray(weights, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    per_channel = []
    for ch in range(x.shape[2]):
        a = np.array(x[..., ch], dtype=np.float64)
        b = np.array(y[..., ch], dtype=np.float64)
        terms = []
        for level in range(levels):
            last = level == levels - 1
            terms.append(max(_channel_terms(a, b, window, c1, c2, last), 0.0))
            if not last:
                a, b = _pool(a), _pool(b)
        per_channel.append(float(np.prod(np.asarray(terms) ** w)))
    return float(np.mean(per_channel))
