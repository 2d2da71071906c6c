"""The one error family for mistakes a user can fix: the CLI prints them as one line and exits 2.

Anything else that escapes a verb is a bug and keeps its traceback.
"""

from __future__ import annotations


class DgqaError(ValueError):
    """A bad path, file, flag, option or dataset; the message names the thing and what is wrong."""


class CorpusError(DgqaError):
    """A problem with an official download: names the file (and row) and what is wrong."""


class MissingInputError(DgqaError, FileNotFoundError):
    """An input (file, folder, dataset, split) that does not exist."""


class OutputExistsError(DgqaError, FileExistsError):
    """An output that exists and may not be replaced."""


def at_least(low: int):
    """An argparse ``type``: a whole number >= ``low`` (a bad value is a one-line usage error)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"int>={low}"
    return parse


def fraction(text: str) -> float:
    """An argparse ``type``: a finite number in [0, 1]."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value
