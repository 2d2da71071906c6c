"""``python -m dgqa_data``: the data verbs (build, synth, select, subset, hydrate, publish, splits), torch-free.

The parser knows every verb's name and help line only; a verb's module (its flags and its code) is
imported when that verb is on the command line, so ``--help`` and ``--version`` start at once.
``dgqa`` (:mod:`dgqa_train.cli`) builds the same parser with the model verbs added.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from dgqa_data import __version__
from dgqa_data.commands import VERBS, Verb
from dgqa_data.errors import DgqaError

DESCRIPTION = "Distortion-guided domain selection for blind image quality assessment."


class LazyVerbs(argparse._SubParsersAction):
    """Sub-parsers whose flags are added the moment their verb is parsed (see :class:`Verb`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, Verb] = {}

    def add_verb(self, verb: Verb) -> argparse.ArgumentParser:
        """Register ``verb``: its name and help line now, its flags when it runs."""
        if verb.name in self.choices:
            raise ValueError(f"verb {verb.name!r} is registered twice")
        extra = {"add_help": False, "prefix_chars": "\0"} if verb.passthrough else {}
        parser = self.add_parser(verb.name, help=verb.help, allow_abbrev=False, **extra)
        self._pending[verb.name] = verb
        return parser

    def load(self, name: str) -> argparse.ArgumentParser:
        """The parser of verb ``name`` with its flags (imports the verb's module once)."""
        parser = self.choices[name]
        verb = self._pending.pop(name, None)
        if verb is None:
            return parser
        if verb.passthrough:
            # every flag, --help included, goes to the module's own (config) parser
            parser.add_argument("args", nargs=argparse.REMAINDER)
            parser.set_defaults(func=partial(_run_passthrough, verb.module, parser.prog))
        else:
            module = importlib.import_module(verb.module)
            getattr(module, verb.add)(parser)
            parser.set_defaults(func=getattr(module, verb.run))
        return parser

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values and values[0] in self.choices:
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def _run_passthrough(module: str, prog: str, args: argparse.Namespace) -> Any:
    return importlib.import_module(module).main(args.args, prog=prog)


def build_parser(verbs: Iterable[Verb] = VERBS, prog: str = "python -m dgqa_data") -> argparse.ArgumentParser:
    """The top-level parser: ``--version`` and one sub-command per verb (flags added lazily)."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"dgqa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", action=LazyVerbs)
    for verb in verbs:
        sub.add_verb(verb)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run its verb under :func:`guarded`."""
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], Any] = args.func
    return guarded(f"{parser.prog} {args.command}", partial(func, args))


def guarded(name: str, call: Callable[[], Any]) -> int:
    """Run ``call`` as the verb ``name`` and return its exit code. A
    :class:`~dgqa_data.errors.DgqaError`, or an operating-system error on a named path (missing,
    unreadable, unwritable), is a mistake the user can fix: one line, exit code 2. Ctrl-C: one line,
    exit code 130. Anything else is a bug and keeps its traceback.

    Every entry point goes through it: ``dgqa``, ``python -m dgqa_data`` and the launch scripts
    (``sys.exit(guarded("dgqa train", main))``)."""
    try:
        rc = call()
    except DgqaError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:
            raise
        print(f"{name}: error: {err.strerror or err}: {err.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dgqa_data VERB ...``."""
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
