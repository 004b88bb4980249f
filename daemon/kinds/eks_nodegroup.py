"""``kind: eks-nodegroup``: an EKS managed node group's desired size, or its minimum."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.target_base import TargetBase


class EksNodeGroupTarget(TargetBase):
    """An EKS managed node group, resized through its scaling config."""

    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas", "nodegroup-floor"})

    kind: Literal["eks-nodegroup"]
    cluster: str = Field(min_length=1, description="EKS cluster name.")
    nodegroup: str = Field(min_length=1, description="Managed node group name.")


async def build(target: EksNodeGroupTarget, context: BuildContext) -> Built:
    from daemon.actuators.aws_floors import NodegroupFloorActuator
    from daemon.actuators.eks import EksNodegroupActuator

    kind = NodegroupFloorActuator if target.act_via == "nodegroup-floor" else EksNodegroupActuator
    return kind(target.cluster, target.nodegroup, **context.aws().client_args()), None


def _details(target: EksNodeGroupTarget) -> list[str]:
    field = "minSize" if target.act_via == "nodegroup-floor" else "desiredSize"
    return [f"  writes: scalingConfig.{field} of node group {target.cluster}/{target.nodegroup}"]


SPEC = KindSpec(
    kinds=("eks-nodegroup",),
    config=EksNodeGroupTarget,
    build=build,
    writes="the node group's scalingConfig.desiredSize, or minSize (nodegroup-floor)",
    permissions=(
        Permission("aws", "eks:DescribeNodegroup", "read the size and bounds"),
        Permission("aws", "eks:UpdateNodegroupConfig", "write the size or the floor"),
    ),
    typical_lead="2 - 5 min (instance boot, node join)",
    node_units=True,
    details=_details,
)
