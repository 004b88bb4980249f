"""Metric sources: where demand is read from, one model per ``type``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, Field, field_validator, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import PositiveDuration


class PrometheusSourceConfig(SettingsModel):
    """A Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics)."""

    type: Literal["prometheus"]
    # A plain string, not pydantic's HttpUrl, which appends "/" and would break path joins.
    url: str = Field(description="Base URL, e.g. http://prometheus:9090.")
    timeout: PositiveDuration = Field(
        default=10.0, description="Seconds per query before it counts as a transient failure."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers, e.g. a tenant id for a multi-tenant backend.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if re.match(r"^https?://[^\s/]+", value) is None:
            raise ValueError(f"invalid URL {value!r}: expected http://host:port or https://...")
        return value


class CloudWatchSourceConfig(SettingsModel):
    """Amazon CloudWatch metrics; unset fields fall back to the top-level ``aws`` section."""

    type: Literal["cloudwatch"]
    region: str | None = Field(default=None, description="AWS region; null uses aws.region.")
    profile: str | None = Field(default=None, description="Named profile; null uses aws.profile.")
    endpoint_url: str | None = Field(
        default=None, description="Endpoint override for local tests; null uses aws.endpoint_url."
    )


class GenerateConfig(SettingsModel):
    """A synthetic demand trace (daily and weekly cycles plus noise), made at start-up."""

    days: int = Field(default=14, ge=1, description="Days of trace; 14 gives the model two weeks.")
    step: PositiveDuration = Field(default=300.0, description="Seconds between generated points.")
    seed: int = Field(default=0, description="Random seed, so a run can be repeated exactly.")


class SimulatorSourceConfig(SettingsModel):
    """Replays a demand trace faster than real time, for demos, local runs and tests."""

    type: Literal["simulator"]
    trace: Path | None = Field(
        default=None, description="CSV trace to replay (relative to the working directory)."
    )
    generate: GenerateConfig | None = Field(
        default=None, description="Generate a synthetic trace instead of reading one."
    )
    speedup: float = Field(
        default=1.0,
        gt=0,
        description="Trace seconds per wall-clock second; 600 plays 10 minutes per second.",
    )
    start: AwareDatetime | None = Field(
        default=None,
        description="Simulated time of the trace's first point (ISO 8601 with offset); "
        "null keeps the trace's own timestamps, or now for a generated trace.",
    )

    @model_validator(mode="after")
    def _one_trace(self) -> Self:
        # Both set would leave one silently ignored; neither leaves nothing to replay.
        if (self.trace is None) == (self.generate is None):
            raise field_error("trace", "set exactly one of 'trace' or 'generate'")
        return self


SourceConfig = Annotated[
    PrometheusSourceConfig | CloudWatchSourceConfig | SimulatorSourceConfig,
    Field(discriminator="type"),
]
