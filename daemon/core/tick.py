"""One decision step, shared by the daemon's reconciler and ``elasticd backtest``.

observe (was the last step short?) -> calibrate the forecast -> plan. Keeping this in one pure
function is what makes a replay show what the daemon would have done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from daemon.core.planner import plan
from daemon.core.types import Decision, PlanInputs, PlannerSettings, PlannerState
from models.calibration import CalibrationSettings, CalibrationState, calibrated, observe_step


@dataclass(frozen=True, slots=True)
class TickInputs:
    now: float
    current_units: int  # ready + pending
    ready_units: int  # units serving traffic now
    demand: float | None
    base_forecast: float | None  # the forecaster's peak over the lead time, before calibration
    forecast_source: str = "model"
    demand_age_s: float = 0.0
    min_units: int | None = None
    max_units: int | None = None


@dataclass(frozen=True, slots=True)
class TickState:
    planner: PlannerState = field(default_factory=PlannerState)
    calibration: CalibrationState = field(default_factory=CalibrationState)
    forecast_source: str = ""  # the rung the calibration was learnt for


@dataclass(frozen=True, slots=True)
class TickResult:
    decision: Decision
    forecast: float | None  # calibrated forecast the plan used
    short: bool | None  # whether demand exceeded ready capacity now (None: demand unknown)


def demand_is_valid(demand: float | None, age_s: float, max_age_s: float) -> bool:
    return demand is not None and math.isfinite(demand) and demand >= 0 and age_s <= max_age_s


def tick(
    planner_settings: PlannerSettings,
    calibration_settings: CalibrationSettings,
    state: TickState,
    inputs: TickInputs,
) -> tuple[TickResult, TickState]:
    """Decide the desired units for ``inputs.now`` and return the state for the next step."""
    calibration = state.calibration
    if inputs.forecast_source != state.forecast_source:
        # A new rung of the ladder (say the model replacing a fallback) makes other errors:
        # what the integral learnt about the old one would only mislead it.
        calibration = CalibrationState(conformal=calibration.conformal)
    short: bool | None = None
    if demand_is_valid(inputs.demand, inputs.demand_age_s, planner_settings.max_demand_age_s):
        assert inputs.demand is not None
        short = inputs.demand > inputs.ready_units * planner_settings.unit_capacity
        # Only real observations move the calibration: a gap says nothing about the plan.
        calibration = observe_step(calibration, calibration_settings, short)
    forecast: float | None = None
    if inputs.base_forecast is not None and math.isfinite(inputs.base_forecast):
        forecast = calibrated(inputs.base_forecast, calibration, calibration_settings)
    decision, planner_state = plan(
        planner_settings,
        state.planner,
        PlanInputs(
            now=inputs.now,
            current_units=inputs.current_units,
            demand=inputs.demand,
            forecast=forecast,
            demand_age_s=inputs.demand_age_s,
            forecast_source=inputs.forecast_source,
            min_units=inputs.min_units,
            max_units=inputs.max_units,
        ),
    )
    result = TickResult(decision=decision, forecast=forecast, short=short)
    next_state = TickState(planner_state, calibration, inputs.forecast_source)
    return result, next_state
