"""The replay rules of ``shared/SCORING.md``: capacity that boots for a lead time, and the score.

At every grid step: units whose ready time has come become ready; demand is served by the ready
units; the plan decides; an increase boots for the lead time, a decrease removes pending units
first (newest first), then ready ones; billed units are ready + pending after the decision.
The first decision is ready at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class CapacitySimulator:
    """Ready and booting units under the replay rules (mutable: one per replay)."""

    __slots__ = ("_pending", "lead_s", "ready", "started")

    def __init__(self, lead_s: float) -> None:
        self.lead_s = lead_s
        self.ready = 0
        self._pending: list[list[float]] = []  # [ready_at, count], oldest request first
        self.started = False

    @property
    def pending(self) -> int:
        return int(sum(count for _, count in self._pending))

    @property
    def total(self) -> int:
        return self.ready + self.pending

    def advance(self, now: float) -> int:
        """Rule 1: units whose ready time is <= now become ready; returns the ready count."""
        while self._pending and self._pending[0][0] <= now:
            self.ready += int(self._pending.pop(0)[1])
        return self.ready

    def decide(self, now: float, desired: int) -> int:
        """Rule 3: apply a decision; returns the billed units (ready + pending) after it."""
        if not self.started:
            # The first decision is ready at once: the service starts sized.
            self.started = True
            self.ready = max(0, desired)
            return self.ready
        total = self.total
        if desired > total:
            self._pending.append([now + self.lead_s, float(desired - total)])
        elif desired < total:
            surplus = total - desired
            while surplus and self._pending:
                newest = self._pending[-1]
                take = min(surplus, int(newest[1]))
                newest[1] -= take
                surplus -= take
                if newest[1] == 0:
                    self._pending.pop()
            self.ready -= surplus
        return self.total


@dataclass(frozen=True, slots=True)
class Score:
    """The report's numbers for one plan (``cost_ratio`` needs the oracle's billed units)."""

    short_fraction: float
    unserved_fraction: float
    billed_units: float
    scored_steps: int

    def cost_ratio(self, oracle_billed: float) -> float:
        return self.billed_units / oracle_billed if oracle_billed > 0 else math.inf


@dataclass(frozen=True, slots=True)
class ReplayLog:
    """What happened at every grid step of one replay."""

    desired: IntArray
    ready: IntArray
    billed: IntArray


def score(
    values: FloatArray, ready: IntArray, billed: IntArray, scored: NDArray[np.bool_], unit: float
) -> Score:
    """Score a replay over the scored steps (after warm-up, with an observation)."""
    demand = values[scored]
    capacity = ready[scored] * unit
    unserved = np.maximum(demand - capacity, 0.0)
    total_demand = float(demand.sum())
    steps = int(scored.sum())
    return Score(
        short_fraction=float((demand > capacity).sum() / steps) if steps else 0.0,
        unserved_fraction=float(unserved.sum() / total_demand) if total_demand > 0 else 0.0,
        billed_units=float(billed[scored].sum()),
        scored_steps=steps,
    )


def scored_mask(times: FloatArray, values: FloatArray, warmup_s: float) -> NDArray[np.bool_]:
    mask: NDArray[np.bool_] = (times >= times[0] + warmup_s) & np.isfinite(values)
    return mask


Policy = Callable[[int, float, int, int], int]
"""``policy(i, now, ready, current_total) -> desired``: may use demand up to step i only."""


def replay(times: FloatArray, lead_s: float, policy: Policy) -> ReplayLog:
    """Run a policy through the replay rules; the policy sees ready and total units."""
    size = times.size
    desired = np.zeros(size, dtype=np.int64)
    ready = np.zeros(size, dtype=np.int64)
    billed = np.zeros(size, dtype=np.int64)
    capacity = CapacitySimulator(lead_s)
    for i in range(size):
        now = float(times[i])
        ready_now = capacity.advance(now)
        ready[i] = ready_now
        wanted = policy(i, now, ready_now, capacity.total)
        desired[i] = wanted
        billed[i] = capacity.decide(now, wanted)
    return ReplayLog(desired=desired, ready=ready, billed=billed)


def replay_decisions(times: FloatArray, lead_s: float, decisions: Sequence[int]) -> ReplayLog:
    """Replay a fixed list of decisions (a decisions file, the oracle)."""
    return replay(times, lead_s, lambda i, _now, _ready, _total: int(decisions[i]))


def oracle_decisions(values: FloatArray, unit: float, k: int) -> IntArray:
    """``D_i = max(ceil(d_j / C))`` over ``j = i+1 .. i+k``: the cheapest never-short plan."""
    units = np.where(np.isfinite(values), np.ceil(values / unit), 0.0)
    size = values.size
    result = np.zeros(size, dtype=np.int64)
    for offset in range(1, k + 1):
        shifted = np.zeros(size)
        if offset < size:
            shifted[: size - offset] = units[offset:]
        result = np.maximum(result, shifted.astype(np.int64))
    return result
