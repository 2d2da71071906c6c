"""Train the 26-way DGQA domain classifier (pristine + 25 distortion types) with Accelerate.

Runs unchanged on one CPU process, several CPU processes (gloo) and GPUs::

    accelerate launch dgqa_train/train_classifier.py --train_dataset hub/dgqa/kadis700k --output_dir runs/cls
    dgqa train-classifier --config cls.yaml --epochs 5

Checkpoints go to ``<output_dir>/checkpoints/checkpoint_<n>`` (``accelerator.save_state`` plus
``dgqa_state.json``); ``--resume_from_checkpoint latest`` continues where a run stopped. The final
model is ``<output_dir>/model.safetensors`` + ``config.json`` (:func:`dgqa_train.models.save_model`),
with ``metrics.json`` (per-epoch train loss and held-out accuracy).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script path (accelerate launch dgqa_train/<this>.py): this folder is sys.path[0], and its
    # data.py / evaluate.py / config.py would shadow the installed packages of those names.
    sys.path.pop(0)

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.paths import check_output, run_lock
from dgqa_data.schema import NUM_CLASSES
from dgqa_train.checkpoints import STATE_FILE, checkpoint_number, latest_checkpoint, mark_complete
from dgqa_train.config import check_ranges, make_accelerator, parse_config, save_config
from dgqa_train.data import CropDataset, load_iqa_dataset
from dgqa_train.models import ModelConfig, build_model, save_model

METRICS_FILE = "metrics.json"


@dataclass
class ClassifierTrainConfig:
    """Configuration of a domain-classifier run (CLI flags or ``--config`` YAML/JSON)."""

    train_dataset: str = field(metadata={"help": "dataset folder or Hub id, optionally '<spec>:<split>'"})
    output_dir: str = field(metadata={"help": "run folder: checkpoints, final model, metrics.json"})
    eval_dataset: str | None = field(default=None, metadata={"help": "held-out dataset (instead of a split)"})
    eval_fraction: float = field(
        default=0.1,
        metadata={
            "help": "fraction of reference images held out for accuracy (0 = none); ignored with eval_dataset"
        },
    )
    backbone: str = field(
        default="resnet50", metadata={"help": "short name, transformers id or local folder"}
    )
    pretrained: bool = field(
        default=True,
        metadata={
            "help": "pretrained backbone weights (--pretrained, the default) or random ones (--no_pretrained)"
        },
    )
    features: str = field(
        default="pooled",
        metadata={
            "help": "pooled (the backbone's output) or multilevel (+ mean/std of every stage's output)"
        },
    )
    freeze_backbone: bool = field(
        default=False,
        metadata={
            "help": "linear probe: keep the pretrained backbone frozen, extract its features of the centre "
            "crop once (cached in output_dir/features) and train only the head (fast on CPU)"
        },
    )
    epochs: int = field(default=10, metadata={"help": "training epochs"})
    batch_size: int = field(default=32, metadata={"help": "per-process batch size"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    crop_size: int = field(default=224, metadata={"help": "square crop side in pixels"})
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16"})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "forward passes per optimizer step"}
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "checkpoint folder, or 'latest' (newest in output_dir/checkpoints)"}
    )
    checkpointing_steps: int | None = field(
        default=None,
        metadata={"help": "also save a checkpoint every N optimizer steps (besides every epoch)"},
    )
    report_to: str = field(default="none", metadata={"help": "trackers, e.g. tensorboard,wandb (or none)"})
    seed: int = field(default=0, metadata={"help": "seed of init, shuffling, crops and the held-out split"})
    num_workers: int = field(
        default=0, metadata={"help": "DataLoader worker processes (0: decode in the main process)"}
    )
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise DgqaError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise DgqaError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        for name in ("epochs", "batch_size", "crop_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise DgqaError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_ranges(
            self, lr=(0, None), weight_decay=(0, None), num_workers=(0, None), max_steps=(1, None),
            checkpointing_steps=(1, None),
        )  # fmt: skip


class EpochPermutationSampler(torch.utils.data.Sampler[int]):
    """A shuffle that is a pure function of (seed, epoch): identical on every process and after a resume."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng((self.seed, self.epoch)).permutation(self.n).tolist())


class FixedCropDataset(CropDataset):
    """Evaluation crops that stay the same at every evaluation.

    Accelerate's prepared loaders call ``dataset.set_epoch(<times iterated>)`` at each pass, which
    would draw new crops per evaluation (and different ones after a resume).
    """

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the crops depend on (seed, index) only."""


def split_by_reference(ds: Any, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices ``(train, held_out)``; whole reference images go to one side (no crop leaks).

    Rows are grouped by ``reference_id`` (a row without one is its own reference, keyed by
    ``image_id``); ``ceil(fraction * groups)`` groups are held out, chosen by ``seed``.
    """
    refs = ds["reference_id"] if "reference_id" in ds.column_names else [None] * len(ds)
    ids = ds["image_id"] if "image_id" in ds.column_names else [str(i) for i in range(len(ds))]
    keys = [r if r is not None else i for r, i in zip(refs, ids)]
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


