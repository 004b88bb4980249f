"""EMR: the instance count of a core or task instance group, or the minimum of a cluster's
managed scaling policy.

Like every AWS size, neither has compare-and-set: the write is fenced by the lease deadline
and a fresh read compared with the size the decision was made on (``AwsSizeActuator``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

from daemon.actuators.aws import AwsOptions
from daemon.actuators.aws_size import AwsSizeActuator, SizeState, WriteRequest
from daemon.actuators.base import Capacity
from daemon.errors import PermanentActuatorError

__all__ = ["ROLES", "EmrInstanceGroupActuator", "EmrManagedScalingFloorActuator"]

# Instance group roles elasticd may resize: the master is one node and is never resized.
ROLES = ("CORE", "TASK")
# States in which EMR accepts a new instance count; others (PROVISIONING, SUSPENDED, ENDED,
# TERMINATING...) refuse it, so the write is not sent and the target reports why.
RESIZABLE_STATES = frozenset({"RUNNING", "RESIZING"})


class EmrInstanceGroupActuator(AwsSizeActuator):
    """Reads and writes ``InstanceCount`` of one core or task instance group.

    The group is named by its id (``ig-...``) or by its role when the cluster has exactly one
    group of it. Its bounds are those of the group's own automatic scaling policy when it has
    one (``Constraints``); a core group never goes below one instance (HDFS lives there).
    ``ready`` is the running instance count.
    """

    service: ClassVar[str] = "emr"

    def __init__(
        self,
        cluster_id: str,
        group: str,
        **aws: Unpack[AwsOptions],
    ) -> None:
        self.cluster_id = cluster_id
        self.group = group
        super().__init__(**aws)

    def describe(self) -> str:
        return f"emr instance group {self.cluster_id}/{self.group}"

    async def read_state(self) -> SizeState:
        group = await self._find_group()
        constraints = (group.get("AutoScalingPolicy") or {}).get("Constraints") or {}
        minimum = _optional_int(constraints.get("MinCapacity"))
        if group.get("InstanceGroupType") == "CORE":
            minimum = max(minimum or 0, 1)
        return SizeState(
            Capacity(
                desired=int(group.get("RequestedInstanceCount", 0)),
                ready=int(group.get("RunningInstanceCount", 0)),
                min_size=minimum,
                max_size=_optional_int(constraints.get("MaxCapacity")),
            ),
            group,
        )

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        group: dict[str, Any] = state.raw
        status = str((group.get("Status") or {}).get("State", "RUNNING"))
        if status not in RESIZABLE_STATES:
            raise PermanentActuatorError(f"{self.describe()} is {status}: EMR refuses a resize")
        return WriteRequest(
            "modify_instance_groups",
            "resize",
            {
                "ClusterId": self.cluster_id,
                "InstanceGroups": [{"InstanceGroupId": group["Id"], "InstanceCount": applied}],
            },
        )

    async def _find_group(self) -> dict[str, Any]:
        groups: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            params: dict[str, Any] = {"ClusterId": self.cluster_id}
            if marker:
                params["Marker"] = marker
            answer = await self.client.call(
                "list_instance_groups", f"list groups of {self.describe()}", **params
            )
            groups.extend(answer.get("InstanceGroups", []))
            marker = answer.get("Marker")
            if not marker:
                break
        if self.group.startswith("ig-"):
            found = [g for g in groups if g.get("Id") == self.group]
        else:
            found = [g for g in groups if g.get("InstanceGroupType") == self.group]
        if not found:
            raise PermanentActuatorError(f"{self.describe()} not found")
        if len(found) > 1:
            ids = ", ".join(sorted(str(g.get("Id")) for g in found))
            raise PermanentActuatorError(
                f"{self.describe()}: the cluster has several {self.group} groups ({ids}); "
                "name one by its id"
            )
        return found[0]


class EmrManagedScalingFloorActuator(AwsSizeActuator):
    """Reads and writes ``MinimumCapacityUnits`` of a cluster's managed scaling policy.

    EMR managed scaling keeps sizing the cluster between the limits; raising the minimum ahead
    of load is a floor, as ``hpa-floor`` is for an HPA. The units are the policy's own
    (``Instances``, ``InstanceFleetUnits`` or ``VCPU``). PutManagedScalingPolicy replaces the
    whole policy, so every limit read is sent back unchanged but the minimum.
    """

    service: ClassVar[str] = "emr"

    def __init__(
        self,
        cluster_id: str,
        **aws: Unpack[AwsOptions],
    ) -> None:
        self.cluster_id = cluster_id
        super().__init__(**aws)

    def describe(self) -> str:
        return f"emr cluster {self.cluster_id} managed scaling floor"

    async def read_state(self) -> SizeState:
        answer = await self.client.call(
            "get_managed_scaling_policy", f"read {self.describe()}", ClusterId=self.cluster_id
        )
        policy = answer.get("ManagedScalingPolicy") or {}
        limits = policy.get("ComputeLimits")
        if not limits or "MaximumCapacityUnits" not in limits:
            raise PermanentActuatorError(
                f"{self.describe()}: the cluster has no managed scaling policy; "
                "enable managed scaling or use kind emr-instance-group"
            )
        return SizeState(
            Capacity(
                desired=int(limits.get("MinimumCapacityUnits", 0)),
                ready=None,
                min_size=None,
                max_size=int(limits["MaximumCapacityUnits"]),
            ),
            policy,
        )

    def write_bounds(self, capacity: Capacity) -> tuple[int | None, int | None]:
        # EMR refuses a minimum below one unit.
        return 1, capacity.max_size

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        policy: dict[str, Any] = dict(state.raw)
        policy["ComputeLimits"] = {**policy["ComputeLimits"], "MinimumCapacityUnits": applied}
        return WriteRequest(
            "put_managed_scaling_policy",
            "update",
            {"ClusterId": self.cluster_id, "ManagedScalingPolicy": policy},
        )


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) else None
