"""The library versions that produce a number (recorded in scores, selections and reports)."""

from __future__ import annotations

from importlib import metadata

PACKAGES = ("dgqa", "torch", "transformers", "accelerate", "datasets", "numpy", "scipy", "pillow")


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (no import of torch) and Pillow's JPEG / JPEG 2000 codecs."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    from PIL import features

    turbo = features.version_feature("libjpeg_turbo")
    out["jpeg codec"] = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version_codec('jpg')}"
    out["jpeg2000 codec"] = f"openjpeg {features.version_codec('jpg_2000')}"
    return out
