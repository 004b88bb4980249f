"""``elasticd run --config FILE``: the long-running daemon."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.conventions import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    WATCH_INTERVAL_ENV,
    ConfigLocation,
    resolve_config,
    resolve_watch_interval,
)
from daemon.errors import ConfigError
from daemon.runtime.allocator import fix_mmap_threshold
from daemon.runtime.logging import configure_logging
from daemon.runtime.supervisor import Supervisor
from daemon.settings import ConfigFileError, Settings, load_settings

if TYPE_CHECKING:
    from daemon.commands import SubParsers

log = logging.getLogger("elasticd")

# Exit status for a configuration that cannot be used (EX_CONFIG from sysexits.h), so a
# service manager can tell "fix the file" from "crashed".
EXIT_CONFIG = 78


def register(subparsers: SubParsers) -> None:
    """Add the ``run`` sub-command."""
    parser = subparsers.add_parser(
        "run",
        help="run the autoscaling daemon",
        description="Forecast demand and resize the configured targets until stopped. "
        "SIGHUP, or a change to the file, reloads the configuration; SIGTERM stops after "
        "in-flight writes finish.",
    )
    where = f"(default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})"
    parser.add_argument(
        "--config", "-c", dest="config_option", metavar="FILE", help=f"YAML file {where}"
    )
    parser.add_argument("config", nargs="?", metavar="FILE", help="YAML file (or use --config)")
    parser.add_argument(
        "--watch-interval",
        metavar="DURATION",
        help="how often to check the file for changes and reload, e.g. 5s; 0 turns it off "
        f"(default: ${WATCH_INTERVAL_ENV}, else 5s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    location = resolve_config(args.config_option or args.config)
    name = str(location.path)
    try:
        watch_interval_s = resolve_watch_interval(args.watch_interval)
    except ValueError as error:
        print(f"elasticd run: {error}", file=sys.stderr)
        return 2
    settings = load_for_daemon(location)
    if settings is None:
        return EXIT_CONFIG
    supervisor = Supervisor(Path(name), settings, watch_interval_s=watch_interval_s)
    try:
        return asyncio.run(supervisor.run())
    finally:
        supervisor.last_resort.cancel()


def load_for_daemon(location: ConfigLocation) -> Settings | None:
    """The settings at ``location``, with logging and the allocator set up from them, as
    ``run`` and ``once`` start; ``None`` after logging why the file cannot be used (its YAML
    path, and where the path came from when the file is missing)."""
    name = str(location.path)
    # Until the file is read its log_format is unknown: use the automatic choice meanwhile.
    configure_logging("auto")
    try:
        settings = load_settings(name)
    except ConfigError as error:
        where = "" if isinstance(error, ConfigFileError) else f"{name}: "
        hint = location.missing_hint() if not location.path.exists() else ""
        log.error(
            "invalid configuration: %s%s%s",
            where,
            error,
            hint,
            extra={"event": "config_error", "file": name, "path": error.path},
        )
        return None
    configure_logging(settings.log_format)
    fix_mmap_threshold()
    return settings
