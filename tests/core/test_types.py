"""Validation of the planner's value objects: bad settings fail early, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.core.types import Decision, PlanInputs, PlannerSettings, RateLimit


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unit_capacity", 0.0),
        ("unit_capacity", float("nan")),
        ("unit_capacity", float("inf")),
        ("min_units", -1),
        ("min_units", 1.5),
        ("max_units", True),
        ("reactive_utilisation", 0.0),
        ("reactive_utilisation", 1.01),
        ("reactive_tolerance", -0.1),
        ("scale_down_stabilisation_s", float("inf")),
        ("scale_down_tolerance", 1.0),
        ("scale_down_tolerance", float("nan")),
        ("max_demand_age_s", float("nan")),
    ],
)
def test_invalid_settings_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        PlannerSettings(**{"unit_capacity": 100.0, field: value})


def test_max_below_min_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_units"):
        PlannerSettings(unit_capacity=1.0, min_units=5, max_units=4)


def test_defaults_are_valid_and_never_stale() -> None:
    settings = PlannerSettings(unit_capacity=1.0)
    assert settings.max_demand_age_s == float("inf")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"period_s": 0.0, "max_units": 1}, "period_s"),
        ({"period_s": 60.0}, "max_units or max_percent"),
        ({"period_s": 60.0, "max_units": -1}, "max_units"),
        ({"period_s": 60.0, "max_percent": float("nan")}, "max_percent"),
    ],
)
def test_invalid_rate_limit(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RateLimit(**kwargs)


@pytest.mark.parametrize("field", ["current_units", "min_units", "max_units"])
def test_negative_counts_in_inputs_are_bugs(field: str) -> None:
    kwargs: dict[str, Any] = {"now": 0.0, "current_units": 1, "demand": 1.0, "forecast": 1.0}
    kwargs[field] = -1
    with pytest.raises(ValueError, match=field):
        PlanInputs(**kwargs)


def test_bad_demand_values_are_accepted_as_missing_not_rejected() -> None:
    inputs = PlanInputs(now=0.0, current_units=1, demand=float("nan"), forecast=-1.0)
    assert inputs.forecast == -1.0


def test_decision_changed() -> None:
    same = Decision(3, 3, "forecast", ("forecast",), 3, None)
    assert not same.changed
    assert Decision(4, 3, "forecast", ("forecast",), 4, None).changed
