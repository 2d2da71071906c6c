"""Value checks for dgqa_data.distortions (the 25 KADID/KADIS distortions)."""

from __future__ import annotations

import hashlib
import itertools
import json

import cv2
import numpy as np
import pytest
from skimage import data

from dgqa_data.distortions import (
    DISTORTIONS,
    RANDOM_TYPES,
    distort,
    distort_float,
    distort_with_draws,
    seed_for,
)
from dgqa_data.distortions.blur import disk_kernel, motion_kernel
from dgqa_data.distortions.common import curves_pair, rgb2ycbcr
from dgqa_data.distortions.spatial import keys_warp, multithresh_bins, pixelate_indices
from dgqa_data.schema import DISTORTION_GROUPS, DISTORTION_NAMES

H, W = 96, 128


def _full_range(img: np.ndarray) -> np.ndarray:
    """Stretch to exactly 0..255 so that the input mapmm is the identity."""
    img = img.astype(np.float64)
    return np.rint(255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _full_range(cv2.resize(data.astronaut(), (W, H), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def photo2() -> np.ndarray:
    return _full_range(cv2.resize(data.coffee(), (W, H), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def midgrey(photo) -> np.ndarray:
    """A real photo squeezed into [64, 191]; first row 0 and last row 255 pin the input/output range."""
    img = (64 + photo.astype(np.float64) * 127 / 255).round().astype(np.uint8)
    img[0] = 0
    img[-1] = 255
    return img


def _hf_energy(img: np.ndarray) -> float:
    g = img.astype(np.float64).mean(axis=2)
    return float(np.mean(np.diff(g, axis=0) ** 2) + np.mean(np.diff(g, axis=1) ** 2))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


# ------------------------------------------------------------------------------------------------
# Registry, API, validation
# ------------------------------------------------------------------------------------------------
def test_registry_matches_schema_and_official_tables():
    assert sorted(DISTORTIONS) == list(range(1, 26))
    for t, spec in DISTORTIONS.items():
        assert spec.id == t and spec.name == DISTORTION_NAMES[t]
        assert t in DISTORTION_GROUPS[spec.group]
        assert len(spec.levels) == 5 and spec.note
    assert set(RANDOM_TYPES) == {3, 5, 11, 12, 13, 14, 15, 19, 20, 23}
    assert {t for t, s in DISTORTIONS.items() if not s.exact} == {6, 15}
    assert DISTORTIONS[18].levels == (0.15, 0.08, 0, -0.08, -0.15)
    assert DISTORTIONS[25].levels == (0.3, 0.15, 0, -0.4, -0.6)
    assert DISTORTIONS[9].levels == (16, 32, 45, 120, 400)
    assert DISTORTIONS[10].levels == (43, 36, 24, 7, 4)
    assert DISTORTIONS[3].levels[-1] == 10
    assert DISTORTIONS[22].levels == (20, 16, 13, 10, 7)


def test_all_125_variants_dtype_shape_and_json_draws(photo):
    for t, lvl in itertools.product(DISTORTIONS, range(1, 6)):
        out, draws = distort_with_draws(photo, t, lvl, seed=seed_for("I01", t, lvl))
        assert out.dtype == np.uint8 and out.shape == photo.shape, (t, lvl)
        json.dumps(draws)
        if not DISTORTIONS[t].random:
            assert draws == {} or t == 22, (t, draws)  # 22 reports its (deterministic) thresholds


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 1), "type_id"),
        ((26, 1), "type_id"),
        (("3", 1), "type_id"),
        ((3.0, 1), "type_id"),
        ((True, 1), "type_id"),
        ((3, 0), "level"),
        ((3, 6), "level"),
        ((3, 2.0), "level"),
    ],
)
def test_bad_type_or_level(photo, args, match):
    with pytest.raises(ValueError, match=match):
        distort(photo, *args)


def test_bad_image_and_seed(photo):
    with pytest.raises(ValueError, match="uint8"):
        distort(photo.astype(np.float32), 1, 1)
    with pytest.raises(ValueError, match="shape"):
        distort(photo[..., 0], 1, 1)
    with pytest.raises(ValueError, match="shape"):
        distort(np.dstack([photo, photo[..., :1]]), 1, 1)
    with pytest.raises(ValueError, match="at least"):
        distort(photo[:40, :40], 20, 1)
    with pytest.raises(ValueError, match="seed"):
        distort(photo, 3, 1, seed="1")
    with pytest.raises(ValueError, match="float"):
        distort_float(photo, 1, 1)


def test_constant_image_does_not_fail():
    img = np.full((48, 48, 3), 77, np.uint8)
    for t in DISTORTIONS:
        out = distort(img, t, 3, seed=0)
        assert out.shape == img.shape


def test_distort_float_in_unit_range(photo):
    y, _ = distort_float(photo.astype(np.float64) * 3.0, 16, 3)
    assert y.dtype == np.float32 and y.min() == 0.0 and y.max() == 1.0
    assert np.abs(y * 255 - distort(photo, 16, 3)).max() <= 1


def test_seed_for_is_stable_and_distinct():
    s = seed_for("I01", 3, 5)
    key = b"0|I01|3|5"
    assert s == int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1
    assert 0 <= s < 2**63
    seeds = {seed_for(r, t, lv, b) for r in ("I01", "I02") for t in (1, 3) for lv in (1, 5) for b in (0, 1)}
    assert len(seeds) == 16


@pytest.mark.parametrize("t", [3, 5, 11, 12, 13, 14, 15, 19, 20, 23])
def test_random_types_deterministic_per_seed(photo, t):
    a, da = distort_with_draws(photo, t, 5, seed=11)
    b, db = distort_with_draws(photo, t, 5, seed=11)
    c, dc = distort_with_draws(photo, t, 5, seed=12)
    assert np.array_equal(a, b) and da == db
    assert da != dc  # at least the seed differs
    if t == 5:  # the integer shift can coincide; the drawn direction cannot
        assert da["direction"] != dc["direction"]
    else:
        assert not np.array_equal(a, c)
    g = distort(photo, t, 5, seed=np.random.default_rng(11))
    assert np.array_equal(g, a)


def test_deterministic_types_ignore_seed(photo):
    for t in set(DISTORTIONS) - set(RANDOM_TYPES):
        assert np.array_equal(distort(photo, t, 4, seed=1), distort(photo, t, 4, seed=2)), t


# ------------------------------------------------------------------------------------------------
# Wrapper identities
# ------------------------------------------------------------------------------------------------
def test_identity_levels(photo):
    assert np.array_equal(distort(photo, 3, 1, seed=5), photo)  # motion length 1
    assert np.array_equal(distort(photo, 18, 3), photo)  # mean shift 0
    assert np.array_equal(distort(photo, 1, 1), photo)  # sigma 0.1 ~ delta
    assert np.abs(distort(photo, 8, 1).astype(int) - photo).max() <= 1  # Lab round trip
    assert not np.array_equal(distort(photo, 25, 3), photo)  # mild S-curve, not identity


def test_input_mapmm_makes_output_scale_invariant(photo):
    low = (photo.astype(np.float64) * 0.5 + 40).round().astype(np.uint8)
    a, b = distort(low, 10, 2), distort(_full_range(low), 10, 2)
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Blur
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1, 2, 3])
def test_blur_removes_high_frequencies_increasingly(photo, t):
    e = [_hf_energy(distort(photo, t, lvl, seed=3)) for lvl in range(1, 6)]
    start = 1 if t == 3 else 0
    assert all(e[i + 1] < e[i] for i in range(start, 4)), e
    assert e[4] < 0.4 * _hf_energy(photo)


def test_fspecial_kernels():
    np.testing.assert_allclose(
        disk_kernel(1),
        [[0.0251, 0.1453, 0.0251], [0.1453, 0.3183, 0.1453], [0.0251, 0.1453, 0.0251]],
        atol=1e-4,
    )
    assert [disk_kernel(r).shape[0] for r in (1, 2, 4, 6, 8)] == [3, 5, 9, 13, 17]
    np.testing.assert_allclose(motion_kernel(3, 0), [[1 / 3, 1 / 3, 1 / 3]], atol=1e-12)
    assert motion_kernel(10, 90).shape == (11, 1)
    for length, ang in [(4, 33), (10, 135), (6, 180)]:
        k = motion_kernel(length, ang)
        assert abs(k.sum() - 1) < 1e-9 and k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1


def test_motion_blur_angle_draw(photo):
    _, d = distort_with_draws(photo, 3, 5, seed=seed_for("x", 3, 5))
    assert isinstance(d["angle"], int) and 0 <= d["angle"] <= 180


# ------------------------------------------------------------------------------------------------
# Colour
# ------------------------------------------------------------------------------------------------
def _chroma(img: np.ndarray) -> float:
    lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def test_color_diffusion_boosts_chroma_and_keeps_luma(photo2):
    c = [_chroma(distort(photo2, 4, lvl)) for lvl in range(1, 6)]
    assert all(c[i + 1] > c[i] for i in range(4)), c
    assert c[0] < 1.2 * _chroma(photo2)


def test_color_shift_changes_green_only(photo):
    out, d = distort_with_draws(photo, 5, 5, seed=4)
    assert np.array_equal(out[..., 0], photo[..., 0]) and np.array_equal(out[..., 2], photo[..., 2])
    assert not np.array_equal(out[..., 1], photo[..., 1])
    u = np.array(d["direction"])
    assert d["shift"] == [int(np.floor(v + 0.5)) for v in 12 * u / np.linalg.norm(u)]
    assert min(d["shift"]) >= 0 and abs(np.hypot(*d["shift"]) - 12) < 1


def test_color_quantization_palette_size(photo2):
    for lvl, n in zip(range(1, 6), DISTORTIONS[6].levels):
        out = distort(photo2, 6, lvl)
        assert len(np.unique(out.reshape(-1, 3), axis=0)) <= n


def test_color_saturation_hsv(photo):
    grey = distort(photo, 7, 4)  # factor 0 -> V as grey
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    v = photo.max(axis=2)
    assert np.abs(grey[..., 0].astype(int) - v).max() <= 1
    sat = [np.ptp(distort(photo, 7, lvl).astype(int), axis=2).mean() for lvl in (1, 2, 3)]
    assert sat[0] > sat[1] > sat[2] > 0
    # factor -0.4: (1.4 V - 0.4 c), stretched by the output mapmm
    x = photo / 255.0
    y = 1.4 * x.max(axis=2, keepdims=True) - 0.4 * x
    y = (y - y.min()) / (y.max() - y.min())
    assert np.abs(distort(photo, 7, 5).astype(int) - np.rint(255 * y)).max() <= 1


def test_color_saturation_lab_increases_chroma(photo):
    c = [_chroma(distort(photo, 8, lvl)) for lvl in range(1, 6)]
    assert all(c[i + 1] > c[i] for i in range(4)), c


# ------------------------------------------------------------------------------------------------
# Compression
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [9, 10])
def test_compression_error_grows_with_level(photo2, t):
    errs = [_mse(distort(photo2, t, lvl), photo2) for lvl in range(1, 6)]
    assert errs[0] > 0 and all(errs[i + 1] > errs[i] for i in range(4)), errs


def test_jpeg_blocking_at_level5(photo2):
    g = distort(photo2, 10, 5).astype(np.float64).mean(axis=2)
    d = np.abs(np.diff(g, axis=1))
    boundary = d[:, 7::8].mean()
    interior = np.delete(d, np.s_[7::8], axis=1).mean()
    assert boundary > 1.5 * interior


