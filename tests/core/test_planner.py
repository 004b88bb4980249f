"""The planner's rules, one table each, through the public ``plan`` function."""

from __future__ import annotations

import math
from typing import Any

import pytest

from daemon.core.planner import effective_bounds, plan
from daemon.core.types import (
    Decision,
    PlanInputs,
    PlannerSettings,
    PlannerState,
    RateLimit,
    Reason,
)

NAN = float("nan")
INF = float("inf")

# 100 demand per unit; the reactive floor sizes at 80 per unit. No damping unless a test adds it.
UNDAMPED = PlannerSettings(unit_capacity=100.0, scale_down_stabilisation_s=0.0)


def decide(
    settings: PlannerSettings = UNDAMPED,
    state: PlannerState | None = None,
    **inputs: Any,
) -> tuple[Decision, PlannerState]:
    inputs.setdefault("now", 1_000.0)
    return plan(settings, state or PlannerState(), PlanInputs(**inputs))


@pytest.mark.parametrize(
    ("demand", "forecast", "current", "desired", "reason", "forecast_units", "reactive_units"),
    [
        # Both valid, forecast larger: size for the coming peak.
        (400.0, 900.0, 5, 9, "forecast", 9, 5),
        # A tie goes to the forecast.
        (400.0, 500.0, 5, 5, "forecast", 5, 5),
        # Demand already above the forecast: the HPA floor wins (ceil(800 / 80) = 10).
        (800.0, 300.0, 5, 10, "reactive_floor", 3, 10),
        # Both valid and lower: a real scale-down.
        (80.0, 100.0, 5, 1, "forecast", 1, 1),
    ],
)
def test_recommendation_takes_the_larger_signal(
    demand: float,
    forecast: float,
    current: int,
    desired: int,
    reason: str,
    forecast_units: int,
    reactive_units: int,
) -> None:
    decision, _ = decide(current_units=current, demand=demand, forecast=forecast)
    assert (decision.desired, decision.reason, decision.reasons) == (desired, reason, (reason,))
    assert (decision.forecast_units, decision.reactive_units) == (forecast_units, reactive_units)


@pytest.mark.parametrize("forecast", [None, NAN, INF, -INF, -1.0])
@pytest.mark.parametrize(
    ("demand", "current", "desired"),
    [
        (100.0, 5, 5),  # the HPA would say 2: a failed model never causes a scale-down
        (800.0, 5, 10),  # but a scale-up on observed demand still happens
    ],
)
def test_failed_forecast_falls_back_to_reactive_without_scaling_down(
    forecast: float | None, demand: float, current: int, desired: int
) -> None:
    decision, _ = decide(current_units=current, demand=demand, forecast=forecast)
    assert (decision.desired, decision.reason, decision.forecast_units) == (
        desired,
        Reason.FALLBACK,
        None,
    )


@pytest.mark.parametrize(
    ("demand", "demand_age_s"),
    [(None, 0.0), (NAN, 0.0), (INF, 0.0), (-INF, 0.0), (-1.0, 0.0), (100.0, 61.0), (100.0, NAN)],
)
@pytest.mark.parametrize(
    ("forecast", "desired"),
    [
        (0.0, 7),  # the forecast says 0 units: without demand to confirm it, hold
        (None, 7),
        (1_200.0, 12),  # a scale-up the forecast asks for is still made
    ],
)
def test_missing_or_stale_demand_never_scales_down(
    demand: float | None, demand_age_s: float, forecast: float | None, desired: int
) -> None:
    settings = PlannerSettings(unit_capacity=100.0, max_demand_age_s=60.0)
    decision, _ = decide(
        settings, current_units=7, demand=demand, demand_age_s=demand_age_s, forecast=forecast
    )
    assert decision.desired == desired
    assert decision.reasons == (Reason.HOLD_MISSING_METRICS,)
    assert decision.reactive_units is None


