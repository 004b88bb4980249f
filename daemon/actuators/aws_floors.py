"""Floor actuators for AWS: the ``MinSize`` of an EC2 Auto Scaling group (``asg-floor``) and
the ``minSize`` of an EKS managed node group (``nodegroup-floor``); see
:mod:`daemon.actuators.floors` for what a floor is."""

from __future__ import annotations

from daemon.actuators.autoscaling_group import (
    AutoScalingGroupActuator,
    describe_group,
    healthy_in_service,
)
from daemon.actuators.aws_size import SizeState, WriteRequest
from daemon.actuators.base import Capacity
from daemon.actuators.eks import EksNodegroupActuator, describe_scaling
from daemon.errors import PermanentActuatorError

__all__ = ["AsgFloorActuator", "NodegroupFloorActuator"]


class AsgFloorActuator(AutoScalingGroupActuator):
    """Reads and writes ``MinSize`` of one EC2 Auto Scaling group.

    ``DesiredCapacity`` is never sent, so Cluster Autoscaler, Karpenter or scaling policies
    keep sizing the group above the floor. When a new MinSize exceeds the group's current
    size, AWS raises DesiredCapacity to it by itself (so does moto, comparing against its
    instance count); lowering MinSize leaves DesiredCapacity for the autoscaler to reduce.
    It is the group's actuator (client, constructor) reading and writing another field.
    """

    def describe(self) -> str:
        return f"auto scaling group {self.group_name} floor"

    async def read_state(self) -> SizeState:
        group = await describe_group(self.client, self.group_name, self.describe())
        return SizeState(
            Capacity(
                desired=int(group["MinSize"]),
                ready=healthy_in_service(group),
                min_size=None,
                max_size=int(group["MaxSize"]),
            ),
            group,
        )

    def write_bounds(self, capacity: Capacity) -> tuple[int | None, int | None]:
        return 0, capacity.max_size

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        return WriteRequest(
            "update_auto_scaling_group",
            "update",
            {"AutoScalingGroupName": self.group_name, "MinSize": applied},
        )


class NodegroupFloorActuator(EksNodegroupActuator):
    """Reads and writes ``scalingConfig.minSize`` of one EKS managed node group.

    EKS refuses a minSize above desiredSize, so a raised floor also raises desiredSize to it
    (only when below); otherwise desiredSize is left to Cluster Autoscaler or Karpenter. It is
    the node group's actuator (client, constructor) reading and writing another field.
    """

    def describe(self) -> str:
        return f"eks nodegroup {self.cluster}/{self.nodegroup} floor"

    async def read_state(self) -> SizeState:
        scaling = await describe_scaling(self.client, self.cluster, self.nodegroup, self.describe())
        if "maxSize" not in scaling:
            raise PermanentActuatorError(f"{self.describe()}: no scalingConfig.maxSize")
        return SizeState(
            Capacity(
                desired=int(scaling.get("minSize", 0)),
                ready=None,
                min_size=None,
                max_size=int(scaling["maxSize"]),
            ),
            scaling,
        )

    def write_bounds(self, capacity: Capacity) -> tuple[int | None, int | None]:
        return 0, capacity.max_size

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        # Only the fields that must change are sent: resending the max or desired size we
        # read could undo a change the node autoscaler made since.
        config: dict[str, int] = {"minSize": applied}
        if int(state.raw.get("desiredSize", 0)) < applied:
            config["desiredSize"] = applied
        return WriteRequest(
            "update_nodegroup_config",
            "update",
            {"clusterName": self.cluster, "nodegroupName": self.nodegroup, "scalingConfig": config},
        )
