"""Noise distortions: 11 white noise, 12 noise in YCbCr, 13 impulse, 14 multiplicative, 15 denoise."""

from __future__ import annotations

import cv2
import numpy as np

from .common import F32, Source, normal, rgb2ycbcr, ycbcr2rgb


def _gaussian_noise(x: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """``imnoise(x, 'gaussian', 0, v)``: i.i.d. N(0, v) per element, clipped to [0, 1]."""
    z = normal(rng, x.shape)
    z *= F32(np.sqrt(variance))
    z += x
    return np.clip(z, 0.0, 1.0, out=z)


def white_noise(src: Source, variance: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """11 White noise: ``imnoise(I, 'gaussian', 0, variance)`` on all three RGB channels."""
    draws["noise"] = "gaussian"
    return _gaussian_noise(src.x, variance, rng)


def white_noise_color_component(
    src: Source, variance: float, rng: np.random.Generator, draws: dict
) -> np.ndarray:
    """12 White noise in colour components: studio-range YCbCr, N(0, v) on Y, Cb and Cr, clip, back.

    The YCbCr -> RGB result is clipped to [0, 1] (MATLAB's ``ycbcr2rgb`` double behaviour was not
    verified; clipping keeps a few out-of-gamut pixels from compressing the whole image via mapmm).
    """
    draws["noise"] = "gaussian_ycbcr"
    ycc = _gaussian_noise(rgb2ycbcr(src.x), variance, rng)
    out = ycbcr2rgb(ycc)
    return np.clip(out, 0.0, 1.0, out=out)


def impulse_noise(src: Source, density: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """13 Impulse noise: ``imnoise(I, 'salt & pepper', d)`` per element (u < d/2 -> 0, u < d -> 1)."""
    draws["noise"] = "salt_and_pepper"
    u = rng.random(src.x.shape, dtype=F32)
    out = src.x.copy()
    out[u < F32(density / 2)] = 0.0
    out[(u >= F32(density / 2)) & (u < F32(density))] = 1.0
    return out


def multiplicative_noise(src: Source, variance: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """14 Multiplicative noise: ``imnoise(I, 'speckle', v)`` = ``I + sqrt(12 v) I (u - 0.5)``, clipped."""
    draws["noise"] = "uniform_speckle"
    u = rng.random(src.x.shape, dtype=F32)
    u -= F32(0.5)
    u *= F32(np.sqrt(12.0 * variance))
    u += F32(1.0)
    u *= src.x
    return np.clip(u, 0.0, 1.0, out=u)


def denoise(src: Source, variance: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """15 Denoise (substitute): Gaussian noise of ``variance``, then a classical per-channel denoiser.

    Official: MATLAB's pretrained grayscale DnCNN on R, G and B separately. No DnCNN weights are
    available here, so each channel of the clipped noisy image is denoised with OpenCV non-local
    means (``fastNlMeansDenoising`` on 8-bit, h = noise sigma in 8-bit units, 7x7 patches, 7x7
    search window), which leaves the same kind of over-smoothed, blotchy residue at high sigma.
    """
    draws["noise"] = "gaussian"
    draws["denoiser"] = "opencv_fastNlMeansDenoising"
    noisy = _gaussian_noise(src.x, variance, rng)
    n8 = cv2.convertScaleAbs(noisy, alpha=255.0)
    h = float(255.0 * np.sqrt(variance))
    out = np.empty(n8.shape, dtype=F32)
    for c in range(3):
        ch = np.ascontiguousarray(n8[..., c])
        out[..., c] = cv2.fastNlMeansDenoising(ch, None, h=h, templateWindowSize=7, searchWindowSize=7)
    return out * F32(1.0 / 255.0)
