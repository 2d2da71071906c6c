"""Import of the official DGQA classifier checkpoint (``kadis-700k_model_best.pth.tar``, a torchvision
ResNet-50 state dict) into an :class:`~dgqa_train.models.IQAModel`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.schema import NUM_CLASSES
from dgqa_train.backbones import IMAGENET_MEAN, IMAGENET_STD
from dgqa_train.models import IQAModel, ModelConfig, build_model

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

