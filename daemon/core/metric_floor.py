"""Several metrics, one decision (the HPA's rule): the units needed are the largest any metric
needs, and an invalid metric blocks scale-down. Pure: the daemon's board
(``daemon.runtime.metric_board``) and the backtest's lockstep replay both decide through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from daemon.core.tick import TickResult

__all__ = ["MetricFloor", "MetricPost", "metric_floor", "with_metric_reason"]


@dataclass(frozen=True, slots=True)
class MetricPost:
    """A further metric's latest decision for its target."""

    metric: str
    desired: int
    at: float
    """When it was decided, on the targets' clock."""
    expires: float
    """When it lapses, on the clock ``metric_floor``'s ``now`` is read from."""
    valid: bool
    """False when the metric's own demand was missing or stale (its tick held, not decided)."""


@dataclass(frozen=True, slots=True)
class MetricFloor:
    """What a target's further metrics ask of one tick."""

    units: int
    """The largest desired of the fresh, valid posts; at least ``current`` if any is not."""
    metric: str | None
    """The metric that set it (``None`` when nothing raised it above zero)."""
    missing: tuple[str, ...]
    """Metrics without a fresh, valid post: they block scale-down."""


def metric_floor(
    posts: Mapping[str, MetricPost], metrics: tuple[str, ...], now: float, current: int
) -> MetricFloor:
    """The floor the posts for ``metrics`` set at ``now`` on a target of ``current`` units."""
    units, decider = 0, None
    missing: list[str] = []
    for metric in metrics:
        post = posts.get(metric)
        if post is None or post.expires < now or not post.valid:
            missing.append(metric)
            continue
        if post.desired > units:
            units, decider = post.desired, metric
    if missing and current > units:
        units, decider = current, missing[0]
    return MetricFloor(units, decider, tuple(missing))


def with_metric_reason(
    result: TickResult, own: str, floor: MetricFloor | None, unit_capacity: float
) -> TickResult:
    """The decision names the metric that decided it: the one needing the most units this
    tick (the target's own: its calibrated forecast over ``unit_capacity``; a further one: its
    posted decision). The tag ``metric=<name>`` ends the reasons; where the further metrics'
    floor set the size outright (``clamped_min``) it is the reason too."""
    decision = result.decision
    own_units = 0
    if result.forecast is not None and math.isfinite(result.forecast):
        own_units = math.ceil(result.forecast / unit_capacity - 1e-9)
    decider = own
    if floor is not None and floor.metric is not None and floor.units > own_units:
        decider = floor.metric
    tag = f"metric={decider}"
    reason = tag if decider != own and decision.reason == "clamped_min" else decision.reason
    reasons = (*decision.reasons, tag)
    return replace(result, decision=replace(decision, reason=reason, reasons=reasons))
