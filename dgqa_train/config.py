"""Run configuration: dataclasses from CLI flags and/or a YAML/JSON file (the same names in both), the
settings every training run shares (:class:`LoopConfig`), and one Accelerator factory."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from transformers import HfArgumentParser

from dgqa_data.atomic import write_atomic
from dgqa_data.errors import DgqaError
from dgqa_train.data import default_workers

T = TypeVar("T")


class _ConfigParser(HfArgumentParser):
    """:class:`~transformers.HfArgumentParser` that keeps the actions added to it (argparse lists
    them only in a private attribute): a config file's keys are checked and typed by them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.added: list[argparse.Action] = []  # filled while the base class adds the flags
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.added.append(action)
        return action


def parse_config(cls: type[T], argv: list[str] | None = None, prog: str | None = None) -> T:
    """Parse ``cls`` (a dataclass) from ``argv``; ``--config FILE`` (YAML or JSON) sets defaults that
    explicit flags override. Unknown keys in the file are an error naming them.

    Every field is a flag in both spellings, ``--crop_size`` and ``--crop-size`` (HfArgumentParser
    adds both); an abbreviation (``--crop``) is refused rather than taken for the flag it prefixes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _ConfigParser(cls, prog=prog, allow_abbrev=False)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise DgqaError("--config needs a file path")
        path = Path(argv[i + 1])
        del argv[i : i + 2]
        data = (
            yaml.safe_load(path.read_text())
            if path.suffix in (".yaml", ".yml")
            else json.loads(path.read_text())
        )
        if not isinstance(data, dict):
            raise DgqaError(f"{path}: a config file holds KEY: VALUE pairs, got {type(data).__name__}")
        known = {a.dest for a in parser.added}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DgqaError(f"{path}: unknown config key(s) {', '.join(unknown)}")
        typed = {a.dest: a for a in reversed(parser.added) if a.type is not None}  # --x, not --no_x
        parser.set_defaults(**{k: _as_flag(typed.get(k), k, v, path) for k, v in data.items()})
    config, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")  # usage + exit 2, like argparse
    return config


_KINDS = {"int": "a whole number", "float": "a number", "str": "text", "string_to_bool": "true or false"}


def _as_flag(action: Any, key: str, value: Any, path: Path) -> Any:
    """A config-file value parsed as its flag's text would be (the flag's type and choices), so a file
    is checked exactly like the command line: ``epochs: 2.7`` or ``1e400`` is refused, not rounded."""
    if value is None or action is None:
        return value
    many = action.nargs in ("+", "*")
    items = value if many and isinstance(value, list) else [value]
    parsed = []
    for item in items:
        text = str(item).lower() if isinstance(item, bool) else str(item)
        try:
            if isinstance(item, (list, dict)):
                raise ValueError
            parsed.append(action.type(text))
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            kind = _KINDS.get(getattr(action.type, "__name__", ""), "a valid value")
            raise DgqaError(f"{path}: {key} must be {kind}{' (each item)' if many else ''}, got {item!r}") from None
        if action.choices is not None and parsed[-1] not in action.choices:
            raise DgqaError(f"{path}: {key} must be one of {list(action.choices)}, got {item!r}")
    return parsed if many else parsed[0]


def check_ranges(config: Any, **bounds: tuple[float | None, float | None]) -> None:
    """Refuse a config field outside ``[low, high]`` (``None`` = open; NaN is always refused;
    a ``None`` value is skipped): ``check_ranges(cfg, lr=(1e-12, None), epochs=(0, None))``."""
    for name, (low, high) in bounds.items():
        value = getattr(config, name)
        if value is None:
            continue
        if value != value or (low is not None and value < low) or (high is not None and value > high):
            want = (
                f">= {low:g}"
                if high is None
                else (f"<= {high:g}" if low is None else f"in [{low:g}, {high:g}]")
            )
            raise DgqaError(f"--{name} must be {want}, got {value}")


def save_config(config: Any, path: str | Path) -> None:
    """Write a dataclass config as JSON (reloadable with ``--config``)."""
    data = asdict(config) if is_dataclass(config) else dict(config)
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def make_accelerator(
    output_dir: str | Path,
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    report_to: str | None = None,
    seed: int = 0,
) -> Accelerator:
    """The one place an :class:`~accelerate.Accelerator` is built (devices, precision, trackers).

    A multi-process launch on a machine without CUDA becomes a real gloo run on CPU.
    """
    if "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ and not torch.cuda.is_available():
        # what `accelerate launch --cpu --num_processes N` leaves behind: a rendezvous, one process
        warnings.warn(
            "this launch asked for several processes but runs one: `accelerate launch --cpu --num_processes N` "
            "starts a single CPU process; use `accelerate launch --multi_gpu --num_processes N` (gloo on CPU) "
            "or `torchrun --nproc_per_node N`",
            UserWarning,
            stacklevel=2,
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # `accelerate launch --multi_gpu` without CUDA would start independent single-process runs;
        # Accelerate picks its CPU (gloo) backend only when told the run is on CPU.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    report = None if report_to in (None, "", "none") else report_to.split(",")
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with=report,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), automatic_checkpoint_naming=True  # pruned by checkpoints.mark_complete
        ),
    )
    set_seed(seed, device_specific=False)
    return accelerator


PRECISIONS = ("no", "fp16", "bf16")


@dataclass(kw_only=True)
class LoopConfig:
    """Settings of the training loop, shared by every training script (flags and config-file keys)."""

    output_dir: str = field(metadata={"help": "run folder: model, metrics, checkpoints"})
    epochs: int = field(default=10, metadata={"help": "training epochs"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "images per process per forward pass"})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "forward passes per optimizer step"}
    )
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16"})
    max_grad_norm: float | None = field(
        default=None, metadata={"help": "clip the gradient norm to this value (None: no clipping)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of init, shuffling and crops"})
    num_workers: int = field(
        default_factory=default_workers,
        metadata={"help": "DataLoader workers per process (decode + crop); default: min(4, CPU cores - 1)"},
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or 'latest' (starts fresh when there is none)"}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "discard checkpoints of an earlier run in output_dir"}
    )
    allow_resume_mismatch: bool = field(
        default=False,
        metadata={"help": "resume even when the checkpoint was trained with other settings (dataset, batch size, ...)"},
    )
    save_every_epochs: int = field(
        default=1, metadata={"help": "checkpoint every N epochs (0: only at the end)"}
    )
    checkpointing_steps: int | None = field(
        default=None, metadata={"help": "also checkpoint every N optimizer steps (mid-epoch)"}
    )
    log_every: int = field(default=50, metadata={"help": "log the running loss every N optimizer steps"})
    report_to: str = field(
        default="none", metadata={"help": "trackers: none, tensorboard, wandb, ... (comma list)"}
    )

    def __post_init__(self) -> None:
        if self.mixed_precision not in PRECISIONS:
            raise DgqaError(f"--mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        check_ranges(
            self, epochs=(0, None), max_steps=(1, None), batch_size=(1, None),
            gradient_accumulation_steps=(1, None), max_grad_norm=(0, None), num_workers=(0, None),
            save_every_epochs=(0, None), checkpointing_steps=(1, None), log_every=(1, None),
        )  # fmt: skip
