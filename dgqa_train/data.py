"""The one input pipeline of training, scoring and prediction: dgqa datasets (local folders or Hub
ids) -> uint8 crops in DataLoader workers -> normalised on the device.

Training crops are drawn from a generator seeded by (seed, epoch, row index), test crops from one
seeded by (seed, the image's content hash), so every process of a distributed run, and any number of
dataloader workers, sees exactly the crops a single process would: evaluation numbers do not depend
on the world size, and an image's score does not depend on where it sits in the call. Batches stay
uint8 until :func:`to_model_input` (4x less worker-queue and host-to-device traffic than float32).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import zlib
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Sampler

from dgqa_data.errors import DgqaError
from dgqa_data.hub_folder import load_folder_or_hub
from dgqa_data.images import open_rgb
from dgqa_data.schema import type_id
from dgqa_data.specs import parse_spec
from dgqa_data.splits import group_keys


def default_workers() -> int:
    """DataLoader workers the machine can feed: min(4, CPU cores - 1)."""
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def load_iqa_dataset(
    spec: str,
    split: str | None = None,
    domains: Sequence[str | int] | None = None,
    streaming: bool = False,
    role: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of a dgqa dataset with images left encoded (decoded later, in workers).

    Args:
        spec: a local dataset folder or a Hub id, optionally ``"<spec>:<split>"``. The split is a
            split of the dataset (``hub/dgqa/livec:test``), or one of its published splits
            (:mod:`dgqa_data.splits`): ``split-03`` is seeded split 3 (00..09), its ``train`` part
            for a training load (``role`` None) and its ``test`` part otherwise;
            ``split-03-train`` / ``split-03-test`` name a part; any other column of the dataset's
            ``splits.csv`` (``official``, an imported ``user_<name>_<column>``) is named the same
            way, with an optional ``-train`` / ``-val`` / ``-test``. A dataset without
            ``splits.csv`` gets the seeded splits computed from its rows (the same ones).
        split: the split (same names); defaults to the only split, else ``train`` (with a note
            on stderr).
        domains: keep only these distortion types (names or ids).
        streaming: stream from the Hub instead of downloading.
        role: what the dataset is for (``"target"``, ``"evaluation"``): a dataset with several
            splits then needs one named, since no default is right (LIVEC's ``train`` holds the 7
            rater-training images, its ``test`` the 1,162 others); a published split gives its
            test part.
    """
    parsed = parse_spec(spec)
    path, split = parsed.path, split or parsed.split
    loaded = load_folder_or_hub(path, streaming=streaming, name=spec)
    if split is None:
        names = list(loaded.keys())
        if len(names) > 1 and role is not None:
            raise DgqaError(
                f"{role} dataset {path} has the splits {', '.join(names)}: name one, e.g. {path}:{names[-1]}"
            )
        split = names[0] if len(names) == 1 else ("train" if "train" in names else names[0])
        if len(names) > 1:
            print(
                f"note: {path}: using its {split!r} split (it has {', '.join(names)}); name one with {path}:SPLIT",
                file=sys.stderr,
            )
    if split in loaded:
        ds = loaded[split]
    else:  # a published split (splits.csv), or an unknown name: the error lists both kinds
        from dgqa_data.splits import select_split

        ds = select_split(loaded, path, split, role)
    features = ds.features  # None for some streamed datasets: checked per row later
    if features is not None and "image" not in features:
        raise DgqaError(f"{path}: no image column; not a dgqa dataset")
    if features is not None and not isinstance(features["image"], datasets.Image):
        raise DgqaError(
            f"{path} is index-only (image paths + sha256, no pixels): attach the images from your own "
            f"download first with `dgqa hydrate {path} --root YOUR_DOWNLOAD`"
        )
    if features is not None:
        ds = ds.cast_column("image", datasets.Image(decode=False))
    if domains:
        wanted = {type_id(d) for d in domains}
        ds = ds.filter(lambda t: t in wanted, input_columns="distortion_type")
    return ds


