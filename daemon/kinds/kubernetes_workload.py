"""``kind: deployment`` / ``statefulset``: a workload's replicas, or the floor of its HPA."""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.kinds.keda_floor import KEDA_PERMISSIONS, keda_build, keda_details
from daemon.settings.nodes import NodeGroupLink
from daemon.settings.target_base import TargetBase

log = logging.getLogger("elasticd.kinds")


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
    """The workload's scale subresource, or the floor of the HPA that owns it, and Events
    on the object written, all on the shared client (which none of them closes).

    Writing the replica count of a workload an HPA owns only flaps (each undoes the other's
    write), so ``replicas`` is refused there with the mode that works instead.
    """
    from daemon.actuators.events import KubernetesEventRecorder, ScaleEvents
    from daemon.actuators.floors import HpaFloorActuator, find_owning_hpa
    from daemon.actuators.kubernetes import KubernetesScaleActuator, WorkloadKind
    from daemon.errors import ActuatorError, ConfigError

    where = context.where
    api = await context.kube_api()
    kind: WorkloadKind = "Deployment" if target.kind == "deployment" else "StatefulSet"
    workload = f"{kind} {target.namespace}/{target.workload}"
    recorder = KubernetesEventRecorder(api, target.namespace)
    try:
        owner = await find_owning_hpa(api, target.namespace, kind, target.workload)
    except ActuatorError as error:
        if target.act_via in ("hpa-floor", "keda-floor"):
            raise ConfigError(
                f"{where}.act_via", f"cannot find the HPA that targets {workload}: {error}"
            ) from error
        # Without list on HPAs (an older Role) the check cannot be made; scaling the replicas
        # still works, so warn instead of refusing a config that ran before.
        log.warning(
            "cannot check whether an HPA owns %s (%s); writing its replicas anyway",
            workload,
            error,
            extra={"target": target.name},
        )
        owner = None
    # -- KEDA (daemon/kinds/keda_floor.py): a ScaledObject owns the HPA and rewrites it ------
    if owner is not None or target.act_via == "keda-floor":
        keda = await keda_build(target, context, api, owner, workload, recorder)
        if keda is not None:
            return keda
    # ----------------------------------------------------------------------------------------
    if target.act_via == "hpa-floor":
        if owner is None:
            raise ConfigError(
                f"{where}.act_via",
                f"no HPA targets {workload}; create one or use act_via: replicas",
            )
        floor = HpaFloorActuator(api, target.namespace, owner)
        return floor, ScaleEvents(recorder, "HorizontalPodAutoscaler", owner, floor=True)
    if owner is not None:
        raise ConfigError(
            f"{where}.act_via",
            f"{workload} is owned by HPA {owner}; use act_via: hpa-floor",
        )
    actuator = KubernetesScaleActuator(api, kind, target.namespace, target.workload)
    return actuator, ScaleEvents(recorder, kind, target.workload, floor=False)


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
