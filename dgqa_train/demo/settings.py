"""What decides a demo run: its photos, stages, arms and settings (``demo.json``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from dgqa_data import __version__
from dgqa_data.errors import DgqaError

SOURCE_PHOTOS = ("astronaut", "motorcycle", "hubble_deep_field", "retina")
HELDOUT_PHOTOS = ("immunohistochemistry",)
TARGET_PHOTOS = ("chelsea", "coffee", "rocket")
#: DDC's pool of new references. scikit-image ships no colour photo the demo leaves unused (its other
#: colour file, the stereo pair's right view, shows a source photo's scene), so the pool is tiles of its
#: greyscale photographs (grey copied to R, G and B), none of them used elsewhere in the demo.
POOL_PHOTOS = ("camera", "coins", "moon", "grass", "gravel", "brick")
MIN_TILE_STD = 8.0  # tiles flatter than this (grey levels) show no distortion and are skipped
#: Carried by every capture (JPEG at quality 50-95, milder than KADID JPEG level 1): not a family to find.
BACKGROUND = ("jpeg",)
#: The selection rules the demo measures; the first one's subset is ``dgqa/demo-sel-camera``.
DEMO_RULES = ("dgqa-corrected", "dgqa-vote")
#: The regressor arm of each rule's selection.
ARM_NAMES = {"dgqa-corrected": "selected", "dgqa-vote": "vote"}
#: The SynDR-IQA curation arms (``dgqa curate``): arm -> (operations, on the selected types?).
CURATED_ARMS = {
    "selected + drc": (("drc",), True),
    "all + drc": (("drc",), False),
    "selected + ddc": (("ddc",), True),
}
#: Every arm of the regressor comparison, in report order.
ARMS = ("selected", "vote", "oracle", "complement", "all", "random", *CURATED_ARMS)
#: The arms of ``--finetune`` (each one fine-tunes the backbone per seed: the costly part on a CPU).
FINETUNE_ARMS = ("selected", "oracle", "complement", "all")
SETTINGS_FILE = "demo.json"
#: ``--recipe``: the classifier's inputs; ``--classifier``: what of it trains.
RECIPES = ("capture", "mixed", "paper")
CLASSIFIERS = ("frozen", "finetune")


class DemoError(DgqaError):
    """A demo run that cannot start or continue (a clear message, no traceback)."""


@dataclass(frozen=True)
class DemoSettings:
    """What decides a demo's results (recorded in ``demo.json``; a rerun must match it)."""

    fast: bool = False
    seeds: int = 3
    backbone: str = "efficientnet-lite0"
    head: str = "ridge"
    finetune: bool = False
    recipe: str = "capture"
    classifier: str = "frozen"
    version: str = __version__

    def __post_init__(self) -> None:
        for name, allowed in (("recipe", RECIPES), ("classifier", CLASSIFIERS)):
            if getattr(self, name) not in allowed:
                raise DemoError(f"demo {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DemoSettings:
        """The settings a ``demo.json`` records; one added after it was written takes its default."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    @property
    def tile(self) -> int:
        """Side of the square reference tiles and of the crops the models see."""
        return 128 if self.fast else 160

    @property
    def tiles_across(self) -> int:
        """Each photo is resized so that its shorter side holds this many tiles."""
        return 2 if self.fast else 3

    @property
    def captures_per_tile(self) -> int:
        """Simulated captures of each target tile (several hundred targets keep the chance band narrow)."""
        return 16 if self.fast else 10

    @property
    def finetune_epochs(self) -> int:
        """Epochs of each ``--finetune`` arm (2 with ``--fast``: 2 seeds of it stay under 15 min on 2 CPU cores)."""
        return 2 if self.fast else 3

    @property
    def classifier_epochs(self) -> int:
        """A linear head on frozen features: 30 epochs; the backbone fine-tuned: 2 (1 with ``--fast``)."""
        if self.classifier == "finetune":
            return 1 if self.fast else 2
        return 30

    @property
    def classifier_training(self) -> dict[str, Any]:
        """How the classifier trains: ``frozen`` (a linear head on the frozen backbone's multilevel
        features, extracted once) or ``finetune`` (the whole backbone trained end to end: about 5 minutes
        per epoch and seed on 2 CPU cores at the default size, and recognises the distortions better)."""
        if self.classifier == "finetune":
            return {"freeze_backbone": False, "batch_size": 32, "lr": 3e-4}
        return {"freeze_backbone": True, "batch_size": 64, "lr": 1e-3}

    @property
    def classifier_options(self) -> dict[str, Any]:
        """The classifier recipe: ``paper`` (none of the below), ``capture`` (JPEG at quality 50-95 after
        the synthetic distortion, as every target capture ends, class-balanced loss weights and, for a
        frozen backbone, features centred per source photo) or ``mixed`` (the same, with half of the
        images, drawn, left uncaptured)."""
        if self.recipe == "paper":
            return {}
        share = 0.5 if self.recipe == "mixed" else 1.0
        options = {"capture_jpeg": "50-95", "capture_share": share, "balance_classes": True}
        return options | ({"centre_features": "folder"} if self.classifier == "frozen" else {})
