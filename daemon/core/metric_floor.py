"""Several metrics, one decision (the HPA's rule): the units needed are the largest any metric
needs, and an invalid metric blocks scale-down. Pure: the daemon's board
(``daemon.runtime.metric_board``) and the backtest's lockstep replay both decide through here.
"""

from __future__ import annotations

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
    expires: float
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
    result: TickResult, own: str, floor: MetricFloor | None, low: int, before: int
) -> TickResult:
    """The decision names the metric that decided it: a further metric's (``metric=rps``) when
    its floor (``low``, raised from ``before``) set the size, else the target's own (added to
    the reasons, the reason itself unchanged)."""
    decision = result.decision
    decider = own
    if (
        floor is not None
        and floor.metric is not None
        and low > before
        and decision.desired == low
        and decision.reason == "clamped_min"
    ):
        decider = floor.metric
    tag = f"metric={decider}"
    reason = tag if decider != own else decision.reason
    reasons = (*decision.reasons, tag)
    return replace(result, decision=replace(decision, reason=reason, reasons=reasons))
