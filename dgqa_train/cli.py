"""The ``dgqa`` command: data verbs from dgqa_data, model verbs from dgqa_train."""

from __future__ import annotations

import argparse
import sys

from dgqa_data import __version__
from dgqa_data import commands as data_commands
from dgqa_data.errors import DgqaError
from dgqa_train import commands as train_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dgqa", description="Distortion-guided domain selection for blind image quality assessment."
    )
    parser.add_argument("--version", action="version", version=f"dgqa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_commands.register(sub)
    train_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A :class:`~dgqa_data.errors.DgqaError`, or an operating-system error on a named
    path (missing, unreadable, unwritable), is a mistake the user can fix: one line, exit code 2.
    Ctrl-C: one line, exit code 130. Anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except DgqaError as err:
        print(f"dgqa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:
            raise
        print(f"dgqa {args.command}: error: {err.strerror or err}: {err.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dgqa {args.command}: interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
