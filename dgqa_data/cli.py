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


class VerbParser(argparse.ArgumentParser):
    """The top-level parser: every verb's name and help line from the start, its flags (and its
    module) only when that verb is parsed (see :class:`Verb`).

    argparse has no public hook that runs when a sub-command is chosen, so the verb is found before
    parsing, in the public :meth:`parse_known_args` (which :meth:`parse_args` calls): it is the first
    argument that is not an option, since the top-level options (``--help``, ``--version``) take no
    value. Its flags are added (:meth:`load`), then argparse parses as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Each verb's sub-parser, in the order ``--help`` lists them (flags added by :meth:`load`).
        self.verbs: dict[str, argparse.ArgumentParser] = {}
        self._pending: dict[str, Verb] = {}
        self._sub: Any = None

    def add_verb(self, verb: Verb) -> argparse.ArgumentParser:
        """Register ``verb``: its name and help line now, its flags when it runs."""
        if verb.name in self.verbs:
            raise ValueError(f"verb {verb.name!r} is registered twice")
        if self._sub is None:
            self._sub = self.add_subparsers(
                dest="command", required=True, metavar="COMMAND", parser_class=argparse.ArgumentParser
            )
        extra = {"add_help": False, "prefix_chars": "\0"} if verb.passthrough else {}
        parser = self._sub.add_parser(verb.name, help=verb.help, allow_abbrev=False, **extra)
        self.verbs[verb.name] = parser
        self._pending[verb.name] = verb
        return parser

    def load(self, name: str) -> argparse.ArgumentParser:
        """The parser of verb ``name`` with its flags (imports the verb's module once)."""
        parser = self.verbs[name]
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

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        args = sys.argv[1:] if args is None else list(args)
        name = next((a for a in args if a and a[0] not in self.prefix_chars), None)
        if name in self._pending:
            self.load(name)
        return super().parse_known_args(args, namespace)


def _run_passthrough(module: str, prog: str, args: argparse.Namespace) -> Any:
    return importlib.import_module(module).main(args.args, prog=prog)


def build_parser(verbs: Iterable[Verb] = VERBS, prog: str = "python -m dgqa_data") -> VerbParser:
    """The top-level parser: ``--version`` and one sub-command per verb (flags added lazily)."""
    parser = VerbParser(prog=prog, description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"dgqa {__version__}")
    for verb in verbs:
        parser.add_verb(verb)
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
