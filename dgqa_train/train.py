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
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script path (accelerate launch dgqa_train/train.py): this folder is sys.path[0], and its
    # data.py / evaluate.py / config.py would shadow the installed packages of those names.
    sys.path.pop(0)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dgqa_data.errors import DgqaError  # noqa: E402
from dgqa_data.paths import check_output, run_lock  # noqa: E402
from dgqa_train.checkpoints import TrainState  # noqa: E402
from dgqa_train.config import LoopConfig, check_ranges, parse_config  # noqa: E402
from dgqa_train.data import (  # noqa: E402
    CropDataset,
    StreamCrops,
    load_iqa_dataset,
    make_loader,
    norm_tensors,
    to_model_input,  # noqa: E402
)
from dgqa_train.evaluate import METRIC_LABELS, evaluate_loader, json_safe  # noqa: E402
from dgqa_train.loop import fit, init_trackers, restore, start_run  # noqa: E402
from dgqa_train.metrics import plcc_loss  # noqa: E402
from dgqa_train.models import IQAModel, ModelConfig, build_model, load_model  # noqa: E402
from dgqa_train.run_outputs import RESULTS_NAME, RUN_FILES, TRAIN_CONFIG_NAME, save_run, write_results  # noqa: E402

LOSSES = ("l1", "mse", "plcc")
OPTIMIZERS = ("adamw", "adam")
#: Fields that do not change what is trained or measured (left out of the config hash).
RUN_ONLY_FIELDS = (
    "output_dir",
    "checkpointing_steps",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "report_to",
    "num_workers",
    "log_every",
    "save_every_epochs",
    "push_to_hub",
    "hub_private",
)


