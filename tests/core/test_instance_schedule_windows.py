"""A stop/start schedule's edges, through the one decision path: the target's schedule
(``schedule_at``, the core's ``effective_bounds`` with its wake-ahead rule) and the planner fed
the zero demand of a demand-free kind. Across DST changes, the start comes exactly
``lead_time`` of real time before the window's wall-clock opening, and the stop at its end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daemon.core.planner import plan
from daemon.core.types import PlanInputs, PlannerState
from daemon.kinds.instance_schedule import InstanceScheduleTarget
from daemon.runtime.planning import planner_settings, schedule_at

RUNNING = 4
LEAD = timedelta(minutes=90)
SECOND = timedelta(seconds=1)


def target(
    cron: str, duration: str, zone: str = "Europe/Berlin", desired: int = RUNNING, **extra: Any
) -> Any:
    return InstanceScheduleTarget.model_validate(
        {
            "kind": "instance-schedule",
            "name": "dev",
            "ec2_tags": {"environment": "dev"},
            "max_units": RUNNING,
            "lead_time": f"{LEAD.total_seconds():g}s",
            "schedules": [
                {
                    "name": "hours",
                    "cron": cron,
                    "duration": duration,
                    "timezone": zone,
                    "desired_units": desired,
                }
            ],
        }
        | extra
    )


def decide(config: Any, at: datetime, current: int) -> int:
    """The units the planner decides at ``at`` for a target running ``current``."""
    t = at.timestamp()
    low, high = schedule_at(config, t).plan_bounds
    decision, _ = plan(
        planner_settings(config),
        PlannerState(),
        PlanInputs(now=t, current_units=current, demand=0.0, forecast=0.0, min_units=low,
                   max_units=high),
    )  # fmt: skip
    return decision.desired


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# (zone, cron, wall-clock duration, window opening, window end) as UTC instants, on the days the
# clocks change: the opening and the end follow the local clock, the lead is real time.
EDGES = [
    # Berlin springs forward at 02:00 CET on 2024-03-31: a 03:00 CEST opening is 01:00 UTC,
    # and 90 minutes before it is 23:30 UTC (00:30 CET), not 01:30 wall minus an hour.
    ("Europe/Berlin", "0 3 31 3 *", "10h", utc(2024, 3, 31, 1), utc(2024, 3, 31, 11)),
    # Berlin falls back at 03:00 CEST on 2024-10-27: a 03:00 CET opening is 02:00 UTC; its lead
    # starts at 00:30 UTC, during the first pass of the repeated hour.
    ("Europe/Berlin", "0 3 27 10 *", "10h", utc(2024, 10, 27, 2), utc(2024, 10, 27, 12)),
    # A 08:00 office day across New York's spring change (02:00 EST -> 03:00 EDT): 12:00 UTC.
    ("America/New_York", "0 8 10 3 *", "11h", utc(2024, 3, 10, 12), utc(2024, 3, 10, 23)),
    # A 22:00 night shift ending 07:00 wall the morning after the autumn change: 9 wall hours
    # are 10 real ones; it stops at 07:00 EST (12:00 UTC), not at 11:00 UTC.
    ("America/New_York", "0 22 2 11 *", "9h", utc(2024, 11, 3, 2), utc(2024, 11, 3, 12)),
]


@pytest.mark.parametrize(("zone", "cron", "duration", "opens", "ends"), EDGES)
def test_started_a_lead_time_before_the_window_and_stopped_at_its_end(
    zone: str, cron: str, duration: str, opens: datetime, ends: datetime
) -> None:
    config = target(cron, duration, zone)
    start = opens - LEAD
    # Stopped outside the window, up to the last second before the lead time begins ...
    assert decide(config, start - SECOND, current=RUNNING) == 0
    assert decide(config, start - SECOND, current=0) == 0
    # ... started exactly a lead time before the opening, whatever the clocks did ...
    assert decide(config, start, current=0) == RUNNING
    assert schedule_at(config, start.timestamp()).active == ("hours",)
    # ... running through the window, and stopped at its wall-clock end (not early: a stop
    # is not a rise, so it needs no lead).
    assert decide(config, ends - SECOND, current=RUNNING) == RUNNING
    assert decide(config, ends, current=RUNNING) == 0


def test_a_window_floor_runs_that_many_and_min_units_run_outside() -> None:
    # A window's min_units (a floor) runs that many on zero demand. (An exact desired_units
    # below max_units would also *lower* capacity, so by the wake-ahead rule it would end a
    # lead time early: a floor is how to say "at least two" without that.)
    config = target("0 8 * * *", "2h", "UTC", min_units=1)
    floor = config.schedules[0].model_copy(update={"desired_units": None, "min_units": 2})
    config = config.model_copy(update={"schedules": (floor,)})
    assert decide(config, utc(2024, 5, 1, 9), current=0) == 2
    assert decide(config, utc(2024, 5, 1, 10), current=2) == 1


def test_the_kind_refuses_a_config_that_cannot_mean_a_schedule() -> None:
    base = {"kind": "instance-schedule", "name": "dev", "max_units": 2, "lead_time": "5m"}
    window = {"name": "w", "cron": "0 8 * * *", "duration": "1h", "desired_units": 2}
    with pytest.raises(ValueError, match="at least one resource"):
        InstanceScheduleTarget.model_validate(base | {"schedules": [window]})
    with pytest.raises(ValueError, match="keep everything stopped"):
        InstanceScheduleTarget.model_validate(base | {"rds_instances": ["db"]})
    with pytest.raises(ValueError, match="reads no demand"):
        InstanceScheduleTarget.model_validate(
            base | {"rds_instances": ["db"], "schedules": [window], "source": "prom"}
        )
