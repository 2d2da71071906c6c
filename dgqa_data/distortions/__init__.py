"""The 25 KADID-10k / KADIS-700k synthetic distortions at their 5 official levels.

Follows ``reference/distortions.md``: float RGB in [0, 1], global min-max (``mapmm``) on input and
output, official level tables, MATLAB colour-space definitions and draw order, seeded per
(image, type, level) with :func:`seed_for`. Types 06 (colour quantization) and 15 (denoise) are
documented substitutes; see ``DISTORTIONS[t].note``.

Example:
    >>> from dgqa_data.distortions import distort, seed_for
    >>> out = distort(img, 3, 5, seed=seed_for("I01", 3, 5))
"""

from .api import distort, distort_float, distort_with_draws, seed_for
from .common import mapmm, tune_allocator
from .registry import DISTORTIONS, RANDOM_TYPES, DistortionSpec

__all__ = [
    "DISTORTIONS",
    "RANDOM_TYPES",
    "DistortionSpec",
    "distort",
    "distort_float",
    "distort_with_draws",
    "mapmm",
    "seed_for",
    "tune_allocator",
]
