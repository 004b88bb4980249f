"""No demand at all: the source of a target whose units follow its schedules alone.

A stop/start schedule (``kind: instance-schedule``) sizes nothing by load: its windows say how
many resources run, and outside them the number falls to ``min_units``. Feeding the one
decision path a demand of zero, always fresh, gives exactly that: a zero forecast asks for no
units, a window's floor or exact count raises them (a lead time early), and a missing or stale
reading, which never scales down, cannot keep instances running all night.
"""

from __future__ import annotations

import math
from typing import Generic

import numpy as np

from daemon.sources.base import MetricQuery, Sample, Series, SpecT

__all__ = ["NoDemandSource"]


class NoDemandSource(Generic[SpecT]):
    """Demand 0 at every instant asked for; generic, so it stands in for any source."""

    async def latest(self, query: MetricQuery[SpecT], now: float) -> Sample | None:
        return Sample(timestamp=now, value=0.0)

    async def history(
        self, query: MetricQuery[SpecT], start: float, end: float, step: float
    ) -> Series:
        if not (math.isfinite(start) and math.isfinite(end) and start <= end):
            raise ValueError(f"need finite start <= end, got start={start} end={end}")
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"step must be > 0, got {step}")
        count = math.floor((end - start) / step + 1e-9) + 1
        times = start + step * np.arange(count, dtype=np.float64)
        return Series(times, np.zeros(count, dtype=np.float64))

    async def close(self) -> None:
        return None
