"""What every target shares, whatever it resizes: how demand is read for it and the policy it
follows. Each kind adds its own fields in its module under ``daemon/kinds/``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.metrics import METRIC_SEPARATOR, MetricConfig, fill_primary_metric
from daemon.settings.quantities import Duration, PositiveDuration
from daemon.settings.queries import Query
from daemon.settings.schedules import Override, ScheduleWindow

# Target names become metric labels and file names under state_dir, so keep them plain.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

Mode = Literal["forecast-only", "active"]
# What a target writes; each kind lists the values it supports (``TargetBase._act_via``).
ActVia = str


class ScaleLimit(SettingsModel):
    """At most this much change per period; with both bounds set the larger allowance wins."""

    period: PositiveDuration = Field(default=60.0, description="Seconds the limit applies over.")
    max_units: int | None = Field(
        default=None, ge=1, description="Units of change allowed per period."
    )
    max_percent: float | None = Field(
        default=None, gt=0, description="Percent of the current units allowed to change per period."
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Self:
        if self.max_units is None and self.max_percent is None:
            raise field_error("", "set max_units or max_percent (or both)")
        return self


Policy = Literal["model", "reactive", "seasonal_naive"]


class TournamentConfig(SettingsModel):
    """The policy tournament (docs/tournament.md): every candidate runs in shadow, scored on
    what its decisions would have cost and how often they would have been short; the target
    acts on the winner, and a new model must win its canary before it acts."""

    candidates: tuple[Policy, ...] = Field(
        default=("model", "reactive", "seasonal_naive"),
        description="Policies run in shadow that may act; 'model' always runs.",
    )
    window: PositiveDuration = Field(
        default=7 * 86_400.0, description="Seconds of trailing history the scores weigh."
    )
    switch_margin: float = Field(
        default=0.05,
        ge=0,
        description="How much lower (relative) another policy's score must be to take over.",
    )
    switch_hold: Duration = Field(
        default=86_400.0,
        description="Seconds another policy must keep winning by the margin before the switch.",
    )
    pin: Policy | None = Field(
        default=None,
        description="Always act on this policy (the others are still scored and shown).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if "model" not in self.candidates:
            raise field_error("candidates", "must include 'model'")
        if self.pin is not None and self.pin not in self.candidates:
            raise field_error("pin", f"{self.pin!r} is not among the candidates")
        return self


class AboveMaxConfig(SettingsModel):
    """What to do when the forecast needs more than max_units."""

    policy: Literal["honor", "increase"] = Field(
        default="honor",
        description="'honor' caps at max_units (and reports the shortfall); 'increase' may go "
        "above it by buffer_percent, for workloads where an outage costs more than capacity.",
    )
    buffer_percent: float = Field(
        default=20.0, ge=0, description="With 'increase': percent of max_units allowed above it."
    )


class TargetBase(SettingsModel):
    """Fields every target kind shares; a kind subclasses it with its ``kind`` Literal."""

    # Which act_via values make sense for the kind; checked below.
    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas"})

    # Each kind narrows this to its own Literal (the union's discriminator).
    kind: str = Field(description="What is resized; see the table of target kinds.")
    name: str = Field(pattern=NAME_PATTERN, description="Unique name, used in logs and metrics.")
    source: str = Field(description="Name of the entry under 'sources' demand is read from.")
    query: Query | None = Field(
        default=None,
        description="Demand query: PromQL for a prometheus source, a metric spec for "
        "cloudwatch; omitted for a simulator source.",
    )
    unit_capacity: float = Field(
        gt=0,
        description="Demand one unit (pod, node, instance) serves at full use, in the query's "
        "unit, e.g. 50 requests/s per pod.",
    )
    lead_time: PositiveDuration = Field(
        description="Seconds from asking for a unit to it serving; capacity is planned this far "
        "ahead."
    )
    min_units: int = Field(
        default=1, ge=0, description="Floor in units; 0 allows scaling to zero, so it is opt-in."
    )
    max_units: int = Field(ge=0, description="Ceiling in units; the cost guard rail.")
    shortfall_target: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Accepted probability that demand exceeds planned capacity in a tick; "
        "smaller buys more headroom.",
    )
    # The defaults below match `elasticd backtest`'s, so a backtest without --config shows what
    # a target with default settings does. The calibrated forecast already holds the headroom
    # the shortfall target asks for; damping on top of it buys capacity the plan does not need
    # (a backtest of the demo trace: cost 1.11 with these defaults, 1.29 with HPA-like ones).
    reactive_utilisation: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Target utilisation of the reactive floor (the HPA rule on observed "
        "demand), applied whatever the forecast said. 1.0 covers today's demand; headroom for "
        "what comes next is the calibrated forecast's job.",
    )
    scale_down_stabilisation: Duration = Field(
        default=300.0,
        description="Seconds of recommendations whose maximum is used for scale-down; 300 by "
        "default, as the Kubernetes HPA, so that out of the box one bad sample or a wavering "
        "forecast cannot drop capacity. Lower it only after a backtest.",
    )
    scale_down_tolerance: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Fraction of current units a scale-down must exceed to happen; avoids "
        "churn for a unit or two.",
    )
    scale_up_limit: ScaleLimit | None = Field(
        default=None,
        description="Rate limit on scale-up; none by default, as late capacity is the failure "
        "elasticd exists to prevent.",
    )
    scale_down_limit: ScaleLimit | None = Field(
        default=None,
        description="Rate limit on scale-down, e.g. {period: 1m, max_percent: 10}; none by "
        "default (the reactive floor already keeps today's demand served).",
    )
    max_demand_age: PositiveDuration = Field(
        default=300.0,
        description="Seconds after which the latest demand sample is stale and the fallback "
        "applies; CloudWatch delivers late, so allow more there.",
    )
    mode: Mode = Field(
        default="forecast-only",
        description="'forecast-only' decides and logs but writes nothing; 'active' writes. "
        "Off by default so nothing changes until you opt in.",
    )
    act_via: ActVia = Field(
        default="replicas",
        description="What is written: the replica/desired count itself, or the floor of an "
        "HPA, ASG or node group so their own reactive scaling keeps working.",
    )
    above_max: AboveMaxConfig = Field(
        default_factory=AboveMaxConfig, description="Behaviour when demand needs > max_units."
    )
    interval: PositiveDuration | None = Field(
        default=None,
        description="Seconds between this target's ticks; null uses the global interval.",
    )
    schedules: tuple[ScheduleWindow, ...] = Field(
        default=(), description="Recurring windows that set bounds or an exact count."
    )
    overrides: tuple[Override, ...] = Field(
        default=(), description="One-off windows that set bounds or an exact count."
    )
    tournament: TournamentConfig = Field(
        default_factory=TournamentConfig,
        description="Which policies compete for this target and how a switch is decided.",
    )
    metrics: tuple[MetricConfig, ...] = Field(
        default=(),
        description="Several demand metrics instead of one query/unit_capacity; the units "
        "needed are the largest any metric needs (the HPA's rule), and a missing or stale "
        "metric blocks scale-down. The first metric is the target's own.",
    )
    metric_of: str | None = Field(
        default=None,
        description="Set by elasticd on the companion target of a further metric: the target "
        "it decides for. Not for configs.",
    )
    metric_index: int = Field(
        default=0, ge=0, description="Set by elasticd: the companion's place in 'metrics'."
    )
    keep_state_on_change: bool = Field(
        default=True,
        description="Whether an edited target keeps its decision state (the stabilisation "
        "window always; calibration only while unit_capacity, lead_time and shortfall_target "
        "are unchanged) across a reload or restart. false starts it fresh.",
    )

    @model_validator(mode="before")
    @classmethod
    def _metrics_fill_the_primary(cls, data: Any) -> Any:
        return fill_primary_metric(data)

    @model_validator(mode="after")
    def _check_target(self) -> Self:
        if self.max_units < self.min_units:
            raise field_error("max_units", f"must be >= min_units ({self.min_units})")
        if self.act_via not in self._act_via:
            allowed = ", ".join(sorted(self._act_via))
            kind = getattr(self, "kind", "this kind")  # each subclass defines its own Literal
            raise field_error("act_via", f"not available for {kind}; use one of {allowed}")
        # Window names appear in decision reasons, so two with one name would be ambiguous.
        _unique_names("schedules", [window.name for window in self.schedules])
        _unique_names("overrides", [window.name for window in self.overrides])
        _unique_names("metrics", [metric.name for metric in self.metrics])
        return self


def _unique_names(field: str, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise field_error(
                f"{field}[{index}].name", f"duplicate name {name!r} (also {field}[{seen[name]}])"
            )
        seen[name] = index


def metric_name(target: TargetBase) -> str | None:
    """The name of the metric ``target`` decides on, when its target lists several."""
    if target.metric_of is not None:
        return target.name.rsplit(METRIC_SEPARATOR, 1)[1]
    return target.metrics[0].name if len(target.metrics) > 1 else None
