"""Scale an EC2 Auto Scaling group through SetDesiredCapacity.

The API has no compare-and-set: the write is fenced by the caller's lease deadline and a fresh
read compared with the size the decision was made on (see :mod:`daemon.actuators.aws`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

from daemon.actuators.aws import AwsClient, AwsOptions
from daemon.actuators.aws_size import AwsSizeActuator, SizeState, WriteRequest
from daemon.actuators.base import Capacity
from daemon.errors import PermanentActuatorError


class AutoScalingGroupActuator(AwsSizeActuator):
    """Reads and writes the desired capacity of one Auto Scaling group.

    Requests are clamped to the group's own MinSize/MaxSize read just before (AWS refuses an
    out-of-range value, moto accepts it). ``ready`` counts InService, Healthy instances.
    """

    service: ClassVar[str] = "autoscaling"

    def __init__(
        self,
        group_name: str,
        **aws: Unpack[AwsOptions],
    ) -> None:
        self.group_name = group_name
        super().__init__(**aws)

    def describe(self) -> str:
        return f"auto scaling group {self.group_name}"

    async def read_state(self) -> SizeState:
        group = await describe_group(self.client, self.group_name, self.describe())
        return SizeState(
            Capacity(
                desired=int(group["DesiredCapacity"]),
                ready=healthy_in_service(group),
                min_size=int(group["MinSize"]),
                max_size=int(group["MaxSize"]),
            ),
            group,
        )

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        # HonorCooldown=False: the daemon applies its own stabilisation; the group's cooldown
        # would silently drop a forecast-driven scale-up made shortly after another change.
        return WriteRequest(
            "set_desired_capacity",
            "set capacity of",
            {
                "AutoScalingGroupName": self.group_name,
                "DesiredCapacity": applied,
                "HonorCooldown": False,
            },
        )


async def describe_group(autoscaling: AwsClient, group_name: str, what: str) -> dict[str, Any]:
    """The group as DescribeAutoScalingGroups returns it (shared with the floor actuator)."""
    answer = await autoscaling.call(
        "describe_auto_scaling_groups", f"describe {what}", AutoScalingGroupNames=[group_name]
    )
    groups: list[dict[str, Any]] = answer.get("AutoScalingGroups", [])
    # AWS answers an unknown name with an empty list, not an error.
    if not groups:
        raise PermanentActuatorError(f"{what} not found")
    return groups[0]


def healthy_in_service(group: dict[str, Any]) -> int:
    """Instances serving: InService and Healthy (booting or unhealthy ones do not count)."""
    return sum(
        1
        for instance in group.get("Instances", [])
        if instance.get("LifecycleState") == "InService"
        and instance.get("HealthStatus") == "Healthy"
    )
