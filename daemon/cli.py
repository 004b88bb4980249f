"""The ``elasticd`` command line: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from daemon import __version__
from daemon.errors import ConfigError, InputError

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
    "daemon.commands.explain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elasticd",
        description="Predictive autoscaling: capacity in place before demand arrives.",
    )
    parser.add_argument("--version", action="version", version=f"elasticd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
