"""``idle_release:``: EC2 instances stopped when their CloudWatch metrics stay below thresholds.

Not a target: a target decides *how many* units from demand, while releasing idle machines
decides *which* instance is unused from each one's own metrics. So each rule is checked by the
daemon's ``idle_janitor`` agent on its own interval, with the decision in
``daemon.core.idle``.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import PositiveDuration
from daemon.settings.target_base import NAME_PATTERN

__all__ = ["IdleMetricConfig", "IdleReleaseConfig"]


class IdleMetricConfig(SettingsModel):
    """One CloudWatch metric per instance (dimension InstanceId) and the value it must stay
    below for the instance to be idle."""

    namespace: str = Field(default="AWS/EC2", min_length=1, description="CloudWatch namespace.")
    metric_name: str = Field(
        min_length=1, description="e.g. CPUUtilization, NetworkIn, or a custom metric."
    )
    statistic: Literal["Average", "Maximum", "Minimum", "Sum", "SampleCount"] = Field(
        default="Average", description="Statistic per period."
    )
    below: float = Field(
        description="Idle only while every period's value is below this (metric's own unit)."
    )


class IdleReleaseConfig(SettingsModel):
    """EC2 instances selected by tags, stopped once every metric stays below its threshold for
    ``window``. Started again by an instance schedule or by hand."""

    name: str = Field(pattern=NAME_PATTERN, description="Shown in logs and the audit.")
    ec2_tags: dict[str, str] = Field(
        min_length=1, description="Instances carrying all of these tags are checked."
    )
    exclude_tag: str = Field(
        default="elasticd:keep-running",
        min_length=1,
        description="An instance carrying this tag (any value) is never stopped.",
    )
    metrics: tuple[IdleMetricConfig, ...] = Field(
        min_length=1, description="Every one must stay below its threshold (CPU, network...)."
    )
    window: PositiveDuration = Field(
        default=3600.0, description="Seconds every metric must stay below its threshold."
    )
    period: PositiveDuration = Field(
        default=300.0,
        description="CloudWatch period in seconds (a multiple of 60; EC2 basic monitoring "
        "reports every 300).",
    )
    min_coverage: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Fraction of the window's periods that must have data; missing data is "
        "never idleness (a new or just-started instance is kept).",
    )
    interval: PositiveDuration = Field(default=600.0, description="Seconds between checks.")
    dry_run: bool = Field(
        default=True,
        description="Log and audit what would be stopped, stop nothing. On by default: read "
        "the decisions first, then set false.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.period % 60 != 0:
            raise field_error("period", "must be a multiple of 60 seconds (CloudWatch periods)")
        if self.window < self.period:
            raise field_error("window", f"must be at least one period ({self.period:g}s)")
        names = [m.metric_name for m in self.metrics]
        if len(set(names)) != len(names):
            raise field_error("metrics", "each metric_name once")
        return self
