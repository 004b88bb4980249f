"""The link from a pod workload to the node group it runs on, for pods-and-nodes planning."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import ByteSize, Cpu


class Resources(SettingsModel):
    """An amount of CPU and memory."""

    cpu: Cpu = Field(default=0.0, description="Cores; written as '500m', '2' or 1.5.")
    memory: ByteSize = Field(default=0, description="Bytes; written as '512Mi', '4Gi' or a number.")


class NodeGroupLink(SettingsModel):
    """Plan nodes for this workload's pods: how many pods fit on one node of the group."""

    target: str = Field(
        description="Name of another target, of kind eks-nodegroup or asg, whose nodes run "
        "these pods; it is sized so the planned pods fit."
    )
    pod_requests: Resources = Field(description="Resource requests of one pod.")
    node_allocatable: Resources = Field(description="Allocatable resources of one node.")
    node_overhead: Resources = Field(
        default_factory=Resources,
        description="Resources on each node taken by daemonsets and system pods.",
    )

    @model_validator(mode="after")
    def _pod_fits(self) -> Self:
        # Pods per node is floor((allocatable - overhead) / requests) per resource: a zero
        # request on both resources would mean infinitely many pods per node.
        if self.pod_requests.cpu <= 0 and self.pod_requests.memory <= 0:
            raise field_error("pod_requests", "request cpu or memory (or both) above zero")
        for resource in ("cpu", "memory"):
            free = getattr(self.node_allocatable, resource) - getattr(self.node_overhead, resource)
            if getattr(self.pod_requests, resource) > free:
                raise field_error(
                    f"pod_requests.{resource}",
                    "larger than a node's allocatable minus overhead: no pod would fit",
                )
        return self
