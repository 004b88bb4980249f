"""Stop and start a set of EC2 instances and RDS instances/clusters: the size is how many run.

``read`` describes every selected resource and counts the running ones
(``daemon.actuators.power``); ``scale`` re-reads, checks the count the decision was made on, and
sends one ``StartInstances``/``StopInstances``/``Start|StopDBInstance``/``Start|StopDBCluster``
per resource that must change, and nothing for one already where it should be.

A resource that refuses (an RDS read replica or Aurora member cannot be stopped on its own, an
instance with stop protection, a database in a state that cannot stop) is remembered as
refused for ``refusal_cool_off`` and left out of the count and the calls meanwhile: reported
once (the write fails with its reason, so the log, the audit and /readyz say which resource
and why), not hammered every tick. A new configuration builds a new actuator, which forgets.

RDS starts a database that has been stopped for seven days by itself. The next tick sees one
more running than decided and stops it again; the log says why (``stopped_again``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config

from daemon.actuators.aws import AwsClient
from daemon.actuators.base import Capacity, ScaleResult
from daemon.actuators.power import Power, PowerPlan, Resource, count, plan_power
from daemon.actuators.retry import RetryPolicy, WriteGuard, check_expected
from daemon.errors import (
    ActuatorError,
    FencedError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)

__all__ = ["InstanceScheduleActuator", "Selection"]

log = logging.getLogger("elasticd.actuators.instance_schedule")

Clock = Callable[[], float]

# EC2 instance states -> power; shutting-down and terminated are gone for good.
_EC2 = {
    "pending": Power.STARTING,
    "running": Power.RUNNING,
    "stopping": Power.STOPPING,
    "stopped": Power.STOPPED,
}
# RDS statuses -> power (instances and clusters alike). The many "busy but up" statuses count
# as running: the database serves, and a stop is refused until it settles (a refusal then).
_RDS = {
    "available": Power.RUNNING,
    "starting": Power.STARTING,
    "stopping": Power.STOPPING,
    "stopped": Power.STOPPED,
    "backing-up": Power.RUNNING,
    "modifying": Power.RUNNING,
    "maintenance": Power.RUNNING,
    "upgrading": Power.RUNNING,
    "configuring-enhanced-monitoring": Power.RUNNING,
    "storage-optimization": Power.RUNNING,
    "rebooting": Power.STARTING,
}
EC2_PREFIX, RDS_PREFIX, CLUSTER_PREFIX = "ec2:", "rds:", "rds-cluster:"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which resources: EC2 instances by ID and/or by tags (all must match), RDS instances
    and clusters by identifier."""

    ec2_instance_ids: tuple[str, ...] = ()
    ec2_tags: Mapping[str, str] | None = None
    rds_instances: tuple[str, ...] = ()
    rds_clusters: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.ec2_instance_ids:
            parts.append(f"{len(self.ec2_instance_ids)} EC2 instance(s)")
        if self.ec2_tags:
            tags = ",".join(f"{k}={v}" for k, v in sorted(self.ec2_tags.items()))
            parts.append(f"EC2 instances tagged {tags}")
        if self.rds_instances:
            parts.append(f"RDS instance(s) {','.join(self.rds_instances)}")
        if self.rds_clusters:
            parts.append(f"RDS cluster(s) {','.join(self.rds_clusters)}")
        return " + ".join(parts)


