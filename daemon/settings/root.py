"""The whole configuration file: daemon-wide settings, sources and targets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, model_validator

from daemon.kinds.registry import spec_of
from daemon.settings.base import SettingsModel, field_error, suggest
from daemon.settings.general import (
    AUDIT_FILE_NAME,
    DEFAULT_STATE_DIR,
    AuditConfig,
    AwsConfig,
    KubernetesConfig,
    LeaderElectionConfig,
    LogFormat,
    TelemetryConfig,
    TrainingConfig,
)
from daemon.settings.idle import IdleReleaseConfig
from daemon.settings.metrics import expand_metrics
from daemon.settings.quantities import Duration, PositiveDuration
from daemon.settings.sharding import ShardingConfig
from daemon.settings.sources import (
    CloudWatchSourceConfig,
    PrometheusSourceConfig,
    SimulatorSourceConfig,
    SourceConfig,
)
from daemon.settings.targets import NAME_PATTERN, NODE_KINDS, TargetConfig


class Settings(SettingsModel):
    """elasticd configuration. Durations take 300, '300s', '5m', '1h', '7d', or compound:
    '1h30m', '2m30s', '500ms'."""

    interval: PositiveDuration = Field(
        default=15.0,
        description="Seconds between ticks of each target's loop (see target interval).",
    )
    size_read_max_age: Duration = Field(
        default=60.0,
        ge=0,
        description="Seconds a target's size, as read from its API, is reused by later ticks "
        "(an informer-style cache: at 1,000 targets the reads were a third of the CPU). "
        "Every write re-reads first and empties it; a change made by someone else is seen "
        "within this time. 0 reads every tick. Simulator targets always read.",
    )
    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR,
        description="Directory for models, decision history and the audit log; relative paths "
        "are relative to the working directory.",
    )
    log_format: LogFormat = Field(
        default="auto",
        description="'auto' writes JSON when stderr is not a terminal, text otherwise.",
    )
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)
    sharding: ShardingConfig = Field(default_factory=ShardingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    sources: dict[str, SourceConfig] = Field(
        default_factory=dict, description="Metric sources by name; targets refer to the name."
    )
    targets: tuple[TargetConfig, ...] = Field(
        min_length=1, description="What elasticd sizes; at least one."
    )
    idle_release: tuple[IdleReleaseConfig, ...] = Field(
        default=(),
        description="EC2 instances stopped when their CloudWatch metrics stay below "
        "thresholds for a window (checked by the idle janitor, not a target).",
    )

    @model_validator(mode="before")
    @classmethod
    def _companions_for_further_metrics(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "targets" not in data:
            return data
        return {**data, "targets": expand_metrics(data["targets"])}

    @model_validator(mode="before")
    @classmethod
    def _audit_under_state_dir(cls, data: Any) -> Any:
        # The audit log belongs with the rest of the state unless placed elsewhere on purpose:
        # a relative audit.path (the default, decisions.jsonl, is one) is under state_dir, so
        # the schema's default is the file the daemon really writes, whatever state_dir is.
        if not isinstance(data, Mapping):
            return data
        audit = data.get("audit", {})
        if not isinstance(audit, Mapping):
            return data
        path = audit.get("path", AUDIT_FILE_NAME)
        state_dir = data.get("state_dir", DEFAULT_STATE_DIR)
        if not isinstance(path, str | Path) or not isinstance(state_dir, str | Path):
            return data  # the field's own type error will report it
        return {**data, "audit": {**audit, "path": Path(state_dir) / path}}

    @model_validator(mode="after")
    def _one_way_to_share_writes(self) -> Self:
        # Sharding gives every member its own targets to write; a Lease that lets only one
        # member write would leave the others' targets unwritten.
        if self.sharding.enabled and self.leader_election.enabled:
            raise field_error("sharding.enabled", "cannot be combined with leader_election")
        return self

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        for name in self.sources:
            if re.fullmatch(NAME_PATTERN, name) is None:
                raise field_error(f"sources.{name}", "name must match " + NAME_PATTERN)
        kinds: dict[str, str] = {}
        first: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            where = f"targets[{index}]"
            if target.name in first:
                also = f"also targets[{first[target.name]}]"
                raise field_error(f"{where}.name", f"duplicate name {target.name!r} ({also})")
            first[target.name] = index
            kinds[target.name] = target.kind
            _check_source(where, target, self.sources)
        for index, target in enumerate(self.targets):
            link = getattr(target, "node_group", None)
            if link is None:
                continue
            path = f"targets[{index}].node_group.target"
            if link.target == target.name:
                raise field_error(path, "must name another target, not this one")
            if link.target not in kinds:
                hint = suggest(link.target, list(kinds))
                raise field_error(path, f"unknown target {link.target!r}; {hint}")
            if kinds[link.target] not in NODE_KINDS:
                raise field_error(
                    path,
                    f"target {link.target!r} is a {kinds[link.target]}; "
                    f"expected a node target ({', '.join(sorted(NODE_KINDS))})",
                )
            # A node kind may check the link further (placeholder pods must be sized like
            # the pods they hold room for).
            check = getattr(self.target(link.target), "check_node_link", None)
            if check is not None:
                check(link, target, f"targets[{index}].node_group")
        return self

    def target(self, name: str) -> TargetConfig:
        """The target called ``name``; ``KeyError`` if there is none."""
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)


def _check_source(where: str, target: TargetConfig, sources: Mapping[str, SourceConfig]) -> None:
    """The target's source exists and the query is the form that source understands."""
    if spec_of(target.kind).demand_free:
        return  # its units follow its schedules alone: it reads no source (its model checks)
    source = sources.get(target.source)
    if source is None:
        hint = suggest(target.source, list(sources)) if sources else "no sources are defined"
        raise field_error(f"{where}.source", f"unknown source {target.source!r}; {hint}")
    if isinstance(source, PrometheusSourceConfig) and not isinstance(target.query, str):
        raise field_error(
            f"{where}.query", f"a PromQL string is required for source {target.source!r}"
        )
    if isinstance(source, CloudWatchSourceConfig) and (
        target.query is None or isinstance(target.query, str)
    ):
        raise field_error(
            f"{where}.query",
            f"a CloudWatch query mapping is required for source {target.source!r}",
        )
    if isinstance(source, SimulatorSourceConfig) and target.query is not None:
        raise field_error(
            f"{where}.query", f"must be omitted: simulator source {target.source!r} has one series"
        )
    if target.kind == "simulator" and not isinstance(source, SimulatorSourceConfig):
        raise field_error(f"{where}.source", "a simulator target needs a simulator source")
