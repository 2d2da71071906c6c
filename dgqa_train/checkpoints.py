"""The one checkpoint format and rule of every training run.

``accelerator.save_state()`` writes ``<output_dir>/checkpoints/checkpoint_<n>`` file by file; a run
killed meanwhile leaves a torn folder. The loop writes ``dgqa_state.json`` (a :class:`TrainState`)
into the folder after everything else, so a checkpoint counts once that marker exists:
``--resume_from_checkpoint latest`` takes the newest folder that has it, and older checkpoints are
pruned only after a newer one is complete. Training state is JSON; the files Accelerate wrote are
loaded with ``weights_only`` (nothing in a checkpoint folder is unpickled as code).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dgqa_data.errors import MissingInputError

STATE_FILE = "dgqa_state.json"
#: Complete checkpoints kept per run (older ones are removed once a newer one is complete).
KEEP = 3


@dataclass
class TrainState:
    """Progress of a run, saved with every checkpoint as ``dgqa_state.json``."""

    epoch: int = 0  # completed epochs
    global_step: int = 0  # optimizer steps
    batches_in_epoch: int = 0  # forward passes already done in an unfinished epoch
    loss_sum: float = 0.0  # training loss summed over the images of the unfinished epoch (all processes)
    loss_count: int = 0  # images behind loss_sum
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch

    @classmethod
    def load(cls, checkpoint: Path) -> TrainState:
        """The state in a checkpoint folder's ``dgqa_state.json``."""
        path = checkpoint / STATE_FILE
        if not path.is_file():
            raise MissingInputError(f"{checkpoint} is not a complete dgqa checkpoint (no {STATE_FILE})")
        data = json.loads(path.read_text())
        return cls(
            epoch=int(data["epoch"]),
            global_step=int(data["global_step"]),
            batches_in_epoch=int(data["batches_in_epoch"]),
            loss_sum=float(data.get("loss_sum", 0.0)),
            loss_count=int(data.get("loss_count", 0)),
            history=list(data["history"]),
        )


def checkpoint_number(path: Path) -> int:
    m = re.search(r"(\d+)$", path.name)
    return int(m.group(1)) if m else -1


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (one with ``dgqa_state.json``) under ``output_dir/checkpoints``."""
    folder = Path(output_dir) / "checkpoints"
    done = [p for p in folder.glob("checkpoint_*") if (p / STATE_FILE).is_file()] if folder.is_dir() else []
    return max(done, key=checkpoint_number) if done else None


def find_checkpoint(output_dir: Path, resume: str | None) -> Path | None:
    """The folder ``--resume_from_checkpoint`` names: a path, or ``latest`` (None when there is none)."""
    if not resume:
        return None
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise MissingInputError(f"--resume_from_checkpoint {resume}: no such checkpoint folder")
        return path
    return latest_checkpoint(output_dir)


def mark_complete(accelerator: Any, state: TrainState, keep: int = KEEP) -> Path:
    """After ``accelerator.save_state()``: write ``state`` as the newest checkpoint's marker, then
    remove all but the ``keep`` newest complete checkpoints (and torn folders older than them)."""
    from dgqa_train.evaluate import json_safe

    folder = Path(accelerator.project_dir) / "checkpoints" / f"checkpoint_{accelerator.save_iteration - 1}"
    if accelerator.is_main_process:
        tmp = folder / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(json_safe(asdict(state)), indent=2) + "\n")
        tmp.replace(folder / STATE_FILE)
        ordered = sorted(folder.parent.glob("checkpoint_*"), key=checkpoint_number)
        complete = [p for p in ordered if (p / STATE_FILE).is_file()]
        if len(complete) > keep:
            oldest_kept = checkpoint_number(complete[-keep])
            for p in ordered:
                if checkpoint_number(p) < oldest_kept:
                    shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder
