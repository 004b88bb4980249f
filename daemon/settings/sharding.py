"""The ``sharding`` section: targets split across replicas on a consistent-hash ring."""

from __future__ import annotations

import socket
from typing import Literal, Self

from pydantic import Field, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import PositiveDuration

ShardingBackend = Literal["kubernetes", "etcd"]


class EtcdConfig(SettingsModel):
    """Where the members keep their records when ``backend`` is ``etcd``."""

    endpoint: str = Field(
        default="127.0.0.1:2379",
        pattern=r"^[^:\s]+:\d{1,5}$",
        description="host:port of one etcd member (its gRPC client port).",
    )
    prefix: str = Field(
        default="/elasticd/shards",
        min_length=1,
        description="Key prefix; the group name is appended, so groups never mix.",
    )
    username: str | None = Field(default=None, description="etcd user, when auth is on.")
    password: str | None = Field(default=None, description="Its password.")


class ShardingConfig(SettingsModel):
    """Several replicas share the targets, each forecasting and writing about 1/N of them.

    Off by default: one replica (with ``leader_election`` for a standby) is the safe choice
    until one process cannot keep up with its targets (docs/sharding.md).
    """

    enabled: bool = Field(
        default=False,
        description="Split targets across replicas; excludes leader_election (every member "
        "writes its own share).",
    )
    backend: ShardingBackend = Field(
        default="kubernetes",
        description="Where membership records live: Kubernetes Leases, or etcd leases.",
    )
    group: str = Field(
        default="elasticd",
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$",
        description="Names this installation's members; two installations sharing a namespace "
        "or an etcd cluster must use different groups.",
    )
    identity: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="This member's name; defaults to the host (pod) name, unique per replica.",
    )
    namespace: str | None = Field(
        default=None,
        description="Namespace of the membership Leases; null means the pod's own namespace.",
    )
    lease_duration: PositiveDuration = Field(
        default=15.0,
        description="Seconds a member stays live without renewing; also the wait before a "
        "new owner writes a target taken from a live member.",
    )
    renew_deadline: PositiveDuration = Field(
        default=10.0,
        description="Seconds without a renewal after which a member writes nothing at all.",
    )
    retry_period: PositiveDuration = Field(
        default=2.0, description="Seconds between renewals (and reads of the other members)."
    )
    virtual_nodes: int = Field(
        default=1024,
        ge=16,
        le=8192,
        description="Points per member on the ring; more spread targets more evenly.",
    )
    etcd: EtcdConfig = Field(default_factory=EtcdConfig)

    @model_validator(mode="after")
    def _check_timings(self) -> Self:
        # As for leader election: a member must stop writing (renew_deadline) before anyone
        # can read its record as expired (lease_duration), with renewals inside the deadline.
        if self.renew_deadline >= self.lease_duration:
            raise field_error(
                "renew_deadline", f"must be < lease_duration ({self.lease_duration:g}s)"
            )
        if self.retry_period >= self.renew_deadline:
            raise field_error(
                "retry_period", f"must be < renew_deadline ({self.renew_deadline:g}s)"
            )
        return self
