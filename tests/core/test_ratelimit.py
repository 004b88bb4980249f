"""HPA-style rate limits: units vs percent, the sliding period, changes already made."""

from __future__ import annotations

import pytest

from daemon.core.ratelimit import limit_rate, longest_period, record_scale_event
from daemon.core.types import RateLimit

NOW = 1_000.0
UNITS_4 = RateLimit(period_s=60.0, max_units=4)
PERCENT_100 = RateLimit(period_s=60.0, max_percent=100.0)


@pytest.mark.parametrize(
    ("limit", "current", "desired", "expected"),
    [
        (UNITS_4, 10, 20, 14),
        (UNITS_4, 10, 12, 12),  # inside the allowance: untouched
        (PERCENT_100, 10, 30, 20),
        (RateLimit(60.0, max_percent=50.0), 3, 10, 5),  # ceil(1.5) = 2 units
        # The larger part wins (HPA selectPolicy: Max), whichever kind it is.
        (RateLimit(60.0, max_units=4, max_percent=10.0), 10, 30, 14),
        (RateLimit(60.0, max_units=4, max_percent=100.0), 10, 30, 20),
        # A percentage of zero units would never let a target start: it counts as one unit.
        (PERCENT_100, 0, 5, 1),
        (RateLimit(60.0, max_units=0), 10, 20, 10),
    ],
)
def test_scale_up_limit(limit: RateLimit, current: int, desired: int, expected: int) -> None:
    assert limit_rate(desired, current, (), NOW, limit, None) == expected


@pytest.mark.parametrize(
    ("limit", "current", "desired", "expected"),
    [
        (RateLimit(300.0, max_percent=10.0), 30, 0, 27),
        (RateLimit(300.0, max_percent=10.0), 5, 0, 4),  # ceil(0.5) = 1 unit
        (RateLimit(300.0, max_units=2), 30, 0, 28),
        (RateLimit(300.0, max_units=2, max_percent=50.0), 30, 0, 15),
        (RateLimit(300.0, max_units=2), 30, 29, 29),
    ],
)
def test_scale_down_limit(limit: RateLimit, current: int, desired: int, expected: int) -> None:
    assert limit_rate(desired, current, (), NOW, None, limit) == expected


@pytest.mark.parametrize(
    ("events", "current", "expected"),
    [
        # 3 of the 4 units were added 30 s ago: 1 remains.
        (((NOW - 30.0, 3),), 13, 14),
        # The period is open at its start: a change exactly 60 s ago no longer counts.
        (((NOW - 60.0, 3),), 13, 17),
        # Scale-downs do not use up the scale-up allowance.
        (((NOW - 30.0, -3),), 7, 11),
        # Someone else already added more than the allowance: hold, never shrink.
        (((NOW - 10.0, 4),), 20, 20),
    ],
)
def test_changes_already_made_in_the_period_count(
    events: tuple[tuple[float, int], ...], current: int, expected: int
) -> None:
    assert limit_rate(30, current, events, NOW, UNITS_4, None) == expected


def test_percentage_is_of_the_units_at_the_period_start() -> None:
    # 10 units grew to 20 within the period: 100 % of 10 is used up, not 100 % of 20 available.
    assert limit_rate(40, 20, ((NOW - 5.0, 10),), NOW, PERCENT_100, None) == 20


def test_a_limit_never_acts_on_the_other_direction() -> None:
    assert limit_rate(2, 10, (), NOW, UNITS_4, None) == 2
    assert limit_rate(50, 10, (), NOW, None, RateLimit(60.0, max_units=1)) == 50


def test_record_scale_event_trims_to_the_horizon_and_skips_no_change() -> None:
    events = ((NOW - 400.0, 2), (NOW - 100.0, -1))
    assert record_scale_event(events, NOW, 3, 300.0) == ((NOW - 100.0, -1), (NOW, 3))
    assert record_scale_event(events, NOW, 0, 300.0) == ((NOW - 100.0, -1),)
    assert record_scale_event(events, NOW, 3, 0.0) == ()


def test_longest_period() -> None:
    assert longest_period(None, None) == 0.0
    assert longest_period(UNITS_4, RateLimit(300.0, max_units=1)) == 300.0


def test_units_added_not_net_change_are_limited() -> None:
    # +1 then -1 within the period: the 1-unit allowance is spent, so no new unit until it ends.
    events = ((NOW - 50.0, 1), (NOW - 10.0, -1))
    assert limit_rate(5, 0, events, NOW, RateLimit(60.0, max_units=1), None) == 0
