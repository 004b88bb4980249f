"""The ``elasticd`` command line: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from daemon import __version__

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
        return 2
    return int(args.handler(args))
