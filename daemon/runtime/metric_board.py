"""Several metrics, one decision: companions post the units their metric needs, the target
takes the largest as its floor (the HPA's rule over several metrics).

Each further metric of a target runs as a companion target (``daemon.settings.metrics``): the
same tick, forecaster, calibration and tournament as any target, in forecast-only mode. After
each tick it posts what it decided here; the target reads the fresh posts on its own tick and
uses their maximum as its minimum for that tick, so its own damping (stabilisation, rate
limits, bounds) still applies on top, as with the node layer's floor.

A companion that has not posted recently (its metric missing or stale long enough that its
tick stopped, or not started yet) is *invalid*: like the HPA, which skips scale-down when any
metric is invalid, the target then holds at least its current size.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MetricBoard", "MetricFloor", "MetricPost"]


@dataclass(frozen=True, slots=True)
class MetricPost:
    """One companion's latest decision for its target."""

    metric: str
    desired: int
    at: float
    expires: float
    valid: bool
    """False when the companion's own demand was missing or stale (it held, not decided)."""


@dataclass(frozen=True, slots=True)
class MetricFloor:
    """What a target's further metrics ask of this tick."""

    units: int
    """The floor: the largest desired of the fresh posts, at least ``current`` if any is
    missing or invalid."""
    metric: str | None
    """The metric that set it (``None`` when nothing raised it above zero)."""
    missing: tuple[str, ...]
    """Metrics without a fresh, valid post: they block scale-down."""


class MetricBoard:
    """The latest post of each companion, by target; one per daemon."""

    def __init__(self) -> None:
        self._posts: dict[str, dict[str, MetricPost]] = {}

    def publish(self, target: str, post: MetricPost) -> None:
        self._posts.setdefault(target, {})[post.metric] = post

    def floor(self, target: str, metrics: tuple[str, ...], now: float, current: int) -> MetricFloor:
        """The floor the companions of ``target`` (for ``metrics``) set at ``now``."""
        posts = self._posts.get(target, {})
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
