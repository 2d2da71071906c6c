"""Guards on the paths a verb writes: an output never is, holds or sits inside one of its inputs."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dgqa_data.errors import DgqaError, OutputExistsError
from dgqa_data.specs import parse_spec


def local_path(spec: str | Path) -> Path | None:
    """The local file or folder a dataset spec (``PATH`` or ``PATH:SPLIT``, :func:`dgqa_data.specs.parse_spec`)
    names, or None (a Hub id).

    Raises:
        DgqaError: ``spec`` is not a valid dataset spec (empty, or empty around its colon).
    """
    return parse_spec(spec).local


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


#: In every output folder a verb claimed (:func:`claim_folder`): the verb's name, one line.
OUTPUT_MARKER = ".dgqa-output"


def check_folder(
    folder: str | Path,
    verb: str,
    *,
    overwrite: bool = False,
    writes: tuple[str, ...] = (),
    known: tuple[str, ...] = (),
    flag: str = "--out",
    overwrite_flag: str = "--overwrite",
) -> None:
    """The one rule for output folders, checked before anything is written.

    A missing or empty folder, or the verb's own earlier output (its :data:`OUTPUT_MARKER` names the
    verb, or, written before markers existed, it holds one of the ``known`` files), is the verb's.
    Any other non-empty folder is refused unless the verb's overwrite flag is given; even then no
    file dgqa did not write is deleted or replaced: a folder already holding one of the names the
    verb writes (``writes``) is refused, naming them.

    Raises:
        OutputExistsError: the folder holds files that are not this verb's.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{flag} {folder} is a file, not a folder")
    marker = folder / OUTPUT_MARKER
    if marker.is_file():
        if marker.read_text(encoding="utf-8", errors="replace").partition("\n")[0] == verb:
            return
    elif any((folder / name).is_file() for name in known):
        return
    theirs = (
        sorted(p.name for p in folder.iterdir() if p.name not in (OUTPUT_MARKER, LOCK_NAME))
        if folder.is_dir()
        else []
    )
    if theirs and not overwrite:
        shown = ", ".join(theirs[:5]) + (", ..." if len(theirs) > 5 else "")
        raise OutputExistsError(
            f"{flag} {folder} is not empty ({shown}) and is not the output of an earlier dgqa {verb}: "
            f"choose a new or empty folder, or pass {overwrite_flag} to write beside those files"
        )
    clash = [name for name in writes if (folder / name).exists()]
    if theirs and clash:
        raise OutputExistsError(
            f"{flag} {folder} holds {', '.join(clash)}, which dgqa did not write and dgqa {verb} would "
            f"replace; {overwrite_flag} never replaces files dgqa did not write: choose another folder"
        )


def claim_folder(folder: str | Path, verb: str, **rule) -> None:
    """Claim ``folder`` as ``verb``'s output folder (see :func:`check_folder` for ``rule``): created
    if needed and marked as the verb's."""
    folder = Path(folder)
    check_folder(folder, verb, **rule)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OUTPUT_MARKER).write_text(verb + "\n", encoding="utf-8")


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
def run_lock(folder: str | Path, main_process: bool = True, claim: dict | None = None) -> Iterator[Path]:
    """Hold ``folder/.dgqa.lock`` while a run writes ``folder`` (created if needed).

    A second run into the same folder is refused while the first one's process is alive; a lock
    left by a killed run (its process is gone) is taken over.

    Args:
        folder: the output folder.
        main_process: whether this process takes the lock (in a distributed run only process 0
            does; the others just run).
        claim: keyword arguments of :func:`claim_folder` (``verb``, ``overwrite``, ``writes``,
            ...): the folder is claimed for that verb before the lock is taken.

    Raises:
        DgqaError: another live run holds the folder, or (``claim``) it is not the verb's.
    """
    folder = Path(folder)
    if not main_process:
        yield folder
        return
    created = not folder.exists()
    if claim is not None:
        claim_folder(folder, **claim)
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
        if created and all(p.name == OUTPUT_MARKER for p in folder.iterdir()):
            shutil.rmtree(folder)  # a run that failed before writing anything leaves nothing behind


@dataclass
class Skip:
    """A row that cannot be built; raised as an error unless ``--skip-bad`` records it."""

    image_id: str
    where: str
    reason: str


@functools.lru_cache(maxsize=64)
def _real_dir(root: str) -> str:
    return os.path.join(os.path.realpath(root), "")


def safe_path(root: Path, rel: str, where: str) -> Path | Skip:
    """``root / rel`` if it stays inside ``root`` (symlinks resolved), else a :class:`Skip` naming the row."""
    if os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
        return Skip(rel, where, f"path {rel!r} escapes the corpus root")
    path = root / rel
    # os.path.realpath on strings: pathlib's resolve() costs ~0.2 ms a row at 700k rows
    real = os.path.realpath(path)
    if not real.startswith(_real_dir(str(root))):
        link = f" (a symlink to {real})" if real != os.path.abspath(path) else ""
        return Skip(rel, where, f"path {rel!r} escapes the corpus root{link}")
    return path