def test_demand_exactly_at_the_age_limit_is_still_used() -> None:
    settings = PlannerSettings(
        unit_capacity=100.0, max_demand_age_s=60.0, scale_down_stabilisation_s=0.0
    )
    decision, _ = decide(settings, current_units=7, demand=0.0, demand_age_s=60.0, forecast=0.0)
    assert (decision.desired, decision.reason) == (0, Reason.FORECAST)


@pytest.mark.parametrize(
    ("demand", "forecast", "reason", "reasons"),
    [
        (100.0, 900.0, "fallback_model", ("forecast", "fallback_model")),
        (900.0, 100.0, "reactive_floor", ("reactive_floor", "fallback_model")),
        (100.0, None, "fallback", ("fallback", "fallback_model")),
    ],
)
def test_a_fallback_model_is_named_in_the_reasons(
    demand: float, forecast: float | None, reason: str, reasons: tuple[str, ...]
) -> None:
    decision, _ = decide(
        current_units=5, demand=demand, forecast=forecast, forecast_source="seasonal_naive"
    )
    assert (decision.reason, decision.reasons) == (reason, reasons)


def test_scale_down_is_stabilised_until_the_high_recommendation_expires() -> None:
    settings = PlannerSettings(unit_capacity=100.0, scale_down_stabilisation_s=300.0)
    first, state = decide(settings, now=0.0, current_units=10, demand=800.0, forecast=1_000.0)
    assert first.desired == 10
    held, state = decide(settings, state, now=60.0, current_units=10, demand=80.0, forecast=200.0)
    assert (held.desired, held.reason, held.reasons) == (
        10,
        "stabilised",
        ("forecast", "stabilised"),
    )
    edge, state = decide(settings, state, now=300.0, current_units=10, demand=80.0, forecast=200.0)
    assert edge.desired == 10
    after, _ = decide(settings, state, now=301.0, current_units=10, demand=80.0, forecast=200.0)
    assert (after.desired, after.reason) == (2, "forecast")


def test_the_stabilisation_window_records_the_raw_recommendation() -> None:
    settings = PlannerSettings(unit_capacity=100.0, scale_down_stabilisation_s=300.0)
    _, state = decide(settings, now=0.0, current_units=10, demand=800.0, forecast=1_000.0)
    _, state = decide(settings, state, now=60.0, current_units=10, demand=80.0, forecast=200.0)
    # The 10 decided at t=60 came from the window; what is recorded is the 2 recommended then.
    assert state.recommendations == ((0.0, 10), (60.0, 2))


@pytest.mark.parametrize(
    ("forecast", "desired", "reasons"),
    [
        (900.0, 10, ("forecast", "tolerance_hold")),  # 1 of 10 is within 10 %
        (800.0, 8, ("forecast",)),  # 2 of 10 is not
        (1_100.0, 11, ("forecast",)),  # scale-ups are never held
    ],
)
def test_scale_down_tolerance_band(forecast: float, desired: int, reasons: tuple[str, ...]) -> None:
    settings = PlannerSettings(
        unit_capacity=100.0, scale_down_stabilisation_s=0.0, scale_down_tolerance=0.1
    )
    decision, _ = decide(settings, current_units=10, demand=0.0, forecast=forecast)
    assert (decision.desired, decision.reasons) == (desired, reasons)


def test_rate_limit_counts_changes_made_by_earlier_ticks() -> None:
    settings = PlannerSettings(
        unit_capacity=100.0,
        scale_down_stabilisation_s=0.0,
        scale_up_limit=RateLimit(period_s=60.0, max_units=2),
    )
    current, state = 0, PlannerState()
    desired_by_tick = []
    for now in (0.0, 30.0, 60.0, 90.0, 120.0):
        decision, state = decide(
            settings, state, now=now, current_units=current, demand=0.0, forecast=1_000.0
        )
        desired_by_tick.append((decision.desired, decision.reason))
        current = decision.desired
    assert desired_by_tick == [
        (2, "rate_limited_up"),
        (2, "rate_limited_up"),  # the 2 units added at t=0 used this period's allowance
        (4, "rate_limited_up"),
        (4, "rate_limited_up"),
        (6, "rate_limited_up"),
    ]
    assert state.scale_events == ((120.0, 2),)


