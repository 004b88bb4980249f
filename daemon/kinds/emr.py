"""``kind: emr-instance-group``: an EMR core/task instance group's count, or (``act_via:
managed-scaling-floor``) the minimum of the cluster's managed scaling policy."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.target_base import TargetBase


class EmrTarget(TargetBase):
    """An EMR cluster's core or task instance group, or its managed scaling minimum."""

    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas", "managed-scaling-floor"})

    kind: Literal["emr-instance-group"]
    cluster_id: str = Field(pattern=r"^j-[A-Za-z0-9]+$", description="EMR cluster id (j-...).")
    instance_group: str = Field(
        default="TASK",
        pattern=r"^(CORE|TASK|ig-[A-Za-z0-9]+)$",
        description="The group resized: its id (ig-...), or CORE/TASK when the cluster has "
        "one group of that role. Ignored with act_via: managed-scaling-floor.",
    )


async def build(target: EmrTarget, context: BuildContext) -> Built:
    from daemon.actuators.emr import EmrInstanceGroupActuator, EmrManagedScalingFloorActuator

    aws = context.aws().client_args()
    if target.act_via == "managed-scaling-floor":
        return EmrManagedScalingFloorActuator(target.cluster_id, **aws), None
    return EmrInstanceGroupActuator(target.cluster_id, target.instance_group, **aws), None


def _details(target: EmrTarget) -> list[str]:
    if target.act_via == "managed-scaling-floor":
        return [
            f"  writes: MinimumCapacityUnits of the managed scaling policy of {target.cluster_id}"
            " (units: the policy's UnitType)"
        ]
    return [
        f"  writes: InstanceCount of instance group {target.cluster_id}/{target.instance_group}"
    ]


SPEC = KindSpec(
    kinds=("emr-instance-group",),
    config=EmrTarget,
    build=build,
    writes="an instance group's InstanceCount, or the managed scaling policy's minimum",
    permissions=(
        Permission("aws", "elasticmapreduce:ListInstanceGroups", "read the group's size"),
        Permission("aws", "elasticmapreduce:ModifyInstanceGroups", "write the group's size"),
        Permission(
            "aws", "elasticmapreduce:GetManagedScalingPolicy", "managed-scaling-floor reads it"
        ),
        Permission(
            "aws", "elasticmapreduce:PutManagedScalingPolicy", "managed-scaling-floor writes it"
        ),
    ),
    typical_lead="5 - 10 min (instances boot and join YARN)",
    unit_name="instances",
    details=_details,
)
