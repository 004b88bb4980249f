"""Metric sources: where demand is read from, one model per ``type``."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AwareDatetime, Field, field_validator, model_validator

from daemon.redact import redact_url
from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import PositiveDuration


class BasicAuthConfig(SettingsModel):
    """HTTP basic auth; give the password as a file or an environment variable, not inline."""

    username: str = Field(min_length=1, description="User name.")
    password_file: Path | None = Field(
        default=None,
        description="File holding the password (e.g. a mounted Secret); re-read when it changes.",
    )
    password_env: str | None = Field(
        default=None,
        description="Environment variable holding the password, e.g. PROMETHEUS_PASSWORD.",
    )
    password: str | None = Field(
        default=None,
        repr=False,  # never in a repr that reaches a log or an error
        description="The password itself. Discouraged: the YAML is readable by more people "
        "than a Secret or the unit's environment file.",
    )

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        given = [
            name
            for name in ("password_file", "password_env", "password")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise field_error(
                "", f"set exactly one of password_file, password_env, password ({found})"
            )
        if self.password_file is not None:
            _check_readable(self.password_file, "password_file")
        return self


class PrometheusSourceConfig(SettingsModel):
    """A Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics).

    Authentication: ``bearer_token_file``, or ``basic_auth``, or else the environment variable
    PROMETHEUS_BEARER_TOKEN when it is set. At most one of them.
    """

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
    bearer_token_file: Path | None = Field(
        default=None,
        description="File holding a bearer token (e.g. a projected ServiceAccount token); "
        "re-read when it changes, so a rotated token is used without a restart. Without it "
        "(and without basic_auth) the token is read from PROMETHEUS_BEARER_TOKEN, if set.",
    )
    basic_auth: BasicAuthConfig | None = Field(
        default=None, description="HTTP basic auth, instead of a bearer token."
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM bundle of the CAs that sign the server's certificate (https URLs); "
        "null uses the system's CAs.",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description="Do not verify the server's certificate. For tests only: anyone on the "
        "path can then read the credentials.",
    )
    requests_per_second: float = Field(
        default=200.0,
        gt=0,
        description="Requests a second this daemon sends to this URL, all targets together "
        "(client-side rate limit, like client-go's QPS). 1,000 targets at a 15 s interval "
        "need about 67.",
    )
    burst: int = Field(
        default=400, ge=1, description="Requests that may go at once above requests_per_second."
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A repr of the settings (in an error, a debug log) shows the URL without its secrets.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" and isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if re.match(r"^https?://[^\s/]+", value) is None:
            raise ValueError(
                f"invalid URL {redact_url(value)!r}: expected http://host:port or https://..."
            )
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if self.bearer_token_file is not None and self.basic_auth is not None:
            raise field_error("basic_auth", "set either bearer_token_file or basic_auth, not both")
        in_url = "@" in urlsplit(self.url).netloc
        if in_url and (self.bearer_token_file is not None or self.basic_auth is not None):
            raise field_error(
                "url", "credentials in the URL and in bearer_token_file/basic_auth: use one"
            )
        auth_header = any(name.lower() == "authorization" for name in self.headers)
        if auth_header and (
            in_url or self.bearer_token_file is not None or self.basic_auth is not None
        ):
            raise field_error(
                "headers", "an Authorization header and bearer_token_file/basic_auth: use one"
            )
        if self.bearer_token_file is not None:
            _check_readable(self.bearer_token_file, "bearer_token_file")
        if self.ca_file is not None:
            if self.insecure_skip_verify:
                raise field_error("insecure_skip_verify", "must be false when ca_file is set")
            _check_ca_bundle(self.ca_file)
        return self


def _check_readable(path: Path, field: str) -> None:
    """A secret file must exist and be readable now: a typo found at start-up, not at 3 am."""
    try:
        with path.open("rb") as handle:
            content = handle.read(1 << 16)
    except OSError as error:
        raise field_error(field, f"cannot read {path}: {error.strerror or error}") from None
    if not content.strip():
        raise field_error(field, f"{path} is empty")


def _check_ca_bundle(path: Path) -> None:
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise field_error("ca_file", f"cannot read {path}: no such file") from None
    except ssl.SSLError as error:  # before OSError, of which it is a subclass
        raise field_error("ca_file", f"{path} is not a PEM CA bundle ({error.reason})") from None
    except OSError as error:
        raise field_error("ca_file", f"cannot read {path}: {error.strerror or error}") from None


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
