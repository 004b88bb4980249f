"""What a target asks its source: a PromQL string or a CloudWatch metric spec.

A CloudWatch query is one metric, or a metric-math expression, optionally over named inputs
(``inputs``: metrics, or expressions over other inputs, each with an ``id``). The references
an expression makes are checked when the file loads: an unknown id, a duplicate id, an id
CloudWatch would refuse or a cycle between expressions is reported with its YAML path, rather
than as a ``ValidationError`` from GetMetricData on every tick.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Self

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from daemon.settings.base import SettingsModel, field_error, suggest
from daemon.settings.quantities import PositiveDuration

# CloudWatch statistics: the named ones and percentiles such as p99 or p99.9.
_STATISTIC = r"^(SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(\.\d+)?)$"

# CloudWatch's rule for a MetricDataQuery id: a lowercase letter, then letters, digits and
# underscores, at most 255 characters.
INPUT_ID_PATTERN = r"^[a-z][a-zA-Z0-9_]{0,254}$"
# The CloudWatch source names each query's own output ``elasticd_<n>``; an input may not.
RESERVED_ID_PREFIX = "elasticd_"
# GetMetricData takes 500 entries a call: the inputs plus the query's own output.
MAX_INPUTS = 499
# CloudWatch's limit on an expression's length.
MAX_EXPRESSION_LENGTH = 2048

# Metric-math tokens: string literals (SEARCH terms, labels) and numbers are skipped so that
# neither a quoted name nor the exponent of 1e3 reads as an id; a name followed by "(" is a
# function. Functions and keywords (SUM, FILL, REPEAT) are upper case, ids start lower case.
_TOKENS = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"
    |\d+(?:\.\d*)?(?:[eE][+-]?\d+)?
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<call>\s*\()?""",
    re.VERBOSE,
)


def referenced_ids(expression: str) -> list[str]:
    """The ids a metric-math expression refers to, in order of first use.

    A Metrics Insights query (``SELECT ...``) names metrics and dimensions, never ids.
    """
    if expression.lstrip()[:6].upper() == "SELECT":
        return []
    found: dict[str, None] = {}
    for match in _TOKENS.finditer(expression):
        name = match.group("name")
        if name is not None and match.group("call") is None and name[0].islower():
            found[name] = None
    return list(found)


class _MetricFields(SettingsModel):
    """The fields naming one CloudWatch metric statistic, or an expression instead."""

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
    expression: str | None = Field(default=None, min_length=1, max_length=MAX_EXPRESSION_LENGTH)

    def _check_metric_or_expression(self) -> None:
        if self.expression is not None:
            if self.metric_name is not None or self.namespace is not None:
                raise field_error(
                    "expression", "set either expression or namespace/metric_name, not both"
                )
        elif self.metric_name is None or self.namespace is None:
            missing = "metric_name" if self.metric_name is None else "namespace"
            raise field_error(missing, "required unless an expression is given")


class CloudWatchInput(_MetricFields):
    """An input of a metric-math expression: a metric, or an expression over other inputs,
    named by ``id``. Inputs are read but not returned: only the query's expression is."""

    id: str = Field(
        description="How expressions refer to this input, e.g. m1. CloudWatch's rule: a "
        "lowercase letter, then letters, digits or _.",
        json_schema_extra={"pattern": INPUT_ID_PATTERN},
    )
    expression: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EXPRESSION_LENGTH,
        description="Metric math over other inputs' ids (e.g. m1 + m2) instead of a metric.",
    )

    @field_validator("id")
    @classmethod
    def _cloudwatch_id(cls, value: str) -> str:
        if re.fullmatch(INPUT_ID_PATTERN, value) is None:
            raise ValueError(
                f"invalid id {value!r}: CloudWatch wants a lowercase letter first, then "
                "letters, digits or _ (at most 255), e.g. m1"
            )
        if value.startswith(RESERVED_ID_PREFIX):
            raise ValueError(
                f"invalid id {value!r}: ids starting with {RESERVED_ID_PREFIX!r} are elasticd's"
            )
        return value

    @model_validator(mode="after")
    def _metric_or_expression(self) -> Self:
        self._check_metric_or_expression()
        return self


class CloudWatchQuery(_MetricFields):
    """One CloudWatch metric (namespace, metric_name, dimensions), or a metric-math
    expression, optionally over named ``inputs`` (e.g. requests per target: m1 / m2)."""

    expression: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EXPRESSION_LENGTH,
        description="Metric-math expression instead of a single metric: over the ids of "
        "'inputs' (e.g. m1 / m2), or on its own (e.g. a SEARCH).",
    )
    inputs: tuple[CloudWatchInput, ...] = Field(
        default=(),
        max_length=MAX_INPUTS,
        description="Metrics (and expressions over them) the expression refers to by id; "
        "read at the query's period, not returned themselves.",
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
        self._check_metric_or_expression()
        if self.inputs and self.expression is None:
            raise field_error("inputs", "inputs need an expression over their ids, e.g. m1 / m2")
        if self.expression is not None:
            _check_references(self.expression, self.inputs)
        return self


def _check_references(expression: str, inputs: Sequence[CloudWatchInput]) -> None:
    """Unique ids, every id an expression names defined, and no expression depending on
    itself through others (CloudWatch refuses all three, on every call)."""
    index_of: dict[str, int] = {}
    for index, item in enumerate(inputs):
        if item.id in index_of:
            raise field_error(
                f"inputs[{index}].id",
                f"duplicate id {item.id!r} (also inputs[{index_of[item.id]}])",
            )
        index_of[item.id] = index
    known = list(index_of)
    uses: dict[str, list[str]] = {}
    for path, text, owner in [
        ("expression", expression, None),
        *(
            (f"inputs[{index}].expression", item.expression, item.id)
            for index, item in enumerate(inputs)
            if item.expression is not None
        ),
    ]:
        references = referenced_ids(text)
        for name in references:
            if name not in index_of:
                raise field_error(path, _unknown_id(name, known))
        if owner is not None:
            uses[owner] = references
    cycle = _find_cycle(uses)
    if cycle:
        raise field_error(
            f"inputs[{index_of[cycle[0]]}].expression", "cycle: " + " -> ".join(cycle)
        )


def _unknown_id(name: str, known: list[str]) -> str:
    if not known:
        return (
            f"unknown id {name!r}: no inputs are defined; list the metrics it names under "
            "'inputs' (functions and keywords are upper case)"
        )
    return f"unknown id {name!r}; {suggest(name, known)}"


def _find_cycle(uses: dict[str, list[str]]) -> list[str]:
    """A cycle among expression inputs as ``[a, b, a]``, or ``[]``; depth-first, iterative."""
    done: set[str] = set()
    for root in uses:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        pending = [iter(uses[root])]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                pending.pop()
                continue
            if following in on_path:
                return [*path[path.index(following) :], following]
            if following in done or following not in uses:
                continue  # a metric input, or an expression already known to be acyclic
            path.append(following)
            on_path.add(following)
            pending.append(iter(uses[following]))
    return []


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
