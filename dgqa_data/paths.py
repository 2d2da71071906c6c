"""Guards on the paths a verb writes: an output never is, holds or sits inside one of its inputs."""

from __future__ import annotations

from collections.abc import Mapping
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
