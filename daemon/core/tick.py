"""One decision step, shared by the daemon's reconciler and ``elasticd backtest``.

observe (was the last sample short?) -> calibrate the forecast -> plan -> book the decision in
the plan's own ledger. Keeping this in one pure function is what makes a replay show what the
daemon would have done.

Two rules keep the calibration honest, so the daemon and the backtest learn the same thing
from the same data:

- **once per sample**: a daemon ticking every 10 s on a metric sampled every 60 s sees each
  sample six times; only the first sighting of a sample (``sample_time`` newer than the last
  one observed) moves the calibration. The backtest ticks once per sample, so both count the
  same steps.
- **the plan's own shortfall**: a step trains the calibration only when demand exceeded the
  capacity the plan itself asked for and had had its lead time to land
  (:mod:`daemon.core.landed`). A target short because a write failed or another writer
  overrode it is reported as *not applied*, and the forecast is not inflated for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from daemon.core.landed import LandedCapacity, advance, apply_decision
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
    sample_time: float | None = None
    """When ``demand`` was sampled; None: at ``now`` (the backtest's grid). A sample no newer
    than the last one observed is a repeat and does not move the calibration."""


@dataclass(frozen=True, slots=True)
class TickState:
    planner: PlannerState = field(default_factory=PlannerState)
    calibration: CalibrationState = field(default_factory=CalibrationState)
    forecast_source: str = ""  # the rung the calibration was learnt for
    landed: LandedCapacity = field(default_factory=LandedCapacity)
    """The plan's own ledger: what its decisions would have ready now."""
    last_sample_time: float = -math.inf
    """The newest sample the calibration has observed."""


@dataclass(frozen=True, slots=True)
class TickResult:
    decision: Decision
    forecast: float | None  # calibrated forecast the plan used
    short: bool | None
    """A new sample exceeded the target's real ready capacity (None: no new valid sample)."""
    plan_short: bool | None = None
    """A new sample exceeded the capacity the plan had asked for and had time to land: the
    plan's own miss, the only kind that trains the calibration (None: no new valid sample)."""

    @property
    def not_applied(self) -> bool:
        """Short only because the plan's capacity was not applied (a failed write, another
        writer, a slow boot): reported, never learnt from."""
        return bool(self.short) and self.plan_short is False


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
    landed = advance(state.landed, inputs.now)
    last_sample_time = state.last_sample_time
    short: bool | None = None
    plan_short: bool | None = None
    sample_time = inputs.now if inputs.sample_time is None else inputs.sample_time
    if (
        demand_is_valid(inputs.demand, inputs.demand_age_s, planner_settings.max_demand_age_s)
        and sample_time > last_sample_time
    ):
        assert inputs.demand is not None
        unit = planner_settings.unit_capacity
        short = inputs.demand > inputs.ready_units * unit
        last_sample_time = sample_time
        # Before its first decision the plan has no ledger: it answers for nothing yet.
        if landed.started:
            plan_short = inputs.demand > landed.ready * unit
            # Only real, new observations of the plan's own capacity move the calibration: a
            # gap or a repeat says nothing about the plan, nor does a write that did not land.
            calibration = observe_step(calibration, calibration_settings, plan_short)
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
    landed = apply_decision(landed, inputs.now, decision.desired, planner_settings.lead_s)
    result = TickResult(decision=decision, forecast=forecast, short=short, plan_short=plan_short)
    next_state = TickState(
        planner_state, calibration, inputs.forecast_source, landed, last_sample_time
    )
    return result, next_state
