"""The ``elasticd`` command line: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import shtab

from daemon import __version__
from daemon.conventions import LOG_LEVEL_ENV, LOG_LEVELS, resolve_log_level
from daemon.errors import ConfigError, InputError
from daemon.runtime.logging import set_default_level

# Exit statuses (sysexits.h) for input a command could not use, so scripts and service
# managers can tell "fix the file" from a crash. Commands return these themselves; ``main``
# applies them to any such error a command let through, as one line, never a traceback.
EXIT_USAGE = 2
EXIT_DATAERR = 65
EXIT_CONFIG = 78

# Each module adds its sub-commands with ``register(subparsers)``.
COMMAND_MODULES = (
    "daemon.backtest.command",
    "daemon.commands.validate",
    "daemon.commands.config_schema",
    "daemon.commands.run",
    "daemon.commands.once",
    "daemon.commands.explain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elasticd",
        description="Predictive autoscaling: capacity in place before demand arrives.",
    )
    # The installed package's metadata (daemon.__version__), never a second hard-coded copy.
    parser.add_argument("--version", action="version", version=f"elasticd {__version__}")
    # Shell completion from the parser itself, so it never lags behind a new flag:
    # ``source <(elasticd --print-completion bash)``.
    shtab.add_argument_to(parser, ["--print-completion"], help="print a shell completion script")
    _add_log_level(parser, None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for sub in subparsers.choices.values():
        _add_conventions(sub)
    return parser


def _add_log_level(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        default=default,
        metavar="LEVEL",
        help=f"log level: {', '.join(LOG_LEVELS)} (default: ${LOG_LEVEL_ENV}, else info)",
    )


# Arguments that name files, whatever their metavar, so the shell completes paths for them.
_FILE_DESTS = frozenset({"config", "config_option", "files", "trace"})


def _add_conventions(parser: argparse.ArgumentParser) -> None:
    """Every sub-command takes ``--log-level`` too (``elasticd run --log-level debug`` is what
    people type) and completes file arguments with file names."""
    # SUPPRESS: a sub-command's parser must not overwrite a level given before the command.
    _add_log_level(parser, argparse.SUPPRESS)
    for action in parser._actions:
        if action.metavar == "FILE" or action.dest in _FILE_DESTS or action.dest.endswith("_out"):
            # shtab reads this attribute; argparse's Action has no such field in its stubs.
            setattr(action, "complete", shtab.FILE)  # noqa: B010


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        set_default_level(resolve_log_level(args.log_level))
    except ValueError as error:  # only $ELASTICD_LOG_LEVEL can be wrong: argparse checks the flag
        print(f"elasticd: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"elasticd {args.command}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as error:
        print(f"elasticd {args.command}: {error}", file=sys.stderr)
        return EXIT_DATAERR
