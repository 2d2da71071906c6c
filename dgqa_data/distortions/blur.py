"""Blur distortions: 01 Gaussian blur, 02 lens blur, 03 motion blur."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .common import Source, correlate, gaussian_filter

_EPS = np.finfo(np.float64).eps


@lru_cache(maxsize=32)
def disk_kernel(radius: float) -> np.ndarray:
    """MATLAB ``fspecial('disk', radius)``: anti-aliased disk, size ``2*ceil(radius-0.5)+1``.

    Each cell holds the area of its intersection with the circle (MATLAB's formula, evaluated in
    complex arithmetic so that masked-out branches behave as in MATLAB), normalised to sum 1.
    """
    rad = float(radius)
    crad = int(np.ceil(rad - 0.5))
    x, y = np.meshgrid(np.arange(-crad, crad + 1), np.arange(-crad, crad + 1))
    mx = np.maximum(np.abs(x), np.abs(y)).astype(np.float64)
    mn = np.minimum(np.abs(x), np.abs(y)).astype(np.float64)
    r2 = rad * rad

    def csqrt(v):
        return np.sqrt(v.astype(np.complex128))

    c1 = r2 < (mx + 0.5) ** 2 + (mn - 0.5) ** 2
    m1 = c1 * (mn - 0.5) + (~c1) * csqrt(r2 - (mx + 0.5) ** 2)
    c2 = r2 > (mx - 0.5) ** 2 + (mn + 0.5) ** 2
    m2 = c2 * (mn + 0.5) + (~c2) * csqrt(r2 - (mx - 0.5) ** 2)
    a1, a2 = np.arcsin(m1 / rad), np.arcsin(m2 / rad)
    mask = ((r2 < (mx + 0.5) ** 2 + (mn + 0.5) ** 2) & (r2 > (mx - 0.5) ** 2 + (mn - 0.5) ** 2)) | (
        (mn == 0) & (mx - 0.5 < rad) & (mx + 0.5 >= rad)
    )
    sgrid = (
        r2 * (0.5 * (a2 - a1) + 0.25 * (np.sin(2 * a2) - np.sin(2 * a1)))
        - (mx - 0.5) * (m2 - m1)
        + (m1 - mn + 0.5)
    ) * mask
    sgrid = sgrid.real + ((mx + 0.5) ** 2 + (mn + 0.5) ** 2 < r2)
    sgrid[crad, crad] = min(np.pi * r2, np.pi / 2)
    if crad > 0 and rad > crad - 0.5 and r2 < (crad - 0.5) ** 2 + 0.25:
        m1s = np.sqrt(r2 - (crad - 0.5) ** 2)
        m1n = m1s / rad
        sg0 = 2 * (r2 * (0.5 * np.arcsin(m1n) + 0.25 * np.sin(2 * np.arcsin(m1n))) - m1s * (crad - 0.5))
        c = crad
        sgrid[2 * c, c] = sgrid[c, 2 * c] = sgrid[c, 0] = sgrid[0, c] = sg0
        sgrid[c, c - 1] -= sg0
        sgrid[c, c + 1] -= sg0
        sgrid[c - 1, c] -= sg0
        sgrid[c + 1, c] -= sg0
    sgrid[crad, crad] = min(sgrid[crad, crad], 1.0)
    return sgrid / sgrid.sum()


@lru_cache(maxsize=512)
def motion_kernel(length: float, angle: float) -> np.ndarray:
    """MATLAB ``fspecial('motion', length, angle)``: anti-aliased line of width 1 (odd size)."""
    length = max(1.0, float(length))
    half = (length - 1.0) / 2.0
    phi = np.mod(angle, 180.0) / 180.0 * np.pi
    cosphi, sinphi = np.cos(phi), np.sin(phi)
    xsign = np.sign(cosphi)
    linewdt = 1.0
    sx = np.fix(half * cosphi + linewdt * xsign - length * _EPS)
    sy = np.fix(half * sinphi + linewdt - length * _EPS)
    xs = xsign * np.arange(int(abs(sx)) + 1)
    ys = np.arange(int(sy) + 1, dtype=np.float64)
    x, y = np.meshgrid(xs, ys)
    dist2line = y * cosphi - x * sinphi
    rad = np.sqrt(x * x + y * y)
    last = (rad >= half) & (np.abs(dist2line) <= linewdt)
    x2last = half - np.abs((x[last] + dist2line[last] * sinphi) / cosphi)
    dist2line[last] = np.sqrt(dist2line[last] ** 2 + x2last**2)
    dist2line = linewdt + _EPS - np.abs(dist2line)
    dist2line[dist2line < 0] = 0
    r, c = dist2line.shape
    h = np.zeros((2 * r - 1, 2 * c - 1))
    h[:r, :c] = np.rot90(dist2line, 2)
    h[r - 1 :, c - 1 :] = dist2line
    h = h / (h.sum() + _EPS * length * linewdt)
    if cosphi > 0:
        h = np.flipud(h)
    return h


@lru_cache(maxsize=32)
def separable_terms(kernel_key: tuple) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact rank decomposition of a 2-D kernel into separable (column, row) float32 pairs (SVD)."""
    kernel = np.array(kernel_key)
    u, s, vt = np.linalg.svd(kernel)
    keep = s > s[0] * 1e-12
    return [
        ((u[:, i] * np.sqrt(s[i])).astype(np.float32), (vt[i] * np.sqrt(s[i])).astype(np.float32))
        for i in np.flatnonzero(keep)
    ]


def correlate_lowrank(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``imfilter(x, kernel, 'replicate')`` as a sum of separable passes (faster than OpenCV's DFT path
    for the 13x13 and 17x17 disks); equal to :func:`correlate` up to float32 rounding."""
    terms = separable_terms(tuple(map(tuple, kernel)))
    if len(terms) * 2 * kernel.shape[0] >= kernel.size:
        return correlate(x, kernel)
    out = None
    for col, row in terms:
        y = cv2.sepFilter2D(x, -1, row, col, borderType=cv2.BORDER_REPLICATE)
        out = y if out is None else cv2.add(out, y)
    return out


def gaussian_blur(src: Source, sigma: float, rng, draws: dict) -> np.ndarray:
    """01 Gaussian blur: ``imgaussfilt`` (size ``2*ceil(2 sigma)+1``, replicate) per channel."""
    return gaussian_filter(src.x, sigma)


def lens_blur(src: Source, radius: float, rng, draws: dict) -> np.ndarray:
    """02 Lens blur: ``imfilter`` with ``fspecial('disk', radius)``, replicate borders."""
    return correlate_lowrank(src.x, disk_kernel(radius))


def motion_blur(src: Source, length: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """03 Motion blur: angle ``randi([0, 180])`` degrees, ``fspecial('motion')``, replicate borders."""
    angle = int(rng.integers(0, 181))
    draws["angle"] = angle
    return correlate(src.x, motion_kernel(length, angle))
