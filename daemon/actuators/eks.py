"""Scale an EKS managed node group through its ``scalingConfig.desiredSize``.

The API has no compare-and-set: the write is fenced by the caller's lease deadline and a fresh
read compared with the size the decision was made on (see :mod:`daemon.actuators.aws`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

from daemon.actuators.aws import AwsClient, AwsOptions
from daemon.actuators.aws_size import AwsSizeActuator, SizeState, WriteRequest
from daemon.actuators.base import Capacity


class EksNodegroupActuator(AwsSizeActuator):
    """Reads and writes the desired size of one EKS managed node group.

    The node group's own min/max are read on every scale and the request is clamped to them:
    EKS would refuse an out-of-range size, and moto would silently accept it. ``ready`` is
    ``None``: DescribeNodegroup does not report how many nodes are ready.
    """

    service: ClassVar[str] = "eks"

    def __init__(
        self,
        cluster: str,
        nodegroup: str,
        **aws: Unpack[AwsOptions],
    ) -> None:
        self.cluster = cluster
        self.nodegroup = nodegroup
        super().__init__(**aws)

    def describe(self) -> str:
        return f"eks nodegroup {self.cluster}/{self.nodegroup}"

    async def read_state(self) -> SizeState:
        scaling = await describe_scaling(self.client, self.cluster, self.nodegroup, self.describe())
        return SizeState(
            Capacity(
                desired=int(scaling.get("desiredSize", 0)),
                ready=None,
                min_size=_optional_int(scaling.get("minSize")),
                max_size=_optional_int(scaling.get("maxSize")),
            ),
            scaling,
        )

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        # Only desiredSize is sent: resending the min/max we read could undo a change someone
        # made to them since, and EKS keeps the fields a partial scalingConfig leaves out.
        return WriteRequest(
            "update_nodegroup_config",
            "update",
            {
                "clusterName": self.cluster,
                "nodegroupName": self.nodegroup,
                "scalingConfig": {"desiredSize": applied},
            },
        )


async def describe_scaling(
    eks: AwsClient, cluster: str, nodegroup: str, what: str
) -> dict[str, Any]:
    """The node group's ``scalingConfig`` (shared with the floor actuator)."""
    answer = await eks.call(
        "describe_nodegroup", f"describe {what}", clusterName=cluster, nodegroupName=nodegroup
    )
    scaling: dict[str, Any] = answer["nodegroup"].get("scalingConfig", {})
    return scaling


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) else None
