"""Train a blind-IQA quality regressor (backbone + Linear(feature_dim, 1)) with Accelerate.

Run as ``accelerate launch dgqa_train/train.py --train_dataset hub/dgqa/kadid10k --eval_datasets
hub/dgqa/livec:test ...``, as ``dgqa train ...`` or from Python with :func:`train`. Defaults follow
the SynDR-IQA recipe (see the design notes): ImageNet ResNet-50, L1 on ``quality`` in [0, 1],
lr 2e-5 backbone / 2e-4 head, weight decay 5e-4, batch 32, 24 epochs, one random 224 crop + flip
per image per epoch, test = mean over 5 seeded 224 crops, seed 123, last epoch reported.

The output folder is a loadable model (``load_model(output_dir)``) plus ``results.json``,
``train_config.json``, a model card ``README.md`` and ``checkpoints/`` for resuming.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script path (accelerate launch dgqa_train/train.py): this folder is sys.path[0], and its
    # data.py / evaluate.py / config.py would shadow the installed packages of those names.
    sys.path.pop(0)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Sampler  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from dgqa_data.errors import DgqaError, MissingInputError  # noqa: E402
from dgqa_data.paths import check_output, run_lock  # noqa: E402
from dgqa_train.checkpoints import STATE_FILE, latest_checkpoint, mark_complete  # noqa: E402
from dgqa_train.config import check_ranges, make_accelerator, parse_config, save_config  # noqa: E402
from dgqa_train.data import CropDataset, decode_rgb, load_iqa_dataset, random_crops  # noqa: E402
from dgqa_train.evaluate import METRIC_LABELS, evaluate_loader, json_safe, to_model_input  # noqa: E402
from dgqa_train.metrics import plcc_loss  # noqa: E402
from dgqa_train.models import IQAModel, ModelConfig, build_model, load_model, save_model  # noqa: E402

logger = logging.getLogger(__name__)

LOSSES = ("l1", "mse", "plcc")
OPTIMIZERS = ("adamw", "adam")
RESULTS_NAME = "results.json"
TRAIN_CONFIG_NAME = "train_config.json"
#: Fields that do not change what is trained or measured (left out of the config hash).
RUN_ONLY_FIELDS = (
    "output_dir",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "report_to",
    "num_workers",
    "log_every",
    "save_every_epochs",
    "push_to_hub",
    "hub_private",
)


@dataclass
class TrainConfig:
    """Regressor training run; every field is a ``--flag`` and a ``--config`` YAML/JSON key."""

    train_dataset: str | None = field(
        default=None,
        metadata={"help": "dataset folder or Hub id, optionally PATH:SPLIT (e.g. hub/dgqa/kadid10k)"},
    )
    domains: list[str] | None = field(
        default=None, metadata={"help": "keep only these distortion types (names or ids), e.g. 1 3 10 17"}
    )
    streaming: bool = field(
        default=False, metadata={"help": "stream the training set (Hub) instead of loading it"}
    )
    eval_datasets: list[str] = field(
        default_factory=list, metadata={"help": "datasets evaluated after every epoch, each PATH[:SPLIT]"}
    )
    backbone: str = field(
        default="resnet50",
        metadata={
            "help": "tiny-resnet, tiny-vit, resnet50, vit-b16, efficientnet-lite0 or a transformers id/path"
        },
    )
    pretrained: bool = field(
        default=True,
        metadata={
            "help": "pretrained (ImageNet) backbone weights (--pretrained, the default) or random ones (--no_pretrained)"
        },
    )
    init_model: str | None = field(
        default=None, metadata={"help": "start from a model folder written by dgqa (overrides --backbone)"}
    )
    loss: str = field(default="l1", metadata={"help": "l1 | mse | plcc (1 - Pearson over the batch)"})
    optimizer: str = field(
        default="adamw", metadata={"help": "adamw (decoupled decay) | adam (L2 decay, as the SynDR-IQA code)"}
    )
    lr_backbone: float = field(default=2e-5, metadata={"help": "learning rate of the backbone"})
    lr_head: float = field(default=2e-4, metadata={"help": "learning rate of the regression head"})
    weight_decay: float = field(default=5e-4, metadata={"help": "weight decay (all parameters)"})
    epochs: int = field(default=24, metadata={"help": "training epochs; 0 = evaluate only"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "images per process per forward pass"})
    eval_batch_size: int | None = field(
        default=None, metadata={"help": "images per eval batch (default batch_size)"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "forward passes per optimizer step"}
    )
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16"})
    crop_size: int = field(default=224, metadata={"help": "square crop side (train and test)"})
    test_crops: int = field(default=5, metadata={"help": "seeded crops averaged per test image"})
    seed: int = field(default=123, metadata={"help": "seed of init, shuffling and crops"})
    num_workers: int = field(
        default_factory=lambda: min(4, max(0, (os.cpu_count() or 1) - 1)),
        metadata={"help": "DataLoader workers per process (decode + crop); default: min(4, CPU cores - 1)"},
    )
    output_dir: str = field(
        default="runs/regressor", metadata={"help": "where model, results and checkpoints go"}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "discard checkpoints of an earlier run"}
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or 'latest' (starts fresh when there is none)"}
    )
    save_every_epochs: int = field(
        default=1, metadata={"help": "checkpoint every N epochs (0: only at the end)"}
    )
    log_every: int = field(default=50, metadata={"help": "log the running loss every N optimizer steps"})
    report_to: str = field(
        default="none", metadata={"help": "trackers: none, tensorboard, wandb, ... (comma list)"}
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "upload the trained model to this Hub repo id"}
    )
    hub_private: bool = field(default=False, metadata={"help": "create the Hub repo as private"})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise DgqaError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise DgqaError(f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("batch_size", "gradient_accumulation_steps", "crop_size", "test_crops"):
            if getattr(self, name) < 1:
                raise DgqaError(f"--{name} must be >= 1, got {getattr(self, name)}")
        check_ranges(
            self, epochs=(0, None), lr_backbone=(0, None), lr_head=(0, None), weight_decay=(0, None),
            max_steps=(1, None), eval_batch_size=(1, None), num_workers=(0, None), save_every_epochs=(0, None),
            log_every=(1, None),
        )  # fmt: skip
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise DgqaError(f"--mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.epochs > 0 and not self.train_dataset:
            raise DgqaError("--train_dataset is required to train (use --epochs 0 to only evaluate)")
        if self.epochs == 0 and not self.eval_datasets:
            raise DgqaError("--epochs 0 evaluates only, so it needs --eval_datasets")


def config_hash(config: TrainConfig) -> str:
    """Hash of everything that decides the trained weights and the metrics (not paths or logging)."""
    data = {k: v for k, v in asdict(config).items() if k not in RUN_ONLY_FIELDS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Input pipeline: decode + crop in DataLoader workers, uint8 to the device, normalise there
# --------------------------------------------------------------------------------------------------


class UInt8Crops(CropDataset):
    """:class:`~dgqa_train.data.CropDataset` that returns uint8 crops and takes ``(epoch, index)`` keys.

    The crops are exactly CropDataset's (same generator seeded by ``(seed, epoch, index)``); they are
    normalised on the device (:func:`to_model_input`), which moves 4x fewer bytes through worker
    queues and pinned memory. The epoch travels with the key, so persistent workers see new crops
    every epoch.
    """

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = np.random.default_rng((self.seed, epoch, index))
        img = decode_rgb(self.ds[index]["image"])
        crops = torch.from_numpy(random_crops(img, self.crop_size, self.num_crops, rng, flip=self.train))
        x = crops.permute(0, 3, 1, 2)
        dtype = torch.long if self.label == "distortion_type" else torch.float32
        return {
            "pixel_values": x[0] if self.num_crops == 1 else x,
            "labels": torch.tensor(self.labels[index], dtype=dtype),
            "index": torch.tensor(index, dtype=torch.long),
        }


class StreamCrops(torch.utils.data.IterableDataset):
    """Streaming counterpart of :class:`UInt8Crops`: crops seeded by ``(seed, epoch, crc32(image_id))``.

    Args:
        ds: a streaming split from :func:`~dgqa_train.data.load_iqa_dataset`.
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
            if row["quality"] is None:
                raise DgqaError(f"row {row.get('image_id')!r} has no quality label")
            key = zlib.crc32(str(row["image_id"]).encode())
            rng = np.random.default_rng((self.seed, self.epoch, key))
            crops = random_crops(decode_rgb(row["image"]), self.crop_size, 1, rng, flip=True)
            yield {
                "pixel_values": torch.from_numpy(crops[0]).permute(2, 0, 1),
                "labels": torch.tensor(row["quality"], dtype=torch.float32),
                "index": torch.tensor(key, dtype=torch.long),
            }


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys; the order is a function of ``(seed, epoch)`` only (resumable).

    Args:
        n: dataset length.
        seed: base seed of the shuffle.
        train: shuffle and follow :meth:`set_epoch`; False gives the fixed order and the fixed crops
            of epoch 0 however often it is iterated (test crops must not change between evaluations;
            Accelerate calls ``set_epoch`` on every pass over a prepared loader).
    """

    def __init__(self, n: int, seed: int, train: bool = True) -> None:
        self.n, self.seed, self.train, self.epoch = n, seed, train, 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order (and crops) of ``epoch`` (training samplers only)."""
        if self.train:
            self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if not self.train:
            return ((0, i) for i in range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return ((self.epoch, i) for i in torch.randperm(self.n, generator=g).tolist())


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    seed: int,
    train: bool,
    num_workers: int,
) -> DataLoader:
    """A DataLoader over :class:`UInt8Crops` / :class:`StreamCrops` that keeps the device busy.

    Workers decode and crop; batches stay uint8 (4x less shared memory and host-to-device traffic
    than float32); ``persistent_workers`` when there are workers (map-style data), ``pin_memory`` on
    CUDA. ``train`` shuffles per epoch; otherwise rows come in order with the same crops every pass.
    """
    streaming = isinstance(dataset, torch.utils.data.IterableDataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=None if streaming else EpochSampler(len(dataset), seed, train),
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0 and not streaming,
    )


