"""Parse durations as users write them: ``300``, ``300s``, ``5m``, ``1h``, ``7d``, and the
compound form Go and Prometheus users copy from their own configs: ``1h30m``, ``2m30s``,
``1d12h``, ``500ms``."""

from __future__ import annotations

import math
import re

_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# Compound terms in Prometheus's order, largest first, each unit at most once: "5m1h" is far
# more likely a typo than a deliberate 65 minutes, so it is refused rather than summed.
_ORDER = ("w", "d", "h", "m", "s", "ms")
_NUMBER = r"\d+(\.\d+)?"
_SINGLE = rf"{_NUMBER}\s*(ms|s|m|h|d|w)?"
_COMPOUND = "".join(rf"({_NUMBER}\s*{unit}\s*)?" for unit in _ORDER)
DURATION_PATTERN = rf"^\s*({_SINGLE}|(?=\d){_COMPOUND})\s*$"
"""What the parser accepts, as one regular expression valid in both Python and ECMA-262, so
the JSON Schema's ``pattern`` says exactly what the daemon will take."""
_PATTERN = re.compile(DURATION_PATTERN)
_TERM = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|)")
_EXPECTED = "expected e.g. 300, 300s, 5m, 1h, 7d, 1h30m, 2m30s, 500ms"


def parse_duration(text: str | int | float) -> float:
    """Return ``text`` in seconds; raise ``ValueError`` naming the accepted forms otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: {_EXPECTED}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        if _PATTERN.match(text) is None:
            raise ValueError(f"invalid duration {text!r}: {_EXPECTED}")
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _TERM.findall(text.strip()))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must be a finite number >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds in the largest whole unit (``600`` -> ``10m``), for messages and reports."""
    for suffix, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{suffix}"
    return f"{seconds:g}s"
