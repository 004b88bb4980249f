"""``kind: scalable``: any namespaced object with a ``/scale`` subresource (an Argo Rollout, a
custom resource whose CRD declares ``subresources.scale``), resized through that subresource.

The object is named by ``api_version`` (``argoproj.io/v1alpha1``), ``resource`` (the plural
in its URL, ``rollouts``), ``namespace`` and ``name``. The RBAC Role must grant ``get`` and
``patch`` on ``<resource>/scale`` in the object's API group: the shipped Role grants Argo
Rollouts' as the example; add your CRD's group and resource beside it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.kinds.keda_floor import KEDA_PERMISSIONS
from daemon.kinds.owners import build_with_owners
from daemon.settings.target_base import TargetBase

# group/version of a resource served under /apis (not the core group's "v1").
API_VERSION_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/v[0-9]+((alpha|beta)[0-9]+)?$"
# A resource's plural as it appears in the URL (DNS-1035 label, lower case).
RESOURCE_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ScalableTarget(TargetBase):
    """An object with a ``/scale`` subresource, resized through it."""

    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas", "hpa-floor", "keda-floor"})

    kind: Literal["scalable"]
    api_version: str = Field(
        pattern=API_VERSION_PATTERN,
        description="The object's group/version, e.g. argoproj.io/v1alpha1.",
    )
    resource: str = Field(
        pattern=RESOURCE_PATTERN,
        description="The resource's plural as in its URL and RBAC rules, e.g. rollouts.",
    )
    object_kind: str = Field(
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        description="The object's kind, e.g. Rollout: an HPA that owns it is found by it (its "
        "scaleTargetRef), and scaling Events are recorded on it.",
    )
    namespace: str = Field(min_length=1, description="Namespace of the object.")
    object_name: str = Field(min_length=1, description="Name of the object.")

    @property
    def group(self) -> str:
        return self.api_version.split("/", 1)[0]

    @property
    def version(self) -> str:
        return self.api_version.split("/", 1)[1]


async def build(target: ScalableTarget, context: BuildContext) -> Built:
    """The object's scale subresource, or the floor of the HPA (or of the KEDA ScaledObject)
    that sizes it, and Events on the object written, on the shared client."""
    from daemon.actuators.custom_objects import CustomObjectRef, ScalableActuator
    from daemon.actuators.events import KubernetesEventRecorder, ScaleEvents

    api = await context.kube_api()

    def replicas(recorder: KubernetesEventRecorder) -> Built:
        ref = CustomObjectRef(
            target.group, target.version, target.resource, target.namespace, target.object_name
        )
        events = ScaleEvents(
            recorder,
            target.object_kind,
            target.object_name,
            floor=False,
            api_version=target.api_version,
        )
        return ScalableActuator(api, ref), events

    return await build_with_owners(
        target, context, api, target.object_kind, target.object_name, replicas
    )


def _details(target: ScalableTarget) -> list[str]:
    what = f"{target.resource}.{target.group} {target.namespace}/{target.object_name}"
    if target.act_via == "hpa-floor":
        return [f"  writes: minReplicas of the HPA of {target.object_kind} {what}"]
    if target.act_via == "keda-floor":
        return [f"  writes: minReplicaCount of the KEDA ScaledObject that scales {what}"]
    return [
        f"  writes: {what} replicas (scale subresource, {target.api_version})",
        f"  needs: RBAC get, patch on {target.resource}/scale in API group {target.group}",
    ]


SPEC = KindSpec(
    kinds=("scalable",),
    config=ScalableTarget,
    build=build,
    writes="any object's replicas through its /scale subresource (Argo Rollouts, custom "
    "resources), or the floor of its HPA or KEDA ScaledObject",
    permissions=(
        Permission(
            "kubernetes",
            "argoproj.io/rollouts/scale:get",
            "read an Argo Rollout's size (the example: grant your CRD's group/resource)",
        ),
        Permission(
            "kubernetes",
            "argoproj.io/rollouts/scale:patch",
            "resize an Argo Rollout (the example: grant your CRD's group/resource)",
        ),
        Permission(
            "kubernetes",
            "autoscaling/horizontalpodautoscalers:list",
            "find the HPA that owns the object (replicas is refused there)",
        ),
        Permission(
            "kubernetes",
            "autoscaling/horizontalpodautoscalers:patch",
            "act_via: hpa-floor raises minReplicas",
        ),
        *KEDA_PERMISSIONS,
    ),
    typical_lead="30 s - 3 min (as its pods: image pull, readiness)",
    unit_name="pods",
    details=_details,
)
