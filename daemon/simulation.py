"""A simulated world for running the real daemon with no cluster and no cloud.

A demand trace is replayed on an accelerated clock, and the target's capacity boots with a lead
time under the same rules as ``elasticd backtest`` (``daemon.backtest.replay``), so a demo run
and a backtest of the same trace can be compared. The simulator source and actuator are thin
views of one ``SimulatedWorld``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from daemon.backtest.replay import CapacitySimulator
from daemon.backtest.trace import Trace, format_label

__all__ = ["SimulatedWorld", "SimulationSummary", "rebase_trace"]

WEEK_S = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """How the simulated target fared so far, counted on the trace's grid steps."""

    now: float
    """Simulated epoch seconds when the summary was taken."""
    steps: int
    """Grid steps with an observed demand since the start offset."""
    short_steps: int
    """Of those, steps where demand exceeded ready units x unit capacity."""
    unit_hours: float
    """Billed capacity: ready + booting units at each grid step, in unit-hours."""
    ready: int
    pending: int

    @property
    def short_fraction(self) -> float:
        return self.short_steps / self.steps if self.steps else 0.0


class SimulatedWorld:
    """A trace replayed ``speedup`` times faster than the wall clock, and capacity with a lead.

    Mutable and single-threaded: call it from the event loop only.
    """

    def __init__(
        self,
        trace: Trace,
        *,
        unit_capacity: float,
        lead_s: float,
        speedup: float = 1.0,
        start_offset_s: float = WEEK_S,
        initial_units: int | None = None,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``unit_capacity``: demand one unit serves, for counting short steps.
        ``lead_s``: simulated seconds a requested unit takes to become ready.
        ``speedup``: trace seconds per wall second (600 plays ten minutes a second).
        ``start_offset_s``: where in the trace the run starts; a week by default, so the
        daemon has a week of history to train on at once.
        ``initial_units``: ready at the start; None sizes the target for the demand there,
        so a run does not begin with a self-inflicted outage.
        ``wall_clock``: monotonic seconds (injectable for tests); a wall-clock jump must not
        jump the simulation.
        """
        if len(trace) < 2:
            raise ValueError("the trace needs at least two points")
        if not (math.isfinite(speedup) and speedup > 0):
            raise ValueError(f"speedup must be > 0, got {speedup}")
        if not (math.isfinite(unit_capacity) and unit_capacity > 0):
            raise ValueError(f"unit_capacity must be > 0, got {unit_capacity}")
        if not (math.isfinite(lead_s) and lead_s >= 0):
            raise ValueError(f"lead_s must be >= 0, got {lead_s}")
        span = float(trace.times[-1] - trace.times[0])
        if not 0 <= start_offset_s <= span:
            raise ValueError(
                f"start_offset_s must be within the trace (0..{span:g}s), got {start_offset_s}"
            )
        if initial_units is not None and initial_units < 0:
            raise ValueError(f"initial_units must be >= 0, got {initial_units}")
        self.trace = trace
        self.unit_capacity = unit_capacity
        self.lead_s = lead_s
        self.speedup = speedup
        self._wall_clock = wall_clock
        self._wall_start = wall_clock()
        self.start = trace.start + start_offset_s
        self.end = float(trace.times[-1])
        # Grid steps up to ``_next_step`` (exclusive) have been scored.
        self._next_step = int(np.searchsorted(trace.times, self.start, side="right"))
        self._steps = 0
        self._short = 0
        self._unit_steps = 0
        self._capacity = CapacitySimulator(lead_s)
        if initial_units is None:
            demand = self.observation_at(self.start)
            initial_units = 0 if demand is None else math.ceil(demand[1] / unit_capacity)
        # The replay rules make the first decision ready at once: that is the starting size.
        self._capacity.decide(self.start, initial_units)

    # Time

    def now(self) -> float:
        """Simulated epoch seconds: the start plus elapsed wall time times the speedup."""
        return self.start + (self._wall_clock() - self._wall_start) * self.speedup

    def wall_seconds(self, simulated_s: float) -> float:
        """Wall seconds that ``simulated_s`` simulated seconds take (for the loop's sleeps)."""
        return simulated_s / self.speedup

    @property
    def finished(self) -> bool:
        """The replay ran past the trace's last point; sources now only return stale data."""
        return self.now() > self.end

    # Demand

    def observation_at(self, at: float) -> tuple[float, float] | None:
        """(timestamp, value) of the last observed point at or before ``at``, if any."""
        times, values = self.trace.times, self.trace.values
        index = int(np.searchsorted(times, at, side="right")) - 1
        # Walk back over gaps: the last *observed* point is what a metrics system would have.
        while index >= 0 and not math.isfinite(values[index]):
            index -= 1
        if index < 0:
            return None
        return float(times[index]), float(values[index])

    # Capacity

    def _advance(self) -> float:
        """Bring capacity and the short-step count up to the simulated now.

        Each grid step passed since the last call is scored with the capacity ready at that
        step (units whose lead time ended by then), as the backtest's replay does.
        """
        now = self.now()
        times, values = self.trace.times, self.trace.values
        stop = int(np.searchsorted(times, now, side="right"))
        for index in range(self._next_step, stop):
            ready = self._capacity.advance(float(times[index]))
            self._unit_steps += self._capacity.total
            demand = float(values[index])
            if math.isfinite(demand):
                self._steps += 1
                if demand > ready * self.unit_capacity:
                    self._short += 1
        self._next_step = max(self._next_step, stop)
        self._capacity.advance(now)
        return now

    def capacity(self) -> tuple[int, int]:
        """(ready, pending) units at the simulated now."""
        self._advance()
        return self._capacity.ready, self._capacity.pending

    def scale(self, desired: int) -> tuple[int, int]:
        """Ask for ``desired`` units in total; returns (previous total, new total).

        An increase boots for the lead time; a decrease removes booting units first (newest
        first), then ready ones.
        """
        if desired < 0:
            raise ValueError(f"desired must be >= 0, got {desired}")
        now = self._advance()
        previous = self._capacity.total
        return previous, self._capacity.decide(now, desired)

    def summary(self) -> SimulationSummary:
        now = self._advance()
        return SimulationSummary(
            now=now,
            steps=self._steps,
            short_steps=self._short,
            unit_hours=self._unit_steps * self.trace.step_s / 3600.0,
            ready=self._capacity.ready,
            pending=self._capacity.pending,
        )


def rebase_trace(trace: Trace, first: float) -> Trace:
    """The same trace shifted in time so its first point is at ``first`` (epoch seconds).

    Used to replay an old trace as if it were happening now; labels are rewritten in UTC.
    """
    times = trace.times - trace.start + first
    labels = tuple(format_label(float(t), "T", "Z") for t in times)
    return Trace(times, trace.values.copy(), trace.step_s, labels)
