"""Shared helpers of the KADID/KADIS distortions: the min-max wrapper, tone curves, filters, colour spaces.

Everything works on float32 RGB arrays of shape (H, W, 3) in [0, 1] (float64 where precision matters,
e.g. look-up tables and spline coefficients). Borders are replicated like MATLAB's
``imfilter(..., 'replicate')``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

F32 = np.float32


# --------------------------------------------------------------------------------------------------
# The wrapper: mapmm on input and output, round(255 x) to uint8
# --------------------------------------------------------------------------------------------------
def mapmm(x: np.ndarray) -> np.ndarray:
    """Global min-max rescale to [0, 1] (identity when the array is constant).

    Args:
        x: float array of any shape.

    Returns:
        ``(x - min) / (max - min)`` in the dtype of ``x``.
    """
    lo, hi = float(x.min()), float(x.max())
    if hi > lo:
        return ((x - lo) * (1.0 / (hi - lo))).astype(x.dtype, copy=False)
    return x


def truncate(x: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Elementwise clip to [lo, hi] (MATLAB ``truncate``)."""
    return np.clip(x, lo, hi, out=np.empty_like(x))


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Output half of the wrapper: global mapmm, then ``round(255 x)`` to uint8.

    Rounding is OpenCV's round-half-to-even; exact ties do not occur in practice.
    """
    y = np.ascontiguousarray(y, dtype=F32)
    lo, hi = float(y.min()), float(y.max())
    if hi > lo:
        alpha = 255.0 / (hi - lo)
        return cv2.convertScaleAbs(y, alpha=alpha, beta=-lo * alpha)
    return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)


@dataclass
class Source:
    """The distortion input after the input mapmm.

    Attributes:
        x: float32 RGB in [0, 1], shape (H, W, 3).
        u8: the original uint8 image when the input came from uint8 (enables exact 256-entry LUTs).
        lut: float64 (256,) table with ``x == lut[u8]`` (only with ``u8``).
    """

    x: np.ndarray
    u8: np.ndarray | None = None
    lut: np.ndarray | None = None

    @classmethod
    def from_uint8(cls, image: np.ndarray) -> Source:
        """Input half of the wrapper for a uint8 image: ``mapmm(double(image) / 255)``."""
        lo, hi = int(image.min()), int(image.max())
        codes = np.arange(256, dtype=np.float64)
        lut = (codes - lo) / (hi - lo) if hi > lo else codes / 255.0
        x = cv2.LUT(image, lut.astype(F32))
        return cls(x=x, u8=image, lut=lut)

    @classmethod
    def from_float(cls, x: np.ndarray) -> Source:
        """Input half of the wrapper for a float image in any range."""
        return cls(x=mapmm(np.ascontiguousarray(x, dtype=F32)))

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return self.x.shape[0], self.x.shape[1]

    def pointwise(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Apply an elementwise function, through an exact 256-entry LUT when possible.

        Args:
            f: vectorised float64 -> float function.

        Returns:
            float32 array shaped like ``x``.
        """
        if self.lut is not None:
            return cv2.LUT(self.u8, np.asarray(f(self.lut), dtype=F32))
        return np.asarray(f(self.x.astype(np.float64)), dtype=F32)

    def to_codec_uint8(self) -> np.ndarray:
        """``im2uint8(x)``: what MATLAB ``imwrite`` stores for the double image."""
        if self.lut is not None:
            table = np.clip(np.floor(self.lut * 255.0 + 0.5), 0, 255).astype(np.uint8)
            return cv2.LUT(self.u8, table)
        return np.clip(np.floor(self.x * 255.0 + 0.5), 0, 255).astype(np.uint8)


