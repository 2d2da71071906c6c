"""Frozen-backbone features, extracted once and cached: the one feature path of ``dgqa probe`` and of
``train-classifier --freeze_backbone``.

Features are those of the centre crop of every image, pooled by the model's backbone
(:meth:`~dgqa_train.models.IQAModel.forward_features`). The cache holds one backbone at one crop size
(:func:`backbone_id`) per file, keyed by the sha256 of each image's encoded bytes, so a subset of a
dataset whose features are known costs nothing, and runs of several seeds share one cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dgqa_train.data import center_crop, decode_rgb
from dgqa_train.models import IQAModel


def image_key(image: dict) -> str:
    """sha256 of an undecoded image's bytes (or of its file)."""
    if image.get("bytes") is not None:
        return hashlib.sha256(image["bytes"]).hexdigest()
    return hashlib.sha256(Path(image["path"]).read_bytes()).hexdigest()


class FeatureCache:
    """Features of one frozen backbone at one crop size, keyed by image sha256, in ``<folder>/<id>.npz``.

    Args:
        folder: cache folder (created when first written).
        backbone_id: identifies the backbone, its weights and the crop (see :func:`backbone_id`).
    """

    def __init__(self, folder: str | Path, backbone_id: str):
        self.path = Path(folder) / f"{backbone_id}.npz"
        self._feats: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as data:
                self._feats = dict(zip(data["keys"].tolist(), data["features"]))

    def __contains__(self, key: str) -> bool:
        return key in self._feats

    def __len__(self) -> int:
        return len(self._feats)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return np.stack([self._feats[k] for k in keys]).astype(np.float32)

    def update(self, keys: Sequence[str], feats: np.ndarray) -> None:
        """Add features and rewrite the cache file atomically."""
        self._feats.update(zip(keys, feats))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}.npz")
        np.savez(
            tmp, keys=np.array(list(self._feats), dtype="U64"), features=np.stack(list(self._feats.values()))
        )
        tmp.replace(self.path)


def backbone_id(model: IQAModel, crop_size: int) -> str:
    """A short id of (backbone config, pretrained flag, normalisation, crop size) for the cache."""
    cfg = model.config
    data = [
        cfg.backbone,
        cfg.pretrained,
        cfg.features,
        list(model.normalization),
        crop_size,
        cfg.extra.get("hf_config"),
    ]
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{Path(cfg.backbone).name}-{cfg.features}-{crop_size}-{digest}"


def extract_features(
    model: IQAModel,
    ds: Any,
    crop_size: int,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    desc: str = "features",
    progress: bool = True,
) -> np.ndarray:
    """Pooled backbone features ``(len(ds), D)`` of the centre ``crop_size`` crop of every image.

    Args:
        model: the model whose (frozen) backbone is run; put in eval mode here.
        ds: a split from :func:`~dgqa_train.data.load_iqa_dataset` (images undecoded).
        crop_size: centre-crop side (smaller images are upscaled first).
        cache: reuse and extend this cache.
        batch_size: images per forward pass.
        desc: progress-bar label.
        progress: show a progress bar.
    """
    images = ds.select_columns(["image"])  # rows are read one at a time: the bytes are never all in memory
    keys = [image_key(row["image"]) for row in images]
    first: dict[str, int] = {}  # first row of every distinct image
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    todo_keys = [k for k in first if cache is None or k not in cache]
    model.eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in model.normalization)
    new: list[np.ndarray] = []
    bar = tqdm(total=len(todo_keys), desc=desc, unit="img", disable=not progress or not todo_keys)
    with torch.inference_mode():
        for start in range(0, len(todo_keys), batch_size):
            chunk = todo_keys[start : start + batch_size]
            crops = np.stack([center_crop(decode_rgb(images[first[k]]["image"]), crop_size) for k in chunk])
            x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255)
            new.append(model.forward_features((x - mean) / std).float().numpy())
            bar.update(len(chunk))
    bar.close()
    feats = np.concatenate(new) if new else np.zeros((0, model.feature_dim), np.float32)
    if cache is None:
        lookup = dict(zip(todo_keys, feats))
        return np.stack([lookup[k] for k in keys]).astype(np.float32)
    if todo_keys:
        cache.update(todo_keys, feats)
    return cache.get(keys)
