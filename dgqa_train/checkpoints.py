"""The one checkpoint rule of both training scripts: a checkpoint counts once its marker is written.

``accelerator.save_state()`` writes a folder file by file; a run killed meanwhile leaves a torn
folder. Each script writes ``dgqa_state.json`` into the folder after everything else, so
``--resume_from_checkpoint latest`` takes the newest folder that has it and skips torn ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

STATE_FILE = "dgqa_state.json"


def checkpoint_number(path: Path) -> int:
    m = re.search(r"(\d+)$", path.name)
    return int(m.group(1)) if m else -1


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (one with ``dgqa_state.json``) under ``output_dir/checkpoints``."""
    folder = Path(output_dir) / "checkpoints"
    done = [p for p in folder.glob("checkpoint_*") if (p / STATE_FILE).is_file()] if folder.is_dir() else []
    return max(done, key=checkpoint_number) if done else None


def mark_complete(accelerator: Any, state: dict[str, Any]) -> Path:
    """After ``accelerator.save_state()``: write ``state`` as the newest checkpoint's marker (process 0)."""
    folder = Path(accelerator.project_dir) / "checkpoints" / f"checkpoint_{accelerator.save_iteration - 1}"
    if accelerator.is_main_process:
        tmp = folder / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(folder / STATE_FILE)
    accelerator.wait_for_everyone()
    return folder
