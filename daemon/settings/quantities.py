"""Field types for amounts people write with units: durations, CPU and memory/byte sizes.

Each accepts the written form (``"5m"``, ``"500m"``, ``"4Gi"``) or a plain number and stores a
plain number in base units (seconds, cores, bytes), so no consumer ever parses units again.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from daemon.core.durations import DURATION_PATTERN, parse_duration


def _duration(value: Any) -> Any:
    # Leave other types to pydantic so a list or a mapping gets its ordinary type error.
    if isinstance(value, str | int | float):
        return parse_duration(value)
    return value


# Seconds; written as 300, "300s", "5m", "1h", "7d", or compound as Go and Prometheus write
# them ("1h30m", "2m30s", "500ms"). The schema carries the parser's own pattern and says so in
# words, since an editor shows the description, not the regular expression.
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": DURATION_PATTERN,
                    "description": "A duration: 300, 300s, 5m, 1h, 7d, or compound as in Go "
                    "and Prometheus (1h30m, 2m30s, 500ms; largest unit first).",
                },
                {"type": "number", "minimum": 0, "description": "Seconds."},
            ]
        }
    ),
]
# A duration that must be longer than zero (intervals, lead times, periods).
PositiveDuration = Annotated[Duration, Field(gt=0)]

_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")


def parse_cpu(value: str | int | float) -> float:
    """Kubernetes CPU quantity (``"500m"``, ``"2"``, ``1.5``) in cores."""
    if isinstance(value, bool):
        raise ValueError(f"invalid CPU amount {value!r}: expected e.g. 500m, 2, 1.5")
    if isinstance(value, int | float):
        cores = float(value)
    else:
        match = _CPU.match(value)
        if match is None:
            raise ValueError(f"invalid CPU amount {value!r}: expected e.g. 500m, 2, 1.5")
        cores = float(match.group(1)) / (1000.0 if match.group(2) else 1.0)
    if not math.isfinite(cores) or cores < 0:
        raise ValueError(f"invalid CPU amount {value!r}: must be a finite number >= 0")
    return cores


# Kubernetes binary and decimal suffixes, plus the kB/MB/GB spelling people use for file sizes.
_BYTE_UNITS = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(value: str | int | float) -> int:
    """Memory or size (``"512Mi"``, ``"4Gi"``, ``"50MB"``, ``1048576``) in whole bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: expected e.g. 512Mi, 4Gi, 50MB")
    if isinstance(value, int | float):
        amount = float(value)
    else:
        match = _BYTES.match(value)
        if match is None or match.group(2) not in _BYTE_UNITS:
            raise ValueError(f"invalid size {value!r}: expected e.g. 512Mi, 4Gi, 50MB")
        amount = float(match.group(1)) * _BYTE_UNITS[match.group(2)]
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"invalid size {value!r}: must be a finite number >= 0")
    return round(amount)


def _cpu(value: Any) -> Any:
    return parse_cpu(value) if isinstance(value, str | int | float) else value


def _bytes(value: Any) -> Any:
    return parse_bytes(value) if isinstance(value, str | int | float) else value


# Cores; written as "500m", "2" or 1.5.
Cpu = Annotated[
    float,
    BeforeValidator(_cpu),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}]}),
]
# Bytes; written as "512Mi", "4Gi", "50MB" or a number of bytes.
ByteSize = Annotated[
    int,
    BeforeValidator(_bytes),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}),
]
