"""Several metrics, one decision: companions post the units their metric needs, the target
takes the largest as its floor (the HPA's rule over several metrics; the arithmetic is
``daemon.core.metric_floor``, which the backtest replays too).

Each further metric of a target runs as a companion target (``daemon.settings.metrics``): the
same tick, forecaster, calibration and tournament as any target, in forecast-only mode. After
each tick it posts what it decided here; the target reads the fresh posts on its own tick and
uses their maximum as its minimum for that tick, so its own damping (stabilisation, rate
limits, bounds) still applies on top, as with the node layer's floor.

A companion that has not posted recently (its source failing, or not started yet) or whose
last tick held on missing or stale demand is *invalid*: like the HPA, which skips scale-down
when any metric is invalid, the target then holds at least its current size.
"""

from __future__ import annotations

from daemon.core.metric_floor import MetricFloor, MetricPost, metric_floor

__all__ = ["MetricBoard", "MetricFloor", "MetricPost"]


class MetricBoard:
    """The latest post of each companion, by target; one per daemon."""

    def __init__(self) -> None:
        self._posts: dict[str, dict[str, MetricPost]] = {}

    def publish(self, target: str, post: MetricPost) -> None:
        self._posts.setdefault(target, {})[post.metric] = post

    def floor(self, target: str, metrics: tuple[str, ...], now: float, current: int) -> MetricFloor:
        """The floor the companions of ``target`` (for ``metrics``) set at ``now``."""
        return metric_floor(self._posts.get(target, {}), metrics, now, current)
