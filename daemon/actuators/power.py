"""Stop/start by schedule: how many of a set of instances and databases run, and which to start
or stop to reach a decided number. Pure: states in, a plan out; no clock, no I/O.

A target of stoppable resources (EC2 instances, RDS instances and clusters) counts in
*resources running*. The planner decides that number like any other size (a schedule window's
``desired_units`` starts them all a lead time before it opens; outside every window the
number falls to ``min_units``, usually 0); this module turns it into calls:

- a resource in a settled state is running (``running``) or stopped (``stopped``); one on its
  way (``starting``, ``stopping``) is left alone until it settles, and counted where it goes;
- only what must change is touched: a start for each missing running resource, taken from the
  stopped ones in key order, and a stop for each one too many, taken from the running ones in
  reverse key order (so a partial count keeps the same resources up from one decision to the
  next);
- a resource that refused a call (an RDS read replica, an instance with stop protection) is
  left out, of the count and of the plan, until the caller forgets the refusal.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Count", "Power", "PowerPlan", "Resource", "count", "plan_power"]


class Power(StrEnum):
    """A resource's state, reduced to what a schedule needs."""

    RUNNING = "running"
    STARTING = "starting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    OTHER = "other"
    """Neither runs nor can be started (terminated, deleting, failed...): not a unit."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One stoppable resource: ``key`` names it (``ec2:i-0abc``, ``rds:orders``) and orders it."""

    key: str
    power: Power


@dataclass(frozen=True, slots=True)
class PowerPlan:
    """The calls that move the running count to the decision: keys to start and to stop."""

    start: tuple[str, ...]
    stop: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.start and not self.stop


@dataclass(frozen=True, slots=True)
class Count:
    """``units``: running or starting; ``ready``: running; ``manageable``: every resource a
    schedule may run (the most ``units`` can be)."""

    units: int
    ready: int
    manageable: int


def _managed(resources: Sequence[Resource], refused: Collection[str]) -> list[Resource]:
    return sorted(
        (r for r in resources if r.power is not Power.OTHER and r.key not in refused),
        key=lambda r: r.key,
    )


def count(resources: Sequence[Resource], refused: Collection[str] = ()) -> Count:
    """The target's size: resources running or on their way up, among those not refused."""
    managed = _managed(resources, refused)
    units = sum(1 for r in managed if r.power in (Power.RUNNING, Power.STARTING))
    ready = sum(1 for r in managed if r.power is Power.RUNNING)
    return Count(units=units, ready=ready, manageable=len(managed))


def plan_power(
    resources: Sequence[Resource], desired: int, refused: Collection[str] = ()
) -> PowerPlan:
    """The starts or stops that bring the running count to ``desired`` (clamped to what can
    run); nothing for a resource already where it should be, refused, or in transition."""
    managed = _managed(resources, refused)
    target = min(max(desired, 0), len(managed))
    up = [r for r in managed if r.power in (Power.RUNNING, Power.STARTING)]
    if target > len(up):
        stopped = [r.key for r in managed if r.power is Power.STOPPED]
        return PowerPlan(start=tuple(stopped[: target - len(up)]), stop=())
    if target < len(up):
        # Only settled ones can be stopped; one still starting is stopped on a later tick.
        running = [r.key for r in reversed(managed) if r.power is Power.RUNNING]
        return PowerPlan(start=(), stop=tuple(running[: len(up) - target]))
    return PowerPlan(start=(), stop=())
