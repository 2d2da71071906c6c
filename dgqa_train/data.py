"""Input pipeline: dgqa datasets (local folders or Hub ids) -> normalised image crops for torch.

Crops are drawn from a generator seeded by (seed, epoch, row index), so every process of a
distributed run, and any number of dataloader workers, sees exactly the crops a single process
would: evaluation numbers do not depend on the world size.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.images import open_rgb
from dgqa_data.schema import type_id

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_iqa_dataset(
    spec: str,
    split: str | None = None,
    domains: Sequence[str | int] | None = None,
    streaming: bool = False,
    role: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of a dgqa dataset with images left encoded (decoded later, in workers).

    Args:
        spec: a local dataset folder or a Hub id, optionally ``"<spec>:<split>"`` (e.g.
            ``hub/dgqa/livec:test``).
        split: the split; defaults to the only split, else ``train`` (with a note on stderr).
        domains: keep only these distortion types (names or ids).
        streaming: stream from the Hub instead of downloading.
        role: what the dataset is for (``"target"``, ``"evaluation"``): a dataset with several
            splits then needs one named, since no default is right (LIVEC's ``train`` holds the 7
            rater-training images, its ``test`` the 1,162 others).
    """
    path = spec
    if not Path(spec).exists() and ":" in spec:
        path, spec_split = spec.rsplit(":", 1)
        split = split or spec_split
    try:
        loaded = datasets.load_dataset(path, streaming=streaming)
    except FileNotFoundError as err:  # also datasets' DatasetNotFoundError / DataFilesNotFoundError
        raise MissingInputError(
            f"dataset {spec}: neither a dataset folder with data files nor a Hub dataset reachable from here ({err})"
        ) from None
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
    if split not in loaded:
        raise DgqaError(f"{path} has no split {split!r}; it has {', '.join(loaded.keys())}")
    ds = loaded[split]
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
    return np.asarray(img)[y : y + size, x : x + size]


class CropDataset(torch.utils.data.Dataset):
    """Random crops of a dgqa dataset split, normalised, with a label.

    Args:
        ds: a split loaded with :func:`load_iqa_dataset` (images undecoded).
        crop_size: crop side in pixels.
        num_crops: crops per image; 1 returns (3, S, S), more returns (n, 3, S, S).
        train: random horizontal flips.
        label: ``"quality"`` (float) or ``"distortion_type"`` (int class).
        mean, std: normalisation of the backbone.
        seed: base seed; call :meth:`set_epoch` each epoch for new training crops.
        name: how errors call the dataset (e.g. ``"evaluation dataset hub/dgqa/livec:test"``).
    """

    def __init__(
        self,
        ds: datasets.Dataset,
        crop_size: int = 224,
        num_crops: int = 1,
        train: bool = True,
        label: str = "quality",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
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
        self.crop_size, self.num_crops, self.train, self.label = crop_size, num_crops, train, label
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        img = decode_rgb(self.ds[index]["image"])
        crops = random_crops(img, self.crop_size, self.num_crops, rng, flip=self.train)
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255)
        x = (x - self.mean) / self.std
        y = self.labels[index]
        target = torch.tensor(y, dtype=torch.long if self.label == "distortion_type" else torch.float32)
        return {
            "pixel_values": x[0] if self.num_crops == 1 else x,
            "labels": target,
            "index": torch.tensor(index, dtype=torch.long),
        }
