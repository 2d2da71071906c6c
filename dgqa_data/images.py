"""The one image decoder: any file Pillow opens -> 8-bit RGB, with a clear error naming the file.

Used by build's checks (the fast header check too), SPAQ's resize, synth, the training/scoring input
pipeline, the linear probe and predict, so an image is decoded the same way everywhere, and every
open, header-only ones included, goes through the one guard (:func:`opened`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from dgqa_data.errors import DgqaError


class ImageDecodeError(DgqaError):
    """An image that cannot be decoded (corrupt, not an image, or over the pixel safety limit)."""


def to_rgb8(img: Image.Image) -> Image.Image:
    """Mode-aware conversion to 8-bit RGB.

    16- and 32-bit integer modes (``I;16*``, ``I``) are scaled from their full range (a 16-bit
    grey PNG would otherwise clip to white); float images (``F``) are taken as [0, 1] when their
    maximum is at most 1, else as [0, 255]; palette, grey, alpha, CMYK, YCbCr and 1-bit images go
    through Pillow's conversion (alpha is dropped).
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            arr = arr * 255 if arr.size and arr.max() <= 1.0 else arr
        elif img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = arr / 257  # 0..65535 -> 0..255
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


@contextmanager
def opened(source: bytes | str | Path, name: str | None = None) -> Iterator[Image.Image]:
    """The one guarded way to open an image file or bytes: the header is read (call ``load()`` for the
    pixels, inside the ``with``), and every failure, a decompression bomb included, is an
    :class:`ImageDecodeError` naming the image.

    Args:
        source: encoded bytes or a file path.
        name: what to call it in an error (default: the path).
    """
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                limit = Image.MAX_IMAGE_PIXELS  # checked here too: warning filters are not thread-safe
                if limit and img.width * img.height > limit:
                    raise Image.DecompressionBombError(
                        f"Image size ({img.width * img.height} pixels) exceeds limit of {limit} pixels"
                    )
                yield img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(
            f"{label}: refused to decode: {err} (a huge or hostile image; raise PIL.Image.MAX_IMAGE_PIXELS "
            "if you trust it)"
        ) from None
    except (FileNotFoundError, DgqaError):
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"{label}: cannot decode the image: {err}") from None


def open_rgb(source: bytes | str | Path | Image.Image, name: str | None = None) -> Image.Image:
    """Decode ``source`` (encoded bytes, a file path or a PIL image) to an 8-bit RGB PIL image.

    Args:
        source: the image.
        name: what to call it in an error (default: the path).

    Raises:
        ImageDecodeError: naming the image: not an image, corrupt or truncated data, or more pixels
            than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    if isinstance(source, Image.Image):
        return to_rgb8(source)
    with opened(source, name) as img:
        img.load()
        return to_rgb8(img)