# ------------------------------------------------------------------------------------------------
# Noise
# ------------------------------------------------------------------------------------------------
def test_white_noise_variance(midgrey):
    x = midgrey / 255.0
    for lvl, v in zip(range(1, 6), DISTORTIONS[11].levels):
        out = distort(midgrey, 11, lvl, seed=lvl) / 255.0
        assert out.min() == 0.0 and out.max() == 1.0  # output mapmm is the identity here
        r = (out - x)[1:-1]
        assert abs(r.mean()) < 0.1 * np.sqrt(v)
        assert abs(r.var() - v - 1 / (12 * 255**2)) < 0.06 * v, (lvl, r.var(), v)


def test_white_noise_color_component_variance(midgrey):
    y_in = rgb2ycbcr(midgrey.astype(np.float32) / 255.0)
    for lvl, v in zip((2, 5), (DISTORTIONS[12].levels[1], DISTORTIONS[12].levels[4])):
        out = distort(midgrey, 12, lvl, seed=lvl).astype(np.float32) / 255.0
        r = (rgb2ycbcr(out) - y_in)[..., 0]
        assert abs(r.var() / v - 1) < 0.2, (lvl, r.var(), v)


def test_impulse_noise_density(midgrey):
    x = midgrey[1:-1].astype(int)
    for lvl, d in zip(range(1, 6), DISTORTIONS[13].levels):
        out = distort(midgrey, 13, lvl, seed=lvl)[1:-1].astype(int)
        changed = out != x
        assert np.all((out[changed] == 0) | (out[changed] == 255))
        n = changed.size
        frac = changed.mean()
        assert abs(frac - d) < 5 * np.sqrt(d * (1 - d) / n) + 1e-4, (lvl, frac, d)
        salt, pepper = (out[changed] == 255).mean(), (out[changed] == 0).mean()
        assert abs(salt - pepper) < 0.25 or lvl == 1


def test_multiplicative_noise_variance(midgrey):
    x = midgrey[1:-1] / 255.0
    for lvl, v in zip(range(1, 6), DISTORTIONS[14].levels):
        out = distort(midgrey, 14, lvl, seed=lvl)[1:-1] / 255.0
        rel = (out - x) / x
        ok = (out > 0) & (out < 1)
        assert abs(rel[ok].var() / v - 1) < 0.12, (lvl, rel[ok].var(), v)
        assert np.abs(rel).max() <= np.sqrt(3 * v) + 2 / 64  # uniform, not Gaussian


def test_denoise_is_smoother_than_noise(midgrey):
    for lvl in (1, 5):
        den = distort(midgrey, 15, lvl, seed=1)
        noisy = distort(midgrey, 11, 5, seed=1)
        assert _hf_energy(den) < _hf_energy(noisy)
        assert _mse(den, midgrey) > 0


# ------------------------------------------------------------------------------------------------
# Brightness
# ------------------------------------------------------------------------------------------------
def test_brighten_and_darken_move_the_mean(photo):
    m0 = photo.mean()
    up = [distort(photo, 16, lvl).mean() for lvl in range(1, 6)]
    down = [distort(photo, 17, lvl).mean() for lvl in range(1, 6)]
    assert m0 < up[0] and all(up[i + 1] > up[i] for i in range(4)), up
    assert m0 > down[0] and all(down[i + 1] < down[i] for i in range(4)), down


def test_mean_shift_is_a_gain_after_the_wrapper(photo):
    x = photo / 255.0
    np.testing.assert_array_equal(distort(photo, 18, 1), np.rint(255 * np.minimum(x / 0.85, 1)))
    np.testing.assert_array_equal(distort(photo, 18, 5), np.rint(255 * np.maximum(x - 0.15, 0) / 0.85))
    means = [distort(photo, 18, lvl).mean() for lvl in range(1, 6)]
    assert means[0] > means[1] > means[2] > means[3] > means[4]


