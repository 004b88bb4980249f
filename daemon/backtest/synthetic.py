"""A demand trace elasticd generates itself, for the demo and the tests.

It has what real service traffic has and a forecaster must cope with: a daily cycle with a
morning ramp, quieter weekends, multiplicative noise, short bursts nobody scheduled, a level
shift (a launch) and gaps in the metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from daemon.backtest.trace import Trace, label_chunks, trace_from_arrays

FloatArray = NDArray[np.float64]

# Monday 2026-01-05 00:00 UTC: traces start on a Monday so weekends fall where expected.
DEFAULT_START = 1_767_571_200.0


@dataclass(frozen=True, slots=True)
class TraceShape:
    days: float = 28.0
    step_s: float = 300.0
    base: float = 400.0  # requests/s at the nightly trough
    peak: float = 2000.0  # requests/s at the daily peak on a weekday
    weekend_factor: float = 0.6
    noise: float = 0.06  # standard deviation of the multiplicative noise
    bursts_per_day: float = 1.0
    burst_size: float = 0.5  # a burst adds up to this share of the current level
    level_shift_day: float | None = 20.0
    level_shift: float = 1.3
    gap_share: float = 0.005
    seed: int = 7
    start: float = DEFAULT_START


def generate_demand(shape: TraceShape) -> tuple[FloatArray, FloatArray]:
    """(epoch seconds, demand) with NaN where a metric sample is missing."""
    rng = np.random.default_rng(shape.seed)
    steps = int(shape.days * 86_400 / shape.step_s)
    times = shape.start + shape.step_s * np.arange(steps, dtype=np.float64)
    hour = np.mod(times, 86_400.0) / 3600.0
    day = np.floor((times - shape.start) / 86_400.0)
    weekday = np.mod(day, 7.0)
    # Two humps, late morning and mid afternoon, over a night trough at about 04:00.
    daily = 0.6 * np.exp(-(((hour - 11.0) / 3.0) ** 2)) + 0.5 * np.exp(
        -(((hour - 16.0) / 2.5) ** 2)
    )
    daily = daily / daily.max()
    weekly = np.where(weekday >= 5, shape.weekend_factor, 1.0)
    level = shape.base + (shape.peak - shape.base) * daily * weekly
    if shape.level_shift_day is not None:
        level = level * np.where(day >= shape.level_shift_day, shape.level_shift, 1.0)
    noise = np.exp(rng.normal(0.0, shape.noise, steps) - shape.noise**2 / 2)
    demand = level * noise
    bursts = rng.poisson(shape.bursts_per_day * shape.days)
    for _ in range(bursts):
        at = int(rng.integers(0, steps))
        length = max(1, int(rng.integers(900, 3600) / shape.step_s))
        size = rng.uniform(0.2, 1.0) * shape.burst_size
        ramp = np.sin(np.linspace(0.0, np.pi, length))
        end = min(steps, at + length)
        demand[at:end] *= 1.0 + size * ramp[: end - at]
    missing = rng.random(steps) < shape.gap_share
    demand[missing] = np.nan
    return times, np.round(demand, 2)


def generate_trace(shape: TraceShape | None = None) -> Trace:
    times, values = generate_demand(shape or TraceShape())
    observed = np.isfinite(values)
    return trace_from_arrays(times[observed], values[observed])


def write_trace_csv(trace: Trace, path: str) -> None:
    """Write ``timestamp,value`` rows for the observed steps (the format ``backtest`` reads)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("timestamp,value\n")
        start = 0
        for labels in label_chunks(trace.labels):
            values = trace.values[start : start + len(labels)].tolist()
            start += len(labels)
            handle.write(
                "".join(
                    f"{label},{value:g}\n"
                    for label, value in zip(labels, values, strict=True)
                    if math.isfinite(value)
                )
            )
