"""From a target's configuration to the values the pure core and the forecaster take.

The settings layer speaks in YAML terms (``scale_down_limit.max_percent``, ``above_max``); the
core speaks in ``PlannerSettings`` and ``RateLimit``. Mapping them in one place keeps both
sides free of the other's vocabulary.
"""

from __future__ import annotations

from daemon.core.conformal import ConformalSettings
from daemon.core.schedules import NextChange, ScheduleDecision, effective_bounds, next_change
from daemon.core.tournament import TournamentSettings
from daemon.core.types import PlannerSettings, RateLimit
from daemon.forecasting import ForecastSettings
from daemon.settings import (
    ScaleLimit,
    Settings,
    SimulatorSourceConfig,
    TargetConfig,
    TrainingConfig,
)

__all__ = [
    "conformal_settings",
    "forecast_settings",
    "next_schedule_change",
    "node_layer_lead",
    "planner_settings",
    "rate_limit",
    "schedule_at",
    "tick_delay",
    "tournament_settings",
]


def rate_limit(limit: ScaleLimit | None) -> RateLimit | None:
    if limit is None:
        return None
    return RateLimit(
        period_s=limit.period, max_units=limit.max_units, max_percent=limit.max_percent
    )


def planner_settings(target: TargetConfig) -> PlannerSettings:
    return PlannerSettings(
        unit_capacity=target.unit_capacity,
        min_units=target.min_units,
        max_units=target.max_units,
        # The planner applies the above-max policy per tick, over whatever max a schedule set.
        above_max_policy=target.above_max.policy,
        above_max_buffer_percent=target.above_max.buffer_percent,
        reactive_utilisation=target.reactive_utilisation,
        scale_down_stabilisation_s=target.scale_down_stabilisation,
        scale_down_tolerance=target.scale_down_tolerance,
        scale_up_limit=rate_limit(target.scale_up_limit),
        scale_down_limit=rate_limit(target.scale_down_limit),
        max_demand_age_s=target.max_demand_age,
        lead_s=target.lead_time,
    )


def tournament_settings(target: TargetConfig) -> TournamentSettings:
    config = target.tournament
    return TournamentSettings(
        candidates=tuple(dict.fromkeys(("model", *config.candidates))),
        window_s=config.window,
        switch_margin=config.switch_margin,
        switch_hold_s=config.switch_hold,
        pin=config.pin,
    )


def conformal_settings(forecast: ForecastSettings) -> ConformalSettings:
    """The conformal offset's settings for a target's forecast grid, as the backtest's (its
    window and hourly refresh are the defaults both use)."""
    return ConformalSettings(
        step_s=forecast.step_s,
        lead_steps=forecast.spec.lead_steps,
        shortfall_target=forecast.shortfall_target,
        scale=forecast.unit_capacity,
    )


def forecast_settings(
    target: TargetConfig, training: TrainingConfig, step_s: float, *, interval_s: float = 0.0
) -> ForecastSettings:
    """``interval_s``: the target's tick interval, which the forecast window must cover too."""
    return ForecastSettings(
        step_s=step_s,
        # The forecaster covers (g, g + lead] from the grid step g <= now, but a tick runs up
        # to one step after g and its units are ready at now + lead: one more step makes the
        # forecast window contain (now, now + lead] at any tick time. And the next tick comes
        # an interval later, so units for demand in (now + lead, now + interval + lead] must
        # be asked for now: without the interval, capacity was ready 272-349 s ahead of a rise
        # with a 300 s lead, short of it one run in four. The backtest ticks on the grid
        # (now == g, interval == step, whose next decision lands a step later) and needs
        # neither.
        lead_s=target.lead_time + step_s + interval_s,
        unit_capacity=target.unit_capacity,
        shortfall_target=target.shortfall_target,
        # The model never trains on more than the history the trainer fetches.
        train_window_s=training.history_window,
    )


def tick_delay(settings: Settings, target: TargetConfig) -> float:
    """How much later than this tick's the next decision lands, on the target's own clock:
    one interval, which the forecast window must cover; a simulator's clock runs faster."""
    interval = target.interval or settings.interval
    source = settings.sources.get(target.source)
    if isinstance(source, SimulatorSourceConfig):
        return interval * source.speedup
    return interval


def node_layer_lead(pod_target: TargetConfig, node_target: TargetConfig) -> float:
    """How far ahead a pod target's node-layer forecast looks: the node lead plus the pod lead.

    Pods are asked for a pod lead time before the demand they serve, and need their nodes
    when they are asked for (a pod without a node waits Pending); so nodes must be asked for
    a node lead time before *that*, and the node layer forecasts demand that far ahead.
    """
    return node_target.lead_time + pod_target.lead_time


def schedule_at(target: TargetConfig, now: float) -> ScheduleDecision:
    """The target's bounds at ``now`` from its own, its windows and its overrides. Windows that
    raise capacity take effect a lead time early, so it is ready on time."""
    return effective_bounds(
        target.schedules,
        target.overrides,
        target.min_units,
        target.max_units,
        now,
        target.lead_time,
    )


def next_schedule_change(target: TargetConfig, now: float) -> NextChange | None:
    """When ``schedule_at`` next changes for the target (within the default horizon)."""
    return next_change(
        target.schedules,
        target.overrides,
        target.min_units,
        target.max_units,
        now,
        target.lead_time,
    )
