"""One decoder for every mode Pillow opens: 8-bit RGB out, clear errors naming the image."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from dgqa_data.images import ImageDecodeError, open_rgb


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


GRADIENT = np.tile(np.linspace(0, 1, 64), (32, 1))  # 32 x 64, dark left, bright right


@pytest.mark.parametrize(
    "mode",
    ["L", "LA", "P", "RGBA", "1", "I;16", "I", "F", "CMYK", "RGB16"],
)
def test_every_mode_becomes_8bit_rgb_with_its_tones(mode):
    if mode == "I;16":
        img = Image.fromarray((GRADIENT * 65535).astype(np.uint16))  # a 16-bit grey PNG
        data = encode(img)
    elif (
        mode == "I"
    ):  # 32-bit integer image holding 16-bit values (how TIFF/PNG loaders often hand them over)
        img = Image.fromarray((GRADIENT * 65535).astype(np.int32), mode="I")
        data = encode(img, "TIFF")
    elif mode == "F":
        data = None
        img = Image.fromarray(GRADIENT.astype(np.float32), mode="F")
    elif mode == "RGB16":  # 48-bit RGB PNG
        ok, buf = cv2.imencode(".png", np.repeat((GRADIENT * 65535).astype(np.uint16)[..., None], 3, axis=2))
        data = buf.tobytes()
    elif mode == "CMYK":
        data = encode(Image.fromarray((GRADIENT * 255).astype(np.uint8)).convert("CMYK"), "JPEG", quality=95)
    else:
        grey = Image.fromarray((GRADIENT * 255).astype(np.uint8))
        data = encode(grey.convert(mode))
    out = open_rgb(data if data is not None else img, name="x.png")
    arr = np.asarray(out)
    assert out.mode == "RGB" and arr.shape == (32, 64, 3) and arr.dtype == np.uint8
    assert arr[:, :4].mean() < 40, mode  # dark stays dark: no all-white 16-bit image
    assert arr[:, -4:].mean() > 200, mode


def test_palette_with_transparency_and_alpha_are_dropped_not_blackened():
    img = Image.new("RGBA", (8, 8), (200, 100, 50, 0))
    arr = np.asarray(open_rgb(encode(img)))
    assert arr[0, 0].tolist() == [200, 100, 50]


def test_errors_name_the_image(monkeypatch, tmp_path):
    with pytest.raises(ImageDecodeError, match=r"^photo\.jpg: cannot decode the image"):
        open_rgb(b"not an image at all", name="photo.jpg")
    png = encode(Image.new("RGB", (64, 64), (1, 2, 3)))
    with pytest.raises(ImageDecodeError, match=r"cut\.png: cannot decode the image"):
        open_rgb(png[: len(png) // 2], name="cut.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 = 4096 > 2 x 1000: a "bomb"
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: refused to decode: .*4096 pixels"):
        open_rgb(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 pixels: over the limit, under twice it
    with pytest.raises(ImageDecodeError, match="refused to decode"):
        open_rgb(path)
