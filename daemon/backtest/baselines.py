"""The plans the report compares against, exactly as ``shared/SCORING.md`` defines them.

* Reactive (Kubernetes HPA rules) at a target utilisation ``u``.
* Scheduled forecast + reactive (EC2 predictive scaling rules): the hourly mean demand of the
  hour containing ``t + L``, averaged over the same hour in the last two weeks (the same hour of
  day in the last seven days while less history exists), sized at ``u``, max'd with the HPA plan.

Each is swept over ``u`` so plans can be compared at equal cost and at equal shortfall.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from daemon.backtest.replay import ReplayLog, Score, replay, score
from daemon.backtest.trace import Trace
from daemon.core.reactive import hpa_recommendation

FloatArray = NDArray[np.float64]

HPA_TOLERANCE = 0.1
HPA_STABILISATION_S = 300.0
SECONDS_PER_HOUR = 3600.0
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
DEFAULT_UTILISATIONS: tuple[float, ...] = tuple(round(u, 2) for u in np.arange(0.2, 1.001, 0.05))


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
    rule = HpaRule(unit, utilisation)
    values = trace.values

    def policy(i: int, now: float, _ready: int, total: int) -> int:
        return rule.desired(now, float(values[i]), total)

    return replay(trace.times, lead_s, policy)


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
    now_hour = np.floor(trace.times / SECONDS_PER_HOUR).astype(np.int64) - first
    target_hour = np.floor((trace.times + lead_s) / SECONDS_PER_HOUR).astype(np.int64) - first
    two_weeks = trace.times - trace.start >= 14 * 86_400.0
    lags_long = [HOURS_PER_WEEK, 2 * HOURS_PER_WEEK]
    lags_short = [HOURS_PER_DAY * day for day in range(1, 8)]
    forecast = np.full(trace.times.size, np.nan)
    for lags, rows in ((lags_long, two_weeks), (lags_short, ~two_weeks)):
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
    rule = HpaRule(unit, utilisation)
    values = trace.values
    scheduled = np.where(np.isfinite(forecast), np.ceil(forecast / (unit * utilisation)), 0)
    scheduled_units: list[int] = scheduled.astype(np.int64).tolist()

    def policy(i: int, now: float, _ready: int, total: int) -> int:
        return max(scheduled_units[i], rule.desired(now, float(values[i]), total))

    return replay(trace.times, lead_s, policy)


def sweep(
    trace: Trace,
    unit: float,
    lead_s: float,
    scored: NDArray[np.bool_],
    oracle_billed: float,
    kind: str,
    utilisations: tuple[float, ...] = DEFAULT_UTILISATIONS,
) -> list[BaselinePoint]:
    """Score a baseline (``"hpa"`` or ``"predictive"``) at every target utilisation."""
    forecast = scheduled_forecast(trace, lead_s) if kind == "predictive" else None
    points = []
    for u in utilisations:
        if forecast is None:
            log = hpa_replay(trace, unit, lead_s, u)
        else:
            log = predictive_replay(trace, unit, lead_s, u, forecast)
        result = score(trace.values, log.ready, log.billed, scored, unit)
        points.append(BaselinePoint(u, result, result.cost_ratio(oracle_billed)))
    return points


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