class InstanceScheduleActuator:
    """An ``Actuator`` whose units are running resources."""

    def __init__(
        self,
        name: str,
        selection: Selection,
        *,
        region: str,
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        client_config: Config | None = None,
        retry: RetryPolicy | None = None,
        refusal_cool_off_s: float = 3600.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.selection = selection
        common: dict[str, Any] = {
            "region": region,
            "endpoint_url": endpoint_url,
            "session": session,
            "client_config": client_config,
            "retry": retry,
        }
        self.ec2 = AwsClient("ec2", **common)
        self.rds = AwsClient("rds", **common)
        self.refusal_cool_off_s = refusal_cool_off_s
        self._clock = clock
        # key -> (why it refused, when); forgotten after the cool-off.
        self._refused: dict[str, tuple[str, float]] = {}
        # Resources this actuator stopped: found running later, RDS (or a person) started them.
        self._stopped: set[str] = set()
        self._guard = WriteGuard(self.describe())

    def describe(self) -> str:
        return f"instance schedule {self.name} ({self.selection.describe()})"

    @property
    def refused(self) -> dict[str, str]:
        """Resources left out for now, and why each refused."""
        self._forget_old_refusals()
        return {key: why for key, (why, _) in self._refused.items()}

    async def read(self) -> Capacity:
        found = count(await self._resources(), self.refused)
        return Capacity(
            desired=found.units, ready=found.ready, min_size=0, max_size=found.manageable
        )

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        what = self.describe()
        self._guard.check_deferred()
        for api in (self.ec2, self.rds):
            api.ensure_writable(what)
        self._guard.fence(deadline, self.ec2.write_timeout)
        resources = await self._resources()
        refused = self.refused
        before = count(resources, refused)
        check_expected(what, expected, before.units)
        applied = min(max(desired, 0), before.manageable)
        plan = plan_power(resources, applied, refused)
        if plan.empty:
            return ScaleResult(False, before.units, desired, before.units)
        failures = await self._apply(plan, deadline)
        if failures:
            raise failures[0] if len(failures) == 1 else _combined(failures)
        return ScaleResult(True, before.units, desired, applied)

    async def close(self) -> None:
        await self.ec2.close()
        await self.rds.close()

    # -- write --------------------------------------------------------------------------------

    async def _apply(self, plan: PowerPlan, deadline: float | None) -> list[ActuatorError]:
        """Every call of the plan; a refusal is remembered, a transient failure retried next
        tick. Returns the failures (the calls that worked stand)."""
        failures: list[ActuatorError] = []
        calls = [(key, True) for key in plan.start] + [(key, False) for key in plan.stop]
        for key, start in calls:
            if not start:
                self._say_why_stopped_again(key)
            try:
                await self._call(key, start, deadline)
            except PermanentActuatorError as error:
                self._refuse(key, str(error))
                failures.append(error)
            except (FencedError, ThrottledError) as error:
                failures.append(error)
                break  # the lease or AWS says send nothing more now
            except TransientActuatorError as error:
                failures.append(error)
            else:
                if start:
                    self._stopped.discard(key)
                else:
                    self._stopped.add(key)
        return failures

    async def _call(self, key: str, start: bool, deadline: float | None) -> None:
        verb = "start" if start else "stop"
        if key.startswith(EC2_PREFIX):
            instance = key.removeprefix(EC2_PREFIX)
            operation = "start_instances" if start else "stop_instances"
            await self.ec2.write(
                operation, f"{verb} EC2 instance {instance}", self._guard, deadline,
                InstanceIds=[instance],
            )  # fmt: skip
        elif key.startswith(CLUSTER_PREFIX):
            cluster = key.removeprefix(CLUSTER_PREFIX)
            operation = "start_db_cluster" if start else "stop_db_cluster"
            await self.rds.write(
                operation, f"{verb} RDS cluster {cluster}", self._guard, deadline,
                DBClusterIdentifier=cluster,
            )  # fmt: skip
        else:
            db = key.removeprefix(RDS_PREFIX)
            operation = "start_db_instance" if start else "stop_db_instance"
            await self.rds.write(
                operation, f"{verb} RDS instance {db}", self._guard, deadline,
                DBInstanceIdentifier=db,
            )  # fmt: skip
        log.info(
            "%s %s",
            "started" if start else "stopped",
            key,
            extra={"target": self.name, "event": "started" if start else "stopped", "key": key},
        )

    def _refuse(self, key: str, why: str) -> None:
        self._refused[key] = (why, self._clock())
        log.error(
            "%s refused: %s; left out of %s for %.0fs (or until the configuration changes)",
            key,
            why,
            self.name,
            self.refusal_cool_off_s,
            extra={"target": self.name, "event": "refused", "key": key, "reason": why},
        )

    def _forget_old_refusals(self) -> None:
        now = self._clock()
        for key, (_, at) in list(self._refused.items()):
            if now - at >= self.refusal_cool_off_s:
                del self._refused[key]
                log.info(
                    "%s: refusal cooled off, trying it again", key, extra={"target": self.name}
                )

    def _say_why_stopped_again(self, key: str) -> None:
        """A database this actuator stopped is running again: say why it is stopped again."""
        if key not in self._stopped or not key.startswith((RDS_PREFIX, CLUSTER_PREFIX)):
            return
        log.warning(
            "%s is running outside its schedule window after elasticd stopped it (RDS starts "
            "a database stopped for seven days by itself, or someone started it): stopping it "
            "again",
            key,
            extra={
                "target": self.name,
                "event": "stopped_again",
                "key": key,
                "stopped_by_elasticd": True,
            },
        )

    # -- read ---------------------------------------------------------------------------------

    async def _resources(self) -> list[Resource]:
        selection = self.selection
        found: list[Resource] = []
        if selection.ec2_instance_ids or selection.ec2_tags:
            found += await self._ec2()
        for db in selection.rds_instances:
            answer = await self.rds.call(
                "describe_db_instances", f"describe RDS instance {db}", DBInstanceIdentifier=db
            )
            for item in answer.get("DBInstances", []):
                found.append(_rds(RDS_PREFIX + db, str(item.get("DBInstanceStatus", ""))))
        for cluster in selection.rds_clusters:
            answer = await self.rds.call(
                "describe_db_clusters",
                f"describe RDS cluster {cluster}",
                DBClusterIdentifier=cluster,
            )
            for item in answer.get("DBClusters", []):
                found.append(_rds(CLUSTER_PREFIX + cluster, str(item.get("Status", ""))))
        return found

    async def _ec2(self) -> list[Resource]:
        selection = self.selection
        requests: list[dict[str, Any]] = []
        if selection.ec2_instance_ids:
            requests.append({"InstanceIds": list(selection.ec2_instance_ids)})
        if selection.ec2_tags:
            filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in selection.ec2_tags.items()]
            requests.append({"Filters": filters})
        seen: dict[str, Resource] = {}
        for params in requests:
            for instance in await self._describe_instances(params):
                key = EC2_PREFIX + str(instance["InstanceId"])
                state = str(instance.get("State", {}).get("Name", ""))
                seen[key] = Resource(key, _EC2.get(state, Power.OTHER))
        return list(seen.values())

    async def _describe_instances(self, params: dict[str, Any]) -> Iterable[dict[str, Any]]:
        instances: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            answer = await self.ec2.call(
                "describe_instances", f"describe EC2 instances of {self.name}", **params, **extra
            )
            for reservation in answer.get("Reservations", []):
                instances.extend(reservation.get("Instances", []))
            token = answer.get("NextToken")
            if not token:
                return instances


def _rds(key: str, status: str) -> Resource:
    return Resource(key, _RDS.get(status, Power.OTHER))


def _combined(failures: list[ActuatorError]) -> ActuatorError:
    text = "; ".join(str(f) for f in failures)
    if all(isinstance(f, PermanentActuatorError) for f in failures):
        return PermanentActuatorError(f"{len(failures)} resources refused: {text}")
    return TransientActuatorError(f"{len(failures)} calls failed: {text}")