def _check_labels(ds: Any, name: str) -> None:
    labels = np.asarray(ds["distortion_type"])
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        ids = [ds[int(i)]["image_id"] for i in bad[:3]] if "image_id" in ds.column_names else bad[:3].tolist()
        raise DgqaError(
            f"{name}: {bad.size} row(s) have no distortion type in 0..{NUM_CLASSES - 1} (e.g. {ids}); "
            "the domain classifier trains on labelled synthetic data (pristine + KADID types)"
        )


def _loader(dataset, batch_size: int, num_workers: int, sampler=None) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def evaluate(accelerator, model, loader) -> tuple[dict[str, float], np.ndarray]:
    """Held-out accuracy and loss over the whole loader, exact across processes, and the confusion
    matrix (rows: true class, columns: predicted class)."""
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["pixel_values"]).float()
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            pred = logits.argmax(1)
            correct += int((pred == labels).sum())
            total += int(labels.numel())
            np.add.at(confusion, (labels.cpu().numpy(), pred.cpu().numpy()), 1)
    model.train()
    metrics = {
        "eval_accuracy": correct / max(total, 1),
        "eval_loss": loss_sum / max(total, 1),
        "eval_images": total,
    }
    return metrics, confusion


class FeatureDataset(torch.utils.data.Dataset):
    """Cached backbone features with their class labels (the inputs of a frozen-backbone head)."""

    def __init__(self, features: np.ndarray, labels: Any):
        self.features = torch.from_numpy(features)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": self.features[index],
            "labels": self.labels[index],
            "index": torch.tensor(index),
        }


def _feature_sets(
    config, accelerator, model, train_ds, eval_ds
) -> tuple[FeatureDataset, FeatureDataset | None]:
    """Frozen-backbone features of the training and held-out sets; process 0 extracts, the others
    read its cache."""
    from dgqa_train.probe import FeatureCache, backbone_id, extract_features

    show = accelerator.is_local_main_process
    with accelerator.main_process_first():
        cache = FeatureCache(Path(config.output_dir) / "features", backbone_id(model, config.crop_size))
        x = extract_features(model, train_ds, config.crop_size, cache, desc="features (train)", progress=show)
        ex = None
        if eval_ds is not None and len(eval_ds):
            ex = extract_features(
                model, eval_ds, config.crop_size, cache, desc="features (held out)", progress=show
            )
    train_set = FeatureDataset(x, train_ds["distortion_type"])
    return train_set, (FeatureDataset(ex, eval_ds["distortion_type"]) if ex is not None else None)


def train_classifier(config: ClassifierTrainConfig) -> dict[str, Any]:
    """Train the domain classifier described by ``config``.

    Returns:
        The contents of ``metrics.json`` (``epochs``: per-epoch records, ``global_step``, ...).
    """
    out = Path(config.output_dir)
    inputs = {"training dataset": config.train_dataset, "held-out dataset": config.eval_dataset}
    check_output(out, inputs, "--output_dir")
    with run_lock(out, main_process=int(os.environ.get("RANK", "0")) == 0):
        return _train_classifier(config, out)


