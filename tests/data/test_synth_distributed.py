"""``synth`` under a real two-process launch writes the same bytes as one process.

The README's distributed form is ``accelerate launch -m dgqa_train.cli synth ...``: every process
reads WORLD_SIZE / RANK, runs its own shards, and the last one to finish finalises the folder. On a
CPU-only machine ``accelerate launch --cpu --num_processes 2`` starts ONE process, so the launch
here is ``--multi_gpu`` (which only sets up torchrun's process launch; synth never touches a GPU).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.official import encode, reference_crops

pytestmark = pytest.mark.slow

# 4 references x (pristine + 2 types x 2 levels) = 20 images in 4 one-reference shards: 2 per process
SYNTH = ["synth", "--plan", "full", "--types", "1,9", "--levels", "1,3", "--refs-per-shard", "1"]
SYNTH += ["--seed", "3"]
ROWS, SHARDS, PER_RANK = 20, 4, 10
TIMEOUT_S = 180
# the data layer's own entry point when it has one, else the full CLI
ENTRY = "dgqa_data" if importlib.util.find_spec("dgqa_data.__main__") else "dgqa_train.cli"


def _env() -> dict[str, str]:
    """This process' environment (offline Hub, throw-away HF_HOME from conftest) minus any launcher's."""
    env = dict(os.environ)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("refs")
    for i, crop in enumerate(reference_crops(size=(64, 48))[:4]):
        (folder / f"photo{i}.png").write_bytes(encode(crop, "PNG"))
    return folder


def test_two_process_launch_is_byte_identical_to_one_process(refs, tmp_path):
    args = [*SYNTH, "--source", str(refs)]
    _run([sys.executable, "-m", ENTRY, *args, "--out", "one"], tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(_free_port())]
    two = _run([*launch, "-m", ENTRY, *args, "--out", "two"], tmp_path)

    # two processes ran, each its own half of the shards, and exactly one finalised the folder
    err = two.stderr.replace("\r", "\n")
    for rank in (1, 2):  # the progress bar of process `rank` ends at its own half of the images
        done = re.search(rf"shards {rank}/2\).*\b{PER_RANK}/{PER_RANK}\b", err)
        assert done, f"process {rank} of 2 did not write its {PER_RANK} images:\n{err}"
    lines = [line for line in two.stdout.splitlines() if line.strip()]
    assert len(lines) == 2 and sum("wrote" in line for line in lines) == 1, two.stdout
    assert not (tmp_path / ".two.partial").exists()

    one, both = _digests(tmp_path / "one"), _digests(tmp_path / "two")
    shards = [name for name in one if name.startswith("data/")]
    assert len(shards) == SHARDS and {"README.md", "plan.json"} <= set(one)
    assert both == one  # every file: parquet shards (images and rows), card, plan

    import pyarrow.parquet as pq

    assert sum(pq.read_metadata(tmp_path / "two" / name).num_rows for name in shards) == ROWS
