"""Cheap integrity checks on image bytes as shipped (no full decode)."""

from __future__ import annotations

import struct

from PIL import UnidentifiedImageError

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def check_image_bytes(data: bytes, full: bool = False) -> str | None:
    """Return ``None`` when ``data`` is a complete image, else the reason it is not.

    The fast path reads the header with Pillow and checks the format's end marker (PNG ``IEND``,
    JPEG ``EOI``, BMP declared size), which catches truncated downloads at ~copy speed.
    ``full=True`` additionally decodes every pixel.
    """
    from dgqa_data.images import ImageDecodeError, open_rgb, opened

    if not data:
        return "file is empty"
    try:
        if full:
            open_rgb(data)
        with opened(data) as im:  # the one guard: a decompression bomb is a reason, not a crash
            fmt = im.format
    except ImageDecodeError as err:
        if isinstance(err.__context__, UnidentifiedImageError):
            return "not a readable image (unknown or corrupt header)"
        return str(err).removeprefix("image: ")
    if fmt == "PNG" and not data.rstrip(b"\0").endswith(_PNG_END):
        return "truncated PNG (no IEND chunk at the end)"
    if fmt in ("JPEG", "MPO") and b"\xff\xd9" not in data[-64:]:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "BMP":
        declared = struct.unpack_from("<I", data, 2)[0]
        if declared and len(data) < declared:
            return f"truncated BMP ({len(data)} of {declared} bytes)"
    if data[:8] == _PNG_SIG and fmt != "PNG":
        return "corrupt PNG"
    return None