# ------------------------------------------------------------------------------------------------
# Spatial
# ------------------------------------------------------------------------------------------------
def test_keys_warp_is_exact():
    rng = np.random.default_rng(0)
    img = rng.random((20, 24, 3), dtype=np.float32)
    zero = np.zeros((20, 24), np.float32)
    np.testing.assert_allclose(keys_warp(img, zero, zero), img, atol=1e-6)
    one = np.ones_like(zero)
    shifted = keys_warp(img, one, 2 * one)  # sample at (y-1, x-2), replicate border
    np.testing.assert_allclose(shifted[1:, 2:], img[:-1, :-2], atol=1e-6)
    np.testing.assert_allclose(shifted[0, 2:], img[0, :-2], atol=1e-6)
    sy = rng.normal(0, 1.5, zero.shape).astype(np.float32)
    sx = rng.normal(0, 1.5, zero.shape).astype(np.float32)
    out = keys_warp(img, sy, sx)

    def k(d):
        d = abs(d)
        return (
            1.5 * d**3 - 2.5 * d**2 + 1
            if d <= 1
            else (-0.5 * d**3 + 2.5 * d**2 - 4 * d + 2 if d < 2 else 0.0)
        )

    for yy, xx in [(0, 0), (5, 7), (19, 23), (10, 0), (0, 12)]:
        py, px = yy - float(sy[yy, xx]), xx - float(sx[yy, xx])
        ref = sum(
            k(py - r) * k(px - c) * img[min(max(r, 0), 19), min(max(c, 0), 23)].astype(np.float64)
            for r in range(int(np.floor(py)) - 2, int(np.floor(py)) + 4)
            for c in range(int(np.floor(px)) - 2, int(np.floor(px)) + 4)
        )
        np.testing.assert_allclose(out[yy, xx], ref, atol=2e-6)


def test_jitter_error_grows_with_level(photo):
    errs = [_mse(distort(photo, 19, lvl, seed=2), photo) for lvl in range(1, 6)]
    assert errs[0] > 0 and all(errs[i + 1] > errs[i] for i in range(4)), errs


def test_non_eccentricity_replays_patch_copies(photo):
    for lvl in (1, 5):
        out, d = distort_with_draws(photo, 20, lvl, seed=lvl)
        assert len(d["patches"]) == DISTORTIONS[20].levels[lvl - 1]
        ref = photo.copy()
        for r0, c0, r1, c1 in d["patches"]:
            assert 15 <= r0 <= H - 33 and 15 <= c0 <= W - 33
            assert abs(r1 - r0) <= 8 and abs(c1 - c0) <= 8
            ref[r1 : r1 + 16, c1 : c1 + 16] = ref[r0 : r0 + 16, c0 : c0 + 16]
        np.testing.assert_array_equal(out, ref)
        r0, c0, r1, c1 = d["patches"][-1]
        assert np.array_equal(out[r1 : r1 + 16, c1 : c1 + 16], ref[r1 : r1 + 16, c1 : c1 + 16])


def test_pixelate_blocks(photo):
    for lvl, s in zip(range(1, 6), DISTORTIONS[21].levels):
        out = distort(photo, 21, lvl)
        rows, cols = pixelate_indices(H, W, s)
        np.testing.assert_array_equal(out, photo[rows][:, cols])
        z = 0.95 - s**0.6
        # ceil(z * size) low-resolution samples; the last one can be clamped onto its neighbour
        assert int(np.ceil(z * H)) - 1 <= len(np.unique(rows)) <= int(np.ceil(z * H))
        assert int(np.ceil(z * W)) - 1 <= len(np.unique(cols)) <= int(np.ceil(z * W))
        runs = np.diff(np.flatnonzero(np.diff(cols)))  # widths of the constant column blocks
        assert abs(runs.mean() - 1 / z) < 0.35, (lvl, runs.mean(), 1 / z)
    assert np.all(np.diff(out[:, :, 0], axis=1)[:, np.diff(cols) == 0] == 0)


