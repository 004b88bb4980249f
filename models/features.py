"""Causal features for forecasting the peak demand over the next lead time.

Every feature of row ``i`` uses only observations at or before step ``i``, so one matrix built
over a whole trace serves a walk-forward replay without leaking the future, and the daemon
takes the last row of the same matrix built over its recent history.

Demand is compared in ``log1p(demand / scale)`` space (``scale`` is the unit capacity): linear
for demand far below one unit, logarithmic above it, so daily swings that multiply the level
look alike at any size. Each feature is expressed relative to the *anchor*, the recent level,
so a level shift moves the anchor and the model's answer moves with it instead of staying at
levels seen in training (trees do not extrapolate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import maximum_filter1d

FloatArray = NDArray[np.float64]

SECONDS_PER_DAY = 86_400.0
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY

FEATURE_NAMES: tuple[str, ...] = (
    "anchor",
    "last_rel",
    "max_lead_rel",
    "max_4lead_rel",
    "max_16lead_rel",
    "mean_4lead_rel",
    "mean_day_rel",
    "max_day_rel",
    "volatility",
    "slope",
    "yesterday_peak_rel",
    "yesterday_shape",
    "last_week_peak_rel",
    "last_week_shape",
    "week_profile_peak_rel",
    "week_profile_shape",
    "hour_ago_peak_rel",
    "time_of_day_sin",
    "time_of_day_cos",
    # No day-of-week feature: with two to four weeks of history each weekday has two to four
    # examples, and trees split on it to memorise them (a daily ramp seen 14 times was
    # forecast on Wednesdays and not on Thursdays). Weekly patterns reach the model through
    # ``last_week_*`` and the weekly profile instead.
)


def lead_steps_for(lead_s: float, step_s: float) -> int:
    """Grid steps a request takes to become ready (the scoring oracle's ``k``); at least one."""
    return max(1, math.ceil(lead_s / step_s - 1e-9))


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What the features are computed for.

    ``step_s`` is the grid step; ``lead_steps`` the number of steps the forecast must cover
    (the lead time divided by the step, rounded up); ``scale`` the demand of one unit.
    """

    step_s: float
    lead_steps: int
    scale: float

    def __post_init__(self) -> None:
        if not (self.step_s > 0 and math.isfinite(self.step_s)):
            raise ValueError(f"step_s must be > 0, got {self.step_s}")
        if self.lead_steps < 1:
            raise ValueError(f"lead_steps must be >= 1, got {self.lead_steps}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be > 0, got {self.scale}")

    @property
    def day_steps(self) -> int:
        return max(1, round(SECONDS_PER_DAY / self.step_s))

    @property
    def week_steps(self) -> int:
        return max(1, round(SECONDS_PER_WEEK / self.step_s))

    @property
    def hour_steps(self) -> int:
        return max(1, round(3600.0 / self.step_s))

    @property
    def anchor_steps(self) -> int:
        # Half the lead, at least two steps: long enough to smooth one noisy sample, short
        # enough to follow a rise that is under way.
        return max(2, self.lead_steps // 2)


# Features are log ratios (1e-6 is a 0.0001 % change in demand): far finer than any split a
# model should make, far coarser than floating-point noise.
FEATURE_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class Features:
    """A feature matrix (rows = grid steps) and the anchor each row's forecast is relative to."""

    matrix: FloatArray
    anchor: FloatArray


def to_log(values: FloatArray, scale: float) -> FloatArray:
    """Demand to ``log1p(demand / scale)``; negatives count as zero, NaN stays NaN."""
    return np.log1p(np.maximum(values, 0.0) / scale)


def from_log(z: FloatArray, scale: float) -> FloatArray:
    """Inverse of :func:`to_log`."""
    return scale * np.expm1(z)


def trailing_mean(values: FloatArray, window: int) -> FloatArray:
    """Mean of the observed values in ``[i - window + 1, i]``; NaN where none is observed."""
    observed = np.isfinite(values)
    sums = np.concatenate(([0.0], np.cumsum(np.where(observed, values, 0.0))))
    counts = np.concatenate(([0], np.cumsum(observed)))
    upper = np.arange(1, values.size + 1)
    lower = np.maximum(upper - window, 0)
    n = counts[upper] - counts[lower]
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = (sums[upper] - sums[lower]) / n
    result[n == 0] = np.nan
    return result


def trailing_max(values: FloatArray, window: int) -> FloatArray:
    """Max of the observed values in ``[i - window + 1, i]``; NaN where none is observed."""
    if values.size == 0:
        return values.copy()
    filled = np.where(np.isfinite(values), values, -np.inf)
    # origin shifts scipy's centred window so that it ends at i (checked in the tests).
    result = maximum_filter1d(filled, size=window, origin=(window - 1) // 2, mode="nearest")
    result[~np.isfinite(result)] = np.nan
    return np.asarray(result, dtype=np.float64)


def shifted(values: FloatArray, lag: int) -> FloatArray:
    """``values[i - lag]`` (NaN before the start); ``lag`` may be negative only in targets."""
    result = np.full(values.size, np.nan)
    if lag >= 0:
        if lag < values.size:
            result[lag:] = values[: values.size - lag]
    elif -lag < values.size:
        result[:lag] = values[-lag:]
    return result


def anchor_levels(log_values: FloatArray, spec: FeatureSpec) -> FloatArray:
    """The recent level each forecast is relative to, falling back to longer windows in gaps."""
    anchor = trailing_mean(log_values, spec.anchor_steps)
    for window in (4 * spec.lead_steps, spec.day_steps):
        gaps = ~np.isfinite(anchor)
        if not gaps.any():
            break
        anchor[gaps] = trailing_mean(log_values, window)[gaps]
    return anchor


def seasonal_peak(max_lead: FloatArray, period: int, lead_steps: int) -> FloatArray:
    """The peak over ``i+1-period .. i+k-period``: all NaN when that window is not yet past."""
    lag = period - lead_steps
    if lag < 1:
        # A lead time of a period or more would reach into the future: no such feature.
        return np.full(max_lead.size, np.nan)
    return shifted(max_lead, lag)


def _nanmean_rows(arrays: list[FloatArray]) -> FloatArray:
    """Element-wise mean over the arrays, ignoring NaN; NaN where every one is NaN."""
    stack = np.vstack(arrays)
    finite = np.isfinite(stack)
    counts = finite.sum(axis=0)
    sums = np.where(finite, stack, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = sums / counts
    result[counts == 0] = np.nan
    return result


def quantised(matrix: FloatArray) -> FloatArray:
    """Features rounded to ``FEATURE_DECIMALS`` places.

    The same row computed from a longer or shorter history (cumulative sums over 14 days for
    training, 9 days for the daemon's one row) differs by ~1e-13, and a tree trained on a flat
    series puts its split right between -1e-13 and 0: unrounded, that noise alone flipped a
    forecast from 150 to 240. Rounded, equal inputs give equal features, and every split lies
    half a grid step away from any value a feature can take.
    """
    return np.asarray(np.round(matrix, FEATURE_DECIMALS), dtype=np.float64)


def build_features(times: FloatArray, values: FloatArray, spec: FeatureSpec) -> Features:
    """Features for every step of a regular grid (``times`` epoch seconds, NaN = missing)."""
    k = spec.lead_steps
    z = to_log(values, spec.scale)
    anchor = anchor_levels(z, spec)
    day, week = spec.day_steps, spec.week_steps
    max_lead = trailing_max(z, k)
    level = trailing_mean(z, spec.anchor_steps)
    steps = np.abs(np.diff(z, prepend=np.nan))

    # The window the forecast covers, one day and one week ago: ends k steps after i - P.
    yesterday_peak = seasonal_peak(max_lead, day, k)
    last_week_peak = seasonal_peak(max_lead, week, k)
    yesterday_level = shifted(level, day)
    last_week_level = shifted(level, week)
    # The same window on each of the last seven days, averaged: the daily profile EC2
    # predictive scaling uses, far less noisy than yesterday alone.
    daily_peaks = [seasonal_peak(max_lead, d * day, k) for d in range(1, 8)]
    daily_shapes = [peak - shifted(level, d * day) for d, peak in enumerate(daily_peaks, 1)]
    profile_peak = _nanmean_rows(daily_peaks)
    profile_shape = _nanmean_rows(daily_shapes)
    # A week ago is unknown for the first week of history: the days there are stand in for
    # it. Left missing, whether it is known says only how old a row is, and trees split on
    # that: with 7.5 days of history only the last morning's rows knew a week ago, no rise
    # ever followed them, and the model forecast "flat" for every row that knew it, today's
    # included, with the daily rise ten minutes ahead.
    week_known = np.isfinite(last_week_peak - last_week_level)
    last_week_rel = np.where(week_known, last_week_peak - anchor, profile_peak - anchor)
    last_week_shape = np.where(week_known, last_week_peak - last_week_level, profile_shape)

    seconds_of_day = np.mod(times, SECONDS_PER_DAY)
    angle = 2.0 * np.pi * seconds_of_day / SECONDS_PER_DAY

    columns = (
        anchor,
        z - anchor,
        max_lead - anchor,
        trailing_max(z, 4 * k) - anchor,
        trailing_max(z, 16 * k) - anchor,
        trailing_mean(z, 4 * k) - anchor,
        trailing_mean(z, day) - anchor,
        trailing_max(z, day) - anchor,
        trailing_mean(steps, 4 * k),
        anchor - shifted(anchor, 4 * k),
        yesterday_peak - anchor,
        yesterday_peak - yesterday_level,
        last_week_rel,
        last_week_shape,
        profile_peak - anchor,
        profile_shape,
        # Machine-made load (cron jobs, batch pollers) repeats hourly, not daily.
        seasonal_peak(max_lead, spec.hour_steps, k) - anchor,
        np.sin(angle),
        np.cos(angle),
    )
    return Features(matrix=quantised(np.column_stack(columns)), anchor=anchor)


def peak_target(values: FloatArray, spec: FeatureSpec, anchor: FloatArray) -> FloatArray:
    """What row ``i`` must forecast: the peak over steps ``i+1 .. i+k``, relative to its anchor.

    NaN where the window has no observation or runs past the end: such rows are not trained on.
    """
    z = to_log(values, spec.scale)
    future_peak = shifted(trailing_max(z, spec.lead_steps), -spec.lead_steps)
    return future_peak - anchor


def future_peak(values: FloatArray, lead_steps: int) -> FloatArray:
    """The observed peak demand over steps ``i+1 .. i+k`` (NaN where none is observed)."""
    return shifted(trailing_max(values, lead_steps), -lead_steps)


def _window(values: FloatArray, end: int, size: int) -> FloatArray:
    """The observed values among ``values[end - size + 1 .. end]`` (empty if before the start)."""
    if end < 0:
        return values[:0]
    chunk = values[max(0, end - size + 1) : end + 1]
    return chunk[np.isfinite(chunk)]


def _mean_at(values: FloatArray, end: int, size: int) -> float:
    chunk = _window(values, end, size)
    return float(chunk.mean()) if chunk.size else math.nan


def _max_at(values: FloatArray, end: int, size: int) -> float:
    chunk = _window(values, end, size)
    return float(chunk.max()) if chunk.size else math.nan


def last_row_features(times: FloatArray, values: FloatArray, spec: FeatureSpec) -> Features:
    """The last row of :func:`build_features`, computed for that row alone.

    The daemon needs one row per target per grid step; building the whole matrix over nine
    days of history for it was half the daemon's CPU with 1,000 targets. A test checks this
    equals ``build_features(...)`` row for row.
    """
    i = values.size - 1
    k, day, week, hour = spec.lead_steps, spec.day_steps, spec.week_steps, spec.hour_steps
    z = to_log(values, spec.scale)

    def anchor_at(j: int) -> float:
        for size in (spec.anchor_steps, 4 * k, day):
            level = _mean_at(z, j, size)
            if math.isfinite(level):
                return level
        return math.nan

    def level_at(j: int) -> float:
        return _mean_at(z, j, spec.anchor_steps)

    def seasonal_peak_at(period: int) -> float:
        lag = period - k
        return _max_at(z, i - lag, k) if lag >= 1 else math.nan

    anchor = anchor_at(i)
    recent = z[max(0, i - 4 * k) : i + 1]
    # Step sizes of the last 4k steps; the oldest value only serves the first difference.
    steps = np.abs(np.diff(recent, prepend=np.nan))[1 if i >= 4 * k else 0 :]
    daily_peaks = [seasonal_peak_at(d * day) for d in range(1, 8)]
    daily_shapes = [p - level_at(i - d * day) for d, p in enumerate(daily_peaks, 1)]
    finite_peaks = [p for p in daily_peaks if math.isfinite(p)]
    finite_shapes = [s for s in daily_shapes if math.isfinite(s)]
    yesterday, last_week = daily_peaks[0], seasonal_peak_at(week)
    profile_peak = sum(finite_peaks) / len(finite_peaks) if finite_peaks else math.nan
    profile_shape = sum(finite_shapes) / len(finite_shapes) if finite_shapes else math.nan
    last_week_shape = last_week - level_at(i - week)
    # As in build_features: the profile stands in for a week ago until one is known.
    if math.isfinite(last_week_shape):
        last_week_rel = last_week - anchor
    else:
        last_week_rel, last_week_shape = profile_peak - anchor, profile_shape
    seconds_of_day = float(np.mod(times[i], SECONDS_PER_DAY))
    angle = 2.0 * math.pi * seconds_of_day / SECONDS_PER_DAY
    row = [
        anchor,
        z[i] - anchor,
        _max_at(z, i, k) - anchor,
        _max_at(z, i, 4 * k) - anchor,
        _max_at(z, i, 16 * k) - anchor,
        _mean_at(z, i, 4 * k) - anchor,
        _mean_at(z, i, day) - anchor,
        _max_at(z, i, day) - anchor,
        _mean_at(steps, steps.size - 1, 4 * k),
        anchor - (anchor_at(i - 4 * k) if i >= 4 * k else math.nan),
        yesterday - anchor,
        yesterday - level_at(i - day),
        last_week_rel,
        last_week_shape,
        profile_peak - anchor,
        profile_shape,
        seasonal_peak_at(hour) - anchor,
        math.sin(angle),
        math.cos(angle),
    ]
    return Features(
        matrix=quantised(np.array([row], dtype=np.float64)),
        anchor=np.array([anchor], dtype=np.float64),
    )
