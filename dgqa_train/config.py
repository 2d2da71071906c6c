"""Run configuration: dataclasses from CLI flags and/or a YAML/JSON file, and one Accelerator factory."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from transformers import HfArgumentParser

from dgqa_data.errors import DgqaError

T = TypeVar("T")


def parse_config(cls: type[T], argv: list[str] | None = None, prog: str | None = None) -> T:
    """Parse ``cls`` (a dataclass) from ``argv``; ``--config FILE`` (YAML or JSON) sets defaults that
    explicit flags override. Unknown keys in the file are an error naming them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(cls, prog=prog)
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
        known = {f.dest for f in parser._actions}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DgqaError(f"{path}: unknown config key(s) {', '.join(unknown)}")
        parser.set_defaults(**data)
    (config,) = parser.parse_args_into_dataclasses(args=argv)
    return config


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
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


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
            project_dir=str(output_dir), automatic_checkpoint_naming=True, total_limit=3
        ),
    )
    set_seed(seed, device_specific=False)
    return accelerator
