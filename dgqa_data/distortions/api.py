"""Public entry points: ``distort``, ``distort_with_draws``, ``distort_float`` and ``seed_for``."""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from dgqa_data.errors import DgqaError

from .common import Source, to_uint8
from .registry import DISTORTIONS, DistortionSpec

SeedLike = int | np.random.Generator | None


def seed_for(reference_id: str, type_id: int, level: int, base_seed: int = 0) -> int:
    """Stable 63-bit seed for one (reference image, type, level), independent of process layout.

    Args:
        reference_id: identifier of the pristine image (e.g. its file stem).
        type_id: distortion type 1..25.
        level: 1..5.
        base_seed: global seed of the generation run.

    Returns:
        ``blake2b("{base_seed}|{reference_id}|{type_id}|{level}")`` truncated to a non-negative 63-bit int.
    """
    key = f"{int(base_seed)}|{reference_id}|{int(type_id)}|{int(level)}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _check(type_id, level) -> DistortionSpec:
    if isinstance(type_id, bool) or not isinstance(type_id, numbers.Integral):
        raise DgqaError(f"type_id must be an int in 1..25, got {type_id!r}")
    if int(type_id) not in DISTORTIONS:
        raise DgqaError(f"type_id must be in 1..25, got {type_id}")
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) or not 1 <= int(level) <= 5:
        raise DgqaError(f"level must be an int in 1..5, got {level!r}")
    return DISTORTIONS[int(type_id)]


def _check_shape(spec: DistortionSpec, shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or shape[2] != 3:
        raise DgqaError(f"image must have shape (H, W, 3), got {shape}")
    mh, mw = spec.min_size
    if shape[0] < mh or shape[1] < mw:
        raise DgqaError(f"type {spec.id} ({spec.name}) needs an image of at least {mh}x{mw}, got {shape[:2]}")


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise DgqaError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


def _run(spec: DistortionSpec, src: Source, level: int, seed: SeedLike) -> tuple[np.ndarray, dict]:
    draws: dict = {}
    rng = _rng(seed)
    y = spec.fn(src, spec.levels[int(level) - 1], rng, draws)
    if spec.random and isinstance(seed, numbers.Integral):
        draws = {"seed": int(seed), **draws}
    return y, draws


def distort_with_draws(
    image: np.ndarray, type_id: int, level: int, seed: SeedLike = None
) -> tuple[np.ndarray, dict]:
    """Apply one KADID/KADIS distortion and report its random draws.

    The image goes through the official wrapper: global min-max (``mapmm``) to float [0, 1], the
    distortion at the official level value, ``mapmm`` again, ``round(255 x)``.

    Args:
        image: uint8 RGB array (H, W, 3).
        type_id: 1..25 (see ``DISTORTIONS``).
        level: 1..5 (official level order, non-monotone for types 18 and 25).
        seed: int (e.g. from :func:`seed_for`), a ``numpy.random.Generator`` (consumed), or None.

    Returns:
        ``(distorted uint8 (H, W, 3), draws)``; ``draws`` is a JSON-serialisable dict of what was drawn
        (angle, shift, patch/block positions and colours; a short note for noise fields; the int seed
        for random types), empty for deterministic types.

    Raises:
        ValueError: bad type, level, seed, dtype or shape.
    """
    spec = _check(type_id, level)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise DgqaError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}")
    _check_shape(spec, image.shape)
    y, draws = _run(spec, Source.from_uint8(np.ascontiguousarray(image)), level, seed)
    return to_uint8(y), draws


def distort(image: np.ndarray, type_id: int, level: int, seed: SeedLike = None) -> np.ndarray:
    """Apply one KADID/KADIS distortion; see :func:`distort_with_draws`.

    Returns:
        uint8 array (H, W, 3).
    """
    return distort_with_draws(image, type_id, level, seed)[0]


def distort_float(
    image: np.ndarray, type_id: int, level: int, seed: SeedLike = None
) -> tuple[np.ndarray, dict]:
    """Float variant: any-range float RGB in, float32 RGB in [0, 1] out (output mapmm, no rounding).

    Useful for chaining distortions without intermediate 8-bit rounding.

    Returns:
        ``(float32 (H, W, 3) in [0, 1], draws)``.
    """
    spec = _check(type_id, level)
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        raise DgqaError(f"image must be a float array, got {image.dtype}")
    _check_shape(spec, image.shape)
    y, draws = _run(spec, Source.from_float(image), level, seed)
    from .common import mapmm

    return mapmm(np.ascontiguousarray(y, dtype=np.float32)), draws
