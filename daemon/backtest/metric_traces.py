"""Traces with several value columns (``timestamp,cpu,rps``): one per metric of a target with
several metrics, on one shared grid. A two-column file is the ordinary single trace."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from daemon.backtest.trace import Trace, load_trace, parse_timestamp, to_grid
from daemon.errors import InputError

__all__ = ["load_metric_traces"]


def load_metric_traces(path: Path, *, progress: bool | None = None) -> list[tuple[str, Trace]]:
    """``(column name, trace)`` per value column, all on one grid; a file with one value
    column gives ``[("value", trace)]`` through the ordinary (streaming) reader."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        header = []  # the ordinary reader names the problem
    names = [name.strip() for name in header[1:]]
    if len(names) <= 1:
        return [("value", load_trace(path, progress=progress))]
    if len(set(names)) != len(names) or not all(names):
        raise InputError(f"{path}: value columns need distinct names, got {names}")
    times: list[float] = []
    columns: list[list[float]] = [[] for _ in names]
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            try:
                times.append(parse_timestamp(row[0]).timestamp())
                for column, text in zip(columns, row[1:], strict=True):
                    value = float(text) if text.strip() else math.nan
                    column.append(value)
            except ValueError as error:
                raise InputError(f"{path}:{line}: {error}") from None
    if len(times) < 2:
        raise InputError(f"{path}: fewer than two rows")
    stamps = np.asarray(times)
    if np.any(np.diff(stamps) <= 0):
        raise InputError(f"{path}: timestamps must increase")
    return [
        (name, to_grid(stamps.copy(), np.asarray(column, dtype=np.float64)))
        for name, column in zip(names, columns, strict=True)
    ]
