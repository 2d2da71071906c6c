"""IQA models: a backbone + a classification or regression head, its config, and safetensors
save/load (``config.json`` + ``model.safetensors``; nothing is unpickled).

Every model takes a float tensor ``(B, 3, H, W)`` that is already normalised with
``model.normalization`` (mean, std) and returns logits ``(B, num_outputs)`` for ``task="classify"``
or scores ``(B,)`` for ``task="regress"``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgqa_data.atomic import write_atomic
from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.schema import NUM_CLASSES
from dgqa_train.backbones import (
    FEATURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TransformersBackbone,
    backbone_from_hf_config,
    backbone_spec,
    build_backbone,
    processor_normalization,
    with_features,
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TASKS = ("classify", "regress")

# --------------------------------------------------------------------------------------------------
# IQA model
# --------------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Everything needed to rebuild an :class:`IQAModel`; saved as ``config.json``.

    Attributes:
        backbone: short name, transformers id or local path.
        task: ``"classify"`` (26-way domain classifier) or ``"regress"`` (quality score).
        num_outputs: head outputs; None -> 26 for classify, 1 for regress.
        pretrained: whether the backbone started from pretrained weights (informational after build).
        crop_size: training/testing crop size.
        features: ``"pooled"`` (the backbone's pooled output) or ``"multilevel"``
            (:class:`MultiLevelFeatures`).
        mean: per-channel normalisation mean (None -> from the backbone, else ImageNet).
        std: per-channel normalisation std (None -> from the backbone, else ImageNet).
        extra: free-form metadata; ``extra["hf_config"]`` holds the transformers backbone config.
    """

    backbone: str = "resnet50"
    task: str = "regress"
    num_outputs: int | None = None
    pretrained: bool = True
    crop_size: int = 224
    features: str = "pooled"
    mean: list[float] | None = None
    std: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DgqaError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.features not in FEATURES:
            raise DgqaError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.num_outputs is None:
            self.num_outputs = NUM_CLASSES if self.task == "classify" else 1
        if int(self.num_outputs) < 1:
            raise DgqaError(f"num_outputs must be >= 1, got {self.num_outputs}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                value = [float(v) for v in value]
                if len(value) != 3:
                    raise DgqaError(f"{name} must have 3 values (RGB), got {value}")
                setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys and values of the wrong type raise a clear error."""
        if not isinstance(data, Mapping):
            raise DgqaError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise DgqaError(
                f"unknown ModelConfig keys {sorted(map(str, unknown))}; expected a subset of {sorted(known)}"
            )
        for key, value in data.items():
            if not _CONFIG_TYPES[key](value):
                raise DgqaError(f"model config key {key!r} has the wrong type or value: {value!r}")
        return cls(**dict(data))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelConfig:
        """Read a JSON file written by :meth:`save` (a file that is not one is a :class:`DgqaError` naming it)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, DgqaError) as err:
            raise DgqaError(f"{path}: not a valid dgqa model config: {err}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_rgb(v: Any) -> bool:
    return v is None or (
        isinstance(v, list) and len(v) == 3
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    )  # fmt: skip


#: What each ``config.json`` key may hold (a file edited by hand is checked before anything is built).
_CONFIG_TYPES: dict[str, Any] = {
    "backbone": lambda v: isinstance(v, str) and bool(v),
    "task": lambda v: isinstance(v, str),
    "num_outputs": lambda v: v is None or (_is_int(v) and v >= 1),
    "pretrained": lambda v: isinstance(v, bool),
    "crop_size": lambda v: _is_int(v) and v >= 1,
    "features": lambda v: isinstance(v, str),
    "mean": _is_rgb,
    "std": _is_rgb,
    "extra": lambda v: isinstance(v, dict),
}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


class IQAModel(nn.Module):
    """Backbone + linear head.

    ``task="classify"``: ``Linear(feature_dim, 26)`` named ``classify`` (as in the official DGQA
    checkpoint), output logits ``(B, 26)``. ``task="regress"``: ``Linear(feature_dim, 1)`` named
    ``regress``, output ``(B,)``.

    Args:
        backbone: module mapping ``(B, 3, H, W)`` to ``(B, feature_dim)``.
        feature_dim: backbone output width.
        config: the model config (task, outputs, normalisation, ...).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(feature_dim)
        self.config = config
        head = nn.Linear(self.feature_dim, int(config.num_outputs or 1))
        self._head_name = config.task  # "classify" or "regress"
        self.add_module(self._head_name, head)

    @property
    def head(self) -> nn.Linear:
        """The linear head (``self.classify`` or ``self.regress``)."""
        return getattr(self, self._head_name)

    @property
    def task(self) -> str:
        """``"classify"`` or ``"regress"``."""
        return self.config.task

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` the inputs must be normalised with (on [0, 1] RGB)."""
        mean = self.config.mean if self.config.mean is not None else IMAGENET_MEAN
        std = self.config.std if self.config.std is not None else IMAGENET_STD
        return tuple(mean), tuple(std)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, feature_dim)``."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise DgqaError(
                f"expected a normalised float tensor (B, 3, H, W), got shape {tuple(pixel_values.shape)}"
            )
        return self.backbone(pixel_values)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_outputs)`` (classify) or scores ``(B,)`` (regress with one output)."""
        out = self.head(self.forward_features(pixel_values))
        if self.task == "regress" and out.shape[-1] == 1:
            out = out.squeeze(-1)
        return out


def build_model(config: ModelConfig | str, pretrained: bool | None = None, **kwargs: Any) -> IQAModel:
    """Build an :class:`IQAModel`.

    Args:
        config: a :class:`ModelConfig`, or a backbone name with ``kwargs`` as the other ModelConfig fields.
        pretrained: override ``config.pretrained``.
        **kwargs: ModelConfig fields when ``config`` is a string.

    Returns:
        The model; its config records the resolved normalisation and the transformers backbone config.
    """
    if isinstance(config, str):
        config = ModelConfig(backbone=config, **kwargs)
    elif kwargs:
        raise TypeError("keyword arguments are only accepted with a backbone name, not a ModelConfig")
    use_pretrained = config.pretrained if pretrained is None else pretrained
    backbone, dim = build_backbone(config.backbone, pretrained=use_pretrained, image_size=config.crop_size)
    extra = dict(config.extra)
    if isinstance(backbone, TransformersBackbone):
        extra["hf_config"] = backbone.config.to_dict()
    backbone, dim = with_features(backbone, dim, config.features)
    mean, std = config.mean, config.std
    spec = backbone_spec(config.backbone)
    found: tuple[Any, Any] | None = None
    if use_pretrained and spec is not None and spec.mean is not None:
        found = (spec.mean, spec.std)
    elif use_pretrained and spec is None and (mean is None or std is None):
        found = processor_normalization(config.backbone)
    if found is not None:
        mean = found[0] if mean is None else mean
        std = found[1] if std is None else std
    resolved = ModelConfig(
        backbone=config.backbone,
        task=config.task,
        num_outputs=config.num_outputs,
        pretrained=use_pretrained,
        crop_size=config.crop_size,
        features=config.features,
        mean=list(mean) if mean is not None else list(IMAGENET_MEAN),
        std=list(std) if std is not None else list(IMAGENET_STD),
        extra=extra,
    )
    return IQAModel(backbone, dim, resolved)


def save_model(model: IQAModel, directory: str | os.PathLike[str]) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Returns:
        The directory.
    """
    from safetensors.torch import save_model as st_save_model

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    if isinstance(model.backbone, TransformersBackbone):
        config.extra["hf_config"] = model.backbone.config.to_dict()
    meta = {"format": "pt", "task": config.task, "backbone": config.backbone}
    write_atomic(out / WEIGHTS_NAME, lambda tmp: st_save_model(model, str(tmp), metadata=meta))
    config.save(out / CONFIG_NAME)
    return out


