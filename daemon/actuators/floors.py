"""Floor actuators: write the *minimum* of a reactive autoscaler, not the size itself.

With ``act_via: hpa-floor``, ``asg-floor`` or ``nodegroup-floor`` the forecast becomes the
lower bound of the HPA, Auto Scaling group or EKS node group, and that autoscaler keeps
reacting above it: unforeseen load is still caught, and nothing fights over one number.
Each class implements ``Actuator`` with the floor as ``Capacity.desired``, so the reconciler
uses them unchanged; ``max_size`` is the autoscaler's maximum (the floor cannot pass it).
The HPA's is here; the AWS ones are in :mod:`daemon.actuators.aws_floors`, so that a
Kubernetes target does not load the AWS SDK.

``find_owning_hpa`` lets the runtime refuse ``act_via: replicas`` on a workload an HPA owns:
writing the replica count under an HPA only flaps (each undoes the other's write).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, Unpack

from kubernetes_asyncio import client

from daemon.actuators.base import Capacity, ScaleResult, clamp
from daemon.actuators.kubernetes import (
    KUBE_ERRORS,
    MERGE_PATCH,
    KubeOptions,
    KubeWriter,
    map_api_error,
)
from daemon.actuators.retry import check_expected

__all__ = ["HpaFloorActuator", "find_owning_hpa"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The API server refuses minReplicas below 1 (unless the HPAScaleToZero gate is on).
HPA_MIN_FLOOR = 1


class HpaFloorActuator(KubeWriter):
    """Reads and writes ``spec.minReplicas`` of one autoscaling/v2 HorizontalPodAutoscaler.

    The workload's own scale subresource is never written: the HPA sizes the workload, at
    least to the floor written here. ``ready`` is the HPA's ``status.currentReplicas``. The
    write is the same as the scale subresource's: once per call, fenced, on the
    resourceVersion just read (see :mod:`daemon.actuators.kubernetes`).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        hpa_name: str,
        **options: Unpack[KubeOptions],
    ) -> None:
        self.namespace = namespace
        self.name = hpa_name
        super().__init__(api_client, **options)
        self._hpas = client.AutoscalingV2Api(api_client)
        # Typed loosely: the generated signature does not declare its underscore options.
        self._patch_fn: Callable[..., Awaitable[Any]] = (
            self._hpas.patch_namespaced_horizontal_pod_autoscaler
        )

    def describe(self) -> str:
        return f"hpa {self.namespace}/{self.name} floor"

    async def read(self) -> Capacity:
        return _hpa_capacity(await self._read())

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Patch ``minReplicas`` once, within [1, maxReplicas], on the version just read if
        it still shows the floor ``expected``; a 409 (the HPA controller updates the object
        too) is a ``ConflictError`` for the caller to re-plan on."""
        self._refuse_early(deadline)
        hpa = await self._read()
        current = _hpa_capacity(hpa)
        check_expected(self.describe(), expected, current.desired)
        applied = clamp(desired, HPA_MIN_FLOOR, current.max_size, what=self.describe())
        if applied == current.desired:
            return ScaleResult(False, current.desired, desired, applied)
        body = {
            "metadata": {"resourceVersion": hpa.metadata.resource_version},
            "spec": {"minReplicas": applied},
        }
        await self._requests.write(
            lambda timeout: self._patch_fn(
                self.name,
                self.namespace,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=timeout,
            ),
            f"patch {self.describe()}",
            self._guard,
            deadline,
        )
        return ScaleResult(True, current.desired, desired, applied)

    async def _read(self) -> Any:
        return await self._requests.read(
            lambda timeout: self._hpas.read_namespaced_horizontal_pod_autoscaler(
                self.name, self.namespace, _request_timeout=timeout
            ),
            f"read {self.describe()}",
        )


def _hpa_capacity(hpa: Any) -> Capacity:
    spec, status = hpa.spec, hpa.status
    current = getattr(status, "current_replicas", None) if status is not None else None
    return Capacity(
        # The API server defaults an omitted minReplicas to 1.
        desired=int(spec.min_replicas) if spec.min_replicas is not None else HPA_MIN_FLOOR,
        ready=int(current) if current is not None else None,
        min_size=None,
        max_size=int(spec.max_replicas),
    )


async def find_owning_hpa(
    api_client: client.ApiClient, namespace: str, kind: str, name: str
) -> str | None:
    """The name of the HPA whose ``scaleTargetRef`` is the ``kind``/``name`` workload, if any.

    Several HPAs on one workload is a misconfiguration the HPA controller itself refuses to
    act on; the first by name is returned so the caller can name one in its message.
    """
    what = f"list horizontalpodautoscalers in {namespace}"
    try:
        answer = await client.AutoscalingV2Api(
            api_client
        ).list_namespaced_horizontal_pod_autoscaler(namespace)
    except KUBE_ERRORS as error:
        raise map_api_error(error, what) from error
    owners = sorted(
        hpa.metadata.name
        for hpa in answer.items or []
        if hpa.spec is not None
        and hpa.spec.scale_target_ref.kind == kind
        and hpa.spec.scale_target_ref.name == name
    )
    return owners[0] if owners else None
