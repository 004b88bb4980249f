"""The idle verdict: every metric below its threshold over a covered window, or the instance is
kept; the verdict names the numbers that decided it."""

from __future__ import annotations

import math

import pytest

from daemon.core.idle import IdlePolicy, MetricRule, idle_verdict

NOW = 1_800_000_000.0
PERIOD = 300.0
POLICY = IdlePolicy(
    window_s=3600.0,
    period_s=PERIOD,
    metrics=(MetricRule("CPUUtilization", 5.0), MetricRule("NetworkIn", 100_000.0)),
    min_coverage=0.8,
)


def points(values: list[float], *, end: float = NOW) -> list[tuple[float, float]]:
    """One value per period, the last period ending at ``end``."""
    first = end - PERIOD * len(values)
    return [(first + i * PERIOD, v) for i, v in enumerate(values)]


def quiet() -> dict[str, list[tuple[float, float]]]:
    return {"CPUUtilization": points([1.0] * 12), "NetworkIn": points([2_000.0] * 12)}


def test_every_metric_below_over_the_whole_window_is_idle() -> None:
    verdict = idle_verdict(POLICY, quiet(), NOW)
    assert verdict.idle
    assert verdict.reason == (
        "idle: CPUUtilization peak 1 < 5 (12 of 12 periods); "
        "NetworkIn peak 2000 < 100000 (12 of 12 periods)"
    )


def test_one_period_at_the_threshold_keeps_the_instance() -> None:
    series = quiet()
    series["CPUUtilization"] = points([1.0] * 6 + [5.0] + [1.0] * 5)
    verdict = idle_verdict(POLICY, series, NOW)
    assert not verdict.idle
    assert "CPUUtilization peak 5 >= 5" in verdict.reason


@pytest.mark.parametrize("present", [0, 9])
def test_missing_data_is_never_idleness(present: int) -> None:
    # 9 of 12 periods is 75 %, under the 80 % coverage; none at all is a metric not reporting.
    series = quiet()
    series["NetworkIn"] = points([2_000.0] * present)
    verdict = idle_verdict(POLICY, series, NOW)
    assert not verdict.idle
    network = verdict.metrics[1]
    assert (network.points, network.periods) == (present, 12)


def test_enough_coverage_is_idle_and_non_finite_values_count_as_missing() -> None:
    series = quiet()
    series["CPUUtilization"] = points([1.0] * 10 + [math.nan, math.inf])
    assert idle_verdict(POLICY, series, NOW).metrics[0].points == 10
    assert idle_verdict(POLICY, series, NOW).idle  # 10 of 12 >= 80 %
    series["CPUUtilization"] = points([1.0] * 9 + [math.nan] * 3)
    assert not idle_verdict(POLICY, series, NOW).idle


def test_only_the_window_counts() -> None:
    # A busy hour before the window and a busy period stamped at `now` (not yet complete) do
    # not count; the period starting exactly at now - window does.
    series = quiet()
    series["CPUUtilization"] = [
        (NOW - 3600.0 - PERIOD, 90.0),
        *points([1.0] * 12),
        (NOW, 90.0),
    ]
    assert idle_verdict(POLICY, series, NOW).idle
    series["CPUUtilization"] = [(NOW - 3600.0, 90.0), *points([1.0] * 11)]
    assert not idle_verdict(POLICY, series, NOW).idle


def test_a_policy_must_make_sense() -> None:
    with pytest.raises(ValueError, match="at least one metric"):
        IdlePolicy(window_s=3600.0, period_s=300.0, metrics=())
    with pytest.raises(ValueError, match="period_s <= window_s"):
        IdlePolicy(window_s=60.0, period_s=300.0, metrics=(MetricRule("x", 1.0),))