def load_model(directory: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> IQAModel:
    """Rebuild a model written by :func:`save_model`; needs no pretrained weights and no Hub access.

    Args:
        directory: folder with ``config.json`` and ``model.safetensors``.
        map_location: device to load the weights to.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model as st_load_model

    folder = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise MissingInputError(
                f"{folder / name} not found: not a folder written by dgqa_train.models.save_model"
            )
    config = ModelConfig.load(folder / CONFIG_NAME)
    hf_config = config.extra.get("hf_config")
    if hf_config is not None:
        backbone: nn.Module = backbone_from_hf_config(hf_config)
        dim = backbone.feature_dim
    elif backbone_spec(config.backbone) is not None:
        backbone, dim = build_backbone(config.backbone, pretrained=False, image_size=config.crop_size)
    else:
        raise DgqaError(
            f"{folder / CONFIG_NAME}: backbone {config.backbone!r} is not a short name and config.extra has no "
            "'hf_config' to rebuild it from"
        )
    backbone, dim = with_features(backbone, dim, config.features)
    model = IQAModel(backbone, dim, config)
    try:
        missing, unexpected = st_load_model(
            model, str(folder / WEIGHTS_NAME), strict=False, device=str(map_location)
        )
    except (SafetensorError, RuntimeError, OSError) as err:  # truncated, tampered or another model's weights
        first = str(err).strip().splitlines()
        detail = next((line.strip() for line in first if "mismatch" in line), first[0] if first else type(err).__name__)
        raise DgqaError(f"{folder / WEIGHTS_NAME}: cannot load the weights ({detail})") from None
    if missing or unexpected:
        raise DgqaError(
            f"{folder / WEIGHTS_NAME} does not match the model in {CONFIG_NAME}: "
            f"missing {sorted(missing)[:20]}, unexpected {sorted(unexpected)[:20]}"
        )
    return model


