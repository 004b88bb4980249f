"""``kind: deployment`` / ``statefulset``: a workload's replicas, or the floor of its HPA."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.kinds.keda_floor import KEDA_PERMISSIONS, keda_details
from daemon.settings.nodes import NodeGroupLink
from daemon.settings.target_base import TargetBase


class KubernetesWorkloadTarget(TargetBase):
    """A Deployment or StatefulSet, resized through its scale subresource or its HPA."""

    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas", "hpa-floor", "keda-floor"})

    kind: Literal["deployment", "statefulset"]
    namespace: str = Field(min_length=1, description="Namespace of the workload.")
    workload: str = Field(min_length=1, description="Name of the Deployment or StatefulSet.")
    node_group: NodeGroupLink | None = Field(
        default=None, description="Also plan the nodes these pods need, on another target."
    )


async def build(target: KubernetesWorkloadTarget, context: BuildContext) -> Built:
    """The workload's scale subresource, or the floor of the HPA (or KEDA ScaledObject) that
    owns it, and Events on the object written, all on the shared client (which none of them
    closes). The ownership rule is ``daemon.kinds.owners``', shared with ``scalable``: writing
    the replicas of a workload an HPA owns only flaps, so ``replicas`` is refused there with
    the mode that works instead."""
    from daemon.actuators.events import KubernetesEventRecorder, ScaleEvents
    from daemon.actuators.kubernetes import KubernetesScaleActuator, WorkloadKind
    from daemon.kinds.owners import build_with_owners

    api = await context.kube_api()
    kind: WorkloadKind = "Deployment" if target.kind == "deployment" else "StatefulSet"

    def replicas(recorder: KubernetesEventRecorder) -> Built:
        actuator = KubernetesScaleActuator(api, kind, target.namespace, target.workload)
        return actuator, ScaleEvents(recorder, kind, target.workload, floor=False)

    return await build_with_owners(target, context, api, kind, target.workload, replicas)


def _details(target: KubernetesWorkloadTarget) -> list[str]:
    kind = "Deployment" if target.kind == "deployment" else "StatefulSet"
    if target.act_via == "keda-floor":
        return keda_details(target, kind)
    if target.act_via == "hpa-floor":
        return [f"  writes: minReplicas of the HPA of {kind} {target.namespace}/{target.workload}"]
    return [f"  writes: {kind} {target.namespace}/{target.workload} replicas (scale subresource)"]


SPEC = KindSpec(
    kinds=("deployment", "statefulset"),
    config=KubernetesWorkloadTarget,
    build=build,
    writes="the workload's replicas through its scale subresource, or its HPA's minReplicas, "
    "or its KEDA ScaledObject's minReplicaCount",
    permissions=(
        Permission("kubernetes", "apps/deployments/scale:patch", "resize a Deployment"),
        Permission("kubernetes", "apps/statefulsets/scale:patch", "resize a StatefulSet"),
        Permission(
            "kubernetes",
            "autoscaling/horizontalpodautoscalers:patch",
            "act_via: hpa-floor raises minReplicas",
        ),
        *KEDA_PERMISSIONS,
    ),
    typical_lead="30 s - 3 min (image pull, readiness)",
    unit_name="pods",
    details=_details,
)
