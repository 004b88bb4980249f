"""The plans the report compares against, exactly as ``shared/SCORING.md`` defines them.

* Reactive (Kubernetes HPA rules) at a target utilisation ``u``.
* Scheduled forecast + reactive (EC2 predictive scaling rules): the hourly mean demand of the
  hour containing ``t + L``, averaged over the same hour in the last two weeks (the same hour of
  day in the last seven days while less history exists), sized at ``u``, max'd with the HPA plan.

Each is swept over ``u`` so plans can be compared at equal cost and at equal shortfall.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from daemon.backtest.replay import CHUNK_STEPS, ReplayLog, Score, replay_decisions, score
from daemon.backtest.trace import Trace
from daemon.core.reactive import _MOST_UNITS, _RELATIVE_NOISE, hpa_recommendation

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

HPA_TOLERANCE = 0.1
HPA_STABILISATION_S = 300.0
SECONDS_PER_HOUR = 3600.0
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
DEFAULT_UTILISATIONS: tuple[float, ...] = tuple(round(u, 2) for u in np.arange(0.2, 1.001, 0.05))
WIDER_UTILISATIONS: tuple[float, ...] = (0.15, 0.1, 0.07, 0.05, 0.035, 0.025, 0.02, 0.015, 0.01)
"""Where a plan costs more than the baseline at ``u = 0.2`` (a spiky trace at a small shortfall
target), the sweep goes on down this ladder until it costs as much: otherwise the comparison at
equal cost would be missing exactly where the baseline might win."""


@dataclass(frozen=True, slots=True)
class BaselinePoint:
    utilisation: float
    score: Score
    cost_ratio: float


class HpaRule:
    """HPA arithmetic with its scale-down stabilisation window (mutable: one per replay)."""

    __slots__ = ("_window", "unit", "utilisation")

    def __init__(self, unit: float, utilisation: float) -> None:
        self.unit = unit
        self.utilisation = utilisation
        self._window: deque[tuple[float, int]] = deque()

    def desired(self, now: float, demand: float, current: int) -> int:
        if not math.isfinite(demand):
            # No observation: the HPA keeps what it has.
            return current
        raw = hpa_recommendation(demand, current, self.unit, self.utilisation, HPA_TOLERANCE)
        window = self._window
        while window and window[0][0] < now - HPA_STABILISATION_S:
            window.popleft()
        # Keep a decreasing run so the window's maximum is always at the front.
        while window and window[-1][1] <= raw:
            window.pop()
        window.append((now, raw))
        if raw >= current:
            return raw  # scale-up is immediate
        return min(current, int(window[0][1]))  # scale-down takes the window's highest


def hpa_replay(trace: Trace, unit: float, lead_s: float, utilisation: float) -> ReplayLog:
    """The HPA rule's replay: the same decisions as :class:`HpaRule` stepped through
    :func:`~daemon.backtest.replay.replay`, in one tight loop (see :func:`hpa_decisions`)."""
    desired = hpa_decisions(trace, unit, utilisation)
    return replay_decisions(trace.times, lead_s, desired)


def hpa_decisions(
    trace: Trace, unit: float, utilisation: float, forecast: FloatArray | None = None
) -> IntArray:
    """Every step's decision of the HPA rule, ``max``'d with the units that serve ``forecast``
    at ``utilisation`` if given (the EC2 predictive rules).

    A baseline's decision depends only on demand and on its own previous decision (the units
    billed after a decision are the units decided), never on which units are ready, so the
    decisions are computed first and the capacity replayed from them
    (:func:`~daemon.backtest.replay.replay_decisions`). The equivalence with
    :class:`HpaRule` stepped through :func:`~daemon.backtest.replay.replay` is tested.
    """
    rule = _HpaLoop(unit * utilisation)
    decisions = np.zeros(len(trace), dtype=np.int64)
    for start in range(0, len(trace), CHUNK_STEPS):
        rows = slice(start, start + CHUNK_STEPS)
        floor = None
        if forecast is not None:
            chunk = forecast[rows]
            scheduled = np.where(np.isfinite(chunk), np.ceil(chunk / (unit * utilisation)), 0)
            floor = scheduled.astype(np.int64).tolist()
        decisions[rows] = rule.run(trace.times[rows], trace.values[rows], floor)
    return decisions


class _HpaLoop:
    """:meth:`HpaRule.desired` inlined for a whole replay, where ``current`` is always the
    previous decision; the state-free part, ``ceil(d / (C u))`` with the float-noise rule of
    :func:`~daemon.core.reactive.units_to_serve`, is vectorised."""

    __slots__ = ("current", "target_per_unit", "window_at", "window_units")

    def __init__(self, target_per_unit: float) -> None:
        self.target_per_unit = target_per_unit
        self.window_at: deque[float] = deque()  # the stabilisation window, as in HpaRule
        self.window_units: deque[int] = deque()
        self.current = 0

    def run(self, times: FloatArray, values: FloatArray, floor: list[int] | None) -> list[int]:
        """The decisions for consecutive steps, continuing from the previous call's state."""
        target_per_unit = self.target_per_unit
        window_at, window_units = self.window_at, self.window_units
        current = self.current
        tolerance, stabilisation_s = HPA_TOLERANCE, HPA_STABILISATION_S
        sized = _units_to_serve(values, target_per_unit).tolist()
        # NaN at every step without a finite observation, so that ``demand == demand`` is the
        # loop's math.isfinite.
        demands = np.where(np.isfinite(values), values, np.nan).tolist()
        decisions: list[int] = []
        for i, (now, demand) in enumerate(zip(times.tolist(), demands, strict=True)):
            if demand == demand:
                # Within the tolerance the HPA keeps the current units (hpa_recommendation).
                steady = (
                    current > 0 and abs(demand / (current * target_per_unit) - 1.0) <= tolerance
                )
                raw = current if steady else sized[i]
                expired = now - stabilisation_s
                while window_at and window_at[0] < expired:
                    window_at.popleft()
                    window_units.popleft()
                while window_units and window_units[-1] <= raw:
                    window_units.pop()
                    window_at.pop()
                window_at.append(now)
                window_units.append(raw)
                if raw < current:
                    highest = window_units[0]
                    raw = current if current < highest else highest
            else:
                raw = current  # no observation: the HPA keeps what it has
            if floor is not None and floor[i] > raw:
                raw = floor[i]
            decisions.append(raw)
            current = raw
        self.current = current
        return decisions


