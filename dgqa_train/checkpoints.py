"""The one checkpoint format and rule of every training run.

``accelerator.save_state()`` writes ``<output_dir>/checkpoints/checkpoint_<n>`` file by file; a run
killed meanwhile leaves a torn folder. The loop writes ``dgqa_state.json`` (a :class:`TrainState`)
into the folder after everything else, with the size and sha256 of every file beside it, so a
checkpoint counts once that marker exists and its files still match it: ``--resume_from_checkpoint
latest`` takes the newest folder that verifies (saying which torn ones it skipped), and older
checkpoints are pruned only after a newer one is complete. The marker also records the settings
that decide what is trained, so a resume with other settings is refused (:func:`changed_settings`).
Training state is JSON; the files Accelerate wrote are loaded with ``weights_only`` (nothing in a
checkpoint folder is unpickled as code).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dgqa_data.atomic import write_json
from dgqa_data.errors import DgqaError, MissingInputError
from dgqa_data.hub_folder import file_digest

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
    settings: dict[str, Any] | None = None  # what decides the trained weights (None: not recorded)
    files: dict[str, dict[str, Any]] | None = None  # name -> {"size", "sha256"} of the checkpoint's files
    epoch_rows: dict[str, Any] | None = None  # the rows the unfinished epoch draws (per-epoch DRC); None: all

    @classmethod
    def load(cls, checkpoint: Path) -> TrainState:
        """The state in a checkpoint folder's ``dgqa_state.json``, every value checked (a bad one is a
        :class:`DgqaError` naming the file and the key)."""
        path = checkpoint / STATE_FILE
        if not path.is_file():
            raise MissingInputError(f"{checkpoint} is not a complete dgqa checkpoint (no {STATE_FILE})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DgqaError(f"{path}: not a dgqa checkpoint marker: {err}") from None
        if not isinstance(data, dict):
            raise DgqaError(f"{path}: not a dgqa checkpoint marker (a JSON object)")
        for key, ok, want in _STATE_CHECKS:
            if key not in data and key in _OPTIONAL:
                continue
            if key not in data:
                raise DgqaError(f"{path}: {key} is missing")
            if not ok(data[key]):
                raise DgqaError(f"{path}: {key} must be {want}, got {data[key]!r}")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53


def _file_record(v: Any) -> bool:
    return (isinstance(v, dict) and _count(v.get("size"))
            and isinstance(v.get("sha256"), str) and len(v["sha256"]) == 64)  # fmt: skip


_OPTIONAL = ("loss_sum", "loss_count", "settings", "files", "epoch_rows")  # absent in markers of older dgqa versions
_STATE_CHECKS = (
    ("epoch", _count, "a whole number >= 0"),
    ("global_step", _count, "a whole number >= 0"),
    ("batches_in_epoch", _count, "a whole number >= 0"),
    ("loss_sum", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
     "a finite number"),
    ("loss_count", _count, "a whole number >= 0"),
    ("history", lambda v: isinstance(v, list) and all(isinstance(h, dict) and _count(h.get("epoch")) for h in v),
     "a list of epoch records"),
    ("settings", lambda v: v is None or isinstance(v, dict), "an object"),
    ("files", lambda v: v is None or (isinstance(v, dict) and all(map(_file_record, v.values()))),
     "an object of {size, sha256} records"),
    ("epoch_rows", lambda v: v is None or isinstance(v, dict), "an object"),
)  # fmt: skip


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file in a checkpoint folder but the marker (and temporaries)."""
    records = {}
    for p in sorted(folder.rglob("*")):
        name = p.relative_to(folder).as_posix()
        if p.is_file() and name != STATE_FILE and not p.name.startswith("."):
            records[name] = {"size": p.stat().st_size, "sha256": file_digest(p)}
    return records


def verify(checkpoint: Path) -> TrainState:
    """The state of a complete checkpoint whose files match its marker; else a :class:`TornCheckpoint`
    naming the first file that does not (missing, another size, other content)."""
    state = TrainState.load(checkpoint)
    if state.files is not None:
        now = file_records(checkpoint)
        for name, want in state.files.items():
            got = now.get(name)
            if got != want:
                what = "is missing" if got is None else (
                    f"has {got['size']} bytes, not {want['size']}" if got["size"] != want["size"] else "has changed"
                )  # fmt: skip
                raise TornCheckpoint(f"{checkpoint / name} {what} (torn or altered checkpoint)")
    return state


class TornCheckpoint(DgqaError):
    """A checkpoint whose files do not match its completion marker."""
def checkpoint_number(path: Path) -> int:
    m = re.search(r"(\d+)$", path.name)
    return int(m.group(1)) if m else -1


def latest_checkpoint(output_dir: str | Path, say: Callable[[str], None] = print) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints`` whose files verify; each newer
    torn one is skipped with a line through ``say``."""
    folder = Path(output_dir) / "checkpoints"
    done = [p for p in folder.glob("checkpoint_*") if (p / STATE_FILE).is_file()] if folder.is_dir() else []
    for path in sorted(done, key=checkpoint_number, reverse=True):
        try:
            verify(path)
            return path
        except TornCheckpoint as err:
            say(f"skipping checkpoint {path.name}: {err}")
    return None


def find_checkpoint(output_dir: Path, resume: str | None, say: Callable[[str], None] = print) -> Path | None:
    """The folder ``--resume_from_checkpoint`` names: a path (checked), or ``latest`` (None when there is none)."""
    if not resume:
        return None
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise MissingInputError(f"--resume_from_checkpoint {resume}: no such checkpoint folder")
        verify(path)
        return path
    return latest_checkpoint(output_dir, say)


def changed_settings(state: TrainState, settings: dict[str, Any]) -> list[str]:
    """The settings that differ between a checkpoint and this run, as ``name (checkpoint -> now)``."""
    if state.settings is None:
        return []
    keys = sorted(set(state.settings) | set(settings))
    norm = {k: json.loads(json.dumps(settings.get(k), default=str)) for k in keys}  # tuples -> lists, as saved
    return [f"{k} ({state.settings.get(k)!r} -> {norm[k]!r})" for k in keys if state.settings.get(k) != norm[k]]


def mark_complete(accelerator: Any, state: TrainState, keep: int = KEEP) -> Path:
    """After ``accelerator.save_state()``: write ``state`` as the newest checkpoint's marker, then
    remove all but the ``keep`` newest complete checkpoints (and torn folders older than them)."""
    from dgqa_train.evaluate import json_safe

    folder = Path(accelerator.project_dir) / "checkpoints" / f"checkpoint_{accelerator.save_iteration - 1}"
    accelerator.wait_for_everyone()  # every process's files are written before they are recorded
    if accelerator.is_main_process:
        state.files = file_records(folder)
        write_json(folder / STATE_FILE, json_safe(asdict(state)))
        ordered = sorted(folder.parent.glob("checkpoint_*"), key=checkpoint_number)
        complete = [p for p in ordered if (p / STATE_FILE).is_file()]
        if len(complete) > keep:
            oldest_kept = checkpoint_number(complete[-keep])
            for p in ordered:
                if checkpoint_number(p) < oldest_kept:
                    shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder
