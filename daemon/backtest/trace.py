"""Load a demand trace (CSV ``timestamp,value``) onto a regular grid, refusing bad input.

The grid step is the median step between observations; a missing step has no observation
(NaN). Errors are one line naming the problem and, where there is one, the row.

Traces can have millions of rows, so the file is streamed into numpy arrays and the grid's
timestamps are not kept as strings: :class:`TraceLabels` formats them on demand in the trace's
own style, keeping only the rows written in another form as text.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, overload

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from daemon.errors import InputError

FloatArray = NDArray[np.float64]

# Rows per vectorised label check and per progress-bar update: enough to amortise numpy's
# per-call cost, few enough that the chunk's strings stay a few megabytes.
CHUNK_ROWS = 8_192


@dataclass(frozen=True, slots=True)
class LabelStyle:
    """How a trace writes its timestamps: the date-time separator and the UTC suffix."""

    separator: str = "T"
    suffix: str = "Z"

    @classmethod
    def of(cls, sample: str) -> LabelStyle:
        text = sample.strip()
        separator = "T" if "T" in text else " "
        if text.endswith(("Z", "z")):
            return cls(separator, "Z")
        if text.endswith("+00:00"):
            return cls(separator, "+00:00")
        return cls(separator, "")


def format_label(epoch: float, separator: str, suffix: str) -> str:
    stamp = datetime.fromtimestamp(epoch, tz=UTC).replace(tzinfo=None)
    return stamp.isoformat(sep=separator, timespec="seconds") + suffix


def format_labels(epochs: FloatArray, style: LabelStyle) -> list[str]:
    """:func:`format_label` of every epoch, vectorised (the same text, checked in the tests)."""
    # datetime.fromtimestamp rounds to the microsecond, half to even, on the fractional part
    # alone, then isoformat drops the microseconds: a time a hair below a whole second is
    # labelled with that second.
    whole = np.trunc(epochs)
    micros = np.rint((epochs - whole) * 1e6)
    seconds = (whole + (micros >= 1e6) - (micros < 0)).astype(np.int64)
    stamps = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    if style.separator != "T":
        stamps = np.char.replace(stamps, "T", style.separator)
    if style.suffix:
        stamps = np.char.add(stamps, style.suffix)
    labels: list[str] = stamps.tolist()
    return labels


class TraceLabels(Sequence[str]):
    """The timestamp of each grid step in the trace's own format, formatted when asked for.

    An observed row keeps its text as written; only rows whose text differs from the formatted
    grid time (another offset, fractional seconds, off the grid) are stored.
    """

    __slots__ = ("_times", "_written", "style")

    def __init__(
        self, times: FloatArray, style: LabelStyle, written: dict[int, str] | None = None
    ) -> None:
        self._times = times
        self.style = style
        self._written = written or {}

    def __len__(self) -> int:
        return int(self._times.size)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            positions = range(len(self))[index]
            return [self[i] for i in positions]
        position = range(len(self))[index]  # negative indices, IndexError
        written = self._written.get(position)
        if written is not None:
            return written
        return format_label(float(self._times[position]), self.style.separator, self.style.suffix)

    def __iter__(self) -> Iterator[str]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[list[str]]:
        """The labels in lists of ``size``: what a writer of millions of rows should use."""
        for start in range(0, len(self), size):
            labels = format_labels(self._times[start : start + size], self.style)
            if self._written:
                for position in range(start, start + len(labels)):
                    written = self._written.get(position)
                    if written is not None:
                        labels[position - start] = written
            yield labels


def label_chunks(labels: Sequence[str], size: int = CHUNK_ROWS) -> Iterator[list[str]]:
    """Any trace's labels in lists of ``size`` (formatted a chunk at a time where lazy)."""
    if isinstance(labels, TraceLabels):
        yield from labels.chunks(size)
        return
    for start in range(0, len(labels), size):
        yield list(labels[start : start + size])


@dataclass(frozen=True, slots=True)
class Trace:
    """Demand on a regular grid: ``times`` epoch seconds, ``values`` NaN where not observed."""

    times: FloatArray
    values: FloatArray
    step_s: float
    labels: Sequence[str]  # the timestamp of each grid step, in the trace's own format

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


@dataclass(frozen=True, slots=True)
class Rows:
    """A trace file's observations: epoch seconds, values, and the timestamps' style, with the
    text of the rows (by index) whose timestamp the style does not reproduce."""

    times: FloatArray
    values: FloatArray
    style: LabelStyle
    written: dict[int, str]


def read_rows(path: Path, *, progress: bool | None = None) -> Rows:
    """The raw rows, validated line by line and streamed into arrays.

    Every way the file can be unusable (missing, a directory, unreadable, binary, not UTF-8,
    empty) is one ``InputError`` naming the file, never a library traceback.
    """
    handle = _open_trace(path)
    try:
        with handle:
            return _parse_rows(path, handle, _bar(path, progress))
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    except csv.Error as error:
        # NUL bytes ("line contains NUL"), a field over the csv module's size limit.
        raise InputError(f"{path}: not a CSV trace ({error})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None


def _bar(path: Path, progress: bool | None) -> Any:
    show = sys.stderr.isatty() if progress is None else progress
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    return tqdm(
        total=size,
        desc="read trace",
        unit="B",
        unit_scale=True,
        disable=not show,
        mininterval=0.5,
        leave=False,
    )


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


def _counted(lines: Iterable[str], bar: Any) -> Iterator[str]:
    """The lines, advancing the bar by their length every ``CHUNK_ROWS`` lines."""
    read = 0
    count = 0
    for line in lines:
        read += len(line)
        count += 1
        if count == CHUNK_ROWS:
            bar.update(read)
            read = count = 0
        yield line
    bar.update(read)


class _Collector:
    """Rows gathered into compact arrays; timestamps kept as text only where the style does
    not reproduce them (checked a chunk at a time, vectorised)."""

    def __init__(self) -> None:
        self.times = array("d")
        self.values = array("d")
        self.written: dict[int, str] = {}
        self.style: LabelStyle | None = None
        self._texts: list[str] = []

    def add(self, text: str, epoch: float, value: float) -> None:
        if self.style is None:
            self.style = LabelStyle.of(text)
        self._texts.append(text)
        self.times.append(epoch)
        self.values.append(value)
        if len(self._texts) == CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._texts or self.style is None:
            return
        start = len(self.times) - len(self._texts)
        epochs = np.frombuffer(self.times, dtype=np.float64)[start:]
        formatted = format_labels(epochs, self.style)
        for offset, (text, label) in enumerate(zip(self._texts, formatted, strict=True)):
            if text != label:
                self.written[start + offset] = text
        del epochs  # a view on the array: it must go before the array can grow again
        self._texts = []

    @property
    def last(self) -> float | None:
        return self.times[-1] if self.times else None


def _parse_rows(path: Path, handle: IO[str], bar: Any) -> Rows:
    rows = _Collector()
    with bar:
        reader = csv.reader(_counted(handle, bar))
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty file; the header must be 'timestamp,value'")
        if [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            shown = ",".join(header)[:80]
            raise InputError(f"{path}: the header must be 'timestamp,value', got {shown!r}")
        last: float | None = None
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise InputError(f"{path}:{line}: expected 'timestamp,value', got {row!r:.80}")
            try:
                stamp = parse_timestamp(row[0])
            except ValueError:
                raise InputError(
                    f"{path}:{line}: not an ISO-8601 timestamp: {row[0]!r:.80}"
                ) from None
            try:
                value = float(row[1])
            except ValueError:
                raise InputError(f"{path}:{line}: value is not a number: {row[1]!r:.80}") from None
            if not math.isfinite(value):
                raise InputError(f"{path}:{line}: value is not a finite number: {row[1]!r}")
            if value < 0:
                raise InputError(f"{path}:{line}: demand cannot be negative: {row[1]!r}")
            epoch = stamp.timestamp()
            if last is not None and epoch == last:
                raise InputError(f"{path}:{line}: duplicate timestamp {row[0]!r}")
            if last is not None and epoch < last:
                raise InputError(f"{path}:{line}: timestamps are not ascending at {row[0]!r}")
            rows.add(row[0].strip(), epoch, value)
            last = epoch
        rows.flush()
    if not rows.times:
        raise InputError(f"{path}: the trace has no rows")
    if len(rows.times) < 2:
        raise InputError(f"{path}: the trace needs at least two rows to have a step")
    assert rows.style is not None
    # Views on the arrays, not copies: a copy would double the rows' memory for a moment.
    return Rows(
        np.frombuffer(rows.times, dtype=np.float64),
        np.frombuffer(rows.values, dtype=np.float64),
        rows.style,
        rows.written,
    )


def to_grid(
    times: FloatArray,
    values: FloatArray,
    style: LabelStyle = LabelStyle(),
    written: dict[int, str] | None = None,
) -> Trace:
    """Place observations on the median-step grid; an observation off-grid snaps to the nearest.

    ``written`` is the text of rows (by row index) whose timestamp ``style`` does not reproduce;
    an observed step is labelled with its row's timestamp as written.
    """
    # In place where it can be: each temporary is a few tens of megabytes on millions of rows.
    gaps = np.diff(times)
    step = float(np.median(gaps, overwrite_input=True))
    del gaps
    offsets = times - times[0]
    np.divide(offsets, step, out=offsets)
    np.rint(offsets, out=offsets)
    index = offsets.astype(np.int64)
    del offsets
    size = int(index[-1]) + 1
    # times[0] + step * k, computed in place (the same two roundings, in the same order).
    grid_times = np.arange(size, dtype=np.float64)
    grid_times *= step
    grid_times += times[0]
    grid_values = np.full(size, np.nan)
    # Two observations snapping to one step: the later one wins (the trace is ascending).
    grid_values[index] = values
    labels: dict[int, str] = {}
    # A row off the grid keeps its own timestamp where it formats differently from the step's.
    for start in range(0, times.size, CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        off = np.flatnonzero(times[rows] != grid_times[index[rows]])
        if off.size == 0:
            continue
        own = format_labels(times[rows][off], style)
        grid = format_labels(grid_times[index[rows][off]], style)
        for row, text, at_grid in zip((start + off).tolist(), own, grid, strict=True):
            if text != at_grid:
                labels[row] = text
    labels.update(written or {})
    # Where rows snap to one step the last one's text wins, as its value does; a last row whose
    # text the style reproduces needs nothing kept.
    last_row = np.append(np.diff(index) != 0, True)
    by_position = {int(index[row]): text for row, text in labels.items() if last_row[row]}
    return Trace(grid_times, grid_values, step, TraceLabels(grid_times, style, by_position))


def load_trace(path: Path, *, progress: bool | None = None) -> Trace:
    rows = read_rows(path, progress=progress)
    return to_grid(rows.times, rows.values, rows.style, rows.written)


def trace_from_arrays(times: FloatArray, values: FloatArray) -> Trace:
    """A trace from arrays (generated traces, tests), labelled in UTC with a ``Z``."""
    return to_grid(np.asarray(times, dtype=np.float64), np.asarray(values, np.float64))
