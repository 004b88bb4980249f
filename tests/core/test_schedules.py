"""Schedule windows and overrides: DST, midnight, wake-ahead, overlap rules, properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.schedules import ScheduleDecision, effective_bounds, next_change
from daemon.settings import Override, ScheduleWindow

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def window(cron: str, duration: float, zone: str = "UTC", name: str = "w", **units: int) -> Any:
    fields = {"name": name, "cron": cron, "duration": duration, "timezone": zone}
    return ScheduleWindow.model_validate(fields | units)


def override(start: datetime, end: datetime, name: str = "o", **units: int) -> Any:
    return Override.model_validate({"name": name, "start": start, "end": end} | units)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def bounds(
    schedules: list[Any],
    at: datetime | float,
    *,
    overrides: tuple[Any, ...] = (),
    target: tuple[int, int] = (2, 20),
    lead_s: float = 0.0,
) -> ScheduleDecision:
    return effective_bounds(schedules, overrides, target[0], target[1], at, lead_s)


# -- DST and wall-clock timing ------------------------------------------------------------------

# A daily 07:00 window of 2 h, before and after each DST change, as UTC instants:
# the window follows the local clock, so its UTC start moves by an hour.
DAILY_SEVEN = [
    # Europe/Berlin spring forward on 2024-03-31 (CET +1 -> CEST +2).
    ("Europe/Berlin", utc(2024, 3, 30, 6, 0), utc(2024, 3, 30, 8, 0)),
    ("Europe/Berlin", utc(2024, 3, 31, 5, 0), utc(2024, 3, 31, 7, 0)),
    # Europe/Berlin fall back on 2024-10-27 (CEST +2 -> CET +1).
    ("Europe/Berlin", utc(2024, 10, 26, 5, 0), utc(2024, 10, 26, 7, 0)),
    ("Europe/Berlin", utc(2024, 10, 27, 6, 0), utc(2024, 10, 27, 8, 0)),
    # America/New_York spring forward on 2024-03-10 (EST -5 -> EDT -4).
    ("America/New_York", utc(2024, 3, 9, 12, 0), utc(2024, 3, 9, 14, 0)),
    ("America/New_York", utc(2024, 3, 10, 11, 0), utc(2024, 3, 10, 13, 0)),
    # America/New_York fall back on 2024-11-03 (EDT -4 -> EST -5).
    ("America/New_York", utc(2024, 11, 2, 11, 0), utc(2024, 11, 2, 13, 0)),
    ("America/New_York", utc(2024, 11, 3, 12, 0), utc(2024, 11, 3, 14, 0)),
]


@pytest.mark.parametrize(("zone", "start", "end"), DAILY_SEVEN)
def test_a_window_follows_the_local_clock_across_dst(
    zone: str, start: datetime, end: datetime
) -> None:
    daily = [window("0 7 * * *", 7200, zone, min_units=10)]
    second = timedelta(seconds=1)
    assert bounds(daily, start - second).active == ()
    assert bounds(daily, start).active == ("w",)
    assert bounds(daily, end - second).active == ("w",)
    assert bounds(daily, end).active == ()


# A 22:00 to 07:00 night window (duration in wall-clock hours) that crosses midnight, on the
# nights of the changes: it ends at 07:00 local although 8 or 10 hours have elapsed.
NIGHTS = [
    ("America/New_York", datetime(2024, 3, 9, 22, 0, tzinfo=NEW_YORK), utc(2024, 3, 10, 11, 0)),
    ("America/New_York", datetime(2024, 11, 2, 22, 0, tzinfo=NEW_YORK), utc(2024, 11, 3, 12, 0)),
    ("Europe/Berlin", datetime(2024, 3, 30, 22, 0, tzinfo=BERLIN), utc(2024, 3, 31, 5, 0)),
    ("Europe/Berlin", datetime(2024, 10, 26, 22, 0, tzinfo=BERLIN), utc(2024, 10, 27, 6, 0)),
]


@pytest.mark.parametrize(("zone", "start", "end"), NIGHTS)
def test_a_window_crossing_midnight_ends_on_the_local_clock(
    zone: str, start: datetime, end: datetime
) -> None:
    night = [window("0 22 * * *", 9 * 3600, zone, min_units=0, max_units=0)]
    assert bounds(night, start - timedelta(seconds=1)).active == ()
    assert bounds(night, start).plan_bounds == (0, 0)
    assert bounds(night, start + timedelta(hours=4)).active == ("w",)  # after midnight
    assert bounds(night, end - timedelta(seconds=1)).active == ("w",)
    assert bounds(night, end).plan_bounds == (2, 20)


def test_a_start_in_the_spring_gap_happens_once_an_hour_later() -> None:
    # 02:30 does not exist in Berlin on 2024-03-31: like cron, the window starts at 03:30 CEST.
    gap = [window("30 2 * * *", 1800, "Europe/Berlin", min_units=5)]
    assert bounds(gap, utc(2024, 3, 31, 1, 29)).active == ()
    assert bounds(gap, utc(2024, 3, 31, 1, 30)).active == ("w",)
    assert bounds(gap, utc(2024, 3, 31, 2, 0)).active == ()


def test_a_start_in_the_repeated_autumn_hour_happens_once() -> None:
    # 02:30 happens twice in Berlin on 2024-10-27: the window starts at the first one (CEST)
    # and, being 30 wall-clock minutes, runs to 03:00 CET: through the repeated hour, once.
    fold = [window("30 2 * * *", 1800, "Europe/Berlin", min_units=5)]
    assert bounds(fold, utc(2024, 10, 27, 0, 29)).active == ()
    assert bounds(fold, utc(2024, 10, 27, 0, 30)).active == ("w",)
    assert bounds(fold, utc(2024, 10, 27, 1, 45)).active == ("w",)  # 02:45 CET, second pass
    assert bounds(fold, utc(2024, 10, 27, 2, 0)).active == ()
    change = next_change(fold, (), 2, 20, utc(2024, 10, 27, 0, 30))
    assert change is not None and change.at == utc(2024, 10, 27, 2, 0).timestamp()


def test_now_may_be_epoch_seconds_or_an_aware_datetime_but_not_naive() -> None:
    daily = [window("0 7 * * *", 3600, min_units=5)]
    at = utc(2024, 5, 1, 7, 30)
    assert bounds(daily, at) == bounds(daily, at.timestamp())
    with pytest.raises(ValueError, match="timezone-aware"):
        bounds(daily, datetime(2024, 5, 1, 7, 30))


# -- wake ahead ---------------------------------------------------------------------------------

LEAD = 600.0


@pytest.mark.parametrize(
    ("units", "at", "active"),
    [
        # Raising capacity (min above the target's 2): in force a lead time early ...
        ({"min_units": 10}, utc(2024, 5, 1, 8, 49, 59), False),
        ({"min_units": 10}, utc(2024, 5, 1, 8, 50), True),
        # ... and until its end, when capacity falls: on time.
        ({"min_units": 10}, utc(2024, 5, 1, 9, 59, 59), True),
        ({"min_units": 10}, utc(2024, 5, 1, 10, 0), False),
        # A desired count above the floor raises too.
        ({"desired_units": 8}, utc(2024, 5, 1, 8, 50), True),
        # Lowering capacity (max below the target's 20): starts on time ...
        ({"max_units": 0}, utc(2024, 5, 1, 8, 59, 59), False),
        ({"max_units": 0}, utc(2024, 5, 1, 9, 0), True),
        # ... and ends a lead time early, since its end is a rise.
        ({"max_units": 0}, utc(2024, 5, 1, 9, 49, 59), True),
        ({"max_units": 0}, utc(2024, 5, 1, 9, 50), False),
        # Lowering the floor (scale to zero allowed) ends early as well.
        ({"min_units": 0}, utc(2024, 5, 1, 9, 50), False),
    ],
)
def test_rises_are_anticipated_by_the_lead_time_and_falls_are_on_time(
    units: dict[str, int], at: datetime, active: bool
) -> None:
    hourly = [window("0 9 * * *", 3600, "UTC", "w", **units)]
    assert bounds(hourly, at, lead_s=LEAD).active == (("w",) if active else ())


def test_overrides_wake_ahead_too() -> None:
    launch = (override(utc(2024, 5, 1, 12), utc(2024, 5, 1, 14), min_units=15),)
    assert bounds([], utc(2024, 5, 1, 11, 49), overrides=launch, lead_s=LEAD).min_units == 2
    assert bounds([], utc(2024, 5, 1, 11, 50), overrides=launch, lead_s=LEAD).min_units == 15
    assert bounds([], utc(2024, 5, 1, 14), overrides=launch, lead_s=LEAD).min_units == 2


def test_a_lowering_window_shorter_than_the_lead_time_never_holds() -> None:
    blip = [window("0 9 * * *", 300, max_units=0)]
    for minute in range(0, 10):
        assert bounds(blip, utc(2024, 5, 1, 9, minute), lead_s=LEAD).active == ()


# -- overlap ------------------------------------------------------------------------------------

AT = utc(2024, 5, 1, 12)  # a Wednesday noon


def always(name: str, **units: int) -> Any:
    return window("0 0 * * *", 86_400, "UTC", name, **units)


def now_override(name: str, **units: int) -> Any:
    return override(AT - timedelta(hours=1), AT + timedelta(hours=1), name, **units)


@pytest.mark.parametrize(
    ("schedules", "overrides", "expected"),
    [
        # (min, max, desired, active)
        ([], [], (2, 20, None, ())),
        ([always("a", min_units=5)], [], (5, 20, None, ("a",))),
        # Several windows: the highest min, the highest max, the highest desired.
        ([always("a", min_units=5), always("b", min_units=8)], [], (8, 20, None, ("a", "b"))),
        ([always("a", max_units=4), always("b", max_units=9)], [], (2, 9, None, ("a", "b"))),
        (
            [always("a", desired_units=4), always("b", desired_units=6)],
            [],
            (2, 20, 6, ("a", "b")),
        ),
        # A window's floor above another's ceiling: the capacity is kept.
        ([always("a", max_units=3), always("b", min_units=7)], [], (7, 7, None, ("a", "b"))),
        # A window may lower the floor (scale to zero) ...
        ([always("off", min_units=0, max_units=0)], [], (0, 0, None, ("off",))),
        ([always("off", min_units=0, desired_units=0)], [], (0, 20, 0, ("off",))),
        # ... and raise it, but never lift the ceiling above the target's max_units.
        ([always("a", min_units=15, max_units=50)], [], (15, 20, None, ("a",))),
        ([always("a", min_units=30)], [], (20, 20, None, ("a",))),
        ([always("a", desired_units=40)], [], (2, 20, 20, ("a",))),
        # One-off overrides beat windows, whatever the windows say.
        (
            [always("busy", min_units=15)],
            [now_override("quiet", max_units=5)],
            (2, 5, None, ("quiet",)),
        ),
        (
            [],
            [now_override("x", min_units=3), now_override("y", min_units=6, max_units=12)],
            (6, 12, None, ("x", "y")),
        ),
    ],
)
def test_overlap_rules(
    schedules: list[Any], overrides: list[Any], expected: tuple[Any, ...]
) -> None:
    decision = bounds(schedules, AT, overrides=tuple(overrides))
    found = (decision.min_units, decision.max_units, decision.desired_units, decision.active)
    assert found == expected


def test_reason_names_the_windows_and_what_was_set_aside() -> None:
    decision = bounds(
        [always("busy", min_units=15)], AT, overrides=(now_override("quiet", max_units=50),)
    )
    assert decision.reason == (
        "override 'quiet' (beats schedule 'busy'); capped at the target's max_units 20"
    )
    assert bounds([], AT).reason == "no schedule or override: the target's own bounds"


def test_a_desired_count_pins_the_planner_bounds() -> None:
    assert bounds([always("a", desired_units=7)], AT).plan_bounds == (7, 7)
    assert bounds([always("a", min_units=7)], AT).plan_bounds == (7, 20)


# -- next change --------------------------------------------------------------------------------


def test_next_change_finds_the_weekend_end_across_dst() -> None:
    # config/aws.yaml's windows: off on weeknights and weekends, New York time, 5 min lead.
    off = [
        window("0 19 * * 1-5", 12 * 3600, "America/New_York", "weeknights-off", max_units=0),
        window("0 0 * * 6", 55 * 3600, "America/New_York", "weekends-off", max_units=0),
    ]
    saturday = datetime(2024, 3, 9, 12, 0, tzinfo=NEW_YORK)  # DST starts on the Sunday
    decision = bounds(off, saturday, lead_s=300)
    assert decision.active == ("weekends-off",)
    change = next_change(off, (), 2, 20, saturday, 300)
    assert change is not None
    assert change.at == datetime(2024, 3, 11, 6, 55, tzinfo=NEW_YORK).timestamp()
    assert change.decision.plan_bounds == (2, 20)


def test_no_change_within_the_horizon() -> None:
    assert next_change([], (), 2, 20, AT) is None
    assert next_change([always("a", min_units=3)], (), 2, 20, AT, horizon_s=3600) is None


# -- properties ---------------------------------------------------------------------------------

units = st.one_of(st.none(), st.integers(0, 40))
crons = st.sampled_from(["0 7 * * *", "30 22 * * 1-5", "0 0 * * 6", "*/15 * * * *", "30 2 * * *"])
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
START = utc(2024, 1, 1).timestamp()
YEAR = 366 * 86_400


@st.composite
def capacities(draw: st.DrawFn) -> dict[str, int]:
    low, high, desired = draw(units), draw(units), draw(units)
    if low is not None and high is not None and high < low:
        low, high = high, low
    if desired is not None:
        desired = max(desired, low or 0)
        desired = min(desired, high) if high is not None else desired
    if low is None and high is None and desired is None:
        low = 0
    return {
        key: value
        for key, value in (("min_units", low), ("max_units", high), ("desired_units", desired))
        if value is not None
    }


@st.composite
def windows(draw: st.DrawFn) -> Any:
    fields = {
        "cron": draw(crons),
        "duration": draw(st.integers(1, 60 * 60)) * 60,
        "timezone": draw(zones),
        "name": f"w{draw(st.integers(0, 1_000_000))}",
    }
    return ScheduleWindow.model_validate(fields | draw(capacities()))


@st.composite
def overrides(draw: st.DrawFn) -> Any:
    start = START + draw(st.integers(0, YEAR // 60)) * 60
    length = draw(st.integers(1, 3 * 1440)) * 60
    fields = {
        "start": datetime.fromtimestamp(start, UTC),
        "end": datetime.fromtimestamp(start + length, UTC),
        "name": f"o{draw(st.integers(0, 1_000_000))}",
    }
    return Override.model_validate(fields | draw(capacities()))


scenario = st.tuples(
    st.lists(windows(), max_size=3, unique_by=lambda w: w.name),
    st.lists(overrides(), max_size=3, unique_by=lambda o: o.name),
    st.integers(0, 10).flatmap(lambda low: st.tuples(st.just(low), st.integers(low, 30))),
    st.floats(START, START + YEAR),
    st.sampled_from([0.0, 300.0, 3600.0]),
)


@settings(deadline=None, max_examples=150)
@given(scenario)
def test_bounds_are_ordered_and_within_the_hard_maximum(case: Any) -> None:
    schedules, overrides_, (low, high), at, lead = case
    decision = effective_bounds(schedules, overrides_, low, high, at, lead)
    assert 0 <= decision.min_units <= decision.max_units <= high
    if decision.desired_units is not None:
        # No window or override puts capacity outside the effective bounds.
        assert decision.min_units <= decision.desired_units <= decision.max_units
    planned_low, planned_high = decision.plan_bounds
    assert decision.min_units <= planned_low <= planned_high <= decision.max_units
    override_names = {o.name for o in overrides_}
    if any(name in override_names for name in decision.active):
        # Overrides beat windows: never mixed.
        assert set(decision.active) <= override_names


@settings(deadline=None, max_examples=60)
@given(scenario)
def test_nothing_changes_before_the_next_change(case: Any) -> None:
    schedules, overrides_, (low, high), at, lead = case
    at = float(int(at) // 60 * 60)  # boundaries fall on whole minutes
    now = effective_bounds(schedules, overrides_, low, high, at, lead)
    change = next_change(schedules, overrides_, low, high, at, lead, horizon_s=2 * 86_400)
    if change is None:
        later = effective_bounds(schedules, overrides_, low, high, at + 2 * 86_400, lead)
        assert later.same_capacity(now)
        return
    assert change.at > at
    assert not change.decision.same_capacity(now)
    for fraction in (0.25, 0.5, 0.999):
        moment = at + (change.at - at) * fraction
        assert effective_bounds(schedules, overrides_, low, high, moment, lead).same_capacity(now)
