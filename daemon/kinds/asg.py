"""``kind: asg``: an EC2 Auto Scaling group's desired capacity, or its minimum."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.target_base import TargetBase


class AsgTarget(TargetBase):
    """An EC2 Auto Scaling group, resized through its desired capacity or its minimum."""

    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas", "asg-floor"})

    kind: Literal["asg"]
    group_name: str = Field(min_length=1, description="Auto Scaling group name.")


async def build(target: AsgTarget, context: BuildContext) -> Built:
    from daemon.actuators.autoscaling_group import AutoScalingGroupActuator
    from daemon.actuators.aws_floors import AsgFloorActuator

    kind = AsgFloorActuator if target.act_via == "asg-floor" else AutoScalingGroupActuator
    return kind(target.group_name, **context.aws().client_args()), None


def _details(target: AsgTarget) -> list[str]:
    field = "MinSize" if target.act_via == "asg-floor" else "DesiredCapacity"
    return [f"  writes: {field} of Auto Scaling group {target.group_name}"]


SPEC = KindSpec(
    kinds=("asg",),
    config=AsgTarget,
    build=build,
    writes="the group's DesiredCapacity, or MinSize (asg-floor)",
    permissions=(
        Permission("aws", "autoscaling:DescribeAutoScalingGroups", "read the size and bounds"),
        Permission("aws", "autoscaling:SetDesiredCapacity", "write the size"),
        Permission("aws", "autoscaling:UpdateAutoScalingGroup", "asg-floor writes MinSize"),
    ),
    typical_lead="2 - 5 min (instance boot, health check)",
    node_units=True,
    details=_details,
)
