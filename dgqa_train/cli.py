"""The ``dgqa`` command: the data verbs of :mod:`dgqa_data.commands` and the model verbs of
:mod:`dgqa_train.commands`, with the same flags as ``python -m dgqa_data``.

Only the chosen verb's module is imported, so ``dgqa --help`` and ``dgqa --version`` load no torch.
"""

from __future__ import annotations

import sys

from dgqa_data import cli as data_cli
from dgqa_data import commands as data_commands
from dgqa_train import commands as model_commands


def build_parser() -> data_cli.VerbParser:
    """The ``dgqa`` parser (each verb's flags are added when it is parsed)."""
    return data_cli.build_parser([*data_commands.VERBS, *model_commands.VERBS], prog="dgqa")


def main(argv: list[str] | None = None) -> int:
    """Run one verb; user mistakes print one line and exit 2 (see :func:`dgqa_data.cli.run_command`)."""
    return data_cli.run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