def test_multithresh_dp_matches_brute_force():
    rng = np.random.default_rng(3)
    hist = rng.integers(0, 50, 24).astype(np.float64)
    v = np.arange(24.0)

    def score(cuts):
        edges = [0, *[c + 1 for c in cuts], 24]
        return sum(
            hist[a:b].sum() and (hist[a:b] @ v[a:b]) ** 2 / hist[a:b].sum() for a, b in zip(edges, edges[1:])
        )

    for n in (1, 2, 3):
        best = max(itertools.combinations(range(23), n), key=score)
        dp = multithresh_bins(hist, n)
        assert np.isclose(score(tuple(dp)), score(best)), (n, dp, best)


def test_quantization_levels(photo2):
    for lvl, n in zip(range(1, 6), DISTORTIONS[22].levels):
        out, d = distort_with_draws(photo2, 22, lvl)
        assert len(np.unique(out)) <= n + 1
        t = np.array(d["thresholds"])
        assert len(t) == n and np.all(np.diff(t) > 0) and t[0] >= 0 and t[-1] < 1
        # every pixel <= t1 became 0
        assert np.all(out[photo2 / 255.0 <= t[0] - 1e-9] == 0)


def test_color_block_squares(photo):
    for lvl, n in zip(range(1, 6), DISTORTIONS[23].levels):
        out, d = distort_with_draws(photo, 23, lvl, seed=lvl)
        assert len(d["blocks"]) == n
        for i, b in enumerate(d["blocks"]):
            r, c = b["row"], b["col"]
            assert 0 <= r <= H - 32 and 0 <= c <= W - 32
            covered_later = any(
                abs(o["row"] - r) < 32 and abs(o["col"] - c) < 32 for o in d["blocks"][i + 1 :]
            )
            if not covered_later:
                expected = np.rint(255 * np.array(b["color"]))
                np.testing.assert_array_equal(
                    out[r : r + 32, c : c + 32], np.broadcast_to(expected, (32, 32, 3))
                )
        outside = np.ones((H, W), bool)
        for b in d["blocks"]:
            outside[b["row"] : b["row"] + 32, b["col"] : b["col"] + 32] = False
        np.testing.assert_array_equal(out[outside], photo[outside])


# ------------------------------------------------------------------------------------------------
# Sharpness and contrast
# ------------------------------------------------------------------------------------------------
def test_high_sharpen_adds_high_frequencies(photo):
    e = [_hf_energy(distort(photo, 24, lvl)) for lvl in range(1, 6)]
    assert _hf_energy(photo) < e[0] and all(e[i + 1] > e[i] for i in range(4)), e


def test_contrast_change_follows_the_table(photo):
    s0 = photo.std()
    s = [distort(photo, 25, lvl).std() for lvl in range(1, 6)]
    assert s[0] > s0 and s[4] < s0
    assert all(s[i + 1] < s[i] for i in range(4)), s
    # level 3 (a = 0) is a mild S-curve: f(0.1) ~ 0.057, f(0.9) ~ 0.943
    ramp = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (48, 1))
    out = distort(np.dstack([ramp] * 3), 25, 3)[0, :, 0]
    assert (
        abs(out[round(0.1 * 255)] / 255 - 0.057) < 0.006 and abs(out[round(0.9 * 255)] / 255 - 0.943) < 0.006
    )


@pytest.mark.parametrize("c1, c2", [(0.25, 0.75), (0.05, 0.95), (0.4, 0.6), (0.0, 1.0)])
def test_the_contrast_curve_is_the_not_a_knot_spline(c1, c2):
    """The numpy two-cubic form of MATLAB's ``spline`` equals scipy's not-a-knot CubicSpline."""
    from scipy.interpolate import CubicSpline

    x = np.linspace(0.0, 1.0, 20001)
    spline = CubicSpline([0.0, 0.3, 0.5, 0.7, 1.0], [0.0, c1, 0.5, c2, 1.0], bc_type="not-a-knot")
    got = curves_pair(x, c1, c2)
    assert np.abs(got - np.clip(spline(x), 0.0, 1.0)).max() < 1e-13
    assert got[[0, 6000, 10000, 14000, 20000]] == pytest.approx([0.0, c1, 0.5, c2, 1.0], abs=1e-12)
