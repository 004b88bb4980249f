"""Daemon-wide sections: telemetry, training, leader election, audit log, cloud clients."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import ByteSize, PositiveDuration

DEFAULT_STATE_DIR = Path("/var/lib/elasticd")
AUDIT_FILE_NAME = "decisions.jsonl"


class TelemetryConfig(SettingsModel):
    """The HTTP endpoint serving elasticd's own Prometheus metrics and health checks."""

    enabled: bool = Field(default=True, description="Serve /metrics, /healthz and /readyz.")
    host: str = Field(
        default="0.0.0.0",
        min_length=1,
        description="Listen address; all interfaces by default so Prometheus can scrape the pod.",
    )
    port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="TCP port (9464 is the usual metrics-exporter port); 0 picks a free one.",
    )


class TrainingConfig(SettingsModel):
    """When and on how much history the forecasting models are (re)trained."""

    cadence: PositiveDuration = Field(
        default=6 * 3600.0,
        description="Seconds between retrains. Demand patterns drift slowly and the online "
        "calibration follows faster changes between fits; the backtest's numbers come from "
        "daily retrains. At 1,000 targets hourly fits cost ~8 % of a core on average.",
    )
    history_window: PositiveDuration = Field(
        default=14 * 86400.0,
        description="Seconds of history each fit reads from the source and trains on; 14 "
        "days holds two weekly cycles.",
    )
    retrain_on_start: bool = Field(
        default=True,
        description="Fit at start-up instead of trusting a saved model that may be stale.",
    )


class LeaderElectionConfig(SettingsModel):
    """A Kubernetes Lease so only one of several replicas writes capacity at a time."""

    enabled: bool = Field(
        default=False,
        description="Turn on when running more than one replica; off, every replica acts.",
    )
    namespace: str | None = Field(
        default=None,
        description="Namespace of the Lease; null means the namespace this pod runs in.",
    )
    lease_name: str = Field(
        default="elasticd", min_length=1, description="Name of the Lease object."
    )
    lease_duration: PositiveDuration = Field(
        default=15.0,
        description="Seconds a leader's claim lasts without renewal before others take over.",
    )
    renew_deadline: PositiveDuration = Field(
        default=10.0, description="Seconds the leader keeps trying to renew before it steps down."
    )
    retry_period: PositiveDuration = Field(
        default=2.0, description="Seconds between attempts to acquire or renew the Lease."
    )
    identity: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="This replica's name in the Lease; defaults to the host (pod) name.",
    )

    @model_validator(mode="after")
    def _check_timings(self) -> Self:
        # The client-go ordering: a leader must give up (renew_deadline) before its lease runs
        # out, or two leaders overlap; and it needs more than one retry inside the deadline.
        if self.renew_deadline >= self.lease_duration:
            raise field_error(
                "renew_deadline", f"must be < lease_duration ({self.lease_duration:g}s)"
            )
        if self.retry_period >= self.renew_deadline:
            raise field_error(
                "retry_period", f"must be < renew_deadline ({self.renew_deadline:g}s)"
            )
        return self


class AuditConfig(SettingsModel):
    """The decision log: one JSON line per decision, with its inputs and reason."""

    path: Path = Field(
        default=Path(AUDIT_FILE_NAME),
        description="File to append to; a relative path is relative to state_dir (so the "
        "default is <state_dir>/decisions.jsonl).",
    )
    max_bytes: ByteSize = Field(
        default=50 * 10**6,
        gt=0,
        description="Bytes (or e.g. '50MB') before the log rotates, so it cannot fill the disk.",
    )
    backups: int = Field(default=5, ge=0, description="Rotated files kept; 0 keeps none.")


class KubernetesConfig(SettingsModel):
    """How to reach the Kubernetes API."""

    kubeconfig: Path | None = Field(
        default=None, description="Path to a kubeconfig; null uses $KUBECONFIG or ~/.kube/config."
    )
    in_cluster: Literal["auto"] | bool = Field(
        default="auto",
        description="Use the pod's service account; 'auto' does so when running in a pod.",
    )
    qps: float = Field(
        default=50.0,
        gt=0,
        description="Requests per second to the API server, shared by every target (a token "
        "bucket, like client-go's). 1,000 targets reading their size once a minute need ~17.",
    )
    burst: int = Field(
        default=100, ge=1, description="Requests allowed at once above the steady qps."
    )


class AwsConfig(SettingsModel):
    """Defaults for every AWS client; a CloudWatch source may override region and profile."""

    region: str | None = Field(
        default=None, description="AWS region; null uses the SDK's own lookup."
    )
    profile: str | None = Field(
        default=None, description="Named profile; null uses the SDK's chain."
    )
    endpoint_url: str | None = Field(
        default=None, description="Override the AWS endpoint, for local tests (e.g. a moto server)."
    )


LogFormat = Literal["auto", "json", "text"]