def _train_classifier(config: ClassifierTrainConfig, out: Path) -> dict[str, Any]:
    accelerator = make_accelerator(
        out,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        report_to=config.report_to,
        seed=config.seed,
    )
    log = accelerator.print

    with accelerator.main_process_first():
        train_ds = load_iqa_dataset(config.train_dataset)
        eval_ds = load_iqa_dataset(config.eval_dataset, role="held-out") if config.eval_dataset else None
    _check_labels(train_ds, config.train_dataset)
    if eval_ds is not None:
        _check_labels(eval_ds, config.eval_dataset)
    elif config.eval_fraction > 0:
        train_idx, eval_idx = split_by_reference(train_ds, config.eval_fraction, config.seed)
        train_ds, eval_ds = train_ds.select(train_idx), train_ds.select(eval_idx)

    model = build_model(
        ModelConfig(
            backbone=config.backbone,
            task="classify",
            pretrained=config.pretrained,
            crop_size=config.crop_size,
            features=config.features,
        )
    )
    if config.freeze_backbone:  # linear probe: only the head trains, on features extracted once
        model.requires_grad_(False)
        model.head.requires_grad_(True)
        train_set, eval_set = _feature_sets(config, accelerator, model, train_ds, eval_ds)
        net: torch.nn.Module = model.head
    else:
        mean, std = model.normalization
        crops = {"label": "distortion_type", "mean": mean, "std": std, "seed": config.seed}
        train_set = CropDataset(train_ds, config.crop_size, train=True, **crops)
        eval_set = None
        if eval_ds is not None and len(eval_ds):
            eval_set = FixedCropDataset(eval_ds, config.crop_size, train=False, **crops)
        net = model
    sampler = EpochPermutationSampler(len(train_set), seed=config.seed)
    train_loader = _loader(train_set, config.batch_size, config.num_workers, sampler)
    eval_loader = _loader(eval_set, config.batch_size, config.num_workers) if eval_set is not None else None

    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    net, optimizer, train_loader = accelerator.prepare(net, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)

    state = {"epoch": 0, "step": 0, "batches_in_epoch": 0, "loss_sum": 0.0, "loss_count": 0, "history": []}
    resume = config.resume_from_checkpoint
    if resume:
        ckpt = latest_checkpoint(out) if resume == "latest" else Path(resume)
        if ckpt is None:
            log(f"no checkpoint under {out / 'checkpoints'}; starting from scratch")
        else:
            if not (ckpt / STATE_FILE).is_file():
                raise MissingInputError(f"{ckpt} is not a complete dgqa checkpoint (no {STATE_FILE})")
            accelerator.load_state(str(ckpt))
            state.update(json.loads((ckpt / STATE_FILE).read_text()))
            log(
                f"resumed from {ckpt}: epoch {state['epoch']}, step {state['step']}, batch {state['batches_in_epoch']}"
            )
    existing = [checkpoint_number(p) for p in (out / "checkpoints").glob("checkpoint_*")]
    accelerator.project_configuration.iteration = max(existing, default=-1) + 1

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "train_config.json")
    if config.report_to not in (None, "", "none"):
        accelerator.init_trackers("dgqa-classifier", config={k: str(v) for k, v in asdict(config).items()})

    # Running loss of the current epoch: sums already reduced over processes live on process 0 only.
    loss_sum = torch.tensor(
        state["loss_sum"] if accelerator.is_main_process else 0.0, device=accelerator.device
    )
    loss_count = torch.tensor(
        state["loss_count"] if accelerator.is_main_process else 0, device=accelerator.device
    )

    def checkpoint(epoch: int, batches_in_epoch: int) -> None:
        total = accelerator.reduce(torch.stack([loss_sum, loss_count.float()]), reduction="sum")
        accelerator.save_state()
        record = {
            "epoch": epoch,
            "step": global_step,
            "batches_in_epoch": batches_in_epoch,
            "loss_sum": float(total[0]),
            "loss_count": int(total[1]),
            "history": history,
        }
        mark_complete(accelerator, record)

    global_step, history = int(state["step"]), list(state["history"])
    confusion = None
    start_epoch, skip = int(state["epoch"]), int(state["batches_in_epoch"])
    stop = config.max_steps is not None and global_step >= config.max_steps
    net.train()
    for epoch in range(start_epoch, config.epochs):
        if stop:
            break
        train_loader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        batches_done, tic = skip, time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            total=len(train_loader) - skip,
            disable=not accelerator.is_local_main_process,
            leave=False,
        )
        for batch in bar:
            with accelerator.accumulate(net):
                logits = net(batch["pixel_values"])
                loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            n = batch["labels"].numel()
            loss_sum += loss.detach() * n
            loss_count += n
            batches_done += 1
            if accelerator.sync_gradients:
                global_step += 1
                if config.max_steps is not None and global_step >= config.max_steps:
                    stop = True
                if config.checkpointing_steps and global_step % config.checkpointing_steps == 0:
                    checkpoint(epoch, batches_done)
                if stop:
                    break
        bar.close()
        skip = 0
        if stop and batches_done < len(train_loader):
            checkpoint(epoch, batches_done)  # mid-epoch: a resume finishes this epoch
            log(f"stopped at max_steps={config.max_steps} in epoch {epoch + 1}, batch {batches_done}")
            break
        totals = accelerator.reduce(torch.stack([loss_sum, loss_count.float()]), reduction="sum")
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": global_step,
            "train_loss": float(totals[0] / totals[1]) if float(totals[1]) > 0 else float("nan"),
            "train_images": int(totals[1]),
            "seconds": round(time.perf_counter() - tic, 3),
        }
        if eval_loader is not None:
            scores, confusion = evaluate(accelerator, net, eval_loader)
            record.update(scores)
        history.append(record)
        loss_sum.zero_()
        loss_count.zero_()
        accelerator.log({k: v for k, v in record.items() if k != "epoch"}, step=global_step)
        acc = f", held-out accuracy {record['eval_accuracy']:.4f}" if "eval_accuracy" in record else ""
        log(
            f"epoch {epoch + 1}/{config.epochs}: step {global_step}, train loss {record['train_loss']:.4f}{acc}"
        )
        checkpoint(epoch + 1, 0)

    accelerator.wait_for_everyone()
    metrics = {
        "epochs": history,
        "global_step": global_step,
        "num_processes": accelerator.num_processes,
        "train_images": len(train_set),
        "eval_images": len(eval_ds) if eval_ds is not None else 0,
        "completed": bool(history) and history[-1]["epoch"] == config.epochs,
        "frozen_backbone": config.freeze_backbone,
    }
    if confusion is not None:
        metrics["confusion"] = confusion.tolist()  # last evaluation; rows: true class, columns: predicted
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), out)
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        log(f"saved the classifier to {out}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def main(argv: list[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    """Parse flags / ``--config`` and train (``prog``: the usage name)."""
    return train_classifier(parse_config(ClassifierTrainConfig, argv, prog=prog))


if __name__ == "__main__":
    main(sys.argv[1:])
