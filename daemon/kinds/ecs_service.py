"""``kind: ecs-service``: an ECS service's desiredCount."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.target_base import TargetBase


class EcsServiceTarget(TargetBase):
    """An ECS service (EC2 or Fargate), resized through its desired task count."""

    kind: Literal["ecs-service"]
    cluster: str = Field(min_length=1, description="ECS cluster name or ARN.")
    service: str = Field(min_length=1, description="ECS service name or ARN.")


async def build(target: EcsServiceTarget, context: BuildContext) -> Built:
    from daemon.actuators.ecs_service import EcsServiceActuator

    return EcsServiceActuator(target.cluster, target.service, **context.aws().client_args()), None


def _details(target: EcsServiceTarget) -> list[str]:
    return [
        f"  writes: desiredCount of ECS service {target.cluster}/{target.service}",
        "  ready: runningCount; bounds: 0 .. max_units (an ECS service has none of its own)",
    ]


SPEC = KindSpec(
    kinds=("ecs-service",),
    config=EcsServiceTarget,
    build=build,
    writes="the service's desiredCount",
    permissions=(
        Permission("aws", "ecs:DescribeServices", "read desiredCount and runningCount"),
        Permission("aws", "ecs:UpdateService", "write desiredCount"),
    ),
    typical_lead="1 - 3 min (Fargate or EC2 task placement, image pull, health check)",
    unit_name="tasks",
    details=_details,
)
