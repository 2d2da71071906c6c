"""Compression distortions: 09 JPEG 2000 and 10 JPEG, round-tripped through Pillow in memory."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .common import F32, Source


def _roundtrip(image: np.ndarray, **save_kwargs) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, **save_kwargs)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=F32) * F32(1.0 / 255.0)


def jpeg2000(src: Source, ratio: float, rng, draws: dict) -> np.ndarray:
    """09 JPEG 2000 at compression ratio ``ratio`` (OpenJPEG via Pillow, irreversible 9/7 wavelet).

    ``quality_mode='rates'`` ratios are relative to raw 8-bit samples, like MATLAB's CompressionRatio.
    Other encoder options are OpenJPEG defaults (MATLAB's were not verified).
    """
    return _roundtrip(
        src.to_codec_uint8(),
        format="JPEG2000",
        irreversible=True,
        quality_mode="rates",
        quality_layers=[float(ratio)],
    )


def jpeg(src: Source, quality: float, rng, draws: dict) -> np.ndarray:
    """10 JPEG at IJG quality ``quality`` (libjpeg via Pillow, default 4:2:0 chroma subsampling)."""
    return _roundtrip(src.to_codec_uint8(), format="JPEG", quality=int(quality))