def norm_tensors(model: IQAModel, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's normalisation as ``(3, 1, 1)`` tensors on ``device``."""
    mean, std = model.normalization
    return (
        torch.tensor(mean, dtype=torch.float32, device=device).view(3, 1, 1),
        torch.tensor(std, dtype=torch.float32, device=device).view(3, 1, 1),
    )


# --------------------------------------------------------------------------------------------------
# Model, optimizer, loss, checkpoint state
# --------------------------------------------------------------------------------------------------


def build_regressor(config: TrainConfig) -> IQAModel:
    """The model to train: ``--init_model`` if given, else backbone + a fresh Linear(feature_dim, 1)."""
    if config.init_model:
        model = load_model(config.init_model)
        if model.task != "regress":
            raise DgqaError(f"--init_model {config.init_model} is a {model.task} model, not a regressor")
        return model
    return build_model(
        ModelConfig(
            backbone=config.backbone, task="regress", pretrained=config.pretrained, crop_size=config.crop_size
        )
    )


def build_optimizer(model: IQAModel, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam(W) with two parameter groups: backbone (``lr_backbone``) and head (``lr_head``)."""
    groups = [
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": config.lr_backbone},
        {"params": list(model.head.parameters()), "lr": config.lr_head},
    ]
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, weight_decay=config.weight_decay)


def loss_fn(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss in float32."""
    pred, target = pred.float(), target.float()
    if name == "l1":
        return F.l1_loss(pred, target)
    if name == "mse":
        return F.mse_loss(pred, target)
    return plcc_loss(pred, target)


@dataclass
class TrainState:
    """Progress saved with every checkpoint as ``dgqa_state.json`` (model, optimizer and RNG states
    are saved by Accelerate and loaded with ``weights_only``: nothing in a checkpoint folder is
    unpickled as code)."""

    epoch: int = 0  # completed epochs
    global_step: int = 0  # optimizer steps
    batches_in_epoch: int = 0  # forward passes already done in an unfinished epoch
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, checkpoint: Path) -> TrainState:
        """The state in a checkpoint folder's ``dgqa_state.json``."""
        path = checkpoint / STATE_FILE
        if not path.is_file():
            raise MissingInputError(f"{checkpoint} is not a complete dgqa checkpoint (no {STATE_FILE})")
        data = json.loads(path.read_text())
        return cls(
            int(data["epoch"]), int(data["global_step"]), int(data["batches_in_epoch"]), list(data["history"])
        )


def _checkpoint_dir(output_dir: Path, resume: str | None) -> Path | None:
    if not resume:
        return None
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise MissingInputError(f"--resume_from_checkpoint {resume}: no such checkpoint folder")
        return path
    return latest_checkpoint(output_dir)  # the newest intact one: torn folders have no marker


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or, with ``epochs=0``, only evaluate) and write the output folder.

    The folder may not be an input; process 0 holds its lock for the whole run (a second run into
    it is refused).

    Returns:
        The ``results.json`` content (see :func:`results_dict`).
    """
    out = Path(config.output_dir)
    inputs = {"training dataset": config.train_dataset, "initial model": config.init_model}
    check_output(
        out, inputs | {f"eval dataset {i + 1}": s for i, s in enumerate(config.eval_datasets)}, "--output_dir"
    )
    with run_lock(out, main_process=int(os.environ.get("RANK", "0")) == 0):
        return _train(config, out)


def _train(config: TrainConfig, out: Path) -> dict[str, Any]:
    accelerator = make_accelerator(
        out, config.mixed_precision, config.gradient_accumulation_steps, config.report_to, config.seed
    )
    ckpt = _checkpoint_dir(out, config.resume_from_checkpoint)
    ckpt_root = out / "checkpoints"
    if ckpt is None and ckpt_root.is_dir() and any(ckpt_root.iterdir()):
        if not config.overwrite_output_dir:
            raise DgqaError(
                f"{ckpt_root} holds checkpoints of an earlier run: pass --resume_from_checkpoint latest "
                "or --overwrite_output_dir"
            )
        if accelerator.is_main_process:
            shutil.rmtree(ckpt_root)
        accelerator.wait_for_everyone()

    model = build_regressor(config)
    mean, std = norm_tensors(model, accelerator.device)
    eval_bs = config.eval_batch_size or config.batch_size
    eval_sets = {}
    for spec in config.eval_datasets:
        ds = load_iqa_dataset(spec, role="evaluation")
        crops = UInt8Crops(
            ds,
            config.crop_size,
            config.test_crops,
            train=False,
            seed=config.seed,
            name=f"evaluation dataset {spec}",
        )
        eval_sets[spec] = make_loader(crops, eval_bs, config.seed, False, config.num_workers)

    train_info: dict[str, Any] = {"dataset": config.train_dataset, "domains": config.domains, "images": None}
    train_dl = None
    if config.epochs > 0:
        ds = load_iqa_dataset(config.train_dataset, domains=config.domains, streaming=config.streaming)
        if config.streaming:
            data = StreamCrops(ds, config.crop_size, config.seed)
        else:
            data = UInt8Crops(
                ds,
                config.crop_size,
                1,
                train=True,
                seed=config.seed,
                name=f"training dataset {config.train_dataset}",
            )
            train_info["images"] = len(data)
            if "distortion_type" in ds.column_names:  # what the model saw, e.g. a DGQA-selected subset
                train_info["distortion_types"] = sorted({int(t) for t in ds["distortion_type"]})
            if len(data) == 0:
                raise DgqaError(
                    f"{config.train_dataset}: no training images (domains filter {config.domains})"
                )
        train_dl = make_loader(data, config.batch_size, config.seed, True, config.num_workers)

    optimizer = build_optimizer(model, config)
    model, optimizer = accelerator.prepare(model, optimizer)
    if train_dl is not None:
        train_dl = accelerator.prepare(train_dl)
    eval_sets = {k: accelerator.prepare(v) for k, v in eval_sets.items()}
    state = TrainState()
    if ckpt is not None:
        state = TrainState.load(ckpt)
        try:  # every file is read with weights_only: a pickle that asks to run code is refused
            accelerator.load_state(str(ckpt))
        except pickle.UnpicklingError as err:
            raise DgqaError(
                f"{ckpt}: refused to load a checkpoint file that is not plain tensors/values ({err})"
            ) from None
        except RuntimeError as err:  # files this run's objects cannot take (e.g. pickled custom objects)
            raise DgqaError(f"{ckpt}: cannot load this checkpoint: {str(err).splitlines()[0]}") from None
        if ckpt.name.split("_")[-1].isdigit():
            accelerator.project_configuration.iteration = int(ckpt.name.split("_")[-1]) + 1
        logger.info("resumed from %s at epoch %d, step %d", ckpt, state.epoch, state.global_step)
    if config.report_to not in (None, "", "none"):
        flat = {
            k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(config).items()
        }
        accelerator.init_trackers("dgqa-train", config=flat)

    def run_eval(epoch: int, **extra: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"epoch": epoch, "step": state.global_step, **extra, "eval": {}}
        for spec, dl in eval_sets.items():
            entry["eval"][spec] = evaluate_loader(accelerator.unwrap_model(model), dl, accelerator, mean, std)
            if accelerator.is_main_process:
                m = entry["eval"][spec]
                logger.info(
                    "epoch %d eval %s: SRCC %.4f PLCC %.4f KRCC %.4f RMSE %.4f PLCC(logistic4) %.4f",
                    epoch, spec, m["srcc"], m["plcc"], m["krcc"], m["rmse"], m["plcc_logistic4"],
                )  # fmt: skip
        entry["eval_time_s"] = round(time.perf_counter() - t0, 3)
        logs = {
            f"eval/{spec}/{k}": v
            for spec, m in entry["eval"].items()
            for k, v in m.items()
            if k != "warnings"
        }
        accelerator.log(
            {k: v for k, v in logs.items() if isinstance(v, (int, float))}, step=state.global_step
        )
        return entry

    if config.epochs == 0:
        state.history = [run_eval(0, train_loss=None)]
    done = False
    while train_dl is not None and state.epoch < config.epochs and not done:
        epoch = state.epoch
        t0 = time.perf_counter()
        train_dl.set_epoch(epoch)
        if isinstance(train_dl.dataset, StreamCrops):
            train_dl.dataset.set_epoch(epoch)
        loader = train_dl
        if state.batches_in_epoch:
            loader = accelerator.skip_first_batches(train_dl, state.batches_in_epoch)
        model.train()
        loss_sum = torch.zeros((), device=accelerator.device)  # stays on the device: no per-step host sync
        running = torch.zeros((), device=accelerator.device)
        batches = images = running_n = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            disable=not accelerator.is_local_main_process,
            total=None if config.streaming else len(train_dl) - state.batches_in_epoch,
        )
        for batch in bar:
            with accelerator.accumulate(model):
                pred = model(to_model_input(batch["pixel_values"], mean, std))
                loss = loss_fn(config.loss, pred, batch["labels"])
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            running += loss.detach()
            batches, images, running_n = batches + 1, images + batch["labels"].shape[0], running_n + 1
            state.batches_in_epoch += 1
            if accelerator.sync_gradients:
                state.global_step += 1
                if config.log_every and state.global_step % config.log_every == 0:
                    # the only host sync of the loop, every log_every steps
                    r = accelerator.reduce(running, "mean").item() / running_n
                    running.zero_()
                    running_n = 0
                    accelerator.log({"train/loss": r}, step=state.global_step)
                    if accelerator.is_main_process:
                        bar.set_postfix(loss=f"{r:.4f}", step=state.global_step)
                if config.max_steps and state.global_step >= config.max_steps:
                    done = True
                    break
        totals = torch.stack([loss_sum, loss_sum.new_tensor(batches), loss_sum.new_tensor(images)])
        loss_total, batches, images = accelerator.reduce(totals, "sum").tolist()
        partial = done and (config.streaming or state.batches_in_epoch < len(train_dl))
        if not partial:
            state.epoch, state.batches_in_epoch = epoch + 1, 0
        entry = run_eval(
            epoch + 1,
            train_loss=loss_total / batches if batches else None,
            train_images=int(images),
            train_time_s=round(time.perf_counter() - t0, 3),
            partial_epoch=partial,
        )
        accelerator.log({"train/epoch_loss": entry["train_loss"] or math.nan}, step=state.global_step)
        state.history.append(entry)
        bar.close()
        if accelerator.is_main_process and images:
            logger.info(
                "epoch %d: train loss %.5f, %.1f images/s", epoch + 1, entry["train_loss"] or math.nan,
                images / max(time.perf_counter() - t0, 1e-9),
            )  # fmt: skip
        last = done or state.epoch >= config.epochs
        if last or (config.save_every_epochs and state.epoch % config.save_every_epochs == 0):
            accelerator.save_state()
            mark_complete(accelerator, json_safe(asdict(state)))
        if accelerator.is_main_process and not last:
            _write_json(
                out / RESULTS_NAME, results_dict(config, state, accelerator.num_processes, train_info, False)
            )

    results = results_dict(config, state, accelerator.num_processes, train_info, True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        from dgqa_train.model_card import model_card, push_to_hub

        final = accelerator.unwrap_model(model)
        final.config.extra["dgqa_train"] = {"train_dataset": config.train_dataset, "domains": config.domains}
        save_model(final, out)
        save_config(config, out / TRAIN_CONFIG_NAME)
        (out / "README.md").write_text(model_card(results))
        _write_json(out / RESULTS_NAME, results)
        accelerator.print(f"saved the model to {out} (results: {out / RESULTS_NAME})")
        if config.push_to_hub:
            push_to_hub(out, config.push_to_hub, private=config.hub_private)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


BEST_NOTE = (
    "best_epoch picks, per eval dataset, the epoch with the highest SRCC on that same eval set: it is "
    "selected on the test data and therefore optimistic. Report last_epoch."
)


def results_dict(
    config: TrainConfig, state: TrainState, world_size: int, train_info: dict[str, Any], finished: bool
) -> dict[str, Any]:
    """The ``results.json`` content: last-epoch and best-epoch metrics per eval dataset, history, config."""
    history = state.history
    last = history[-1] if history else None
    best: dict[str, Any] = {}
    for spec in config.eval_datasets:
        scored = [h for h in history if _finite(h["eval"].get(spec, {}).get("srcc"))]
        if scored:
            h = max(scored, key=lambda h: h["eval"][spec]["srcc"])
            best[spec] = {"epoch": h["epoch"], "step": h["step"], "metrics": h["eval"][spec]}
        else:
            best[spec] = None
    return json_safe(
        {
            "finished": finished,
            "config_hash": config_hash(config),
            "world_size": world_size,
            "train": train_info,
            "eval_datasets": list(config.eval_datasets),
            "metrics_note": (
                "srcc/plcc/krcc/rmse use raw predictions (no mapping); plcc_logistic4/rmse_logistic4 are "
                "after a 4-parameter logistic fit on the same eval set; predictions = mean over "
                f"{config.test_crops} seeded {config.crop_size}px crops; scale = quality in [0, 1]"
            ),
            "last_epoch": None
            if last is None
            else {"epoch": last["epoch"], "step": last["step"], "metrics": last["eval"]},
            "best_epoch": best,
            "best_epoch_note": BEST_NOTE,
            "metric_labels": METRIC_LABELS,
            "history": history,
            "config": asdict(config),
        }
    )


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # with save_every_epochs=0 nothing else created it
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``accelerate launch dgqa_train/train.py`` and ``dgqa train`` (``prog``: the usage name)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("accelerate").setLevel(logging.WARNING)
    train(parse_config(TrainConfig, argv, prog=prog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