@dataclass(kw_only=True)
class TrainConfig(LoopConfig):
    """Regressor training run; every field is a ``--flag`` and a ``--config`` YAML/JSON key (the loop's
    shared settings are in :class:`~dgqa_train.config.LoopConfig`)."""

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
    eval_batch_size: int | None = field(
        default=None, metadata={"help": "images per eval batch (default batch_size)"}
    )
    crop_size: int = field(default=224, metadata={"help": "square crop side in pixels (train and test)"})
    test_crops: int = field(default=5, metadata={"help": "seeded crops averaged per test image"})
    seed: int = field(default=123, metadata={"help": "seed of init, shuffling and crops"})
    drc_per_epoch: bool = field(
        default=False,
        metadata={
            "help": "per-epoch DRC (SynDR-IQA): each epoch trains only on the rows that redundant-cluster "
            "downsampling keeps on the current model's features (one feature pass over the training set per epoch)"
        },
    )
    drc_sim: float = field(default=0.9, metadata={"help": "DRC: link rows whose cosine similarity is > this"})
    drc_label_gap: float = field(
        default=1.0, metadata={"help": "DRC: ... and whose labels (normalised to [0, 10]) differ by < this"}
    )
    drc_max_cluster: int = field(default=20, metadata={"help": "DRC: clusters up to this size are kept whole"})
    drc_keep: float = field(
        default=0.5, metadata={"help": "DRC: a larger cluster of L rows keeps max(drc_max_cluster, floor(L x this))"}
    )
    output_dir: str = field(
        default="runs/regressor", metadata={"help": "where model, results and checkpoints go"}
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "upload the trained model to this Hub repo id"}
    )
    hub_private: bool = field(default=False, metadata={"help": "create the Hub repo as private"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise DgqaError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise DgqaError(f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check_ranges(
            self, crop_size=(1, None), test_crops=(1, None), lr_backbone=(0, None), lr_head=(0, None),
            weight_decay=(0, None), eval_batch_size=(1, None),
        )  # fmt: skip
        self._check_drc()
        if self.epochs > 0 and not self.train_dataset:
            raise DgqaError("--train_dataset is required to train (use --epochs 0 to only evaluate)")
        if self.epochs == 0 and not self.eval_datasets:
            raise DgqaError("--epochs 0 evaluates only, so it needs --eval_datasets")
        if self.push_to_hub:
            from dgqa_data.publish import check_repo_id

            check_repo_id(self.push_to_hub, "--push_to_hub")  # before hours of training, not after

    def _check_drc(self) -> None:
        """Refuse per-epoch DRC settings that :func:`dgqa_data.curate.drc` would refuse after epoch 1's pass."""
        check_ranges(self, drc_sim=(-1, 1), drc_label_gap=(0, None), drc_max_cluster=(1, None), drc_keep=(0, 1))
        if self.drc_sim == 1 or self.drc_label_gap == 0 or self.drc_keep == 0:
            raise DgqaError("--drc_sim must be < 1, and --drc_label_gap and --drc_keep > 0")
        if self.drc_per_epoch and self.streaming:
            raise DgqaError("--drc_per_epoch needs the whole training set (it cannot be used with --streaming)")


def config_hash(config: TrainConfig) -> str:
    """Hash of everything that decides the trained weights and the metrics (not paths or logging)."""
    data = {k: v for k, v in asdict(config).items() if k not in RUN_ONLY_FIELDS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    claim = {
        "verb": "train",
        "overwrite": config.overwrite_output_dir,
        "writes": (*RUN_FILES, "checkpoints"),
        "known": (TRAIN_CONFIG_NAME,),  # a run written before output markers existed
        "flag": "--output_dir",
        "overwrite_flag": "--overwrite_output_dir",
    }
    with run_lock(out, main_process=int(os.environ.get("RANK", "0")) == 0, claim=claim):
        return _train(config, out)


def _train(config: TrainConfig, out: Path) -> dict[str, Any]:
    accelerator, ckpt = start_run(config, out)
    model = build_regressor(config)
    mean, std = norm_tensors(model, accelerator.device)
    eval_bs = config.eval_batch_size or config.batch_size
    eval_sets = {}
    for spec in config.eval_datasets:
        ds = load_iqa_dataset(spec, role="evaluation")
        crops = CropDataset(
            ds, config.crop_size, config.test_crops, train=False, seed=config.seed, name=f"evaluation dataset {spec}"
        )
        eval_sets[spec] = make_loader(crops, eval_bs, config.seed, False, config.num_workers)

    train_info: dict[str, Any] = {"dataset": config.train_dataset, "domains": config.domains, "images": None}
    train_dl = None
    if config.epochs > 0:
        ds = load_iqa_dataset(config.train_dataset, domains=config.domains, streaming=config.streaming)
        if config.streaming:
            data = StreamCrops(ds, config.crop_size, config.seed)
        else:
            data = CropDataset(
                ds, config.crop_size, 1, train=True, seed=config.seed, name=f"training dataset {config.train_dataset}"
            )
            train_info["images"] = len(data)
            if "distortion_type" in ds.column_names:  # what the model saw, e.g. a DGQA-selected subset
                train_info["distortion_types"] = sorted({int(t) for t in ds["distortion_type"]})
            if len(data) == 0:
                raise DgqaError(
                    f"{config.train_dataset}: no training images (domains filter {config.domains})"
                )
        train_dl = make_loader(
            data, config.batch_size, config.seed, True, config.num_workers, row_subsets=config.drc_per_epoch
        )

    optimizer = build_optimizer(model, config)
    model, optimizer = accelerator.prepare(model, optimizer)
    if train_dl is not None:
        train_dl = accelerator.prepare(train_dl)
    eval_sets = {k: accelerator.prepare(v) for k, v in eval_sets.items()}
    pick_rows = None
    if config.drc_per_epoch and train_dl is not None:
        from dgqa_train.epoch_drc import EpochDrc, loader_sampler

        sampler = loader_sampler(train_dl)
        pick_rows = EpochDrc(accelerator, accelerator.unwrap_model(model), data, sampler, config)
    state = restore(accelerator, ckpt)
    init_trackers(accelerator, config, "dgqa-train")

    def evaluate() -> dict[str, Any]:
        t0 = time.perf_counter()
        metrics = {}
        for spec, dl in eval_sets.items():
            m = metrics[spec] = evaluate_loader(accelerator.unwrap_model(model), dl, accelerator, mean, std)
            accelerator.print(
                f"  eval {spec}: SRCC {m['srcc']:.4f} PLCC {m['plcc']:.4f} KRCC {m['krcc']:.4f} "
                f"RMSE {m['rmse']:.4f} PLCC(logistic4) {m['plcc_logistic4']:.4f}"
            )
            accelerator.log(
                {f"eval/{spec}/{k}": v for k, v in m.items() if isinstance(v, (int, float))},
                step=state.global_step,
            )
        return {"eval": metrics, "eval_time_s": round(time.perf_counter() - t0, 3)}

    def loss(net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(config.loss, net(to_model_input(batch["pixel_values"], mean, std)), batch["labels"])

    def interim(state: TrainState) -> None:
        if accelerator.is_main_process and state.epoch < config.epochs:
            write_results(out, results_dict(config, state, accelerator.num_processes, train_info, False))

    if config.epochs == 0:
        state.history = [{"epoch": 0, "step": 0, "train_loss": None, **evaluate()}]
    else:
        fit(accelerator, config, model, optimizer, train_dl, loss, state, evaluate, interim, pick_rows)

    results = results_dict(config, state, accelerator.num_processes, train_info, True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        from dgqa_train.model_card import model_card, push_to_hub

        final = accelerator.unwrap_model(model)
        final.config.extra["dgqa_train"] = {"train_dataset": config.train_dataset, "domains": config.domains}
        save_run(out, final, config, results, model_card(results))
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


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``accelerate launch dgqa_train/train.py`` and ``dgqa train`` (``prog``: the usage name)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("accelerate").setLevel(logging.WARNING)
    train(parse_config(TrainConfig, argv, prog=prog))
    return 0


if __name__ == "__main__":
    from dgqa_data.cli import guarded

    sys.exit(guarded("dgqa train", main))
