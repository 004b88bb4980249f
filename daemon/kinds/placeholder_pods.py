"""``kind: placeholder-pods``: nodes ahead of pods on a cluster without a node group to size
(Karpenter, or the cluster autoscaler), held by a Deployment of low-priority placeholder pods.

A node kind: a pod target's ``node_group:`` link may point at it, and it plans nodes exactly
as an ``eks-nodegroup`` or ``asg`` target does (its own forecast, with the pods' plan as its
floor). Its write is the replica count of the placeholder Deployment that
``deploy/kubernetes/overprovisioning/`` ships: the nodes the real pods need now stay theirs,
and each node of headroom above them is filled with placeholders requesting what a real pod
requests, so the autoscaler brings it up; a real pod preempts a placeholder at once.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from daemon.core.binpack import NodeShape, pods_per_node
from daemon.core.binpack import Resources as CoreResources
from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.base import SettingsModel, field_error
from daemon.settings.nodes import NodeGroupLink, Resources
from daemon.settings.target_base import TargetBase


class WorkloadRef(SettingsModel):
    """A real workload whose pods run on the nodes the placeholders hold (read, never written)."""

    kind: Literal["deployment", "statefulset"] = Field(description="Its kind.")
    name: str = Field(min_length=1, description="Its name.")
    namespace: str | None = Field(
        default=None, description="Its namespace; the placeholder Deployment's when omitted."
    )


class PlaceholderPodsTarget(TargetBase):
    """Nodes held up by placeholder pods; its units are nodes."""

    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas"})

    kind: Literal["placeholder-pods"]
    namespace: str = Field(min_length=1, description="Namespace of the placeholder Deployment.")
    deployment: str = Field(
        default="elasticd-placeholder",
        min_length=1,
        description="Name of the placeholder Deployment (deploy/kubernetes/overprovisioning).",
    )
    workloads: tuple[WorkloadRef, ...] = Field(
        min_length=1,
        description="The real workloads on these nodes: the nodes their pods need are theirs, "
        "placeholders fill only the headroom above.",
    )
    pod_requests: Resources = Field(
        description="Requests of one real pod, and of one placeholder (the manifest's must match)."
    )
    node_allocatable: Resources = Field(description="Allocatable resources of one node.")
    node_overhead: Resources = Field(
        default_factory=Resources,
        description="Resources on each node taken by daemonsets and system pods.",
    )

    @model_validator(mode="after")
    def _pod_fits(self) -> Self:
        try:
            pods_per_node(self.shape())
        except ValueError as error:
            raise field_error("pod_requests", str(error)) from None
        return self

    def check_node_link(self, link: NodeGroupLink, pod_target: TargetBase, path: str) -> None:
        """A pod target's ``node_group`` link (at YAML ``path``) pointing here must plan pods
        sized as the placeholders are (a node of headroom is pods-per-node placeholders), and
        its workload must be one of ``workloads`` (else its pods' nodes would be counted as
        headroom). Raised as the settings' field error."""
        mine = (self.pod_requests, self.node_allocatable, self.node_overhead)
        if (link.pod_requests, link.node_allocatable, link.node_overhead) != mine:
            raise field_error(
                path,
                "pod_requests, node_allocatable and node_overhead must equal those of "
                f"placeholder-pods target {self.name!r}: its placeholders are sized like these "
                "pods",
            )
        kind = pod_target.kind
        namespace = getattr(pod_target, "namespace", None)
        name = getattr(pod_target, "workload", None)
        listed = {(ref.kind, ref.namespace or self.namespace, ref.name) for ref in self.workloads}
        if (kind, namespace, name) not in listed:
            raise field_error(
                path,
                f"{kind} {namespace}/{name} is not among the workloads of placeholder-pods "
                f"target {self.name!r}: its pods' nodes would be counted as headroom",
            )

    def shape(self) -> NodeShape:
        """The pod and node sizes in the core's terms."""

        def core(resources: Resources) -> CoreResources:
            return CoreResources(resources.cpu, resources.memory)

        return NodeShape(
            core(self.pod_requests), core(self.node_allocatable), core(self.node_overhead)
        )


async def build(target: PlaceholderPodsTarget, context: BuildContext) -> Built:
    """The placeholder Deployment's scale subresource behind the node arithmetic; the real
    workloads are read through theirs. No Events: the numbers written are nodes, which an
    Event on the Deployment would call replicas."""
    from functools import partial

    from daemon.actuators.kubernetes import KubernetesScaleActuator, WorkloadKind
    from daemon.actuators.placeholders import PlaceholderPodsActuator
    from daemon.actuators.retry import WriteGuard
    from daemon.core.overprovisioning import nodes_held, placeholders_for

    api = await context.kube_api()
    guard = WriteGuard(f"deployment {target.namespace}/{target.deployment}")
    placeholders = KubernetesScaleActuator(
        api, "Deployment", target.namespace, target.deployment, write_guard=guard
    )
    workloads = []
    for ref in target.workloads:
        kind: WorkloadKind = "Deployment" if ref.kind == "deployment" else "StatefulSet"
        workloads.append(
            KubernetesScaleActuator(api, kind, ref.namespace or target.namespace, ref.name)
        )
    shape = target.shape()
    actuator = PlaceholderPodsActuator(
        placeholders,
        workloads,
        to_placeholders=partial(placeholders_for, shape=shape),
        to_nodes=partial(nodes_held, shape=shape),
        guard=guard,
    )
    return actuator, None


def _details(target: PlaceholderPodsTarget) -> list[str]:
    real = ", ".join(
        f"{ref.kind} {ref.namespace or target.namespace}/{ref.name}" for ref in target.workloads
    )
    per_node = pods_per_node(target.shape())
    return [
        f"  writes: Deployment {target.namespace}/{target.deployment} replicas "
        f"(placeholder pods, {per_node} a node of headroom)",
        f"  reads: {real} (their pods' nodes are not headroom)",
    ]


SPEC = KindSpec(
    kinds=("placeholder-pods",),
    config=PlaceholderPodsTarget,
    build=build,
    writes="a placeholder Deployment's replicas: low-priority pods that hold nodes of headroom "
    "(Karpenter, cluster autoscaler)",
    permissions=(
        Permission("kubernetes", "apps/deployments/scale:get", "read placeholders, real pods"),
        Permission("kubernetes", "apps/deployments/scale:patch", "set the placeholder count"),
        Permission("kubernetes", "apps/statefulsets/scale:get", "read real StatefulSet pods"),
    ),
    typical_lead="1 - 3 min (Karpenter node launch and join)",
    node_units=True,
    unit_name="nodes",
    details=_details,
)
