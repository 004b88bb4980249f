"""KEDA beside elasticd: the floor of a ScaledObject, and finding the ScaledObject behind an HPA.

A workload KEDA scales has an HPA that KEDA's operator owns: it writes that HPA from the
ScaledObject on every reconcile, so a raised ``minReplicas`` is undone within seconds. The
number that holds is the ScaledObject's ``spec.minReplicaCount``, which KEDA copies into its
HPA. ``act_via: keda-floor`` writes it (a merge patch on ``keda.sh/v1alpha1`` scaledobjects,
conditional on the resourceVersion just read) and leaves KEDA reacting above it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client

from daemon.actuators.base import Capacity
from daemon.actuators.custom_objects import CustomObjectRef, CustomObjectSizeActuator, whole
from daemon.actuators.kubernetes import KUBE_ERRORS, MERGE_PATCH, map_api_error

__all__ = [
    "KEDA_GROUP",
    "KEDA_MAX_DEFAULT",
    "KEDA_NAME_LABEL",
    "KEDA_VERSION",
    "KedaFloorActuator",
    "keda_scaled_object",
    "scaled_object_ref",
]

KEDA_GROUP = "keda.sh"
KEDA_VERSION = "v1alpha1"
KEDA_PLURAL = "scaledobjects"
# KEDA labels the HPA it creates with the name of its ScaledObject.
KEDA_NAME_LABEL = "scaledobject.keda.sh/name"
# What KEDA assumes when a ScaledObject omits them (keda.sh docs, ScaledObject spec).
KEDA_MIN_DEFAULT = 0
KEDA_MAX_DEFAULT = 100

JsonObj = dict[str, Any]


def scaled_object_ref(namespace: str, name: str) -> CustomObjectRef:
    return CustomObjectRef(KEDA_GROUP, KEDA_VERSION, KEDA_PLURAL, namespace, name)


class KedaFloorActuator(CustomObjectSizeActuator):
    """Reads and writes ``spec.minReplicaCount`` of one KEDA ScaledObject.

    ``max_size`` is its ``maxReplicaCount`` (the floor cannot pass it); a ScaledObject says
    nothing about running replicas, so ``ready`` is unknown.
    """

    def describe(self) -> str:
        return f"scaledobject {self.ref.namespace}/{self.ref.name} floor"

    async def get(self, limit_s: float) -> Any:
        return await self.objects.get_namespaced_custom_object(
            *self.ref.path_args(), _request_timeout=limit_s
        )

    async def patch(self, body: JsonObj, limit_s: float) -> Any:
        # Typed loosely: the generated signature does not declare its underscore options.
        send: Callable[..., Awaitable[Any]] = self.objects.patch_namespaced_custom_object
        return await send(
            *self.ref.path_args(), body, _content_type=MERGE_PATCH, _request_timeout=limit_s
        )

    def capacity(self, obj: JsonObj) -> Capacity:
        spec = obj.get("spec") or {}
        what = self.describe()
        return Capacity(
            desired=whole(
                spec.get("minReplicaCount"), f"{what} minReplicaCount", default=KEDA_MIN_DEFAULT
            ),
            ready=None,
            min_size=None,
            max_size=whole(
                spec.get("maxReplicaCount"), f"{what} maxReplicaCount", default=KEDA_MAX_DEFAULT
            ),
        )

    def write_bounds(self, capacity: Capacity) -> tuple[int | None, int | None]:
        # KEDA accepts 0 (scale to zero when idle); the target's min_units keeps it higher.
        return KEDA_MIN_DEFAULT, capacity.max_size

    def change(self, applied: int) -> JsonObj:
        return {"spec": {"minReplicaCount": applied}}


async def keda_scaled_object(api_client: client.ApiClient, namespace: str, hpa: str) -> str | None:
    """The name of the ScaledObject that owns HPA ``hpa``, if KEDA owns it.

    KEDA sets itself as the HPA's controller owner; its ``scaledobject.keda.sh/name`` label
    is the fallback for an HPA whose owner references were stripped (a backup restored).
    """
    what = f"read horizontalpodautoscaler {namespace}/{hpa}"
    try:
        found = await client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(
            hpa, namespace
        )
    except KUBE_ERRORS as error:
        raise map_api_error(error, what) from error
    meta = found.metadata
    for owner in meta.owner_references or []:
        if owner.kind == "ScaledObject" and owner.api_version.startswith(f"{KEDA_GROUP}/"):
            return str(owner.name)
    label = (meta.labels or {}).get(KEDA_NAME_LABEL)
    return str(label) if label else None
