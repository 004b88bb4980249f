"""Which resources a stop/start schedule starts or stops: only what must change, settled
resources only, refused ones left out, the same ones kept up from one decision to the next."""

from __future__ import annotations

from daemon.actuators.power import Power, PowerPlan, Resource, count, plan_power

R, S, UP, DOWN, GONE = Power.RUNNING, Power.STOPPED, Power.STARTING, Power.STOPPING, Power.OTHER


def fleet(*powers: Power) -> list[Resource]:
    return [Resource(f"ec2:i-{index}", power) for index, power in enumerate(powers)]


def test_nothing_is_touched_when_the_count_is_already_right() -> None:
    assert plan_power(fleet(R, R, S), 2).empty
    assert plan_power(fleet(S, S), 0).empty
    assert plan_power(fleet(R, UP), 2).empty  # one on its way up counts


def test_starts_take_the_first_stopped_and_stops_the_last_running() -> None:
    assert plan_power(fleet(S, S, S), 2) == PowerPlan(start=("ec2:i-0", "ec2:i-1"), stop=())
    assert plan_power(fleet(R, R, R), 1) == PowerPlan(start=(), stop=("ec2:i-2", "ec2:i-1"))
    # A partial count keeps the same ones up: start 2 of 3, then stop down to 1 keeps i-0.
    assert plan_power(fleet(R, R, S), 1).stop == ("ec2:i-1",)


def test_transitions_and_gone_resources_are_left_alone() -> None:
    # Stopping ones cannot be started yet; a starting one cannot be stopped yet.
    assert plan_power(fleet(DOWN, S), 2) == PowerPlan(start=("ec2:i-1",), stop=())
    assert plan_power(fleet(UP, R), 0) == PowerPlan(start=(), stop=("ec2:i-1",))
    assert count(fleet(R, UP, DOWN, S, GONE)) == count(fleet(R, UP, DOWN, S))
    found = count(fleet(R, UP, DOWN, S, GONE))
    assert (found.units, found.ready, found.manageable) == (2, 1, 4)


def test_refused_resources_are_neither_counted_nor_planned() -> None:
    resources = fleet(R, R, S)
    refused = {"ec2:i-1"}
    assert count(resources, refused).units == 1
    assert count(resources, refused).manageable == 2
    assert plan_power(resources, 0, refused) == PowerPlan(start=(), stop=("ec2:i-0",))
    assert plan_power(resources, 5, refused) == PowerPlan(start=("ec2:i-2",), stop=())
