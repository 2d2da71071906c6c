"""Train the 26-way DGQA domain classifier (pristine + 25 distortion types) with Accelerate.

Runs unchanged on one CPU process, several CPU processes (gloo) and GPUs::

    accelerate launch dgqa_train/train_classifier.py --train_dataset hub/dgqa/kadis700k --output_dir runs/cls
    dgqa train-classifier --config cls.yaml --epochs 5

Checkpoints go to ``<output_dir>/checkpoints/checkpoint_<n>`` (``accelerator.save_state`` plus
``dgqa_state.json``); ``--resume_from_checkpoint latest`` continues where a run stopped. The final
output folder holds the same files as a regressor's (:mod:`dgqa_train.run_outputs`): the model,
``train_config.json``, ``results.json`` (per-epoch train loss and held-out accuracy) and a card, plus
``confusion.json`` (the held-out confusion counts that ``--rule dgqa-corrected`` uses).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script path (accelerate launch dgqa_train/<this>.py): this folder is sys.path[0], and its
    # data.py / evaluate.py / config.py would shadow the installed packages of those names.
    sys.path.pop(0)

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from dgqa_data.atomic import write_json
from dgqa_data.errors import DgqaError
from dgqa_data.paths import check_output, run_lock
from dgqa_data.schema import NUM_CLASSES
from dgqa_data.scores import CONFUSION_FILE
from dgqa_train.capture import HELDOUT_STREAM, TRAIN_STREAM, CaptureAugment
from dgqa_train.centring import MODES, centre, centring_record, class_offsets, content_groups
from dgqa_train.checkpoints import TrainState
from dgqa_train.config import LoopConfig, check_ranges, parse_config, save_config
from dgqa_train.data import (
    CropDataset,
    KeyedDataset,
    load_iqa_dataset,
    make_loader,
    norm_tensors,
    split_by_reference,
    to_model_input,
)
from dgqa_train.evaluate import predict_batches
from dgqa_train.features import FeatureCache, backbone_id, extract_features
from dgqa_train.loop import fit, init_trackers, restore, start_run
from dgqa_train.model_card import classifier_card
from dgqa_train.models import ModelConfig, build_model
from dgqa_train.run_outputs import RESULTS_NAME, RUN_FILES, TRAIN_CONFIG_NAME, save_run, write_results

#: What classifier runs of dgqa 0.1.0 and earlier named results.json (still recognised as this verb's output).
OLD_RESULTS_NAME = "metrics.json"


@dataclass(kw_only=True)
class ClassifierTrainConfig(LoopConfig):
    """Configuration of a domain-classifier run (CLI flags or ``--config`` YAML/JSON; the loop's
    shared settings are in :class:`~dgqa_train.config.LoopConfig`)."""

    train_dataset: str = field(metadata={"help": "dataset folder or Hub id, optionally '<spec>:<split>'"})
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
    feature_cache: str | None = field(
        default=None,
        metadata={
            "help": "folder of the frozen-backbone feature cache (default output_dir/features); features are "
            "keyed by image content, so runs of several seeds may share one"
        },
    )
    epochs: int = field(default=10, metadata={"help": "training epochs"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    crop_size: int = field(default=224, metadata={"help": "square crop side in pixels"})
    seed: int = field(default=0, metadata={"help": "seed of init, shuffling, crops and the held-out split"})
    capture_jpeg: str | None = field(
        default=None,
        metadata={
            "help": "capture augmentation: JPEG-encode every training and held-out image after its distortion "
            "at a quality drawn from LO-HI (e.g. 50-95), seeded; off by default (the paper's recipe)"
        },
    )
    capture_resize: str | None = field(
        default=None,
        metadata={"help": "with --capture_jpeg: first resize by a factor drawn from LO-HI (e.g. 0.5-1.0)"},
    )
    capture_share: float = field(
        default=1.0,
        metadata={
            "help": "with --capture_jpeg: the share of images captured, drawn per image (e.g. 0.5: half stay as "
            "they were, so the classifier also knows capture-free images)"
        },
    )
    balance_classes: bool = field(
        default=False,
        metadata={"help": "weight each class's loss by its inverse frequency (pristine is 1 in 126 of a full plan)"},
    )
    centre_features: str = field(
        default="off",
        metadata={
            "help": "with freeze_backbone: train the head on features less their content mean (set: the whole "
            "training set; folder: the reference's folder, e.g. the tiles of one photo); the held-out set is "
            "centred by its own mean, and dgqa-corrected estimates a target's (off: the paper's recipe)",
            "choices": MODES,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.capture  # noqa: B018 - validates the capture flags now
        if not 0.0 <= self.eval_fraction < 1.0:
            raise DgqaError(f"--eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.epochs < 1:
            raise DgqaError(f"--epochs must be >= 1, got {self.epochs}")
        check_ranges(self, lr=(0, None), weight_decay=(0, None), crop_size=(1, None))
        if self.centre_features not in MODES:
            raise DgqaError(f"--centre_features must be one of {', '.join(MODES)}, got {self.centre_features!r}")
        if self.centre_features != "off" and not self.freeze_backbone:
            raise DgqaError("--centre_features works on features extracted once: add --freeze_backbone")

    @property
    def capture(self) -> CaptureAugment | None:
        """The capture augmentation of the flags (None: off)."""
        return CaptureAugment.from_flags(self.capture_jpeg, self.capture_resize, self.seed, self.capture_share)


def _check_labels(ds: Any, name: str) -> None:
    labels = np.asarray(ds["distortion_type"])
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        ids = [ds[int(i)]["image_id"] for i in bad[:3]] if "image_id" in ds.column_names else bad[:3].tolist()
        raise DgqaError(
            f"{name}: {bad.size} row(s) have no distortion type in 0..{NUM_CLASSES - 1} (e.g. {ids}); "
            "the domain classifier trains on labelled synthetic data (pristine + KADID types)"
        )


def _check_centring_inputs(config: ClassifierTrainConfig, train_ds: Any, eval_ds: Any) -> None:
    """Refuse ``--centre_features`` where it cannot run, before any feature is extracted."""
    if config.centre_features == "off":
        return
    if eval_ds is None or not len(eval_ds):
        raise DgqaError(
            "--centre_features needs a held-out set (its record carries the centring): "
            "set --eval_fraction above 0 or pass --eval_dataset"
        )
    if config.centre_features == "folder" and "reference_id" not in train_ds.column_names:
        raise DgqaError(
            f"{config.train_dataset}: --centre_features folder groups rows by the folder of their reference_id, "
            "and this dataset has no reference_id column (use --centre_features set)"
        )


def evaluate(accelerator: Any, model: torch.nn.Module, loader: Any, mean, std) -> tuple[dict[str, float], np.ndarray]:
    """Held-out accuracy and loss over the whole loader, gathered exactly across processes, and the
    confusion matrix (rows: true class, columns: predicted class)."""
    _, logits, labels = predict_batches(model, loader, mean, std, accelerator)
    labels = labels.astype(np.int64)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    if not labels.size:
        return {"eval_accuracy": 0.0, "eval_loss": float("nan"), "eval_images": 0}, confusion
    logits = logits.reshape(labels.size, -1)
    pred = logits.argmax(1)
    np.add.at(confusion, (labels, pred), 1)
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    metrics = {
        "eval_accuracy": float((pred == labels).mean()),
        "eval_loss": float(loss),
        "eval_images": int(labels.size),
    }
    return metrics, confusion


def trained_prior(labels: Any, weights: torch.Tensor | None) -> np.ndarray:
    """The class frequencies the loss saw: the labels' (uniform over present classes when balanced)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES).astype(np.float64)
    if weights is not None:
        counts *= weights.numpy()
    return counts / counts.sum()


