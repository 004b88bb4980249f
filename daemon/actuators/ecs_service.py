"""Scale an ECS service through UpdateService ``desiredCount``.

The API has no compare-and-set: the write is fenced by the caller's lease deadline and a fresh
read compared with the size the decision was made on (see :mod:`daemon.actuators.aws`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

from daemon.actuators.aws import AwsClient, AwsOptions
from daemon.actuators.aws_size import AwsSizeActuator, SizeState, WriteRequest
from daemon.actuators.base import Capacity
from daemon.errors import PermanentActuatorError


class EcsServiceActuator(AwsSizeActuator):
    """Reads and writes the desired task count of one ECS service.

    An ECS service has no min/max of its own (those belong to an Application Auto Scaling
    target, which would fight this one): requests are clamped to 0 and above, and the
    target's ``max_units`` is the ceiling. ``ready`` is ``runningCount``.
    """

    service: ClassVar[str] = "ecs"

    def __init__(
        self,
        cluster: str,
        service_name: str,
        **aws: Unpack[AwsOptions],
    ) -> None:
        self.cluster = cluster
        self.service_name = service_name
        super().__init__(**aws)

    def describe(self) -> str:
        return f"ecs service {self.cluster}/{self.service_name}"

    async def read_state(self) -> SizeState:
        found = await describe_service(
            self.client, self.cluster, self.service_name, self.describe()
        )
        return SizeState(
            Capacity(
                desired=int(found["desiredCount"]),
                ready=int(found.get("runningCount", 0)),
                min_size=0,
                max_size=None,
            ),
            found,
        )

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        # Only desiredCount: anything else (task definition, deployment configuration) would
        # start a new deployment of the service.
        return WriteRequest(
            "update_service",
            "update",
            {"cluster": self.cluster, "service": self.service_name, "desiredCount": applied},
        )


async def describe_service(
    ecs: AwsClient, cluster: str, service_name: str, what: str
) -> dict[str, Any]:
    """The service as DescribeServices returns it; ``PermanentActuatorError`` if it is missing,
    no longer active, or a DAEMON service (one task per instance: no count to set)."""
    answer = await ecs.call(
        "describe_services", f"describe {what}", cluster=cluster, services=[service_name]
    )
    services: list[dict[str, Any]] = answer.get("services", [])
    # An unknown service is not an error but an entry in "failures" (reason MISSING); an
    # unknown cluster is a ClusterNotFoundException, already permanent.
    if not services:
        reasons = ", ".join(str(f.get("reason", "?")) for f in answer.get("failures", []))
        raise PermanentActuatorError(f"{what} not found ({reasons or 'no such service'})")
    found = services[0]
    status = found.get("status", "ACTIVE")
    if status != "ACTIVE":
        # A DRAINING or INACTIVE service is being deleted: UpdateService would fail.
        raise PermanentActuatorError(f"{what} is {status}, not ACTIVE")
    if found.get("schedulingStrategy") == "DAEMON":
        raise PermanentActuatorError(
            f"{what} uses the DAEMON scheduling strategy: its task count follows the "
            "container instances and cannot be set"
        )
    return found
