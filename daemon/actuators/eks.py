"""Scale an EKS managed node group through its ``scalingConfig.desiredSize``.

The API has no compare-and-set: the write is fenced by the caller's lease deadline and a fresh
read compared with the size the decision was made on (see :mod:`daemon.actuators.aws`).
"""

from __future__ import annotations

from typing import Any

import aioboto3
from botocore.config import Config

from daemon.actuators.aws import AwsClient
from daemon.actuators.base import Capacity, ScaleResult, clamp
from daemon.actuators.retry import RetryPolicy, WriteGuard, check_expected


class EksNodegroupActuator:
    """Reads and writes the desired size of one EKS managed node group.

    The node group's own min/max are read on every scale and the request is clamped to them:
    EKS would refuse an out-of-range size, and moto would silently accept it. ``ready`` is
    ``None``: DescribeNodegroup does not report how many nodes are ready.
    """

    def __init__(
        self,
        cluster: str,
        nodegroup: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        client_config: Config | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.cluster = cluster
        self.nodegroup = nodegroup
        self._eks = AwsClient(
            "eks",
            region=region,
            endpoint_url=endpoint_url,
            session=session,
            client_config=client_config,
            retry=retry,
        )
        self._guard = WriteGuard(self.describe())

    def describe(self) -> str:
        return f"eks nodegroup {self.cluster}/{self.nodegroup}"

    async def read(self) -> Capacity:
        scaling = await describe_scaling(self._eks, self.cluster, self.nodegroup, self.describe())
        return Capacity(
            desired=int(scaling.get("desiredSize", 0)),
            ready=None,
            min_size=_optional_int(scaling.get("minSize")),
            max_size=_optional_int(scaling.get("maxSize")),
        )

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Set desiredSize once, within the group's bounds, if a fresh read still shows
        ``expected``; never after ``deadline``."""
        self._guard.check_deferred()
        self._eks.ensure_writable(self.describe())
        self._guard.fence(deadline, self._eks.write_timeout)
        current = await self.read()
        check_expected(self.describe(), expected, current.desired)
        applied = clamp(desired, current.min_size, current.max_size, what=self.describe())
        if applied == current.desired:
            return ScaleResult(False, current.desired, desired, applied)
        # Only desiredSize is sent: resending the min/max we read could undo a change someone
        # made to them since, and EKS keeps the fields a partial scalingConfig leaves out.
        await self._eks.write(
            "update_nodegroup_config",
            f"update {self.describe()}",
            self._guard,
            deadline,
            clusterName=self.cluster,
            nodegroupName=self.nodegroup,
            scalingConfig={"desiredSize": applied},
        )
        return ScaleResult(True, current.desired, desired, applied)

    async def close(self) -> None:
        await self._eks.close()


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
