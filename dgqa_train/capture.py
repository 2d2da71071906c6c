"""Capture augmentation of the domain classifier's inputs: what a camera does last.

Authentic photos reach a target set after a camera pipeline and a JPEG encoder; KADIS-style training
images do not. A classifier that has only seen clean encodes reads the capture's JPEG blocking and
resampling as distortion types of their own (JPEG, JPEG2000, colour diffusion, ...). With this
augmentation every training (and held-out) image is, after its synthetic distortion, optionally
resized by a drawn factor and then JPEG-encoded at a drawn quality, so the classifier learns the
distortion under a capture, as it will meet it. Off by default (the paper's recipe has none).

Draws are seeded by (seed, stream, row): the same on any machine and process count, and the
augmented image is stored as its JPEG bytes, so frozen-backbone features are cached by content.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from dgqa_data.errors import DgqaError
from dgqa_data.images import open_rgb

#: Streams of draws: the training set and the held-out set never share a draw.
TRAIN_STREAM, HELDOUT_STREAM = 0, 1


def parse_range(text: str | None, what: str, low: float, high: float, whole: bool) -> tuple[float, float] | None:
    """``"LO-HI"`` (or one value) -> ``(LO, HI)`` inside ``[low, high]``; None for None or ``""``."""
    if text is None or str(text).strip() == "":
        return None
    number = r"\d+" if whole else r"\d+(?:\.\d*)?|\.\d+"
    m = re.fullmatch(rf"\s*({number})\s*(?:-\s*({number})\s*)?", str(text))
    if not m:
        raise DgqaError(f"{what} must be LO-HI (e.g. {'50-95' if whole else '0.5-1.0'}), got {text!r}")
    lo = float(m.group(1))
    hi = float(m.group(2) or m.group(1))
    if not low <= lo <= hi <= high:
        raise DgqaError(f"{what} must satisfy {low:g} <= LO <= HI <= {high:g}, got {text!r}")
    return lo, hi


@dataclass(frozen=True)
class CaptureAugment:
    """JPEG at a quality drawn from ``jpeg`` (inclusive), after an optional resize by a factor drawn
    from ``resize`` (bicubic; the image keeps that size, as a downscaled capture would), applied to a
    drawn ``share`` of the images (the others keep their bytes: a classifier that meets both reads a
    capture-free target, e.g. a synthetic one, as well as a camera's)."""

    jpeg: tuple[float, float]
    resize: tuple[float, float] | None = None
    seed: int = 0
    share: float = 1.0

    @classmethod
    def from_flags(
        cls, jpeg: str | None, resize: str | None, seed: int, share: float = 1.0
    ) -> CaptureAugment | None:
        """The augmentation of ``--capture_jpeg 50-95 [--capture_resize 0.5-1] [--capture_share 0.5]``;
        None when off."""
        q = parse_range(jpeg, "--capture_jpeg", 1, 100, whole=True)
        r = parse_range(resize, "--capture_resize", 0.05, 1.0, whole=False)
        if not 0.0 < share <= 1.0:
            raise DgqaError(f"--capture_share must be in (0, 1], got {share}")
        if q is None:
            if r is not None:
                raise DgqaError("--capture_resize needs --capture_jpeg (the resize happens before the JPEG)")
            if share != 1.0:
                raise DgqaError("--capture_share needs --capture_jpeg")
            return None
        return cls(jpeg=q, resize=r, seed=seed, share=float(share))

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, data: bytes | str, row: int, stream: int, name: str = "image") -> bytes:
        """The captured version of one encoded image (or image file): its JPEG bytes, or its own
        bytes when the row falls outside the captured share."""
        rng = np.random.default_rng((self.seed, stream, row))
        scale = rng.uniform(*self.resize) if self.resize is not None else 1.0
        quality = int(rng.integers(int(self.jpeg[0]), int(self.jpeg[1]) + 1))
        if self.share < 1.0 and rng.random() >= self.share:  # drawn last: share 1 keeps the draws above
            if isinstance(data, bytes):
                return data
            with open(data, "rb") as f:
                return f.read()
        img = open_rgb(data, name=name)
        if self.resize is not None:
            w, h = img.size
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    def dataset(self, ds: Any, stream: int) -> Any:
        """``ds`` (a datasets split with an undecoded ``image`` column) with every image captured."""
        from datasets.fingerprint import Hasher

        def capture(row: dict[str, Any], index: int) -> dict[str, Any]:
            image = row["image"]
            data = image["bytes"] if image.get("bytes") is not None else image["path"]
            name = image.get("path") or f"row {index}"
            return {"image": {"bytes": self.apply(data, index, stream, name=name), "path": None}}

        fingerprint = Hasher.hash([getattr(ds, "_fingerprint", None), self.describe(), stream])
        return ds.map(
            capture,
            with_indices=True,
            new_fingerprint=fingerprint,
            desc="capture augmentation",
        )