def class_weights(labels: Any) -> torch.Tensor:
    """Loss weight of every class: N / (classes present x its count); 0 for an absent class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES).astype(np.float64)
    present = counts > 0
    w = np.zeros(NUM_CLASSES)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


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
) -> tuple[FeatureDataset, FeatureDataset | None, tuple[np.ndarray, np.ndarray] | None]:
    """Frozen-backbone features of the training and held-out sets (process 0 extracts, the others
    read its cache), content-centred with ``--centre_features``, and then the training classes'
    offsets and plan (:func:`~dgqa_train.centring.class_offsets`)."""
    show = accelerator.is_local_main_process
    with accelerator.main_process_first():
        folder = Path(config.feature_cache or Path(config.output_dir) / "features")
        cache = FeatureCache(folder, backbone_id(model, config.crop_size))
        run = {"num_workers": config.num_workers, "progress": show}  # workers decode while the backbone runs
        x = extract_features(model, train_ds, config.crop_size, cache, desc="features (train)", **run)
        ex = None
        if eval_ds is not None and len(eval_ds):
            ex = extract_features(model, eval_ds, config.crop_size, cache, desc="features (held out)", **run)
    offsets = None
    if config.centre_features != "off":
        refs = train_ds["reference_id"] if config.centre_features == "folder" else [""] * len(train_ds)
        x = centre(x, content_groups(refs, config.centre_features))
        offsets = class_offsets(x, train_ds["distortion_type"])
        if ex is not None:
            ex = centre(ex, np.zeros(len(ex), dtype=np.int64))
    train_set = FeatureDataset(x, train_ds["distortion_type"])
    return train_set, (FeatureDataset(ex, eval_ds["distortion_type"]) if ex is not None else None), offsets


def train_classifier(config: ClassifierTrainConfig) -> dict[str, Any]:
    """Train the domain classifier described by ``config``.

    Returns:
        The contents of ``results.json`` (``epochs``: per-epoch records, ``global_step``, ...).
    """
    out = Path(config.output_dir)
    inputs = {"training dataset": config.train_dataset, "held-out dataset": config.eval_dataset}
    check_output(out, inputs, "--output_dir")
    claim = {
        "verb": "train-classifier",
        "overwrite": config.overwrite_output_dir,
        "writes": (*RUN_FILES, CONFUSION_FILE, OLD_RESULTS_NAME, "checkpoints", "features"),
        "known": (OLD_RESULTS_NAME,),  # a run written before output markers existed
        "flag": "--output_dir",
        "overwrite_flag": "--overwrite_output_dir",
    }
    with run_lock(out, main_process=int(os.environ.get("RANK", "0")) == 0, claim=claim):
        return _train_classifier(config, out)


def _train_classifier(config: ClassifierTrainConfig, out: Path) -> dict[str, Any]:
    accelerator, ckpt = start_run(config, out)
    with accelerator.main_process_first():
        train_ds = load_iqa_dataset(config.train_dataset)
        eval_ds = load_iqa_dataset(config.eval_dataset, role="held-out") if config.eval_dataset else None
    _check_labels(train_ds, config.train_dataset)
    if eval_ds is not None:
        _check_labels(eval_ds, config.eval_dataset)
    elif config.eval_fraction > 0:
        train_idx, eval_idx = split_by_reference(train_ds, config.eval_fraction, config.seed)
        train_ds, eval_ds = train_ds.select(train_idx), train_ds.select(eval_idx)
    _check_centring_inputs(config, train_ds, eval_ds)
    capture = config.capture
    if capture is not None:  # after the split: held-out rows get their own draws
        with accelerator.main_process_first():
            train_ds = capture.dataset(train_ds, TRAIN_STREAM)
            eval_ds = capture.dataset(eval_ds, HELDOUT_STREAM) if eval_ds is not None and len(eval_ds) else eval_ds
    weights = class_weights(train_ds["distortion_type"]) if config.balance_classes else None

    model = build_model(
        ModelConfig(
            backbone=config.backbone,
            task="classify",
            pretrained=config.pretrained,
            crop_size=config.crop_size,
            features=config.features,
        )
    )
    mean, std = norm_tensors(model, accelerator.device)
    offsets = None
    if config.freeze_backbone:  # linear probe: only the head trains, on features extracted once
        model.requires_grad_(False)
        model.head.requires_grad_(True)
        features, held_features, offsets = _feature_sets(config, accelerator, model, train_ds, eval_ds)
        train_set = KeyedDataset(features)
        eval_set = KeyedDataset(held_features) if held_features is not None else None
        net: torch.nn.Module = model.head
    else:
        crops = {"label": "distortion_type", "seed": config.seed}
        train_set = CropDataset(train_ds, config.crop_size, train=True, **crops, name="training dataset")
        eval_set = None
        if eval_ds is not None and len(eval_ds):
            eval_set = CropDataset(eval_ds, config.crop_size, train=False, **crops, name="held-out dataset")
        net = model
    train_loader = make_loader(train_set, config.batch_size, config.seed, True, config.num_workers)
    eval_loader = None
    if eval_set is not None:
        eval_loader = make_loader(eval_set, config.batch_size, config.seed, False, config.num_workers)

    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    net, optimizer, train_loader = accelerator.prepare(net, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)
    state = restore(accelerator, ckpt)
    if accelerator.is_main_process:
        save_config(config, out / TRAIN_CONFIG_NAME)
    init_trackers(accelerator, config, "dgqa-classifier")

    confusion: list[np.ndarray] = []

    def held_out() -> dict[str, Any]:
        if eval_loader is None:
            return {}
        scores, matrix = evaluate(accelerator, accelerator.unwrap_model(net), eval_loader, mean, std)
        confusion[:] = [matrix]
        accelerator.print(f"  held-out accuracy {scores['eval_accuracy']:.4f} ({scores['eval_images']} images)")
        return scores

    def loss(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = m(to_model_input(batch["pixel_values"], mean, std))
        w = None if weights is None else weights.to(logits.device)
        return torch.nn.functional.cross_entropy(logits.float(), batch["labels"], weight=w)

    def results(state: TrainState) -> dict[str, Any]:
        record = {
            "finished": state.epoch == config.epochs,
            "completed": state.epoch == config.epochs,  # the name before results.json; kept for readers
            "epochs": state.history,
            "global_step": state.global_step,
            "num_processes": accelerator.num_processes,
            "train_images": len(train_set),
            "eval_images": len(eval_ds) if eval_ds is not None else 0,
            "frozen_backbone": config.freeze_backbone,
            "capture": capture.describe() if capture is not None else None,
            "balance_classes": config.balance_classes,
            "config": asdict(config),
        }
        if confusion:
            record["confusion"] = confusion[0].tolist()  # last evaluation; rows: true class, columns: predicted
        return record

    def interim(state: TrainState) -> None:
        if accelerator.is_main_process and state.epoch < config.epochs:
            write_results(out, results(state))

    fit(accelerator, config, net, optimizer, train_loader, loss, state, held_out, interim)

    accelerator.wait_for_everyone()
    metrics = results(state)
    if accelerator.is_main_process:
        save_run(out, accelerator.unwrap_model(model), config, metrics, classifier_card(metrics))
        if confusion:
            held = {
                "counts": confusion[0].tolist(),
                "train_prior": trained_prior(train_ds["distortion_type"], weights).tolist(),
                "dataset": config.eval_dataset or f"{config.train_dataset} (eval_fraction {config.eval_fraction})",
                "images": int(confusion[0].sum()),
                "capture": metrics["capture"],
            }
            if offsets is not None:
                held["centring"] = {"mode": config.centre_features, **centring_record(model.head, *offsets)}
            write_json(out / CONFUSION_FILE, held, indent=None)
        accelerator.print(f"saved the classifier to {out} (results: {out / RESULTS_NAME})")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def main(argv: list[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    """Parse flags / ``--config`` and train (``prog``: the usage name)."""
    return train_classifier(parse_config(ClassifierTrainConfig, argv, prog=prog))


if __name__ == "__main__":
    from dgqa_data.cli import guarded

    sys.exit(guarded("dgqa train-classifier", main))
