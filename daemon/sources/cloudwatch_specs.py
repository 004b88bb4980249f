"""What to read from Amazon CloudWatch: a metric statistic or a metric-math expression.

Plain values with no AWS import, so the daemon's configuration and planning can name
CloudWatch queries without loading the AWS SDK; :mod:`daemon.sources.cloudwatch` reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from daemon.sources.base import MetricQuery

# Ids we generate for each query's output; user input ids may not use this prefix.
ID_PREFIX = "elasticd_"
_ID_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class CloudWatchMetric:
    """One metric statistic: ``stat`` is e.g. ``Average``, ``Sum``, ``Maximum``, ``p99``.

    ``dimensions`` are ``(name, value)`` pairs. ``period_s`` is the aggregation period that
    ``latest()`` reads; ``history()`` aggregates over its ``step`` instead.
    """

    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...] = ()
    stat: str = "Average"
    period_s: int = 60
    unit: str | None = None

    def __post_init__(self) -> None:
        if not self.namespace or not self.metric_name or not self.stat:
            raise ValueError("namespace, metric_name and stat must not be empty")
        check_period(self.period_s)

    def metric_stat(self, period_s: int) -> dict[str, Any]:
        stat: dict[str, Any] = {
            "Metric": {
                "Namespace": self.namespace,
                "MetricName": self.metric_name,
                "Dimensions": [{"Name": name, "Value": value} for name, value in self.dimensions],
            },
            "Period": period_s,
            "Stat": self.stat,
        }
        if self.unit is not None:
            stat["Unit"] = self.unit
        return stat


@dataclass(frozen=True)
class CloudWatchExpression:
    """A metric-math expression over named inputs, e.g. ``"m1 + m2"`` with inputs m1 and m2.

    ``inputs`` are ``(id, input)`` pairs; ids start with a lowercase letter. An input is a
    metric, or (a string) an expression over other inputs' ids. Inputs are read at the
    query's period and sent with ``ReturnData`` false: only the expression comes back.
    """

    expression: str
    inputs: tuple[tuple[str, CloudWatchMetric | str], ...]
    period_s: int = 60

    def __post_init__(self) -> None:
        if not self.expression:
            raise ValueError("expression must not be empty")
        check_period(self.period_s)
        ids = [input_id for input_id, _ in self.inputs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"input ids must be unique, got {ids}")
        for input_id, item in self.inputs:
            if not _ID_PATTERN.match(input_id) or input_id.startswith(ID_PREFIX):
                raise ValueError(
                    f"input id {input_id!r} must match [a-z][a-zA-Z0-9_]* and not start "
                    f"with {ID_PREFIX!r}"
                )
            if isinstance(item, str) and not item:
                raise ValueError(f"input {input_id!r}: expression must not be empty")


CloudWatchSpec = CloudWatchMetric | CloudWatchExpression
CloudWatchQuery = MetricQuery[CloudWatchSpec]


def check_period(period_s: int) -> None:
    # CloudWatch accepts high-resolution periods of 1, 5, 10, 30 s, else multiples of 60.
    if period_s not in (1, 5, 10, 30) and (period_s <= 0 or period_s % 60 != 0):
        raise ValueError(f"period must be 1, 5, 10, 30 or a multiple of 60 s, got {period_s}")
