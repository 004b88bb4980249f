"""How the daemon runs a shard member: the backend from settings, the ring keys of its
targets, its metrics on ``/metrics`` and an audit record for every handoff.

The supervisor asks ``open_member`` for the member when ``sharding.enabled``, builds and
starts only the targets the member owns, gives each reconciler the target's gate where a
single instance passes its leadership, and rebuilds the set whenever the epoch changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from daemon.audit import AuditLog, AuditRecord
from daemon.errors import ConfigError
from daemon.settings import KubernetesWorkloadTarget, Settings, TargetConfig
from daemon.sharding.coordination import Coordination
from daemon.sharding.member import Handoff, ShardMember
from daemon.sharding.ring import stable_hash
from daemon.telemetry import Telemetry

__all__ = [
    "JANITOR_KEY",
    "ShardMetrics",
    "open_coordination",
    "open_member",
    "shard_key",
    "shard_keys",
]

log = logging.getLogger("elasticd.sharding")

# The idle janitor's ring key: it releases idle instances for every rule, so one member must
# run it. A colon cannot start a target's name, so no target shares the key.
JANITOR_KEY = ":idle-janitor"
# Where a pod's own namespace is mounted with its service-account token.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def shard_key(target: TargetConfig) -> str:
    """The ring key: a pod target linked to a node target plans with it through an
    in-process board, so both hash on the node target's name and share an owner."""
    if isinstance(target, KubernetesWorkloadTarget) and target.node_group is not None:
        return target.node_group.target
    return target.name


def shard_keys(settings: Settings) -> dict[str, str]:
    """Every target's ring key, and the idle janitor's (``JANITOR_KEY``)."""
    keys = {target.name: shard_key(target) for target in settings.targets}
    # A further metric's companion posts on an in-process board its target reads: same owner.
    for target in settings.targets:
        if target.metric_of is not None and target.metric_of in keys:
            keys[target.name] = keys[target.metric_of]
    keys[JANITOR_KEY] = JANITOR_KEY
    return keys


def is_target(name: str) -> bool:
    """False for the daemon's own duties (``JANITOR_KEY``), which are not targets."""
    return not name.startswith(":")


def resolve_namespace(configured: str | None) -> str:
    if configured:
        return configured
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError:
        namespace = ""
    if not namespace:
        raise ConfigError(
            "sharding.namespace",
            "not set and not running in a pod (no service-account namespace file); set it",
        )
    return namespace


async def open_coordination(settings: Settings) -> Coordination:
    """The configured backend's handle for this member (its own client)."""
    config = settings.sharding
    if config.backend == "etcd":
        from daemon.sharding.etcd import EtcdCoordination  # aetcd is an optional extra

        return await EtcdCoordination.open(
            config.etcd,
            group=config.group,
            identity=config.identity,
            lease_duration=config.lease_duration,
        )
    from daemon.runtime.app import open_kube_client
    from daemon.sharding.kube import KubeLeaseCoordination

    namespace = resolve_namespace(config.namespace)
    return KubeLeaseCoordination(
        await open_kube_client(settings),
        namespace=namespace,
        group=config.group,
        identity=config.identity,
        lease_duration=config.lease_duration,
    )


async def open_member(
    settings: Settings,
    telemetry: Telemetry,
    audit: AuditLog,
    on_epoch: Callable[[], Awaitable[None]],
) -> ShardMember:
    """The member for ``settings.sharding``, its metrics registered on ``telemetry``."""
    config = settings.sharding
    coordination = await open_coordination(settings)

    def record(handoff: Handoff) -> None:
        if is_target(handoff.target):
            _audit_handoff(audit, config.identity, handoff)
        else:
            log.info("%s now owned by %s", handoff.target, handoff.owner or "(none)")

    member = ShardMember(
        coordination,
        lease_duration=config.lease_duration,
        renew_deadline=config.renew_deadline,
        retry_period=config.retry_period,
        virtual_nodes=config.virtual_nodes,
        on_epoch=on_epoch,
        on_handoff=record,
        on_fresh=telemetry.set_leader,
    )
    member.track(shard_keys(settings))
    telemetry.registry.register(ShardMetrics(member))
    telemetry.set_leader(False)
    return member


def _audit_handoff(audit: AuditLog, identity: str, handoff: Handoff) -> None:
    gained = handoff.owner == identity
    log.info(
        "target %s: %s -> %s%s",
        handoff.target,
        handoff.previous or "(none)",
        handoff.owner or "(none)",
        f", first write in {handoff.wait_s:g}s" if gained and handoff.wait_s else "",
        extra={"target": handoff.target, "event": "handoff", "member": identity},
    )
    try:
        audit.append(
            AuditRecord(
                target=handoff.target,
                reason="handoff",
                inputs={
                    "from": handoff.previous,
                    "to": handoff.owner,
                    "member": identity,
                    "wait_s": handoff.wait_s if gained else None,
                    "epoch": list(handoff.epoch),
                },
                time=datetime.now(UTC),
            )
        )
    except OSError as error:
        log.error("handoff not audited: %s", error, extra={"target": handoff.target})


def epoch_id(epoch: Iterable[str]) -> int:
    """A number equal on members that agree on the epoch (a 32-bit hash of it)."""
    return stable_hash("\x00".join(epoch)) >> 32


class ShardMetrics:
    """This member's share, computed at scrape time (a renew age must grow while stuck)."""

    def __init__(self, member: ShardMember, clock: Callable[[], float] = time.monotonic) -> None:
        self.member = member
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # collected at scrape time only: no duplicate-name checks to satisfy

    def collect(self) -> Iterable[Metric]:
        member = self.member
        owned = [target for target in member.owned if is_target(target)]
        writable = sum(1 for target in owned if member.may_write(target))
        since = self._clock() - member.renewed_at
        families: list[Metric] = [
            _gauge("elasticd_shard_owned_targets", "Targets this member owns.", len(owned)),
            _gauge(
                "elasticd_shard_writable_targets",
                "Owned targets past their handoff wait, while this member is fresh.",
                writable,
            ),
            _gauge(
                "elasticd_shard_ring_members",
                "Live members in this member's ring epoch.",
                len(member.epoch),
            ),
            _gauge(
                "elasticd_shard_ring_epoch",
                "A hash of the ring epoch (the live member set): equal on members that agree.",
                epoch_id(member.epoch),
            ),
            _gauge(
                "elasticd_shard_seconds_since_renew",
                "Seconds since this member's last successful renewal (+Inf before the first).",
                since,
            ),
        ]
        changes = CounterMetricFamily(
            "elasticd_shard_epoch_changes", "Ring epochs this member has adopted."
        )
        changes.add_metric([], member.epoch_changes)
        handoffs = CounterMetricFamily(
            "elasticd_shard_handoffs",
            "Targets that changed owner to (in) or from (out) this member.",
            labels=("direction",),
        )
        handoffs.add_metric(["in"], member.handoffs_in)
        handoffs.add_metric(["out"], member.handoffs_out)
        return [*families, changes, handoffs]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
