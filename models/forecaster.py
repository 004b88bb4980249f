"""Choose, train and apply a peak forecaster, falling back to simpler ones on thin history.

The ladder, from most to least history:

* ``model``: the quantile gradient-boosting regressor over calendar, level, peak and seasonal
  features (needs ``MIN_MODEL_HISTORY_S`` of history and ``MIN_TRAIN_ROWS`` usable rows);
* ``seasonal_naive``: yesterday's shape over the same window, scaled to today's level (needs a
  day of history);
* ``recent_peak``: the recent peak (needs a few observations).

Every forecast says which rung produced it, and the decision's reason carries that name.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import sklearn
from numpy.typing import NDArray

from models.errors import ModelError
from models.estimator import PeakQuantileRegressor
from models.features import (
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    Features,
    FeatureSpec,
    from_log,
    peak_target,
)

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]

MIN_MODEL_HISTORY_S = 2 * SECONDS_PER_DAY
MIN_TRAIN_ROWS = 200
DEFAULT_TRAIN_WINDOW_S = 28 * SECONDS_PER_DAY
# Neighbouring rows are nearly copies of each other; beyond this many rows a fit gets slower,
# not better. Rows are thinned evenly, keeping the newest.
DEFAULT_MAX_TRAIN_ROWS = 6_000

_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}


def base_quantile(shortfall_target: float) -> float:
    """The quantile the regressor is trained at, before online calibration.

    Extreme quantiles are estimated from a handful of rows and are noisy; a moderately high one
    captures when demand is volatile, and calibration on recent errors supplies the rest.
    """
    return float(np.clip(1.0 - 10.0 * shortfall_target, 0.5, 0.95))


class PeakForecaster(Protocol):
    """Forecasts the peak over the next lead time, in ``log1p(demand / scale)`` space."""

    @property
    def name(self) -> str: ...

    def predict_log(self, features: Features, rows: IndexArray) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class RecentPeak:
    """The peak of the last few lead times: right when demand is flat, safe-ish otherwise."""

    name: str = "recent_peak"

    def predict_log(self, features: Features, rows: IndexArray) -> FloatArray:
        rel = features.matrix[rows, _COLUMN["max_4lead_rel"]]
        return features.anchor[rows] + np.where(np.isfinite(rel), rel, 0.0)


@dataclass(frozen=True, slots=True)
class SeasonalNaive:
    """The rise over the same window in the daily profile of the past days and a week ago (the
    larger, once a week is known: a Monday morning looks like last Monday, not like Sunday),
    applied to today's level, never below now."""

    name: str = "seasonal_naive"

    def predict_log(self, features: Features, rows: IndexArray) -> FloatArray:
        shape = np.fmax(
            features.matrix[rows, _COLUMN["week_profile_shape"]],
            features.matrix[rows, _COLUMN["last_week_shape"]],
        )
        recent = features.matrix[rows, _COLUMN["max_lead_rel"]]
        rel = np.fmax(shape, recent)
        return features.anchor[rows] + np.where(np.isfinite(rel), rel, 0.0)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a trained model came from; a saved model that does not match is refused."""

    feature_names: tuple[str, ...]
    step_s: float
    lead_steps: int
    scale: float
    quantile: float
    fit_window: tuple[float, float]
    fitted_at: float
    train_rows: int
    sklearn_version: str = sklearn.__version__
    numpy_version: str = np.__version__
    python_version: str = platform.python_version()


@dataclass(frozen=True, slots=True)
class GradientBoostingPeak:
    """The trained regressor with its provenance."""

    regressor: PeakQuantileRegressor
    provenance: Provenance
    name: str = field(default="model")

    def predict_log(self, features: Features, rows: IndexArray) -> FloatArray:
        prediction = self.regressor.predict(features.matrix[rows])
        return features.anchor[rows] + prediction


@dataclass(frozen=True, slots=True)
class TrainingOutcome:
    """The forecaster chosen at a cutoff, and why (a short reason for logs and decisions)."""

    forecaster: PeakForecaster
    reason: str


def training_rows(
    target: FloatArray, anchor: FloatArray, spec: FeatureSpec, cutoff: int, window_s: float
) -> IndexArray:
    """Rows whose target was fully observed strictly before step ``cutoff`` (no peeking)."""
    last = cutoff - spec.lead_steps - 1  # row i's target ends at i + k, which must be < cutoff
    first = max(0, cutoff - int(window_s / spec.step_s))
    if last < first:
        return np.empty(0, dtype=np.intp)
    rows = np.arange(first, last + 1)
    usable = np.isfinite(target[rows]) & np.isfinite(anchor[rows])
    return rows[usable]


def thin_rows(rows: IndexArray, max_rows: int) -> IndexArray:
    """At most ``max_rows`` rows spread evenly, always keeping the newest."""
    if rows.size <= max_rows:
        return rows
    picks = np.linspace(rows.size - 1, 0, max_rows).round().astype(np.intp)[::-1]
    return rows[np.unique(picks)]


def observed_history_s(times: FloatArray, values: FloatArray, cutoff: int) -> float | None:
    """Seconds from the first observed value to step ``cutoff - 1``; None if none observed."""
    observed = np.flatnonzero(np.isfinite(values[:cutoff]))
    if observed.size == 0:
        return None
    return float(times[cutoff - 1] - times[observed[0]])


def _seasonal_history_s(spec: FeatureSpec) -> float:
    return SECONDS_PER_DAY + spec.lead_steps * spec.step_s


def fallback_forecaster(
    times: FloatArray, values: FloatArray, spec: FeatureSpec, cutoff: int
) -> TrainingOutcome:
    """The richest rung below the model that the history before ``cutoff`` supports.

    Where a model is dropped (its artifact is corrupt, or it failed to predict) the target
    forecasts with this until a fit replaces it: no fit is needed, so it is in place at once.
    """
    history_s = observed_history_s(times, values, cutoff)
    if history_s is None:
        return TrainingOutcome(RecentPeak(), "recent_peak: no history yet")
    if history_s < _seasonal_history_s(spec):
        return TrainingOutcome(RecentPeak(), "recent_peak: less than a day of history")
    return TrainingOutcome(SeasonalNaive(), "seasonal_naive: no model in use")


def train_forecaster(
    times: FloatArray,
    values: FloatArray,
    features: Features,
    spec: FeatureSpec,
    cutoff: int,
    *,
    shortfall_target: float,
    fitted_at: float,
    window_s: float = DEFAULT_TRAIN_WINDOW_S,
    max_rows: int = DEFAULT_MAX_TRAIN_ROWS,
    quantile: float | None = None,
    random_state: int = 0,
) -> TrainingOutcome:
    """Pick the richest forecaster the history before ``cutoff`` supports, and fit it."""
    history_s = observed_history_s(times, values, cutoff)
    if history_s is None or history_s < _seasonal_history_s(spec):
        return fallback_forecaster(times, values, spec, cutoff)
    fallback = SeasonalNaive()
    if history_s < MIN_MODEL_HISTORY_S:
        return TrainingOutcome(fallback, "seasonal_naive: less than two days of history")
    target = peak_target(values, spec, features.anchor)
    rows = training_rows(target, features.anchor, spec, cutoff, window_s)
    if rows.size < MIN_TRAIN_ROWS:
        return TrainingOutcome(fallback, f"seasonal_naive: only {rows.size} usable rows")
    rows = thin_rows(rows, max_rows)
    quantile = base_quantile(shortfall_target) if quantile is None else quantile
    regressor = PeakQuantileRegressor(quantile=quantile, random_state=random_state)
    try:
        regressor.fit(features.matrix[rows], target[rows])
    except (ValueError, FloatingPointError) as error:
        return TrainingOutcome(fallback, f"seasonal_naive: fit failed ({error})")
    provenance = Provenance(
        feature_names=FEATURE_NAMES,
        step_s=spec.step_s,
        lead_steps=spec.lead_steps,
        scale=spec.scale,
        quantile=quantile,
        fit_window=(float(times[rows[0]]), float(times[rows[-1]])),
        fitted_at=fitted_at,
        train_rows=int(rows.size),
    )
    model = GradientBoostingPeak(regressor=regressor, provenance=provenance)
    return TrainingOutcome(model, f"model: fit on {rows.size} rows")


def forecast_demand(
    forecaster: PeakForecaster, features: Features, spec: FeatureSpec, rows: IndexArray
) -> FloatArray:
    """Peak demand forecasts for ``rows`` in demand units (NaN where the level is unknown)."""
    if rows.size == 0:
        return np.empty(0)
    log_forecast = np.asarray(forecaster.predict_log(features, rows), dtype=np.float64)
    if log_forecast.shape != rows.shape:
        raise ModelError(
            f"{forecaster.name} returned {log_forecast.shape} forecasts for {rows.size} rows"
        )
    if not np.all(np.isfinite(log_forecast) | ~np.isfinite(features.anchor[rows])):
        raise ModelError(f"{forecaster.name} produced a non-finite forecast")
    return np.maximum(from_log(log_forecast, spec.scale), 0.0)
