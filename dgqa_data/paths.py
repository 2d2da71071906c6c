"""Guards on the paths a verb writes: an output never is, holds or sits inside one of its inputs."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dgqa_data.errors import DgqaError


def local_path(spec: str | Path) -> Path | None:
    """The local file or folder a dataset spec (``PATH`` or ``PATH:SPLIT``) names, or None (a Hub id)."""
    p = Path(spec).expanduser()
    if p.exists():
        return p
    head, sep, _ = str(spec).rpartition(":")
    if sep and head and Path(head).expanduser().exists():
        return Path(head).expanduser()
    return None


def check_output(out: str | Path, inputs: Mapping[str, str | Path | None], flag: str = "--out") -> None:
    """Refuse ``out`` before anything is written if it is, holds or sits inside one of ``inputs``.

    Args:
        out: the file or folder the verb will write (or replace).
        inputs: ``{what it is: path or dataset spec}``; specs that are not local paths are skipped.
        flag: how the user named ``out`` (for the message).

    Raises:
        DgqaError: naming both paths and how they overlap.
    """
    o = Path(out).expanduser().resolve()
    for what, spec in inputs.items():
        if spec is None:
            continue
        path = local_path(spec)
        if path is None:
            continue
        i = path.resolve()
        if o == i:
            how = "is"
        elif i.is_relative_to(o):
            how = "holds"
        elif o.is_relative_to(i):
            how = "sits inside"
        else:
            continue
        raise DgqaError(
            f"{flag} {out} {how} the {what} {spec}: writing there could destroy or change an input; "
            "choose an output outside it"
        )


def _host() -> str:
    return socket.gethostname().replace("-", "_")  # "-" separates host from pid in owner strings


def process_owner() -> str:
    """``<host>-<pid>`` of this process (names temporary folders and locks)."""
    return f"{_host()}-{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Whether the process that owns a temporary folder may still run (another host: assume so)."""
    host, _, pid = owner.rpartition("-")
    if host != _host() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


LOCK_NAME = ".dgqa.lock"
#: An empty lock file (its owner is being written, or its writer was killed right after creating it)
#: counts as held for this many seconds, then as abandoned.
FRESH_LOCK_S = 60.0
#: What :func:`claim_lock` answers when the lock kept changing hands while it tried.
CONTESTED = "contested"


def claim_lock(lock: str | Path) -> str | None:
    """Take the lock file ``lock`` for this process: None when this process now holds it, else who
    holds it (its owner, or :data:`CONTESTED`).

    The file holds its owner (:func:`process_owner`). A lock whose owner is gone (a killed process
    on this host) is taken over, and so is an empty one older than :data:`FRESH_LOCK_S`.
    """
    lock = Path(lock)
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = lock.read_text().strip()
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:  # released meanwhile
                continue
            if owner_alive(owner) if owner else age < FRESH_LOCK_S:
                return owner or "a process that is taking it"
            lock.unlink(missing_ok=True)  # left by a killed process
            continue
        os.write(fd, process_owner().encode())
        os.close(fd)
        return None
    return CONTESTED


@contextmanager
def run_lock(folder: str | Path, main_process: bool = True) -> Iterator[Path]:
    """Hold ``folder/.dgqa.lock`` while a run writes ``folder`` (created if needed).

    A second run into the same folder is refused while the first one's process is alive; a lock
    left by a killed run (its process is gone) is taken over.

    Args:
        folder: the output folder.
        main_process: whether this process takes the lock (in a distributed run only process 0
            does; the others just run).

    Raises:
        DgqaError: another live run holds the folder.
    """
    folder = Path(folder)
    if not main_process:
        yield folder
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    owner = claim_lock(lock)
    if owner == CONTESTED:
        raise DgqaError(f"{folder}: could not take {LOCK_NAME}; is another run starting?")
    if owner is not None:
        raise DgqaError(
            f"{folder} is being written by another dgqa run ({owner}); wait for it to end or choose "
            "another output folder"
        )
    try:
        yield folder
    finally:
        lock.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a run that failed before writing anything leaves nothing behind
