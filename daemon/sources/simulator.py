"""Demand from a ``SimulatedWorld``: the trace as a metrics system would have served it.

The world's simulated now is a hard wall: nothing after it is ever returned, whatever ``now``
or ``end`` the caller passes, so a forecaster fed by this source cannot peek at the future.
"""

from __future__ import annotations

import math
from typing import Generic

import numpy as np

from daemon.simulation import SimulatedWorld
from daemon.sources.base import MetricQuery, Sample, Series, SpecT

__all__ = ["SimulatorSource"]


class SimulatorSource(Generic[SpecT]):
    """Reads the world's single demand series; the query's ``spec`` is ignored.

    Generic in the spec type so it stands in for any source in a configuration.
    """

    def __init__(self, world: SimulatedWorld) -> None:
        self._world = world

    async def latest(self, query: MetricQuery[SpecT], now: float) -> Sample | None:
        """The last observed point at or before ``min(now, simulated now)``.

        Its timestamp is the observation's own, so the staleness rule sees gaps and the end
        of the trace as a metrics system would show them.
        """
        found = self._world.observation_at(min(now, self._world.now()))
        return None if found is None else Sample(timestamp=found[0], value=found[1])

    async def history(
        self, query: MetricQuery[SpecT], start: float, end: float, step: float
    ) -> Series:
        """Points at ``start + k * step`` up to ``min(end, simulated now)``.

        Each point holds the trace's value at the grid step at or before it, like an instant
        selector; a gap in the trace, or a time before it, is left out, as Prometheus leaves
        out points it has no sample for.
        """
        if not (math.isfinite(start) and math.isfinite(end) and start <= end):
            raise ValueError(f"need finite start <= end, got start={start} end={end}")
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"step must be > 0, got {step}")
        end = min(end, self._world.now())
        if end < start:
            return Series.empty()
        count = math.floor((end - start) / step + 1e-9) + 1
        at = start + step * np.arange(count, dtype=np.float64)
        # Rounding must never step past ``end`` (and so past the simulated now).
        at = at[at <= end]
        trace = self._world.trace
        index = np.searchsorted(trace.times, at, side="right") - 1
        inside = index >= 0
        values = np.full(at.shape, np.nan)
        values[inside] = trace.values[index[inside]]
        keep = np.isfinite(values)
        return Series(at[keep], values[keep])

    async def close(self) -> None:
        """Nothing to release: the world lives in memory."""