def decode_rgb(image: dict | Image.Image) -> Image.Image:
    """An undecoded ``{"bytes", "path"}`` image (or a PIL image) as 8-bit RGB
    (:func:`dgqa_data.images.open_rgb`: mode-aware, errors name the image)."""
    if isinstance(image, Image.Image):
        return open_rgb(image)
    if image.get("bytes") is not None:
        return open_rgb(image["bytes"], name=image.get("path") or "image")
    return open_rgb(image["path"])


def random_crops(
    img: Image.Image, size: int, n: int, rng: np.random.Generator, flip: bool = False
) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops as uint8 (n, size, size, 3); small images are
    upscaled (shorter side to ``size``) first."""
    w, h = img.size
    if min(w, h) < size:
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = img.size
    arr = np.asarray(img)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        crop = arr[y : y + size, x : x + size]
        out[i] = crop[:, ::-1] if flip and rng.random() < 0.5 else crop
    return out


def center_crop(img: Image.Image, size: int) -> np.ndarray:
    """The centre ``size`` x ``size`` crop as uint8 (size, size, 3); small images are upscaled
    (shorter side to ``size``) first."""
    w, h = img.size
    if min(w, h) < size:
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = img.size
    y, x = (h - size) // 2, (w - size) // 2
    return np.asarray(img.crop((x, y, x + size, y + size)))  # cropped before the copy out of PIL


def reference_groups(ds: Any) -> list[str]:
    """The reference image of every row: the grouping of the published splits
    (:func:`dgqa_data.splits.group_keys`: ``reference_id``, else the row's own ``image_id``)."""
    ids = ds["image_id"] if "image_id" in ds.column_names else [str(i) for i in range(len(ds))]
    refs = ds["reference_id"] if "reference_id" in ds.column_names else [None] * len(ids)
    return group_keys(refs, ids)


def split_by_reference(ds: Any, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices ``(train, held_out)``; whole reference images go to one side (no crop leaks).

    Rows are grouped by :func:`reference_groups`; ``ceil(fraction * groups)`` groups are held out,
    chosen by ``seed``.
    """
    keys = reference_groups(ds)
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise DgqaError(
            f"cannot hold out {fraction:.0%} by reference: the dataset has {len(groups)} reference image(s); "
            "pass --eval_fraction 0 or --eval_dataset"
        )
    n_eval = min(len(groups) - 1, max(1, math.ceil(fraction * len(groups))))
    held = set(np.random.default_rng(seed).permutation(len(groups))[:n_eval].tolist())
    held_keys = {groups[g] for g in held}
    train = [i for i, k in enumerate(keys) if k not in held_keys]
    evals = [i for i, k in enumerate(keys) if k in held_keys]
    return train, evals


class CropDataset(torch.utils.data.Dataset):
    """uint8 random crops of a dgqa dataset split with a label, keyed by ``(epoch, index)``.

    Args:
        ds: a split loaded with :func:`load_iqa_dataset` (images undecoded).
        crop_size: crop side in pixels.
        num_crops: crops per image; 1 returns (3, S, S), more returns (n, 3, S, S).
        train: random horizontal flips.
        label: ``"quality"`` (float; every row must have one) or ``"distortion_type"`` (int class).
        seed: base seed; the training crops of row ``i`` in epoch ``e`` come from ``(seed, e, i)``, the
            test crops (``train=False``) from ``(seed, 0, sha256 of the decoded pixels)``.
        name: how errors call the dataset (e.g. ``"evaluation dataset hub/dgqa/livec:test"``).

    The epoch travels with the key (see :class:`EpochSampler`), so persistent workers see new crops
    every epoch and an evaluation sampler always gets the crops of epoch 0.
    """

    def __init__(
        self,
        ds: datasets.Dataset,
        crop_size: int = 224,
        num_crops: int = 1,
        train: bool = True,
        label: str = "quality",
        seed: int = 0,
        name: str = "dataset",
    ):
        if label not in ds.column_names:
            raise DgqaError(f"{name} has no {label!r} column; columns: {ds.column_names}")
        self.ds = ds
        self.labels = list(ds[label])
        if label == "quality" and any(v is None for v in self.labels):
            missing = [i for i, v in enumerate(self.labels) if v is None]
            raise DgqaError(
                f"{name}: {len(missing)} of {len(self.labels)} row(s) have no quality label (first rows "
                f"{missing[:3]}); training and evaluating a regressor need labelled data"
            )
        if label == "quality" and train:
            bad = [i for i, v in enumerate(self.labels) if not quality_ok(v)]
            if bad:
                ids = list(ds.select(bad[:3])["image_id"]) if "image_id" in ds.column_names else bad[:3]
                raise DgqaError(
                    f"{name}: {len(bad)} row(s) have a quality that is not a number in [0, 1] (first rows "
                    f"{bad[:3]}: {ids}, quality {[self.labels[i] for i in bad[:3]]}); refused before training"
                )
        self.crop_size, self.num_crops, self.train, self.label = crop_size, num_crops, train, label
        self.seed = seed

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        img = decode_rgb(self.ds[index]["image"])
        rng = np.random.default_rng((self.seed, epoch, index if self.train else content_key(img)))
        x = torch.from_numpy(random_crops(img, self.crop_size, self.num_crops, rng, flip=self.train))
        x = x.permute(0, 3, 1, 2)
        dtype = torch.long if self.label == "distortion_type" else torch.float32
        return {
            "pixel_values": x[0] if self.num_crops == 1 else x,
            "labels": torch.tensor(self.labels[index], dtype=dtype),
            "index": torch.tensor(index, dtype=torch.long),
        }


def quality_ok(v: Any) -> bool:
    """A training label: a finite number in [0, 1]."""
    return v is not None and 0.0 <= v <= 1.0  # NaN compares false, +-inf is outside


def content_key(img: Image.Image) -> int:
    """The seed key of an image's test crops: the first 8 bytes of the sha256 of its decoded 8-bit RGB
    pixels and size, so the same image gets the same crops wherever it is (and in any encoding)."""
    digest = hashlib.sha256(f"{img.size}".encode() + img.tobytes()).digest()
    return int.from_bytes(digest[:8], "little")


class CentreCrops(torch.utils.data.Dataset):
    """The centre crop of every row of a :class:`CropDataset` (its labels and indices), keyed like it:
    the fixed view of the training set that per-epoch DRC computes features on."""

    def __init__(self, crops: CropDataset) -> None:
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index = key[1] if isinstance(key, tuple) else key
        img = decode_rgb(self.crops.ds[index]["image"])
        return {
            "pixel_values": torch.from_numpy(center_crop(img, self.crops.crop_size).copy()).permute(2, 0, 1),
            "labels": torch.tensor(self.crops.labels[index], dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.long),
        }


class StreamCrops(torch.utils.data.IterableDataset):
    """Streaming counterpart of :class:`CropDataset`: crops seeded by ``(seed, epoch, crc32(image_id))``.

    Args:
        ds: a streaming split from :func:`load_iqa_dataset`.
        crop_size: crop side.
        seed: base seed of the shuffle buffer and the crops.
        shuffle_buffer: rows held by the shuffle buffer.
    """

    def __init__(self, ds: Any, crop_size: int, seed: int, shuffle_buffer: int = 1000) -> None:
        super().__init__()
        self.ds, self.crop_size, self.seed, self.shuffle_buffer = ds, crop_size, seed, shuffle_buffer
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle and redraw crops for ``epoch``."""
        self.epoch = epoch

    def __iter__(self):
        ds = self.ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        ds.set_epoch(self.epoch)
        for row in ds:
            if not quality_ok(row["quality"]):
                raise DgqaError(f"row {row.get('image_id')!r}: quality {row['quality']} is not a number in [0, 1]")
            key = zlib.crc32(str(row["image_id"]).encode())
            rng = np.random.default_rng((self.seed, self.epoch, key))
            crops = random_crops(decode_rgb(row["image"]), self.crop_size, 1, rng, flip=True)
            yield {
                "pixel_values": torch.from_numpy(crops[0]).permute(2, 0, 1),
                "labels": torch.tensor(row["quality"], dtype=torch.float32),
                "index": torch.tensor(key, dtype=torch.long),
            }


class EpochSampler(Sampler):
    """The one sampler: yields ``(epoch, index)`` keys; the order is a function of ``(seed, epoch)``
    only, identical on every process and after a resume.

    Args:
        n: dataset length.
        seed: base seed of the shuffle.
        train: shuffle and follow :meth:`set_epoch`; False gives the fixed order and the fixed crops
            of epoch 0 however often it is iterated (test crops must not change between evaluations;
            Accelerate calls ``set_epoch`` on every pass over a prepared loader).
        lone_batch: the batch size, when the rows drawn change per epoch (:meth:`use_rows`): an epoch
            whose last batch would hold one image (BatchNorm cannot train on it) leaves out its last
            row; 0 never does (the loader's ``drop_last`` handles a fixed set).
    """

    def __init__(self, n: int, seed: int, train: bool = True, lone_batch: int = 0) -> None:
        self.n, self.seed, self.train, self.epoch = n, seed, train, 0
        self.rows: np.ndarray | None = None
        self.lone_batch = lone_batch

    def set_epoch(self, epoch: int) -> None:
        """Use the order (and crops) of ``epoch`` (training samplers only)."""
        if self.train:
            self.epoch = epoch

    def use_rows(self, rows: Sequence[int] | None) -> None:
        """Draw only ``rows`` (dataset indices) from now on; None draws every row."""
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        m = self.n if self.rows is None else len(self.rows)
        return m - int(self.lone_batch > 1 and m > 1 and m % self.lone_batch == 1)

    def __iter__(self):
        if not self.train:
            return ((0, i) for i in range(self.n))
        m = self.n if self.rows is None else len(self.rows)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(m)
        if self.rows is not None:
            order = self.rows[order]
        return ((self.epoch, i) for i in order[: len(self)].tolist())


class KeyedDataset(torch.utils.data.Dataset):
    """Rows of a map-style dataset fetched by :class:`EpochSampler` keys (the epoch is ignored): for
    inputs that do not depend on the epoch, e.g. cached features."""

    def __init__(self, rows: torch.utils.data.Dataset) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        return self.rows[key[1] if isinstance(key, tuple) else key]


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    seed: int,
    train: bool,
    num_workers: int,
    row_subsets: bool = False,
) -> DataLoader:
    """The DataLoader of every dgqa run: workers decode and crop, batches stay uint8,
    ``persistent_workers`` when there are workers (map-style data), ``pin_memory`` on CUDA.
    ``train`` shuffles per epoch; otherwise rows come in order with the same crops every pass.
    ``row_subsets``: each epoch draws rows chosen by :meth:`EpochSampler.use_rows` (per-epoch DRC)."""
    streaming = isinstance(dataset, torch.utils.data.IterableDataset)
    # A training batch of one image fails in every BatchNorm layer: such a last batch is dropped (it
    # holds another image each epoch, as the order is reshuffled).
    lone = train and not streaming and len(dataset) > 1 and batch_size > 1 and len(dataset) % batch_size == 1
    if lone and not row_subsets and int(os.environ.get("RANK", "0")) == 0:
        print(
            f"note: {len(dataset)} training images in batches of {batch_size} leave a last batch of one image, "
            "which BatchNorm cannot train on: it is dropped each epoch (a different image each time)",
            file=sys.stderr,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=None if streaming else EpochSampler(len(dataset), seed, train, batch_size if row_subsets else 0),
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0 and not streaming,
        drop_last=lone and not row_subsets,
    )


def norm_tensors(model: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A model's normalisation (``model.normalization``) as ``(3, 1, 1)`` tensors on ``device``."""
    mean, std = model.normalization
    return (
        torch.tensor(mean, dtype=torch.float32, device=device).view(3, 1, 1),
        torch.tensor(std, dtype=torch.float32, device=device).view(3, 1, 1),
    )


def to_model_input(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The one normalisation: uint8 ``(..., 3, S, S)`` crops -> ``(x / 255 - mean) / std`` float32.

    Inputs that are not uint8 (cached features) pass through unchanged. The result is always
    contiguous (NCHW): one memory layout for every batch, so kernels (chosen by shape and layout) do
    not depend on how a batch was assembled (crops arrive as permuted HWC views), and gradients match
    the parameters' layout (no DDP bucket copies).
    """
    if x.dtype != torch.uint8:
        return x
    return ((x.float().div_(255) - mean) / std).contiguous()
