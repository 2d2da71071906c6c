"""Spatial distortions: 19 jitter, 20 non-eccentricity patch, 21 pixelate, 22 quantization, 23 colour block."""

from __future__ import annotations

import cv2
import numpy as np

from .common import F32, Source, matlab_round, normal

JITTER_ITERATIONS = 5


# --------------------------------------------------------------------------------------------------
# 19 Jitter: imscatter = 5 x (white N(0, amount^2) displacement field + bicubic warp)
# --------------------------------------------------------------------------------------------------
def keys_weights(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keys cubic-convolution weights (a = -0.5, MATLAB ``interp2 'cubic'``) of taps -1, 0, 1, 2.

    Args:
        t: fractional offsets in [0, 1).
    """
    t2 = t * t
    t3 = t2 * t
    h = F32(0.5)
    return (
        h * (F32(2.0) * t2 - t3 - t),
        h * (F32(3.0) * t3 - F32(5.0) * t2 + F32(2.0)),
        h * (F32(4.0) * t2 - F32(3.0) * t3 + t),
        h * (t3 - t2),
    )


class KeysWarper:
    """Keys a = -0.5 bicubic warping of (H, W, 4) float32 images, with reusable buffers.

    Implements ``imwarpmap(x, cat(3, sy, sx), 'bicubic', padme=true)``: MATLAB's replicate padding by
    the largest shift followed by ``interp2 'cubic'`` equals sampling the replicate-extended image (up
    to interp2's boundary extrapolation in the outermost padded pixel). Coordinates are exact (no
    1/32-px quantization as in ``cv2.remap``'s interpolating modes, and a = -0.5 rather than OpenCV's
    -0.75): the 16 taps are gathered with nearest-neighbour ``cv2.remap`` at integer positions
    (4 channels keep OpenCV's gather on its fast path) and combined with the Keys weights.
    """

    def __init__(self, h: int, w: int):
        self.shape = (h, w)
        self.rows = np.arange(h, dtype=F32)[:, None]
        self.cols = np.arange(w, dtype=F32)[None, :]
        self.tap = np.empty((h, w, 4), F32)
        self.acc = np.empty((h, w, 4), F32)
        self.w4 = [np.empty((h, w, 4), F32) for _ in range(5)]
        self.mapx = [np.empty((h, w), F32) for _ in range(4)]
        self.mapy = np.empty((h, w), F32)

    def __call__(self, x4: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        """Sample ``x4`` at ``(row - sy, col - sx)``; returns a new float32 (H, W, 4) array, unclipped."""
        v = self.rows - sy
        u = self.cols - sx
        fy = np.floor(v)
        fx = np.floor(u)
        wy = keys_weights(v - fy)
        for i, k in enumerate(keys_weights(u - fx)):
            cv2.merge([k, k, k, k], dst=self.w4[i])
            np.add(fx, F32(i - 1), out=self.mapx[i])
        out = np.zeros_like(x4)
        tap, acc, wy4 = self.tap, self.acc, self.w4[4]
        for j in range(4):
            np.add(fy, F32(j - 1), out=self.mapy)
            acc.fill(0.0)
            for i in range(4):
                cv2.remap(
                    x4, self.mapx[i], self.mapy, cv2.INTER_NEAREST, dst=tap, borderMode=cv2.BORDER_REPLICATE
                )
                cv2.accumulateProduct(tap, self.w4[i], acc)
            cv2.merge([wy[j]] * 4, dst=wy4)
            cv2.accumulateProduct(acc, wy4, out)
        return out


def keys_warp(x4: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """One-shot :class:`KeysWarper` call: Keys a = -0.5 bicubic warp of a (H, W, 4) float32 image."""
    return KeysWarper(*sy.shape)(x4, sy, sx)


def jitter(src: Source, amount: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """19 Jitter: ``imscatter(I, [], amount, 5)``.

    Five iterations; each draws an i.i.d. N(0, amount^2) displacement per pixel and axis
    (``randn(H, W, 2)``: rows first, then columns) and warps with Keys a = -0.5 bicubic.
    """
    h, w = src.shape
    x4 = np.zeros((h, w, 4), dtype=F32)
    x4[..., :3] = src.x
    warp = KeysWarper(h, w)
    peak = 0.0
    for _ in range(JITTER_ITERATIONS):
        s = normal(rng, (2, h, w))
        s *= F32(amount)
        peak = max(peak, float(s.max()), -float(s.min()))
        x4 = warp(x4, s[0], s[1])
    draws["iterations"] = JITTER_ITERATIONS
    draws["max_abs_shift"] = round(peak, 4)
    return np.ascontiguousarray(x4[..., :3])


# --------------------------------------------------------------------------------------------------
# 20 Non-eccentricity patch
# --------------------------------------------------------------------------------------------------
PATCH = 16


def non_eccentricity_patch(
    src: Source, n_patches: float, rng: np.random.Generator, draws: dict
) -> np.ndarray:
    """20 Non-eccentricity patch: copy ``n`` 16x16 patches to a nearby random position (within +-8 px).

    MATLAB (1-based): ``w0 = round(rand*(w_max-w_min)) + w_min`` with ``w_min=16, w_max=W-32``, then
    ``h0`` alike; ``w1 = round((rand-0.5)*16 + w0)``, then ``h1``. Each copy reads the already modified
    image. Draws: ``patches`` = list of 0-based ``[row0, col0, row1, col1]`` (source, destination).
    """
    h, w = src.shape
    out = src.x.copy()
    h_min = w_min = PATCH
    h_max, w_max = h - 2 * PATCH, w - 2 * PATCH
    patches = []
    for _ in range(int(n_patches)):
        w0 = int(matlab_round(rng.random() * (w_max - w_min))) + w_min
        h0 = int(matlab_round(rng.random() * (h_max - h_min))) + h_min
        w1 = int(matlab_round((rng.random() - 0.5) * PATCH + w0))
        h1 = int(matlab_round((rng.random() - 0.5) * PATCH + h0))
        r0, c0, r1, c1 = h0 - 1, w0 - 1, h1 - 1, w1 - 1
        out[r1 : r1 + PATCH, c1 : c1 + PATCH] = out[r0 : r0 + PATCH, c0 : c0 + PATCH]
        patches.append([r0, c0, r1, c1])
    draws["patches"] = patches
    return out


# --------------------------------------------------------------------------------------------------
# 21 Pixelate
# --------------------------------------------------------------------------------------------------
def _nearest_index(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """0-based source indices of MATLAB ``imresize(..., 'nearest')`` along one axis."""
    k = np.arange(1, n_out + 1, dtype=np.float64)
    u = k / scale + 0.5 * (1.0 - 1.0 / scale)
    return np.clip(np.floor(u + 0.5), 1, n_in).astype(np.intp) - 1


def pixelate_indices(h: int, w: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column source indices of ``imresize(imresize(I, z, 'nearest'), [H W], 'nearest')``.

    ``z = 0.95 - strength^0.6``; the low-resolution size is ``ceil(z * [H W])``.
    """
    z = 0.95 - strength**0.6
    hs, ws = int(np.ceil(z * h)), int(np.ceil(z * w))
    rows = _nearest_index(h, hs, z)[_nearest_index(hs, h, h / hs)]
    cols = _nearest_index(w, ws, z)[_nearest_index(ws, w, w / ws)]
    return rows, cols


def pixelate(src: Source, strength: float, rng, draws: dict) -> np.ndarray:
    """21 Pixelate: nearest down-scaling by ``z = 0.95 - strength^0.6`` and nearest up-scaling back."""
    h, w = src.shape
    rows, cols = pixelate_indices(h, w, strength)
    mapx = np.broadcast_to(cols.astype(F32)[None, :], (h, w))
    mapy = np.broadcast_to(rows.astype(F32)[:, None], (h, w))
    return cv2.remap(src.x, np.ascontiguousarray(mapx), np.ascontiguousarray(mapy), cv2.INTER_NEAREST)


# --------------------------------------------------------------------------------------------------
# 22 Quantization: exact multi-level Otsu (dynamic programming) + imquantize
# --------------------------------------------------------------------------------------------------
def multithresh_bins(hist: np.ndarray, n_thresh: int) -> np.ndarray:
    """Exact multi-level Otsu on a histogram by dynamic programming, O(N * bins^2).

    Maximises the between-class variance (equivalently ``sum_k S_k^2 / P_k``) over ``n_thresh + 1``
    contiguous, non-empty bin ranges.

    Args:
        hist: counts per bin (bins are equally spaced).
        n_thresh: number of thresholds N.

    Returns:
        int array of N bin indices; class k holds bins ``(t[k-1], t[k]]`` (threshold = last bin of the
        lower class, as MATLAB ``multithresh`` / ``graythresh`` report it).
    """
    nb = hist.size
    p = np.concatenate([[0.0], np.cumsum(hist, dtype=np.float64)])
    s = np.concatenate([[0.0], np.cumsum(hist * np.arange(nb, dtype=np.float64))])
    # cost[i, j] of a class covering bins i .. j-1 (prefix indices 0..nb)
    dp = p[None, :] - p[:, None]
    ds = s[None, :] - s[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.where(dp > 0, ds * ds / np.where(dp > 0, dp, 1.0), 0.0)
    valid = np.triu(np.ones((nb + 1, nb + 1), dtype=bool), k=1)
    cost = np.where(valid, cost, -np.inf)
    best = cost[0].copy()  # best[j]: one class over bins 0..j-1
    back = []
    for _ in range(n_thresh):
        total = best[:, None] + cost
        arg = np.argmax(total, axis=0)
        best = total[arg, np.arange(nb + 1)]
        back.append(arg)
    cuts = []
    j = nb
    for arg in reversed(back):
        j = int(arg[j])
        cuts.append(j)
    return np.array(cuts[::-1], dtype=np.intp) - 1


def quantization(src: Source, n_thresh: float, rng, draws: dict) -> np.ndarray:
    """22 Quantization: ``imquantize(I, multithresh(I, N), [0, t2..tN, 1])`` on pooled RGB values.

    Thresholds come from an exact multi-level Otsu on the 256-bin histogram of all R, G and B values
    (bin centres k/255 over the [0, 1] range of the mapmm'd image). MATLAB's ``multithresh`` uses a
    search-based optimiser for N > 2 and may pick slightly different thresholds.
    """
    n = int(n_thresh)
    x = src.x
    if src.lut is not None:
        hist = np.bincount(
            np.clip(np.rint(src.lut * 255.0), 0, 255).astype(np.intp),
            weights=np.bincount(src.u8.reshape(-1), minlength=256),
            minlength=256,
        )
    else:
        hist = np.bincount(np.clip(np.rint(x.reshape(-1) * 255.0), 0, 255).astype(np.intp), minlength=256)
    thresh = multithresh_bins(hist, n) / 255.0
    values = np.concatenate([[0.0], thresh[1:], [1.0]])

    def quantize(v: np.ndarray) -> np.ndarray:
        return values[np.searchsorted(thresh, v, side="left")]

    draws_thr = [round(float(t), 6) for t in thresh]
    draws["thresholds"] = draws_thr
    return src.pointwise(quantize)


# --------------------------------------------------------------------------------------------------
# 23 Colour block
# --------------------------------------------------------------------------------------------------
BLOCK = 32


def color_block(src: Source, n_blocks: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """23 Colour block: ``n`` opaque 32x32 squares of a random colour at random positions.

    Per block: ``colour = rand(1,3)``, ``x = rand*(W-32)``, ``y = rand*(H-32)`` (this order); the corner
    is floored to 0-based integer pixels (``insertShape``'s sub-pixel rounding was not verified), so
    every block lies fully inside the image. Draws: ``blocks`` = list of
    ``{"color": [r, g, b], "row": y, "col": x}``.
    """
    h, w = src.shape
    out = src.x.copy()
    blocks = []
    for _ in range(int(n_blocks)):
        colour = rng.random(3)
        col = int(np.floor(rng.random() * (w - BLOCK)))
        row = int(np.floor(rng.random() * (h - BLOCK)))
        out[row : row + BLOCK, col : col + BLOCK] = colour.astype(F32)
        blocks.append({"color": [float(c) for c in colour], "row": row, "col": col})
    draws["blocks"] = blocks
    return out
