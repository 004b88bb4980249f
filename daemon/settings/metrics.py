"""Several metrics per target (the HPA's rule: the units needed are the maximum over them).

A target may list ``metrics:``, each with its own query and unit capacity (and optionally its
own shortfall target) instead of one ``query``/``unit_capacity``. The first metric is the
target's own; every further one becomes a *companion* target (``web.rps``) that forecasts,
calibrates and decides on its own history exactly as any target does, never writes, and posts
the units it needs; the target takes the largest as its floor for the tick
(``daemon.runtime.metric_board``). Expanding here, on the raw file, keeps one decision path:
companions are ordinary targets to everything downstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.queries import Query

__all__ = ["METRIC_SEPARATOR", "MetricConfig", "expand_metrics", "fill_primary_metric"]

# A companion of target ``web`` for metric ``rps`` is the target ``web.rps``.
METRIC_SEPARATOR = "."


class MetricConfig(SettingsModel):
    """One metric of a target: its demand, and what one unit serves of it."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$",
        description="Short name; decision reasons say metric=<name> when it decided.",
    )
    query: Query | None = Field(
        default=None,
        description="Demand query of this metric (PromQL, or a CloudWatch metric spec).",
    )
    unit_capacity: float = Field(
        gt=0, description="What one unit serves of this metric at full use, in its own unit."
    )
    shortfall_target: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="This metric's accepted probability of being short; the target's if unset.",
    )


def fill_primary_metric(data: Any) -> Any:
    """A target dict with ``metrics:`` gets its ``query``/``unit_capacity`` (and shortfall
    target, if the first metric sets one) from the first metric."""
    if not isinstance(data, Mapping) or not data.get("metrics"):
        return data
    metrics = data["metrics"]
    if not isinstance(metrics, list | tuple) or not isinstance(metrics[0], Mapping):
        return data  # the field's own validation reports the shape
    for key in ("query", "unit_capacity"):
        if key in data:
            raise field_error(key, "give it per metric under 'metrics', not beside it")
    first = metrics[0]
    filled = {**data, "query": first.get("query"), "unit_capacity": first.get("unit_capacity")}
    if first.get("shortfall_target") is not None:
        filled["shortfall_target"] = first["shortfall_target"]
    return filled


def expand_metrics(targets: Any) -> Any:
    """The raw ``targets`` list with a companion target appended for each further metric."""
    if not isinstance(targets, list | tuple):
        return targets
    companions: list[dict[str, Any]] = []
    for index, target in enumerate(targets):
        if not isinstance(target, Mapping):
            continue
        if "metric_of" in target:
            raise field_error(f"targets[{index}].metric_of", "is set by elasticd, not in a file")
        metrics = target.get("metrics")
        if not isinstance(metrics, list | tuple) or len(metrics) < 2:
            continue
        for position, metric in enumerate(metrics[1:], start=1):
            if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str):
                continue  # the primary's own validation of 'metrics' reports it
            companion = {
                key: value
                for key, value in target.items()
                if key not in {"metrics", "node_group", "query", "unit_capacity"}
            }
            companion.update(
                name=f"{target.get('name')}{METRIC_SEPARATOR}{metric['name']}",
                query=metric.get("query"),
                unit_capacity=metric.get("unit_capacity"),
                # A companion decides and posts; only its target writes.
                mode="forecast-only",
                metric_of=target.get("name"),
                metric_index=position,
            )
            if metric.get("shortfall_target") is not None:
                companion["shortfall_target"] = metric["shortfall_target"]
            companions.append(companion)
    return [*targets, *companions] if companions else targets
