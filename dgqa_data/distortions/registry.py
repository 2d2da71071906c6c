"""Registry of the 25 KADID-10k / KADIS-700k distortion types with their official level tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dgqa_data.schema import DISTORTION_NAMES, GROUP_OF

from . import blur, brightness, color, compression, noise, sharpness, spatial
from .common import Source

#: ``fn(source, level_value, rng, draws) -> float32 (H, W, 3)`` before the output mapmm.
DistortionFn = Callable[[Source, float, np.random.Generator, dict], np.ndarray]


@dataclass(frozen=True)
class DistortionSpec:
    """One distortion type.

    Attributes:
        id: KADID type id (1..25).
        name: snake-case name from ``dgqa_data.schema.DISTORTION_NAMES``.
        group: KADID category from ``dgqa_data.schema.DISTORTION_GROUPS``.
        parameter: what the level value means.
        levels: the five official level values (level 1..5), in the official (possibly non-monotone) order.
        random: whether the output depends on random draws.
        exact: whether this follows the official algorithm (False for documented substitutes).
        note: deviations, unverified details or provenance.
        fn: the implementation.
        min_size: smallest (H, W) the algorithm supports.
    """

    id: int
    name: str
    group: str
    parameter: str
    levels: tuple[float, float, float, float, float]
    random: bool
    exact: bool
    note: str
    fn: DistortionFn = field(repr=False, compare=False)
    min_size: tuple[int, int] = (4, 4)


def _spec(tid, parameter, levels, fn, *, random=False, exact=True, note="", min_size=(4, 4)):
    return DistortionSpec(
        id=tid,
        name=DISTORTION_NAMES[tid],
        group=GROUP_OF[tid],
        parameter=parameter,
        levels=tuple(levels),
        random=random,
        exact=exact,
        note=note,
        fn=fn,
        min_size=min_size,
    )


_SPECS = [
    _spec(1, "sigma_px", (0.1, 0.5, 1, 2, 5), blur.gaussian_blur,
          note="MATLAB body not found; imgaussfilt defaults (size 2*ceil(2*sigma)+1, replicate) as in the ports."),
    _spec(2, "disk_radius_px", (1, 2, 4, 6, 8), blur.lens_blur, note="fspecial('disk') port, replicate borders."),
    _spec(3, "line_length_px", (1, 2, 4, 6, 10), blur.motion_blur, random=True,
          note="angle = randi([0,180]); fspecial('motion') port. Level 1 (length 1) is the identity."),
    _spec(4, "amount", (1, 3, 6, 8, 12), color.color_diffusion,
          note="Lab a*/b* Gaussian blur (sigma 1.5*amount+2, separable) times amount; own float32 Lab "
               "(skimage sRGB/D65 constants, no XYZ clipping)."),
    _spec(5, "shift_px", (1, 3, 6, 8, 12), color.color_shift, random=True,
          note="Green channel only; direction = normr(rand(1,2)); nearest-rank percentiles in ps2."),
    _spec(6, "n_colors", (64, 48, 32, 16, 8), color.color_quantization, exact=False,
          note="Substitute for MATLAB rgb2ind minimum-variance + Floyd-Steinberg: Pillow median-cut palette "
               "(built from a 2x-subsampled copy), then a Floyd-Steinberg remap of the full image onto it. "
               "MATLAB palettes cannot be reproduced."),
    _spec(7, "hsv_s_factor", (0.4, 0.2, 0.1, 0, -0.4), color.color_saturation_hsv,
          note="S scaled without clipping (closed form (1-f)*max(RGB) + f*RGB); output mapmm rescales level 5."),
    _spec(8, "lab_ab_factor", (1, 2, 3, 6, 9), color.color_saturation_lab,
          note="Level 1 (factor 1) is a Lab round trip, i.e. the identity up to rounding."),
    _spec(9, "compression_ratio", (16, 32, 45, 120, 400), compression.jpeg2000,
          note="OpenJPEG via Pillow (irreversible, quality_mode='rates'); MATLAB's JP2 encoder defaults not "
               "verified, so bitstreams differ."),
    _spec(10, "quality", (43, 36, 24, 7, 4), compression.jpeg,
          note="libjpeg(-turbo) via Pillow, 4:2:0 (MATLAB's chroma subsampling not verified)."),
    _spec(11, "variance", (0.001, 0.002, 0.003, 0.005, 0.01), noise.white_noise, random=True,
          note="imnoise gaussian, clipped; normals by Box-Muller from the Generator."),
    _spec(12, "variance", (0.0001, 0.0005, 0.001, 0.002, 0.003), noise.white_noise_color_component, random=True,
          note="Studio-range YCbCr, noise on Y/Cb/Cr, YCbCr clipped; RGB result clipped (MATLAB ycbcr2rgb "
               "clipping not verified)."),
    _spec(13, "density", (0.001, 0.005, 0.01, 0.02, 0.03), noise.impulse_noise, random=True,
          note="imnoise salt & pepper per element (colour impulses)."),
    _spec(14, "variance", (0.001, 0.005, 0.01, 0.02, 0.05), noise.multiplicative_noise, random=True,
          note="imnoise speckle: uniform noise of variance v, clipped."),
    _spec(15, "variance", (0.01, 0.03, 0.05, 0.1, 0.15), noise.denoise, random=True, exact=False,
          note="Substitute for MATLAB's grayscale DnCNN (weights unavailable): OpenCV fastNlMeansDenoising "
               "per channel on the 8-bit noisy image (h = noise sigma, 7x7 patch, 7x7 search)."),
    _spec(16, "amount", (0.1, 0.2, 0.4, 0.7, 1.1), brightness.brighten,
          note="(2*curves(RGB) + truncate(lab2rgb(curves(L))))/3 with c = 0.5 + amount/2."),
    _spec(17, "amount", (0.05, 0.1, 0.2, 0.4, 0.8), brightness.darken,
          note="MATLAB body not found; curves(RGB, 0.5 - amount/2) as in the ports."),
    _spec(18, "offset", (0.15, 0.08, 0, -0.08, -0.15), brightness.mean_shift,
          note="Non-monotone table; level 3 is the identity. The output mapmm turns the shift into a gain."),
    _spec(19, "displacement_std_px", (0.05, 0.1, 0.2, 0.5, 1), spatial.jitter, random=True,
          note="5 iterations of white N(0, amount^2) displacement + Keys a=-0.5 bicubic warp with exact "
               "coordinates and replicate borders; overshoot is compressed by the output mapmm."),
    _spec(20, "n_patches", (20, 40, 60, 80, 100), spatial.non_eccentricity_patch, random=True,
          note="16x16 patches moved by up to +-8 px; draw order w0, h0, w1, h1.", min_size=(48, 48)),
    _spec(21, "strength", (0.01, 0.05, 0.1, 0.2, 0.5), spatial.pixelate,
          note="MATLAB imresize 'nearest' index rule, ceil(z*size) (not re-verified)."),
    _spec(22, "n_thresholds", (20, 16, 13, 10, 7), spatial.quantization,
          note="Exact multi-level Otsu (DP over a 256-bin pooled RGB histogram); MATLAB multithresh's "
               "search-based optimiser may differ slightly."),
    _spec(23, "n_blocks", (2, 4, 6, 8, 10), spatial.color_block, random=True,
          note="Block corners floored to integer pixels (insertShape rounding not verified).",
          min_size=(33, 33)),
    _spec(24, "amount", (1, 2, 3, 6, 12), sharpness.high_sharpen,
          note="Unsharp mask on Lab L*, Gaussian sigma 3 (size 13), replicate; clipped."),
    _spec(25, "amount", (0.3, 0.15, 0, -0.4, -0.6), sharpness.contrast_change,
          note="Non-monotone table; not-a-knot cubic curves; level 3 is a mild S-curve, not the identity."),
]  # fmt: skip

#: type id -> spec, ids 1..25.
DISTORTIONS: dict[int, DistortionSpec] = {s.id: s for s in _SPECS}

#: The types that use random draws.
RANDOM_TYPES: tuple[int, ...] = tuple(t for t, s in DISTORTIONS.items() if s.random)
