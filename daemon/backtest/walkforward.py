"""Replay the plan over a trace, walk-forward: it retrains on a cadence using only the past.

Features are causal, so they are built once for the whole trace. At each retraining cutoff the
forecaster is fit on rows whose target had fully happened before the cutoff, then predicts the
steps up to the next cutoff. The conformal residual offset at a step uses only forecasts whose
window had ended by then. The sequential part, calibration and the planner, is
:func:`daemon.core.tick.tick`, the very function the daemon's reconciler calls.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from daemon.backtest.replay import ReplayLog, replay
from daemon.backtest.trace import Trace
from daemon.core.tick import TickInputs, TickState, tick
from daemon.core.types import PlannerSettings
from models.calibration import (
    CalibrationSettings,
    conformal_offset,
    log_residuals,
    with_conformal,
)
from models.features import FeatureSpec, build_features, future_peak
from models.features import lead_steps_for as lead_steps
from models.forecaster import (
    DEFAULT_MAX_TRAIN_ROWS,
    DEFAULT_TRAIN_WINDOW_S,
    forecast_demand,
    train_forecaster,
)

FloatArray = NDArray[np.float64]

CONFORMAL_REFRESH_S = 3600.0


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """Everything the plan replay needs besides the trace."""

    unit_capacity: float
    lead_s: float
    warmup_s: float
    shortfall_target: float = 0.01
    retrain_every_s: float = 86_400.0
    train_window_s: float = DEFAULT_TRAIN_WINDOW_S
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS
    reactive_utilisation: float = 1.0
    scale_down_stabilisation_s: float = 300.0
    min_units: int = 0
    max_units: int = 1_000_000
    calibration_gain: float = 0.03
    base_quantile: float | None = None  # None: derived from the shortfall target
    seed: int = 0
    # A target's own planner settings (``--config``); None: built from the fields above.
    planner: PlannerSettings | None = None

    def planner_settings(self) -> PlannerSettings:
        if self.planner is not None:
            # The replay's lead time is the one the plan answers for (daemon.core.landed).
            return replace(self.planner, lead_s=self.lead_s)
        return PlannerSettings(
            lead_s=self.lead_s,
            unit_capacity=self.unit_capacity,
            min_units=self.min_units,
            max_units=self.max_units,
            # As a floor under the forecast, the reactive rule covers today's demand at 100 %:
            # headroom for what comes next is the forecast's job.
            reactive_utilisation=self.reactive_utilisation,
            scale_down_stabilisation_s=self.scale_down_stabilisation_s,
        )

    def calibration_settings(self) -> CalibrationSettings:
        return CalibrationSettings(
            shortfall_target=self.shortfall_target,
            scale=self.unit_capacity,
            gain=self.calibration_gain,
        )


@dataclass(frozen=True, slots=True)
class Fit:
    at: float
    reason: str
    seconds: float


@dataclass(frozen=True, slots=True)
class PlanReplay:
    log: ReplayLog
    base_forecast: FloatArray
    forecast: FloatArray
    reasons: tuple[str, ...]
    fits: tuple[Fit, ...] = field(default_factory=tuple)
    seconds: float = 0.0

    @property
    def training_seconds(self) -> float:
        return sum(fit.seconds for fit in self.fits)


def retrain_cutoffs(trace: Trace, every_s: float) -> list[int]:
    """Grid indices at which the forecaster is refit: the start, then every ``every_s``."""
    per = max(1, round(every_s / trace.step_s))
    return list(range(0, len(trace), per))


def base_forecasts(
    trace: Trace, config: PlanConfig, spec: FeatureSpec
) -> tuple[FloatArray, list[str], list[Fit]]:
    """Walk-forward forecasts of the peak over the lead time, before calibration."""
    features = build_features(trace.times, trace.values, spec)
    forecast = np.full(len(trace), np.nan)
    sources = [""] * len(trace)
    fits: list[Fit] = []
    cutoffs = [*retrain_cutoffs(trace, config.retrain_every_s), len(trace)]
    for start, end in itertools.pairwise(cutoffs):
        began = time.perf_counter()
        outcome = train_forecaster(
            trace.times,
            trace.values,
            features,
            spec,
            start,
            shortfall_target=config.shortfall_target,
            fitted_at=float(trace.times[start]),
            window_s=config.train_window_s,
            max_rows=config.max_train_rows,
            quantile=config.base_quantile,
            random_state=config.seed,
        )
        rows = np.arange(start, end)
        forecast[start:end] = forecast_demand(outcome.forecaster, features, spec, rows)
        sources[start:end] = [outcome.forecaster.name] * (end - start)
        fits.append(Fit(float(trace.times[start]), outcome.reason, time.perf_counter() - began))
    return forecast, sources, fits


def conformal_offsets(
    trace: Trace, forecast: FloatArray, sources: list[str], config: PlanConfig, k: int
) -> FloatArray:
    """The residual-quantile offset in force at each step, from forecasts resolved by then.

    Only residuals of the rung in use count: a fallback's errors say nothing of the model's.
    """
    settings = config.calibration_settings()
    residuals = log_residuals(future_peak(trace.values, k), forecast, config.unit_capacity)
    rungs = np.asarray(sources)
    window = max(1, round(settings.window_s / trace.step_s))
    refresh = max(1, round(CONFORMAL_REFRESH_S / trace.step_s))
    offsets = np.zeros(len(trace))
    # Refresh on whole multiples of the refresh period of the absolute grid, as the daemon does.
    phase = -round(trace.start / trace.step_s) % refresh
    for i in range(phase, len(trace), refresh):
        # Forecast j's window ends at step j + k: resolved once j + k <= i.
        last = i - k
        if last >= 0:
            lo = max(0, last - window)
            same = rungs[lo : last + 1] == rungs[i]
            offset = conformal_offset(residuals[lo : last + 1][same], settings)
            offsets[i : i + refresh] = offset
    return offsets


def replay_plan(trace: Trace, config: PlanConfig, *, progress: bool | None = None) -> PlanReplay:
    """Replay the plan through the scoring rules, exactly as the daemon would have decided."""
    began = time.perf_counter()
    k = lead_steps(config.lead_s, trace.step_s)
    spec = FeatureSpec(step_s=trace.step_s, lead_steps=k, scale=config.unit_capacity)
    base, sources, fits = base_forecasts(trace, config, spec)
    offsets = conformal_offsets(trace, base, sources, config, k)
    planner_settings = config.planner_settings()
    calibration_settings = config.calibration_settings()
    values = trace.values.tolist()
    base_list = base.tolist()
    offset_list = offsets.tolist()
    forecasts = np.full(len(trace), np.nan)
    reasons: list[str] = [""] * len(trace)
    state = TickState()
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(trace), desc="replay", unit="step", disable=not show, mininterval=0.5)

    def policy(i: int, now: float, ready: int, total: int) -> int:
        nonlocal state
        demand = values[i]
        predicted = base_list[i]
        state = TickState(
            state.planner, with_conformal(state.calibration, offset_list[i]), state.forecast_source
        )
        result, state = tick(
            planner_settings,
            calibration_settings,
            state,
            TickInputs(
                now=now,
                current_units=total,
                ready_units=ready,
                demand=demand if math.isfinite(demand) else None,
                base_forecast=predicted if math.isfinite(predicted) else None,
                forecast_source=sources[i],
            ),
        )
        if result.forecast is not None:
            forecasts[i] = result.forecast
        reasons[i] = result.decision.reason
        if i % 2048 == 0:
            bar.update(min(2048, len(trace) - bar.n))
        return result.decision.desired

    log = replay(trace.times, config.lead_s, policy)
    bar.update(len(trace) - bar.n)
    bar.close()
    return PlanReplay(
        log=log,
        base_forecast=base,
        forecast=forecasts,
        reasons=tuple(reasons),
        fits=tuple(fits),
        seconds=time.perf_counter() - began,
    )
