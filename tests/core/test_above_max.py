"""The above-max policy: honour the maximum or raise it by a buffer, and say so either way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.core.above_max import raised_max
from daemon.core.planner import plan
from daemon.core.types import PlanInputs, PlannerSettings, PlannerState, RateLimit


@pytest.mark.parametrize(
    ("max_units", "forecast_units", "policy", "buffer", "expected"),
    [
        (20, 30, "honor", 50.0, 20),
        (20, 30, "increase", 10.0, 22),
        # Rounded up: 10 % of 5 still buys a unit; 10 * 1.1 is not 11.000000000000002 -> 12.
        (5, 9, "increase", 10.0, 6),
        (10, 12, "increase", 10.0, 11),
        (20, 30, "increase", 0.0, 20),
        # Only a forecast above the max raises it.
        (20, 20, "increase", 50.0, 20),
        (20, None, "increase", 50.0, 20),
        # A scale-to-zero maximum stays zero.
        (0, 4, "increase", 100.0, 0),
    ],
)
def test_raised_max(
    max_units: int, forecast_units: int | None, policy: str, buffer: float, expected: int
) -> None:
    assert raised_max(max_units, forecast_units, policy, buffer) == expected


def decide(
    forecast: float, *, policy: str = "honor", buffer: float = 0.0, **more: object
) -> tuple[int, str, tuple[str, ...]]:
    settings = PlannerSettings(
        unit_capacity=100.0,
        min_units=1,
        max_units=20,
        scale_down_stabilisation_s=0.0,
        above_max_policy=policy,
        above_max_buffer_percent=buffer,
        **more,  # type: ignore[arg-type]
    )
    decision, _ = plan(settings, PlannerState(), PlanInputs(1_000.0, 10, 0.0, forecast))
    return decision.desired, decision.reason, decision.reasons


@pytest.mark.parametrize(
    ("forecast", "policy", "buffer", "expected"),
    [
        # Within the max: nothing to report.
        (1_500.0, "honor", 0.0, (15, "forecast", ("forecast",))),
        (1_500.0, "increase", 25.0, (15, "forecast", ("forecast",))),
        # Honour: clamped, and the forecast's excess reported.
        (
            3_000.0,
            "honor",
            0.0,
            (20, "clamped_max", ("forecast", "forecast_above_max", "clamped_max")),
        ),
        # Increase: up to ceil(20 * 1.25) = 25 this tick.
        (
            2_300.0,
            "increase",
            25.0,
            (23, "above_max_increase", ("forecast", "forecast_above_max", "above_max_increase")),
        ),
        (
            3_000.0,
            "increase",
            25.0,
            (25, "clamped_max", ("forecast", "forecast_above_max", "clamped_max")),
        ),
    ],
)
def test_planner_applies_the_policy(
    forecast: float, policy: str, buffer: float, expected: tuple[int, str, tuple[str, ...]]
) -> None:
    assert decide(forecast, policy=policy, buffer=buffer) == expected


def test_the_excess_is_reported_even_when_a_later_stage_cut_the_number() -> None:
    limit = RateLimit(period_s=60.0, max_units=2)
    desired, reason, reasons = decide(3_000.0, scale_up_limit=limit)
    assert (desired, reason) == (12, "rate_limited_up")
    assert reasons == ("forecast", "forecast_above_max", "rate_limited_up")


def test_a_schedule_maximum_is_the_one_raised() -> None:
    settings = PlannerSettings(
        unit_capacity=100.0, max_units=20, above_max_policy="increase", above_max_buffer_percent=50
    )
    inputs = PlanInputs(1_000.0, 4, 0.0, 3_000.0, max_units=8)
    assert plan(settings, PlannerState(), inputs)[0].desired == 12
    off_hours = PlanInputs(1_000.0, 0, 0.0, 3_000.0, min_units=0, max_units=0)
    assert plan(settings, PlannerState(), off_hours)[0].desired == 0


@pytest.mark.parametrize(
    ("policy", "buffer", "message"),
    [
        ("grow", 0.0, "above_max_policy"),
        ("increase", -1.0, "buffer"),
        ("honor", float("nan"), "buffer"),
    ],
)
def test_settings_refuse_a_bad_policy(policy: str, buffer: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlannerSettings(unit_capacity=1.0, above_max_policy=policy, above_max_buffer_percent=buffer)


@given(
    st.integers(0, 500),
    st.one_of(st.none(), st.integers(0, 2_000)),
    st.sampled_from(["honor", "increase"]),
    st.floats(0.0, 300.0),
)
def test_raised_max_never_lowers_and_stays_within_the_buffer(
    max_units: int, forecast_units: int | None, policy: str, buffer: float
) -> None:
    raised = raised_max(max_units, forecast_units, policy, buffer)
    assert max_units <= raised <= max_units * (1 + buffer / 100) + 1
    if policy == "honor":
        assert raised == max_units