def matlab_round(x):
    """MATLAB ``round`` (half away from zero) for scalars or arrays."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


# --------------------------------------------------------------------------------------------------
# Tone curves
# --------------------------------------------------------------------------------------------------
def curves_scalar(x: np.ndarray, c: float) -> np.ndarray:
    """``curves(x, c)``: the interpolating parabola through (0,0), (0.5,c), (1,1), clipped to [0,1].

    MATLAB's not-a-knot ``spline`` through three points is exactly this parabola.
    """
    return np.clip(((2.0 - 4.0 * c) * x + (4.0 * c - 1.0)) * x, 0.0, 1.0)


def curves_pair(x: np.ndarray, c1: float, c2: float) -> np.ndarray:
    """``curves(x, [c1 c2])``: not-a-knot cubic through x=[0,.3,.5,.7,1], y=[0,c1,.5,c2,1], clipped.

    Not-a-knot makes the pieces on either side of 0.3 one cubic, and those on either side of 0.7
    another: the spline is two cubics, ``p`` on [0, 0.5] and ``q`` on [0.5, 1], each through its three
    points and meeting at 0.5 with equal first and second derivatives (8 equations, 8 coefficients;
    equal to scipy's ``CubicSpline(..., bc_type="not-a-knot")`` to rounding, without its start-up).
    """
    rows, rhs = [], []
    for xi, yi in ((0.0, 0.0), (0.3, c1), (0.5, 0.5)):  # p(x) = sum p_k x^k
        rows.append([1.0, xi, xi**2, xi**3, 0, 0, 0, 0])
        rhs.append(yi)
    for ti, yi in ((0.0, 0.5), (0.2, c2), (0.5, 1.0)):  # q(x) = sum q_k (x - 0.5)^k
        rows.append([0, 0, 0, 0, 1.0, ti, ti**2, ti**3])
        rhs.append(yi)
    rows.append([0, 1.0, 1.0, 0.75, 0, -1.0, 0, 0])  # p'(0.5) = q'(0.5)
    rows.append([0, 0, 2.0, 3.0, 0, 0, -2.0, 0])  # p''(0.5) = q''(0.5)
    rhs += [0.0, 0.0]
    p0, p1, p2, p3, q0, q1, q2, q3 = np.linalg.solve(np.array(rows), np.array(rhs))
    t = x - 0.5
    y = np.where(x <= 0.5, p0 + x * (p1 + x * (p2 + x * p3)), q0 + t * (q1 + t * (q2 + t * q3)))
    return np.clip(y, 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Geometry and filtering
# --------------------------------------------------------------------------------------------------
def imshift(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """MATLAB ``imshift`` for non-negative shifts: move content down/right, replicating the edge.

    ``out[i, j] = x[max(i - rows, 0), max(j - cols, 0)]``.
    """
    h, w = x.shape[:2]
    ri = np.maximum(np.arange(h) - int(rows), 0)
    ci = np.maximum(np.arange(w) - int(cols), 0)
    return x[ri][:, ci]


def gaussian_kernel(sigma: float) -> np.ndarray:
    """``imgaussfilt`` 1-D kernel: size ``2*ceil(2 sigma)+1``, normalised, float64."""
    half = int(np.ceil(2.0 * sigma))
    t = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return k / k.sum()


def gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """``imgaussfilt(x, sigma)`` with replicate borders (separable, any channel count <= 4)."""
    k = gaussian_kernel(sigma).astype(F32)
    return cv2.sepFilter2D(np.ascontiguousarray(x, dtype=F32), -1, k, k, borderType=cv2.BORDER_REPLICATE)


def correlate(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``imfilter(x, kernel, 'replicate', 'same')``: 2-D correlation centred on an odd kernel."""
    return cv2.filter2D(
        np.ascontiguousarray(x, dtype=F32), -1, kernel.astype(F32), borderType=cv2.BORDER_REPLICATE
    )


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples by Box-Muller from ``rng``'s float32 uniforms.

    ``z = sqrt(-2 log(1 - u1)) * (cos, sin)(2 pi u2)``, evaluated with OpenCV's vectorised log/sqrt and
    ``polarToCart``; about 3-4x faster than ``Generator.standard_normal`` on one core. The float32
    uniforms limit |z| to about 5.8 (probability ~1e-8 beyond), irrelevant for image noise.
    """
    n = int(np.prod(shape))
    m = (n + 1) // 2
    u = rng.random(2 * m, dtype=F32).reshape(2, m)
    one_minus = F32(1.0) - u[0]
    r = cv2.sqrt(cv2.log(one_minus) * F32(-2.0))
    c, s = cv2.polarToCart(r, u[1] * F32(2.0 * np.pi))
    z = np.concatenate([c.reshape(-1), s.reshape(-1)])
    return z[:n].reshape(shape)


# --------------------------------------------------------------------------------------------------
# Colour spaces (MATLAB defaults: sRGB/D65 Lab, BT.601 studio-range YCbCr)
# --------------------------------------------------------------------------------------------------
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
# Lab from linear RGB, with the white point folded in; and its inverse.
_M_RGB2XYZN = (_XYZ_FROM_RGB / _WHITE_D65[:, None]).astype(F32)
_M_XYZN2RGB = (_RGB_FROM_XYZ * _WHITE_D65[None, :]).astype(F32)
_YCC_M = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_YCC_OFF = np.array([16.0, 128.0, 128.0]) / 255.0
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB companding inverse (float64 or float32)."""
    c = np.asarray(c)
    # the power is taken of the clamped value: np.where evaluates both branches, negatives would warn
    return np.where(c > 0.04045, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


def _transform(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    return cv2.transform(np.ascontiguousarray(x, dtype=F32), np.asarray(m, dtype=F32))


# Lab <-> f(X/Xn, Y/Yn, Z/Zn) is linear: L = 116 fy - 16, a = 500 (fx - fy), b = 200 (fy - fz).
_LAB_FROM_F = np.array([[0.0, 116.0, 0.0, -16.0], [500.0, -500.0, 0.0, 0.0], [0.0, 200.0, -200.0, 0.0]])
_F_FROM_LAB = np.hstack(
    [np.linalg.inv(_LAB_FROM_F[:, :3]), (-np.linalg.inv(_LAB_FROM_F[:, :3]) @ _LAB_FROM_F[:, 3])[:, None]]
)
_LAB_EPS = 0.008856
_LAB_KAPPA = 7.787
_LAB_F_EPS = 0.2068966


def rgb2lab(src: Source | np.ndarray) -> np.ndarray:
    """``rgb2lab`` (sRGB, D65, skimage constants) as float32 (H, W, 3) with L in [0, 100].

    Args:
        src: a :class:`Source` (linearisation through an exact LUT) or a float RGB array.
    """
    lin = src.pointwise(srgb_to_linear) if isinstance(src, Source) else srgb_to_linear(src).astype(F32)
    t = _transform(lin, _M_RGB2XYZN)
    f = np.where(t > F32(_LAB_EPS), np.cbrt(t), t * F32(_LAB_KAPPA) + F32(16.0 / 116.0))
    return _transform(f, _LAB_FROM_F)


def _pow(x: np.ndarray, p: float) -> np.ndarray:
    """``x ** p`` for x > 0 via OpenCV's vectorised exp/log (float32, ~1e-7 relative error)."""
    return cv2.exp(cv2.log(x) * F32(p))


def lab2rgb(lab: np.ndarray) -> np.ndarray:
    """``lab2rgb`` followed by ``truncate`` (clip to [0, 1]); float32.

    No intermediate clipping of XYZ (MATLAB does none); clipping happens once, in linear RGB,
    which gives the same result as clipping after companding.
    """
    f = _transform(lab, _F_FROM_LAB)
    t = np.where(f > F32(_LAB_F_EPS), f * f * f, (f - F32(16.0 / 116.0)) * F32(1.0 / _LAB_KAPPA))
    lin = _transform(t, _M_XYZN2RGB)
    np.clip(lin, 0.0, 1.0, out=lin)
    hi = lin > F32(0.0031308)
    out = _pow(np.maximum(lin, F32(0.0031308)), 1.0 / 2.4)
    out *= F32(1.055)
    out -= F32(0.055)
    return np.where(hi, out, lin * F32(12.92))


def scale_channels(x: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """Multiply the channels of a (H, W, 3) float32 array by per-channel gains (contiguous output)."""
    return _transform(x, np.diag(np.asarray(gains, dtype=np.float64)))


def rgb2ycbcr(x: np.ndarray) -> np.ndarray:
    """BT.601 studio-range ``rgb2ycbcr`` for doubles: Y in [16,235]/255, Cb/Cr in [16,240]/255."""
    return _transform(x, np.hstack([_YCC_M, _YCC_OFF[:, None]]))


def ycbcr2rgb(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb2ycbcr` (no clipping)."""
    inv = np.linalg.inv(_YCC_M)
    return _transform(y, np.hstack([inv, (-inv @ _YCC_OFF)[:, None]]))


def rgb2gray(x: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` weights 0.2989, 0.5870, 0.1140; float32 (H, W)."""
    return _transform(x, np.array([GRAY_WEIGHTS]))


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Opt-in: keep large numpy/OpenCV temporaries on the glibc heap instead of fresh ``mmap`` pages.

    Every distortion allocates several image-sized float32 temporaries (0.8-3 MB). With glibc's
    defaults each one is a fresh ``mmap`` whose pages fault in on first touch, which costs more than
    the arithmetic on small images (2-5x on some types). Raising ``M_MMAP_THRESHOLD`` and
    ``M_TRIM_THRESHOLD`` lets freed blocks be reused. Process-wide, so call it in generation workers
    or benchmarks, not from libraries. Equivalent to starting Python with
    ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456``.

    Returns:
        True if glibc ``mallopt`` accepted both settings, False elsewhere (no-op).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok_mmap = libc.mallopt(m_mmap_threshold, int(mmap_threshold)) == 1
        ok_trim = libc.mallopt(m_trim_threshold, int(trim_threshold)) == 1
        return ok_mmap and ok_trim
    except (OSError, AttributeError):
        return False
