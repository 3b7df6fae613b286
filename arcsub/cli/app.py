"""The `arcsub` command line: a small registry of subcommands.

Each command is a `Command`: a name, a one-line help, a function that adds its arguments to its parser, and
a function that runs it (``run(args) -> exit code``). `run` may be a "module:function" string, imported only
when that command runs, so heavy modules (torch, vllm) never load for `arcsub score`. To add a command:

    def _add_train(p):                      # arguments only
        p.add_argument("config")

    register(Command("train", "fine-tune a model", _add_train, "arcsub.lm.train:cli_train"))

or, from any module imported by `_COMMAND_MODULES` below, call ``register(...)`` there.

Bad input never prints a traceback: ArcDataError, OSError and argument errors become one line on stderr,
``arcsub: error: <file>: task X: <problem>``, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from arcsub.core.data import (
    ArcDataError,
)
from arcsub.core.device import apply_memory_cap

PROG = "arcsub"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line arguments (exit 2, one line)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{sub}: {message}" if sub else message)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int] | str
    description: str | None = None  # longer --help text; defaults to `help`

    def resolve(self) -> Callable[[argparse.Namespace], int]:
        if callable(self.run):
            return self.run
        module, _, func = self.run.partition(":")
        return getattr(importlib.import_module(module), func)


COMMANDS: dict[str, Command] = {}

# Modules imported when the parser is built, so commands they `register` appear (keep them light to import).
_COMMAND_MODULES: tuple[str, ...] = (
    "arcsub.cli.files",
    "arcsub.cli.lm",
    "arcsub.cli.dry_run",
    "arcsub.cli.task",
    "arcsub.cli.solve",
)


def register(cmd: Command) -> Command:
    """Add a command to the registry (a later registration under the same name replaces it)."""
    COMMANDS[cmd.name] = cmd
    return cmd


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod)
    parser = _Parser(
        prog=PROG,
        description="ARC Prize: train, test-time fine-tune and sample models; validate and score Kaggle files, "
        "compute metrics, draw tasks; run the competition path locally (dry-run).",
        epilog="Run 'arcsub COMMAND --help' for the arguments of a command. Bad input exits 2 with one line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `arcsub` command line; returns the exit code (0 ok, 1 failed check, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        apply_memory_cap()
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help / --version
            return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
        return int(args._command.resolve()(args) or 0)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    except ArcDataError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    except OSError as e:
        where = e.filename if e.filename is not None else type(e).__name__
        print(f"{PROG}: error: {where}: {e.strerror or e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("ARCSUB_DEBUG"):
            raise
        msg = " ".join(str(e).split())
        print(
            f"{PROG}: internal error: {type(e).__name__}: {msg} (ARCSUB_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_USAGE
