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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dgqa_data.atomic import write_atomic
from dgqa_data.errors import DgqaError
from dgqa_train.data import center_crop, decode_rgb
from dgqa_train.models import IQAModel


def image_key(image: dict) -> str:
    """sha256 of an undecoded image's bytes (or of its file)."""
    if image.get("bytes") is not None:
        return hashlib.sha256(image["bytes"]).hexdigest()
    return hashlib.sha256(Path(image["path"]).read_bytes()).hexdigest()


class FeatureCache:
    """Features of one frozen backbone at one crop size, keyed by image sha256, in ``<folder>/<id>.npz``
    (``keys``: the sha256 hex digests, ``features``: one float32 row per key, in the order added).

    Held as one matrix and a key -> row index, so reading and extending it cost no per-image arrays.

    Args:
        folder: cache folder (created when first written).
        backbone_id: identifies the backbone, its weights and the crop (see :func:`backbone_id`).
    """

    def __init__(self, folder: str | Path, backbone_id: str):
        self.path = Path(folder) / f"{backbone_id}.npz"
        self._index: dict[str, int] = {}
        self._features: np.ndarray | None = None
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as data:
                self._index = {k: i for i, k in enumerate(data["keys"].tolist())}
                self._features = data["features"]

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """The features of ``keys`` (every one cached), as float32 ``(len(keys), D)``."""
        if self._features is None:
            raise KeyError(keys[0] if len(keys) else "no features cached")
        return self._features[[self._index[k] for k in keys]].astype(np.float32, copy=False)

    def update(self, keys: Sequence[str], feats: np.ndarray) -> None:
        """Add (or replace) features and rewrite the cache file atomically."""
        feats = np.asarray(feats)
        rows = [self._index.setdefault(k, len(self._index)) for k in keys]
        old = self._features
        grown = np.empty((len(self._index), feats.shape[1]), dtype=feats.dtype if old is None else old.dtype)
        if old is not None:
            grown[: len(old)] = old
        grown[rows] = feats
        self._features = grown
        keys = np.array(list(self._index), dtype="U64")
        write_atomic(self.path, lambda tmp: np.savez(tmp, keys=keys, features=grown))


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
    batch_size: int = 16,
    desc: str = "features",
    progress: bool = True,
    num_workers: int = 0,
) -> np.ndarray:
    """Pooled backbone features ``(len(ds), D)`` of the centre ``crop_size`` crop of every image.

    Every row's encoded bytes are hashed once; the backbone runs once per distinct image that is not
    in ``cache``. Images are decoded and cropped while the backbone runs on the previous batch: in
    ``num_workers`` DataLoader worker processes, or (0) in one background thread.

    Args:
        model: the model whose (frozen) backbone is run; put in eval mode here.
        ds: a split from :func:`~dgqa_train.data.load_iqa_dataset` (images undecoded).
        crop_size: centre-crop side (smaller images are upscaled first).
        cache: reuse and extend this cache.
        batch_size: images per forward pass. 16 rather than 32: on CPU the backbone runs faster per
            image on smaller batches (their activations stay in cache; EfficientNet-Lite0 at 160 px:
            about 1.3x at 16 and 1.6x at 8, benchmarks/feature_throughput.py); the features do not
            depend on it.
        desc: progress-bar label.
        progress: show a progress bar.
        num_workers: DataLoader worker processes decoding and cropping (0: a thread of this process).
    """
    images = ds.select_columns(["image"])  # rows are read one at a time: the bytes are never all in memory
    keys = [image_key(row["image"]) for row in images]
    if not keys:
        return np.zeros((0, model.feature_dim), np.float32)
    first: dict[str, int] = {}  # first row of every distinct image
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    todo_keys = [k for k in first if cache is None or k not in cache]
    model.eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in model.normalization)
    new: list[np.ndarray] = []
    bar = tqdm(total=len(todo_keys), desc=desc, unit="img", disable=not progress or not todo_keys)
    with torch.inference_mode():
        for crops in _crop_batches(images, [first[k] for k in todo_keys], crop_size, batch_size, num_workers):
            # NHWC uint8 -> NCHW float (channels_last strides, the faster layout on CPU), normalised in place
            x = crops.permute(0, 3, 1, 2).float().div_(255).sub_(mean).div_(std)
            new.append(model.forward_features(x).float().numpy())
            bar.update(len(crops))
    bar.close()
    feats = np.concatenate(new) if new else np.zeros((0, model.feature_dim), np.float32)
    if cache is None:
        row = {k: i for i, k in enumerate(todo_keys)}
        return feats[[row[k] for k in keys]].astype(np.float32, copy=False)
    if todo_keys:
        cache.update(todo_keys, feats)
    return cache.get(keys)


class _CropBatches(torch.utils.data.Dataset):
    """Item ``j``: the uint8 ``(B, S, S, 3)`` centre crops of the ``j``-th ``batch_size`` rows of
    ``rows`` (decoded wherever it is fetched: a worker process or a thread).

    With ``caught``, an item whose image cannot be decoded is the :class:`DgqaError` itself, raised
    again by the caller: an error crossing a DataLoader worker would otherwise come back wrapped in
    the worker's traceback instead of as the one line that names the image.
    """

    def __init__(
        self, images: Any, rows: Sequence[int], crop_size: int, batch_size: int, caught: bool = False
    ) -> None:
        self.images, self.rows, self.crop_size, self.batch_size = images, list(rows), crop_size, batch_size
        self.caught = caught

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, j: int) -> torch.Tensor | DgqaError:
        chunk = self.rows[j * self.batch_size : (j + 1) * self.batch_size]
        try:
            crops = [center_crop(decode_rgb(self.images[r]["image"]), self.crop_size) for r in chunk]
        except DgqaError as err:
            if self.caught:
                return err
            raise
        return torch.from_numpy(np.stack(crops))


def _crop_batches(
    images: Any, rows: Sequence[int], crop_size: int, batch_size: int, num_workers: int
) -> Iterator[torch.Tensor]:
    """uint8 ``(B, S, S, 3)`` batches of the centre crops of ``rows``, in order; the next ones are
    prepared while the caller works on the current one."""
    if num_workers > 0:
        batches = _CropBatches(images, rows, crop_size, batch_size, caught=True)
        for batch in torch.utils.data.DataLoader(batches, batch_size=None, num_workers=num_workers):
            if isinstance(batch, DgqaError):
                raise batch
            yield batch
        return
    batches = _CropBatches(images, rows, crop_size, batch_size)
    if not len(batches):
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dgqa-crops") as pool:
        pending = pool.submit(batches.__getitem__, 0)
        for j in range(len(batches)):
            batch = pending.result()
            if j + 1 < len(batches):
                pending = pool.submit(batches.__getitem__, j + 1)
            yield batch
