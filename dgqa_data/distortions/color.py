"""Colour distortions: 04 colour diffusion, 05 colour shift, 06 colour quantization, 07/08 saturation."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from .common import (
    F32,
    Source,
    gaussian_filter,
    imshift,
    lab2rgb,
    mapmm,
    matlab_round,
    rgb2gray,
    rgb2lab,
    scale_channels,
    truncate,
)


def color_diffusion(src: Source, amount: float, rng, draws: dict) -> np.ndarray:
    """04 Colour diffusion (``imcolorblur``): blur a*, b* with sigma ``1.5 amount + 2``, scale by amount.

    Lab a*/b* are Gaussian-filtered (``imgaussfilt`` extent, replicate; separable), multiplied by
    ``amount``; L* is kept; ``truncate(lab2rgb(.))``.
    """
    lum, a, b = cv2.split(rgb2lab(src))
    sigma = 1.5 * amount + 2.0
    a = gaussian_filter(a, sigma) * F32(amount)
    b = gaussian_filter(b, sigma) * F32(amount)
    return lab2rgb(cv2.merge([lum, a, b]))


def _percentile_nearest(sorted_or_part: np.ndarray, ranks: list[int]) -> np.ndarray:
    return np.partition(sorted_or_part, ranks)[ranks]


def _ps2(a: np.ndarray) -> np.ndarray:
    """``ps2(a, [1 1])``: mapmm, clip to the 1st/99th nearest-rank percentiles, mapmm."""
    a = mapmm(a)
    flat = a.reshape(-1)
    n = flat.size
    r = int(np.ceil(0.99 * n))  # nearest rank of the 99th percentile (1-based)
    lo, hi = _percentile_nearest(flat, [n - r, r - 1])
    return mapmm(np.clip(a, lo, hi))


def edge_weight(x: np.ndarray) -> np.ndarray:
    """The colour-shift blending map: ``ps2(truncate(mapmm(imgaussfilt(gradmag(gray), 4)), 0.1, 1))``."""
    gy, gx = np.gradient(rgb2gray(x))
    e = np.sqrt(gx * gx + gy * gy)
    e = mapmm(gaussian_filter(e, 4.0))
    return _ps2(truncate(e, 0.1, 1.0))


def color_shift(src: Source, amount: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """05 Colour shift: the green channel, shifted by ``round(normr(rand(1,2)) * amount)``, is blended
    in along edges: ``G' = e * imshift(G) + (1 - e) * G`` (R and B unchanged).

    Draws: ``direction`` (the two uniforms) and ``shift`` ([rows, cols], both >= 0).
    """
    u = rng.random(2)
    v = u / np.sqrt(np.sum(u * u))
    shift = [int(s) for s in matlab_round(v * amount)]
    draws["direction"] = [float(u[0]), float(u[1])]
    draws["shift"] = shift
    x = src.x
    e = edge_weight(x)
    r, g, b = cv2.split(x)
    gs = imshift(g, shift[0], shift[1])
    return cv2.merge([r, g + e * (gs - g), b])


def color_quantization(src: Source, n_colors: float, rng, draws: dict) -> np.ndarray:
    """06 Colour quantization, approximating ``ind2rgb(rgb2ind(I, n))`` with Pillow.

    MATLAB uses minimum-variance quantization with Floyd-Steinberg dithering. Substitute: a median-cut
    palette of ``n`` colours (Pillow, no dither) built from every second pixel of every second row
    (2.5x faster, same quantization error within a few percent), then a Floyd-Steinberg remap of the
    full image onto that palette (two steps, since Pillow ignores ``dither`` when it builds the
    palette itself).
    """
    rgb = src.to_codec_uint8()
    im = Image.fromarray(rgb)
    sample = Image.fromarray(np.ascontiguousarray(rgb[::2, ::2]))
    pal = sample.quantize(colors=int(n_colors), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = im.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG).convert("RGB")
    return np.asarray(out, dtype=F32) * F32(1.0 / 255.0)


def color_saturation_hsv(src: Source, factor: float, rng, draws: dict) -> np.ndarray:
    """07 Colour saturation 1: HSV ``S <- S * factor`` (no clipping, negative allowed), back to RGB.

    With hue and value fixed, each channel is ``v * (1 - s * w(h))``, so scaling S gives the closed form
    ``(1 - factor) * max(R,G,B) + factor * c`` per channel, identical to the HSV round trip.
    """
    chans = cv2.split(src.x)
    v = cv2.max(cv2.max(chans[0], chans[1]), chans[2])
    return cv2.merge([cv2.addWeighted(c, float(factor), v, 1.0 - float(factor), 0.0) for c in chans])


def color_saturation_lab(src: Source, factor: float, rng, draws: dict) -> np.ndarray:
    """08 Colour saturation 2: Lab a*, b* multiplied by ``factor``; ``truncate(lab2rgb(.))``."""
    return lab2rgb(scale_channels(rgb2lab(src), (1.0, factor, factor)))
