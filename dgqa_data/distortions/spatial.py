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

    ``w0 = (-t^3 + 2t^2 - t)/2``, ``w1 = (3t^3 - 5t^2 + 2)/2``, ``w2 = (-3t^3 + 4t^2 + t)/2``,
    ``w3 = (t^3 - t^2)/2``; ``w2`` is computed as ``1 - w0 - w1 - w3`` (partition of unity).

    Args:
        t: fractional offsets in [0, 1), float32.
    """
    t2 = t * t
    w3 = (t - F32(1.0)) * t2
    w3 *= F32(0.5)
    w0 = t2 - t
    w0 *= F32(0.5)
    w0 -= w3  # (t^2 - t)/2 - (t^3 - t^2)/2
    w1 = (F32(1.5) * t - F32(2.5)) * t2
    w1 += F32(1.0)
    w2 = F32(1.0) - w0
    w2 -= w1
    w2 -= w3
    return w0, w1, w2, w3


class KeysWarper:
    """Keys a = -0.5 bicubic warping of planar float32 images, with reusable buffers.

    Implements ``imwarpmap(x, cat(3, sy, sx), 'bicubic', padme=true)``: MATLAB's replicate padding by
    the largest shift followed by ``interp2 'cubic'`` equals sampling the replicate-extended image (up
    to interp2's boundary extrapolation in the outermost padded pixel). Coordinates are exact (no
    1/32-px quantization as in ``cv2.remap``'s interpolating modes, and a = -0.5 rather than OpenCV's
    -0.75).

    Per channel, a 4-channel image holding the 4 horizontal taps of every pixel is built once; for each
    of the 4 tap rows one nearest-neighbour ``cv2.remap`` at integer positions gathers them (4
    float32 channels are OpenCV's fast gather path), they are weighted by the row weights, then by the
    column weights and summed. Rows are processed in strips so the temporaries stay in cache.
    """

    def __init__(self, h: int, w: int, strip: int = 64):
        self.shape = (h, w)
        self.strip = strip
        n = min(strip, h)
        self.cols = np.arange(w, dtype=F32)[None, :]
        self.tap = np.empty((n, w, 4), F32)
        self.acc = np.empty((n, w, 4), F32)
        self.wx4 = np.empty((n, w, 4), F32)
        self.wy4 = [np.empty((n, w, 4), F32) for _ in range(4)]
        self.mapy = [np.empty((n, w), F32) for _ in range(4)]
        self.mapx = np.empty((n, w), F32)
        self.ones = np.ones((1, 4), F32)

    def __call__(self, planes: list[np.ndarray], sy: np.ndarray, sx: np.ndarray) -> list[np.ndarray]:
        """Sample each (H, W) float32 plane at ``(row - sy, col - sx)``; returns new planes, unclipped."""
        h, w = self.shape
        margin = int(np.ceil(max(float(sx.max()), -float(sx.min())))) + 1
        taps = []
        for p in planes:
            padded = cv2.copyMakeBorder(p, 0, 0, margin + 1, margin + 2, cv2.BORDER_REPLICATE)
            taps.append(cv2.merge([padded[:, k : k + w + 2 * margin] for k in range(4)]))
        out = [np.empty((h, w), F32) for _ in planes]
        for r0 in range(0, h, self.strip):
            r1 = min(r0 + self.strip, h)
            self._strip(taps, sy[r0:r1], sx[r0:r1], r0, margin, [o[r0:r1] for o in out])
        return out

    def _strip(self, taps, sy, sx, r0, margin, out) -> None:
        n = sy.shape[0]
        v = np.arange(r0, r0 + n, dtype=F32)[:, None] - sy
        u = self.cols - sx
        fy = np.floor(v)
        fx = np.floor(u)
        wy = keys_weights(v - fy)
        tap, acc, wx4, mapx = self.tap[:n], self.acc[:n], self.wx4[:n], self.mapx[:n]
        cv2.merge(list(keys_weights(u - fx)), dst=wx4)
        np.add(fx, F32(margin), out=mapx)
        wy4 = [b[:n] for b in self.wy4]
        mapy = [b[:n] for b in self.mapy]
        for j in range(4):
            cv2.merge([wy[j]] * 4, dst=wy4[j])
            np.add(fy, F32(j - 1), out=mapy[j])
        for c, src in enumerate(taps):
            acc.fill(0.0)
            for j in range(4):
                cv2.remap(src, mapx, mapy[j], cv2.INTER_NEAREST, dst=tap, borderMode=cv2.BORDER_REPLICATE)
                cv2.accumulateProduct(tap, wy4[j], acc)
            p = cv2.multiply(acc, wx4)
            np.add(p[..., 0], p[..., 1], out=out[c])
            out[c] += p[..., 2]
            out[c] += p[..., 3]


def keys_warp(x: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """One-shot :class:`KeysWarper` call on a (H, W, C) float32 image; returns (H, W, C)."""
    planes = [np.ascontiguousarray(x[..., c], dtype=F32) for c in range(x.shape[2])]
    return np.dstack(KeysWarper(*sy.shape)(planes, sy, sx))


def jitter(src: Source, amount: float, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """19 Jitter: ``imscatter(I, [], amount, 5)``.

    Five iterations; each draws an i.i.d. N(0, amount^2) displacement per pixel and axis
    (``randn(H, W, 2)``: rows first, then columns) and warps with Keys a = -0.5 bicubic.
    """
    h, w = src.shape
    planes = list(cv2.split(src.x))
    warp = KeysWarper(h, w)
    peak = 0.0
    for _ in range(JITTER_ITERATIONS):
        s = normal(rng, (2, h, w))
        s *= F32(amount)
        peak = max(peak, float(s.max()), -float(s.min()))
        planes = warp(planes, s[0], s[1])
    draws["iterations"] = JITTER_ITERATIONS
    draws["max_abs_shift"] = round(peak, 4)
    return cv2.merge(planes)


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