def _units_to_serve(values: FloatArray, per_unit: float) -> IntArray:
    """:func:`~daemon.core.reactive.units_to_serve` of every finite value (0 elsewhere)."""
    with np.errstate(invalid="ignore"):
        exact = values / per_unit
        nearest = np.rint(exact)  # round half to even, as Python's round
        close = np.abs(exact - nearest) <= _RELATIVE_NOISE * np.maximum(1.0, exact)
        units = np.where(close, nearest, np.ceil(exact))
        units = np.where(exact >= _MOST_UNITS, float(_MOST_UNITS), units)
    units[~np.isfinite(values)] = 0.0
    return units.astype(np.int64)


def hourly_means(trace: Trace) -> tuple[int, FloatArray]:
    """(first hour index, mean demand of every hour since) from observed values; NaN if none."""
    hours = np.floor(trace.times / SECONDS_PER_HOUR).astype(np.int64)
    first = int(hours[0])
    observed = trace.observed
    offset = hours[observed] - first
    size = int(hours[-1]) - first + 1
    sums = np.bincount(offset, weights=trace.values[observed], minlength=size)
    counts = np.bincount(offset, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    means[counts == 0] = np.nan
    return first, means


def scheduled_forecast(trace: Trace, lead_s: float) -> FloatArray:
    """EC2-predictive-style forecast of the mean demand in the hour containing ``t + L``."""
    first, means = hourly_means(trace)
    forecast = np.full(trace.times.size, np.nan)
    # A chunk of steps at a time: the lag tables below are several times the chunk's size.
    for start in range(0, trace.times.size, CHUNK_STEPS):
        rows = slice(start, start + CHUNK_STEPS)
        forecast[rows] = _scheduled(trace.times[rows], trace.start, first, means, lead_s)
    return forecast


def _scheduled(
    times: FloatArray, trace_start: float, first: int, means: FloatArray, lead_s: float
) -> FloatArray:
    now_hour = np.floor(times / SECONDS_PER_HOUR).astype(np.int64) - first
    target_hour = np.floor((times + lead_s) / SECONDS_PER_HOUR).astype(np.int64) - first
    two_weeks = times - trace_start >= 14 * 86_400.0
    lags_long = [HOURS_PER_WEEK, 2 * HOURS_PER_WEEK]
    lags_short = [HOURS_PER_DAY * day for day in range(1, 8)]
    forecast = np.full(times.size, np.nan)
    for lags, rows in ((lags_long, two_weeks), (lags_short, ~two_weeks)):
        if not rows.any():
            continue
        stack = []
        for lag in lags:
            hour = target_hour[rows] - lag
            # Only whole past hours count: the hour must have ended before the current one.
            usable = (hour >= 0) & (hour < now_hour[rows])
            picked = np.full(hour.size, np.nan)
            picked[usable] = means[hour[usable]]
            stack.append(picked)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an hour with no history: NaN
            forecast[rows] = np.nanmean(np.vstack(stack), axis=0)
    return forecast


def predictive_replay(
    trace: Trace, unit: float, lead_s: float, utilisation: float, forecast: FloatArray
) -> ReplayLog:
    desired = hpa_decisions(trace, unit, utilisation, forecast)
    return replay_decisions(trace.times, lead_s, desired)


def sweep(
    trace: Trace,
    unit: float,
    lead_s: float,
    scored: NDArray[np.bool_],
    oracle_billed: float,
    kind: str,
    utilisations: tuple[float, ...] = DEFAULT_UTILISATIONS,
    *,
    progress: bool | None = None,
    reach_cost: float | None = None,
) -> list[BaselinePoint]:
    """Score a baseline (``"hpa"`` or ``"predictive"``) at every target utilisation, and with
    ``reach_cost`` (the plan's cost ratio) on down :data:`WIDER_UTILISATIONS` until one costs
    at least that much, so the plan's cost lies within the sweep. Points come by utilisation.

    ``progress``: a bar on stderr (None: when stderr is a terminal).
    """
    forecast = scheduled_forecast(trace, lead_s) if kind == "predictive" else None
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(
        total=len(utilisations) * len(trace),
        desc=f"baseline {kind}",
        unit="step",
        unit_scale=True,
        disable=not show,
        mininterval=0.5,
        leave=False,
    ) as bar:

        def point(u: float) -> BaselinePoint:
            if forecast is None:
                log = hpa_replay(trace, unit, lead_s, u)
            else:
                log = predictive_replay(trace, unit, lead_s, u, forecast)
            result = score(trace.values, log.ready, log.billed, scored, unit)
            bar.update(len(trace))
            return BaselinePoint(u, result, result.cost_ratio(oracle_billed))

        points = [point(u) for u in utilisations]
        lowest = min(utilisations, default=math.inf)
        for u in WIDER_UTILISATIONS:
            if (
                reach_cost is None
                or max((p.cost_ratio for p in points), default=-math.inf) >= reach_cost
            ):
                break
            if u < lowest:
                points.append(point(u))
    return sorted(points, key=lambda p: p.utilisation)


def at_equal_cost(points: list[BaselinePoint], cost_ratio: float) -> float | None:
    """The baseline's short fraction at the given cost (interpolated); None outside its range."""
    costs = np.array([p.cost_ratio for p in points])
    shorts = np.array([p.score.short_fraction for p in points])
    order = np.argsort(costs)
    costs, shorts = costs[order], shorts[order]
    if not costs[0] <= cost_ratio <= costs[-1]:
        return None
    return float(np.interp(cost_ratio, costs, shorts))


def at_equal_shortfall(points: list[BaselinePoint], short_fraction: float) -> float | None:
    """The baseline's cost ratio at the given short fraction; None outside its range."""
    shorts = np.array([p.score.short_fraction for p in points])
    costs = np.array([p.cost_ratio for p in points])
    order = np.argsort(shorts, kind="stable")
    shorts, costs = shorts[order], costs[order]
    if not shorts[0] <= short_fraction <= shorts[-1]:
        return None
    # More shortfall never costs more: enforce it so the interpolation is single-valued.
    costs = np.minimum.accumulate(costs)
    return float(np.interp(short_fraction, shorts, costs))
