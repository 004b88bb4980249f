"""Parse durations as users write them: ``300``, ``300s``, ``5m``, ``1h``, ``7d``."""

from __future__ import annotations

import math
import re

_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|)\s*$")


def parse_duration(text: str | int | float) -> float:
    """Return ``text`` in seconds; raise ``ValueError`` naming the accepted forms otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 300, 300s, 5m, 1h, 7d")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _PATTERN.match(text)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: expected e.g. 300, 300s, 5m, 1h, 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must be a finite number >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds in the largest whole unit (``600`` -> ``10m``), for messages and reports."""
    for suffix, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{suffix}"
    return f"{seconds:g}s"
