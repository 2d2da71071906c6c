"""Per-epoch DRC (``dgqa train --drc_per_epoch``): SynDR-IQA's density-aware redundant-cluster
downsampling re-run at the start of every epoch on the features of the model being trained.

Each epoch, the pooled backbone features (:meth:`~dgqa_train.models.IQAModel.forward_features`) of
the centre crop of every training row (eval mode, no grad; each process computes its share, gathered
exactly by :func:`~dgqa_train.evaluate.predict_batches`) feed :func:`dgqa_data.curate.drc` with the
rows' ``quality`` labels, seeded by ``(seed, epoch)``; the epoch's sampler then draws only the kept
rows. Every process runs DRC on the same gathered arrays, and the kept sets are compared across
processes before training on them. A checkpoint taken mid-epoch stores the epoch's dropped rows (the
model that chose them is gone by then), so a resume draws the very rows of the interrupted epoch;
an epoch that starts after a resume recomputes them from the restored model, as the uninterrupted run
did. Cost: one forward pass over the training set per epoch.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import torch

from dgqa_data.curate import drc, normalise_labels
from dgqa_data.errors import DgqaError
from dgqa_train.data import CentreCrops, CropDataset, EpochSampler, make_loader, norm_tensors
from dgqa_train.evaluate import predict_batches
from dgqa_train.models import IQAModel


class _Features(torch.nn.Module):
    """``model.forward_features`` as a module's forward (what :func:`predict_batches` runs)."""

    def __init__(self, model: IQAModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(pixel_values)


def kept_digest(kept: np.ndarray) -> str:
    """The first 16 hex digits of the sha256 of the kept row indices (int64, ascending)."""
    return hashlib.sha256(np.asarray(kept, dtype="<i8").tobytes()).hexdigest()[:16]


def loader_sampler(loader: Any) -> EpochSampler:
    """The :class:`~dgqa_train.data.EpochSampler` behind a training loader, prepared or not."""
    obj = loader
    for _ in range(4):  # DataLoader -> BatchSampler (-> Accelerate's BatchSamplerShard -> BatchSampler)
        if isinstance(getattr(obj, "sampler", None), EpochSampler):
            return obj.sampler
        obj = getattr(obj, "batch_sampler", None)
    raise RuntimeError(f"no EpochSampler behind the training loader {type(loader).__name__}")


class EpochDrc:
    """Chooses each epoch's training rows (the ``pick_rows`` of :func:`dgqa_train.loop.fit`).

    Args:
        accelerator: the run's Accelerator; the centre-crop loader is prepared here.
        model: the unwrapped model being trained (its parameters, not a copy).
        crops: the training :class:`~dgqa_train.data.CropDataset` (rows, labels, crop size).
        sampler: the training loader's :class:`~dgqa_train.data.EpochSampler`.
        config: the run's settings (``drc_*``, ``seed``, batch sizes, workers).

    Raises:
        CurationError: the labels cannot be normalised (e.g. all equal), before any training.
    """

    def __init__(
        self, accelerator: Any, model: IQAModel, crops: CropDataset, sampler: EpochSampler, config: Any
    ) -> None:
        self.accelerator, self.model, self.sampler, self.seed = accelerator, model, sampler, config.seed
        self.labels = np.asarray(crops.labels, dtype=np.float64)
        normalise_labels(self.labels, "training set quality (--drc_per_epoch)")
        cols = crops.ds.column_names
        self.types = np.asarray(crops.ds["distortion_type"]) if "distortion_type" in cols else None
        self.options = {"sim": config.drc_sim, "label_gap": config.drc_label_gap,
                        "max_cluster": config.drc_max_cluster, "keep": config.drc_keep}  # fmt: skip
        batch = config.eval_batch_size or config.batch_size
        self.loader = accelerator.prepare(
            make_loader(CentreCrops(crops), batch, config.seed, False, config.num_workers)
        )
        self.mean, self.std = norm_tensors(model, accelerator.device)

    def __call__(self, epoch: int, saved: dict[str, Any] | None) -> dict[str, Any]:
        """Choose (or, on a mid-epoch resume, take back from ``saved``) the rows of ``epoch``, hand
        them to the sampler, and return what a checkpoint keeps of them."""
        kept, state = (self.restore(epoch, saved), saved) if saved is not None else self.choose(epoch)
        self.sampler.use_rows(kept)
        return state

    def features(self) -> np.ndarray:
        """float32 ``(N, D)`` features of every training row, identical on every process."""
        index, feats, _ = predict_batches(
            _Features(self.model), self.loader, self.mean, self.std, self.accelerator, dtype=torch.float32
        )
        if not np.array_equal(index, np.arange(len(self.labels))):
            raise RuntimeError(
                f"per-epoch DRC gathered {index.size} feature rows for {len(self.labels)} rows"
            )
        return feats

    def choose(self, epoch: int) -> tuple[np.ndarray, dict[str, Any]]:
        """DRC on the current model's features: the kept rows and the state to checkpoint."""
        tic = time.perf_counter()
        result = drc(self.features(), self.labels, types=self.types, seed=[self.seed, epoch],
                     where="training set", **self.options)  # fmt: skip
        self.check_same(result.kept)
        rep = result.report
        record = {
            key: rep[key] for key in ("rows", "kept", "clusters", "rows_in_clusters", "thinned_clusters")
        }
        record["kept_sha256"] = kept_digest(result.kept)
        if "kept_per_type" in rep:
            record["kept_per_type"] = rep["kept_per_type"]
        record["time_s"] = round(time.perf_counter() - tic, 3)
        self.accelerator.print(
            f"epoch {epoch + 1}: DRC keeps {record['kept']} of {record['rows']} rows "
            f"({record['clusters']} redundant clusters, {record['rows_in_clusters']} rows in them)"
        )
        dropped = np.setdiff1d(np.arange(len(self.labels)), result.kept)
        return result.kept, {"epoch": epoch, "dropped": dropped.tolist(), "record": {"drc": record}}

    def restore(self, epoch: int, saved: dict[str, Any]) -> np.ndarray:
        """The kept rows of a checkpoint's unfinished ``epoch`` (checked against their digest).

        Raises:
            DgqaError: the saved rows are for another epoch or set, malformed, or altered.
        """
        n = len(self.labels)
        record = saved.get("record", {}).get("drc", {}) if isinstance(saved.get("record"), dict) else {}
        if saved.get("epoch") != epoch or record.get("rows") != n:
            raise DgqaError(
                f"the checkpoint's per-epoch DRC rows (epoch_rows) are for epoch {saved.get('epoch')!r} (from 0) "
                f"of {record.get('rows')!r} rows, not epoch {epoch} of {n}"
            )
        dropped = saved.get("dropped")
        ok = isinstance(dropped, list) and all(isinstance(i, int) and 0 <= i < n for i in dropped)
        mask = np.ones(n, dtype=bool)
        if ok:
            mask[np.asarray(dropped, dtype=np.int64)] = False
        kept = np.flatnonzero(mask)
        if not ok or kept_digest(kept) != record.get("kept_sha256"):
            raise DgqaError(
                "the checkpoint's per-epoch DRC rows (epoch_rows) do not match their recorded digest"
            )
        return kept

    def check_same(self, kept: np.ndarray) -> None:
        """Refuse kept sets that differ between processes (a bug: they come from the same arrays)."""
        code = torch.tensor([kept.size, int(kept_digest(kept)[:15], 16)], device=self.accelerator.device)
        every = self.accelerator.gather(code.view(1, 2))
        if not bool((every == every[0]).all()):
            raise RuntimeError(f"per-epoch DRC kept different rows on different processes: {every.tolist()}")
