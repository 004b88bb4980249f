"""Load a demand trace (CSV ``timestamp,value``) onto a regular grid, refusing bad input.

The grid step is the median step between observations; a missing step has no observation
(NaN). Errors are one line naming the problem and, where there is one, the row.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from daemon.errors import InputError

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Trace:
    """Demand on a regular grid: ``times`` epoch seconds, ``values`` NaN where not observed."""

    times: FloatArray
    values: FloatArray
    step_s: float
    labels: tuple[str, ...]  # the timestamp of each grid step, in the trace's own format

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def observed(self) -> NDArray[np.bool_]:
        return np.isfinite(self.values)

    def __len__(self) -> int:
        return int(self.times.size)


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 with ``Z`` or an offset; a naive timestamp is taken as UTC."""
    stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _label_formatter(sample: str) -> tuple[str, str]:
    """How the trace writes timestamps: (separator between date and time, UTC suffix)."""
    text = sample.strip()
    separator = "T" if "T" in text else " "
    if text.endswith(("Z", "z")):
        return separator, "Z"
    if text.endswith("+00:00"):
        return separator, "+00:00"
    return separator, ""


def format_label(epoch: float, separator: str, suffix: str) -> str:
    stamp = datetime.fromtimestamp(epoch, tz=UTC).replace(tzinfo=None)
    return stamp.isoformat(sep=separator, timespec="seconds") + suffix


def read_rows(path: Path) -> tuple[list[str], FloatArray, FloatArray]:
    """The raw rows: labels, epoch seconds and values, validated line by line.

    Every way the file can be unusable (missing, a directory, unreadable, binary, not UTF-8,
    empty) is one ``InputError`` naming the file, never a library traceback.
    """
    handle = _open_trace(path)
    try:
        with handle:
            return _parse_rows(path, handle)
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    except csv.Error as error:
        # NUL bytes ("line contains NUL"), a field over the csv module's size limit.
        raise InputError(f"{path}: not a CSV trace ({error})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None


def _open_trace(path: Path) -> IO[str]:
    try:
        return path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a trace file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as error:
        raise InputError(f"{path}: cannot open: {error.strerror or error}") from None


def _parse_rows(path: Path, handle: IO[str]) -> tuple[list[str], FloatArray, FloatArray]:
    labels: list[str] = []
    times: list[float] = []
    values: list[float] = []
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise InputError(f"{path}: empty file; the header must be 'timestamp,value'")
    if [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
        shown = ",".join(header)[:80]
        raise InputError(f"{path}: the header must be 'timestamp,value', got {shown!r}")
    for line, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise InputError(f"{path}:{line}: expected 'timestamp,value', got {row!r:.80}")
        try:
            stamp = parse_timestamp(row[0])
        except ValueError:
            raise InputError(f"{path}:{line}: not an ISO-8601 timestamp: {row[0]!r:.80}") from None
        try:
            value = float(row[1])
        except ValueError:
            raise InputError(f"{path}:{line}: value is not a number: {row[1]!r:.80}") from None
        if not math.isfinite(value):
            raise InputError(f"{path}:{line}: value is not a finite number: {row[1]!r}")
        if value < 0:
            raise InputError(f"{path}:{line}: demand cannot be negative: {row[1]!r}")
        epoch = stamp.timestamp()
        if times and epoch == times[-1]:
            raise InputError(f"{path}:{line}: duplicate timestamp {row[0]!r}")
        if times and epoch < times[-1]:
            raise InputError(f"{path}:{line}: timestamps are not ascending at {row[0]!r}")
        labels.append(row[0].strip())
        times.append(epoch)
        values.append(value)
    if not times:
        raise InputError(f"{path}: the trace has no rows")
    if len(times) < 2:
        raise InputError(f"{path}: the trace needs at least two rows to have a step")
    return labels, np.asarray(times), np.asarray(values)


def to_grid(labels: list[str], times: FloatArray, values: FloatArray) -> Trace:
    """Place observations on the median-step grid; an observation off-grid snaps to the nearest."""
    step = float(np.median(np.diff(times)))
    index = np.rint((times - times[0]) / step).astype(np.int64)
    size = int(index[-1]) + 1
    grid_times = times[0] + step * np.arange(size, dtype=np.float64)
    grid_values = np.full(size, np.nan)
    # Two observations snapping to one step: the later one wins (the trace is ascending).
    grid_values[index] = values
    separator, suffix = _label_formatter(labels[0])
    grid_labels = [format_label(t, separator, suffix) for t in grid_times]
    for position, label in zip(index, labels, strict=True):
        grid_labels[position] = label
    return Trace(grid_times, grid_values, step, tuple(grid_labels))


def load_trace(path: Path) -> Trace:
    labels, times, values = read_rows(path)
    return to_grid(labels, times, values)


def trace_from_arrays(times: FloatArray, values: FloatArray) -> Trace:
    """A trace from arrays (generated traces, tests), labelled in UTC with a ``Z``."""
    labels = [format_label(float(t), "T", "Z") for t in times]
    return to_grid(labels, np.asarray(times, dtype=np.float64), np.asarray(values, np.float64))
