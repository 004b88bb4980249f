"""The replay rules of ``shared/SCORING.md``: capacity that boots for a lead time, and the score.

At every grid step: units whose ready time has come become ready; demand is served by the ready
units; the plan decides; an increase boots for the lead time, a decrease removes pending units
first (newest first), then ready ones; billed units are ready + pending after the decision.
The first decision is ready at once.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Steps replayed per vectorised chunk: memory stays flat however long the trace is.
CHUNK_STEPS = 65_536


class CapacitySimulator:
    """Ready and booting units under the replay rules (mutable: one per replay)."""

    __slots__ = ("_pending", "_pending_units", "lead_s", "ready", "started")

    def __init__(self, lead_s: float) -> None:
        self.lead_s = lead_s
        self.ready = 0
        # [ready_at, count], oldest request first; the running count saves a sum per step.
        self._pending: deque[list[Any]] = deque()
        self._pending_units = 0
        self.started = False

    @property
    def pending(self) -> int:
        return self._pending_units

    @property
    def total(self) -> int:
        return self.ready + self._pending_units

    def advance(self, now: float) -> int:
        """Rule 1: units whose ready time is <= now become ready; returns the ready count."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            count = int(pending.popleft()[1])
            self.ready += count
            self._pending_units -= count
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
            self._pending.append([now + self.lead_s, int(desired - total)])
            self._pending_units += int(desired - total)
        elif desired < total:
            surplus = int(total - desired)
            pending = self._pending
            while surplus and pending:
                newest = pending[-1]
                take = min(surplus, newest[1])
                newest[1] -= take
                surplus -= take
                self._pending_units -= take
                if newest[1] == 0:
                    pending.pop()
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
    # Each temporary over millions of steps is tens of megabytes: the integer parts (exact in
    # any order) are summed a chunk at a time, and only the arrays whose float sums the
    # report shows are whole (a chunked float sum would round differently).
    demand = values[scored]
    unserved = np.empty(demand.size)  # the ready capacity, until the subtraction below
    billed_units = 0
    done = 0
    for start in range(0, scored.size, CHUNK_STEPS):
        rows = slice(start, start + CHUNK_STEPS)
        chunk = ready[rows][scored[rows]]
        unserved[done : done + chunk.size] = chunk * unit
        billed_units += int(billed[rows][scored[rows]].sum())
        done += chunk.size
    short_steps = int(np.count_nonzero(demand > unserved))
    np.subtract(demand, unserved, out=unserved)
    np.maximum(unserved, 0.0, out=unserved)
    total_demand = float(demand.sum())
    steps = int(demand.size)
    return Score(
        short_fraction=float(short_steps / steps) if steps else 0.0,
        unserved_fraction=float(unserved.sum() / total_demand) if total_demand > 0 else 0.0,
        billed_units=float(billed_units),
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
    advance, decide = capacity.advance, capacity.decide
    # Times as Python floats a chunk at a time: a list of them all is 32 bytes a step.
    for start in range(0, size, CHUNK_STEPS):
        for i, now in enumerate(times[start : start + CHUNK_STEPS].tolist(), start):
            ready_now = advance(now)
            ready[i] = ready_now
            wanted = policy(i, now, ready_now, capacity.total)
            desired[i] = wanted
            billed[i] = decide(now, wanted)
    if np.array_equal(billed, desired):
        billed = desired  # the usual case (see replay_decisions): one array, not two
    return ReplayLog(desired=desired, ready=ready, billed=billed)


def replay_decisions(
    times: FloatArray, lead_s: float, decisions: Sequence[int] | IntArray
) -> ReplayLog:
    """Replay a fixed list of decisions (a decisions file, the oracle, a baseline's plan).

    The same numbers as :func:`replay` with a policy that returns ``decisions[i]``, computed
    without a step loop: once the decisions are known, the units ready at ``t_i`` follow from
    them alone (:func:`ready_units`).
    """
    desired = np.asarray(decisions, dtype=np.int64)
    if desired.size != times.size:
        raise ValueError(f"{desired.size} decisions for {times.size} steps")
    if desired.size == 0:
        return ReplayLog(desired=desired, ready=desired.copy(), billed=desired.copy())
    # After every decision the billed units are the units decided, except a negative first
    # decision (its units are ready at once, and there are none below zero). The log shares
    # one array for both where they are equal: on millions of steps that is tens of megabytes.
    billed = desired
    if desired[0] < 0:
        billed = desired.copy()
        billed[0] = 0
    if (billed[1:] < 0).any():
        # Negative decisions drive the ready count below zero, which the level argument of
        # ready_units does not cover: replay those step by step.
        return replay(times, lead_s, lambda i, _now, _ready, _total: int(desired[i]))
    return ReplayLog(desired=desired, ready=ready_units(times, lead_s, billed), billed=billed)


def ready_units(times: FloatArray, lead_s: float, billed: IntArray) -> IntArray:
    """Units ready at each step (rule 1, before the decision) given the billed units after
    every decision (``billed[i] = D_i``, ``>= 0``).

    Think of the units as a stack of levels: a decision up to ``D`` adds levels on top, a
    decision down removes the top ones, and the replay rules remove pending units, the newest,
    first, which are exactly the top levels. A level is ready at ``t_i`` when it has existed
    without interruption since a decision at some ``t_j`` with ``t_j + L <= t_i`` (or since
    the first decision, which is ready at once). So the ready units at ``t_i`` are the lowest
    billed level from the last decision whose units are due by ``t_i`` through the previous
    decision: a sliding minimum of ``billed``, computed a chunk of steps at a time so that
    memory does not grow with the trace.
    """
    size = times.size
    ready = np.zeros(size, dtype=np.int64)
    for start in range(1, size, CHUNK_STEPS):
        stop = min(size, start + CHUNK_STEPS)
        # The first decision whose units are not ready yet at t_start, found with the
        # replay's own float comparison (ready_at = t_j + L, ready when ready_at <= t_i).
        due = bisect.bisect_right(range(size), float(times[start]), key=lambda j: times[j] + lead_s)
        steps = np.arange(start, stop)
        first = due + np.searchsorted(times[due:stop] + lead_s, times[start:stop], side="right")
        lowest = np.maximum(np.minimum(first, steps) - 1, 0)  # the window is [lowest, i - 1]
        base = int(lowest[0])
        segment = billed[base:stop]
        width = steps - lowest
        since_start = lowest == 0
        if since_start.any():
            at = steps[since_start]
            ready[at] = np.minimum.accumulate(segment)[at - 1]  # base is 0 here
        rest = ~since_start
        for window in np.unique(width[rest]).tolist():
            at = steps[rest & (width == window)]
            ready[at] = _trailing_min(segment, window)[at - 1 - base]
    return ready


def _trailing_min(values: IntArray, window: int) -> IntArray:
    """``min(values[i - window + 1 .. i])`` at each ``i >= window - 1`` in O(n) (van Herk /
    Gil-Werman: minima of fixed blocks, accumulated forwards and backwards)."""
    size = values.size
    blocks = -(-size // window)
    padded = np.full(blocks * window, np.iinfo(np.int64).max, dtype=np.int64)
    padded[:size] = values
    grid = padded.reshape(blocks, window)
    forward = np.minimum.accumulate(grid, axis=1).ravel()
    backward = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    result = np.empty(size, dtype=np.int64)
    result[: window - 1] = np.iinfo(np.int64).max  # no full window yet: never read
    ends = np.arange(window - 1, size)
    result[window - 1 :] = np.minimum(backward[ends - window + 1], forward[ends])
    return result


def oracle_decisions(values: FloatArray, unit: float, k: int) -> IntArray:
    """``D_i = max(ceil(d_j / C))`` over ``j = i+1 .. i+k``: the cheapest never-short plan."""
    size = values.size
    result = np.zeros(size, dtype=np.int64)
    for start in range(0, size, CHUNK_STEPS):
        stop = min(size, start + CHUNK_STEPS)
        # The next k steps of i are the trailing k steps of i + k; steps past the end count
        # as 0, as does a step without an observation.
        ahead = np.zeros(stop - start + k, dtype=np.int64)
        chunk = values[start + 1 : stop + k]
        ahead[1 : 1 + chunk.size] = np.where(np.isfinite(chunk), np.ceil(chunk / unit), 0.0).astype(
            np.int64
        )
        peaks = -_trailing_min(-ahead, k)
        result[start:stop] = np.maximum(peaks[k:], 0)
    return result