def test_rate_limited_scale_down_is_reported() -> None:
    settings = PlannerSettings(
        unit_capacity=100.0,
        scale_down_stabilisation_s=0.0,
        scale_down_limit=RateLimit(period_s=60.0, max_percent=10.0),
    )
    decision, state = decide(settings, current_units=30, demand=0.0, forecast=0.0)
    assert (decision.desired, decision.reason) == (27, "rate_limited_down")
    assert state.scale_events == ((1_000.0, -3),)


def test_without_rate_limits_no_scale_events_are_kept() -> None:
    _, state = decide(current_units=1, demand=0.0, forecast=900.0)
    assert state.scale_events == ()


@pytest.mark.parametrize(
    ("forecast", "min_override", "max_override", "desired", "reason"),
    [
        (1_000.0, None, None, 10, "forecast"),
        (3_000.0, None, None, 20, "clamped_max"),
        (100.0, None, None, 2, "clamped_min"),
        # A per-tick override replaces the settings' bound, in either direction.
        (3_000.0, None, 25, 25, "clamped_max"),
        (1_000.0, None, 8, 8, "clamped_max"),
        (1_000.0, 12, None, 12, "clamped_min"),
        (100.0, 0, None, 1, "forecast"),
        # Minimum above maximum: the maximum wins.
        (1_000.0, 15, 5, 5, "clamped_max"),
        (100.0, 15, 5, 5, "clamped_min"),
    ],
)
def test_bounds_with_per_tick_overrides(
    forecast: float, min_override: int | None, max_override: int | None, desired: int, reason: str
) -> None:
    settings = PlannerSettings(
        unit_capacity=100.0, min_units=2, max_units=20, scale_down_stabilisation_s=0.0
    )
    decision, _ = decide(
        settings,
        current_units=0,
        demand=0.0,
        forecast=forecast,
        min_units=min_override,
        max_units=max_override,
    )
    assert (decision.desired, decision.reason) == (desired, reason)


def test_effective_bounds_when_the_override_minimum_exceeds_the_maximum() -> None:
    settings = PlannerSettings(unit_capacity=1.0, min_units=2, max_units=20)
    inputs = PlanInputs(now=0.0, current_units=0, demand=None, forecast=None, min_units=15)
    assert effective_bounds(settings, inputs) == (15, 20)
    inputs = PlanInputs(0.0, 0, None, None, min_units=15, max_units=5)
    assert effective_bounds(settings, inputs) == (5, 5)


def test_bounds_hold_over_rate_limits() -> None:
    settings = PlannerSettings(
        unit_capacity=100.0,
        scale_down_stabilisation_s=0.0,
        scale_up_limit=RateLimit(period_s=60.0, max_units=1),
    )
    decision, _ = decide(settings, current_units=0, demand=0.0, forecast=900.0, min_units=5)
    assert decision.desired == 5
    assert decision.reasons == ("forecast", "rate_limited_up", "clamped_min")


def test_full_reason_chain() -> None:
    settings = PlannerSettings(unit_capacity=100.0, max_units=8, scale_down_stabilisation_s=300.0)
    _, state = decide(settings, now=0.0, current_units=12, demand=0.0, forecast=1_200.0)
    decision, _ = decide(settings, state, now=60.0, current_units=12, demand=0.0, forecast=500.0)
    assert decision.reasons == ("forecast", "stabilised", "clamped_max")
    assert (decision.desired, decision.reason, decision.changed) == (8, "clamped_max", True)


def test_decision_reports_the_units_each_signal_asked_for() -> None:
    # 250 on 3 units is 250 / 240, inside the HPA's 10 % tolerance: the floor stays at 3.
    decision, _ = decide(current_units=3, demand=250.0, forecast=math.pi * 100)
    assert (decision.forecast_units, decision.reactive_units) == (4, 3)
