"""What a target asks its source: a PromQL string or a CloudWatch metric spec."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import PositiveDuration

# CloudWatch statistics: the named ones and percentiles such as p99 or p99.9.
_STATISTIC = r"^(SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(\.\d+)?)$"


class CloudWatchQuery(SettingsModel):
    """One CloudWatch metric (namespace, metric_name, dimensions) or a metric-math expression."""

    namespace: str | None = Field(
        default=None, description="Metric namespace, e.g. AWS/ApplicationELB."
    )
    metric_name: str | None = Field(default=None, description="Metric name, e.g. RequestCount.")
    dimensions: dict[str, str] = Field(
        default_factory=dict, description="Dimension name -> value, e.g. LoadBalancer: app/x/y."
    )
    statistic: str = Field(
        default="Average", pattern=_STATISTIC, description="Sum, Average, Maximum, ... or p99."
    )
    expression: str | None = Field(
        default=None,
        description="Metric-math expression (e.g. a SEARCH) instead of a single metric.",
    )
    period: PositiveDuration = Field(
        default=60.0, description="Seconds per datapoint; 1, 5, 10, 30 or a multiple of 60."
    )

    @field_validator("period")
    @classmethod
    def _cloudwatch_period(cls, value: float) -> float:
        # CloudWatch rejects any other period; failing here beats failing on every tick.
        if value not in (1, 5, 10, 30) and value % 60 != 0:
            raise ValueError(f"invalid period {value:g}s: use 1, 5, 10, 30 or a multiple of 60")
        return value

    @model_validator(mode="after")
    def _metric_or_expression(self) -> Self:
        if self.expression is not None:
            if self.metric_name is not None or self.namespace is not None:
                raise field_error(
                    "expression", "set either expression or namespace/metric_name, not both"
                )
        elif self.metric_name is None or self.namespace is None:
            missing = "metric_name" if self.metric_name is None else "namespace"
            raise field_error(missing, "required unless an expression is given")
        return self


def _query_kind(value: Any) -> str | None:
    # Tagging by Python type keeps errors to one branch: a bad mapping reports the mapping's
    # problem instead of also "not a string".
    if isinstance(value, str):
        return "promql"
    if isinstance(value, dict | CloudWatchQuery):
        return "cloudwatch"
    return None


PromQL = Annotated[str, Field(min_length=1)]

Query = Annotated[
    Annotated[PromQL, Tag("promql")] | Annotated[CloudWatchQuery, Tag("cloudwatch")],
    Discriminator(
        _query_kind,
        custom_error_type="query_type",
        custom_error_message="must be a PromQL string or a CloudWatch query mapping",
    ),
]
