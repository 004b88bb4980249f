"""Where the command line looks when a flag is not given: environment variables and defaults.

The same conventions as other daemons' users expect: a flag wins, then an ``ELASTICD_*``
environment variable (what a container spec or a systemd ``Environment=`` line sets), then a
fixed default. Each resolver says where its answer came from, so an error can name it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.core.durations import parse_duration
from daemon.runtime.config_watch import DEFAULT_INTERVAL_S

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "LOG_LEVELS",
    "LOG_LEVEL_ENV",
    "WATCH_INTERVAL_ENV",
    "ConfigLocation",
    "resolve_config",
    "resolve_log_level",
    "resolve_watch_interval",
]

CONFIG_ENV = "ELASTICD_CONFIG"
DEFAULT_CONFIG = Path("/etc/elasticd/elasticd.yaml")
LOG_LEVEL_ENV = "ELASTICD_LOG_LEVEL"
WATCH_INTERVAL_ENV = "ELASTICD_CONFIG_WATCH_INTERVAL"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class ConfigLocation:
    path: Path
    origin: str
    """``--config``, ``$ELASTICD_CONFIG`` or ``the default``: said when the file is missing."""

    def missing_hint(self) -> str:
        """Why this path was read, and how to choose another, for a "no such file" error."""
        if self.origin == "--config":
            return ""
        return f" ({self.origin}; give --config FILE or set {CONFIG_ENV})"


def resolve_config(given: str | None, environ: Mapping[str, str] | None = None) -> ConfigLocation:
    """The flag's file, else ``$ELASTICD_CONFIG``, else ``/etc/elasticd/elasticd.yaml``."""
    env = os.environ if environ is None else environ
    if given:
        return ConfigLocation(Path(given), "--config")
    if env.get(CONFIG_ENV):
        return ConfigLocation(Path(env[CONFIG_ENV]), f"from ${CONFIG_ENV}")
    return ConfigLocation(DEFAULT_CONFIG, "the default path")


def resolve_log_level(given: str | None, environ: Mapping[str, str] | None = None) -> int:
    """``--log-level``, else ``$ELASTICD_LOG_LEVEL``, else info; ValueError names the choices."""
    env = os.environ if environ is None else environ
    name, origin = (given, "--log-level") if given else (env.get(LOG_LEVEL_ENV), LOG_LEVEL_ENV)
    if not name:
        return logging.INFO
    if name.strip().lower() not in LOG_LEVELS:
        raise ValueError(f"{origin}: unknown level {name!r}; choose one of {', '.join(LOG_LEVELS)}")
    level: int = logging.getLevelNamesMapping()[name.strip().upper()]
    return level


def resolve_watch_interval(given: str | None, environ: Mapping[str, str] | None = None) -> float:
    """Seconds between checks of the configuration file; 0 turns the watch off."""
    env = os.environ if environ is None else environ
    text, origin = (given, "--watch-interval") if given else (env.get(WATCH_INTERVAL_ENV), None)
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        return parse_duration(text)
    except ValueError as error:
        raise ValueError(f"{origin or WATCH_INTERVAL_ENV}: {error}") from None
