"""HPA-style rate limits on how fast the planner may change the number of units.

A limit counts the changes the planner already made within its sliding period, so many small
ticks cannot add up to more than one period's allowance. Like the Kubernetes HPA, a percentage
is taken of the units at the period's start (current units minus the changes made since), and
a limit never turns a change around: it only shortens it.
"""

from __future__ import annotations

import math

from daemon.core.types import RateLimit

ScaleEvents = tuple[tuple[float, int], ...]


def limit_rate(
    desired: int,
    current: int,
    scale_events: ScaleEvents,
    now: float,
    scale_up: RateLimit | None,
    scale_down: RateLimit | None,
) -> int:
    """Return ``desired`` moved towards ``current`` just enough to respect the limit for its
    direction, given the ``(time, signed change)`` events made before ``now``.
    """
    if desired > current and scale_up is not None:
        added = _changes_within(scale_events, now, scale_up.period_s, sign=1)
        # Not clamped at 0: after a scale-down in the same period this goes negative, and that
        # is what keeps the units added in the period, not just the net change, within the limit.
        units_at_start = current - added
        # Units added outside the planner may already exceed the allowance: then hold, not shrink.
        ceiling = max(current, units_at_start + _allowance(scale_up, units_at_start))
        return min(desired, ceiling)
    if desired < current and scale_down is not None:
        removed = _changes_within(scale_events, now, scale_down.period_s, sign=-1)
        units_at_start = current + removed
        # Units removed outside the planner may already exceed the allowance: then hold, not grow.
        floor = min(current, units_at_start - _allowance(scale_down, units_at_start))
        return max(desired, floor)
    # No change, or no limit for this direction.
    return desired


def record_scale_event(
    scale_events: ScaleEvents, now: float, change: int, horizon_s: float
) -> ScaleEvents:
    """Return the events still inside ``(now - horizon_s, now]``, plus ``(now, change)`` if the
    change is not zero. ``horizon_s`` is the longest period of any limit; 0 keeps nothing.
    """
    if horizon_s <= 0:
        return ()
    cutoff = now - horizon_s
    kept = tuple(event for event in scale_events if event[0] > cutoff)
    return (*kept, (now, change)) if change else kept


def longest_period(scale_up: RateLimit | None, scale_down: RateLimit | None) -> float:
    """How long scale events must be remembered for these limits (0 when there are none)."""
    return max(
        scale_up.period_s if scale_up is not None else 0.0,
        scale_down.period_s if scale_down is not None else 0.0,
    )


def _changes_within(scale_events: ScaleEvents, now: float, period_s: float, sign: int) -> int:
    """Total units moved in direction ``sign`` by events in ``(now - period_s, now]``, as >= 0.

    The period is open at its start, so with ticks exactly ``period_s`` apart each tick gets a
    full allowance, as "at most N per period" reads.
    """
    cutoff = now - period_s
    return sum(
        change * sign for stamp, change in scale_events if stamp > cutoff and change * sign > 0
    )


def _allowance(limit: RateLimit, units_at_start: int) -> int:
    """Units this limit lets change in one period, the larger of its parts (HPA ``selectPolicy:
    Max``). A percentage of zero units would freeze a scaled-to-zero target for ever, so it is
    taken of at least one unit (``units_at_start`` may be below that, even negative).
    """
    allowed = limit.max_units if limit.max_units is not None else 0
    if limit.max_percent is not None:
        # Multiply before dividing: 10 * 30 / 100 is exactly 3, 10 / 100 * 30 is 3.0000000000000004.
        allowed = max(allowed, math.ceil(limit.max_percent * max(units_at_start, 1) / 100))
    return allowed
