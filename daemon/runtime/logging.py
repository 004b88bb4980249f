"""Structured logs: one JSON object per line for machines, ``key=value`` text for people.

Fields travel in ``extra=`` (``log.info("scaled", extra={"target": "web", "desired": 4})``), so
the same call reads well on a terminal and is queryable once shipped to a log store.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import IO, Any, Literal

from daemon.redact import redact_text
from daemon.settings import LogFormat

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "resolve_format",
    "set_default_level",
]

# The level chosen at start (--log-level, ELASTICD_LOG_LEVEL); every later configure_logging,
# a reload's included, keeps it instead of falling back to info.
_default_level = logging.INFO


def set_default_level(level: int) -> None:
    """The level ``configure_logging`` uses when not given one, from now on."""
    global _default_level
    _default_level = level
    logging.getLogger().setLevel(level)


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


def _plain(value: Any) -> Any:
    # NaN is not JSON; a missing demand is better shown as null than as an unparseable line.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return redact_text(str(value))


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "message": ..., <extra fields>}``.

    Both formatters pass every string through ``redact_text``: callers redact URLs where they
    build messages, and this is the last line of defence for a library's exception text.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for key, value in _fields(record).items():
            payload.setdefault(key, _plain(value))
        if record.exc_info:
            payload["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            payload["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  elasticd.reconciler  scaled up  target=web desired=4``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{key}={_text(value)}" for key, value in _fields(record).items())
        line = f"{stamp} {record.levelname:<5} {record.name}  {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact_text(line)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return repr(text) if " " in text else text


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def resolve_format(log_format: LogFormat, stream: IO[str]) -> Literal["json", "text"]:
    """``auto``: JSON unless a person is watching (the stream is a terminal)."""
    if log_format == "auto":
        return "text" if stream.isatty() else "json"
    return log_format


def configure_logging(
    log_format: LogFormat, *, level: int | None = None, stream: IO[str] | None = None
) -> None:
    """Send every log record to ``stream`` (stderr) in the chosen format; idempotent, so a
    configuration reload can switch the format."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    chosen = resolve_format(log_format, out)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_default_level if level is None else level)
    # Library chatter (botocore's credential lookups, aiohttp's access lines) is not ours.
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
