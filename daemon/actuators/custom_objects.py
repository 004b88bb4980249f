"""One number of a custom resource, read and merge-patched through ``CustomObjectsApi``.

Custom resources have no generated client classes: ``CustomObjectsApi`` reads and writes them
as plain JSON objects, by group, version, plural and name. Two kinds use it:

- :class:`ScalableActuator`: any object with a ``/scale`` subresource (an Argo Rollout, a
  CRD that declares ``subresources.scale``), resized exactly as a Deployment is through its
  own (:class:`~daemon.actuators.kubernetes.KubernetesScaleActuator`);
- :class:`~daemon.actuators.keda.KedaFloorActuator`: a KEDA ScaledObject's minReplicaCount.

The write discipline is the Deployment's, on its helpers (:class:`KubeRequests`, the write
guard, the shared throttle): read fresh, refuse if the number is not the one the decision was
made on, clamp to the object's own bounds, send nothing when nothing changes, and one merge
patch carrying the resourceVersion just read, so a writer that raced us gets a 409
(``ConflictError``) rather than overwriting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Unpack

from kubernetes_asyncio import client

from daemon.actuators.base import Capacity, ScaleResult, clamp
from daemon.actuators.kubernetes import MERGE_PATCH, KubeOptions, KubeWriter
from daemon.actuators.retry import check_expected
from daemon.errors import PermanentActuatorError

__all__ = ["CustomObjectRef", "CustomObjectSizeActuator", "ScalableActuator"]

JsonObj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CustomObjectRef:
    """Where a namespaced custom object lives in the API: ``/apis/{group}/{version}/...``."""

    group: str
    version: str
    plural: str
    namespace: str
    name: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def path_args(self) -> tuple[str, str, str, str, str]:
        """The positional arguments every ``*_namespaced_custom_object*`` method takes."""
        return self.group, self.version, self.namespace, self.plural, self.name


class CustomObjectSizeActuator(KubeWriter, ABC):
    """The read -> compare -> clamp -> skip-if-unchanged -> patch-once flow on a custom object.

    A subclass says how the object is read and patched, what its size and bounds are, and
    which fields a write sets.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        ref: CustomObjectRef,
        **options: Unpack[KubeOptions],
    ) -> None:
        self.ref = ref
        super().__init__(api_client, **options)
        self.objects = client.CustomObjectsApi(api_client)

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    async def get(self, limit_s: float) -> Any:
        """One GET of the object (or its subresource) the size is read from."""

    @abstractmethod
    async def patch(self, body: JsonObj, limit_s: float) -> Any:
        """One merge patch of ``body`` on what ``get`` reads."""

    @abstractmethod
    def capacity(self, obj: JsonObj) -> Capacity:
        """The size and bounds an answer of ``get`` (or of ``patch``) shows."""

    @abstractmethod
    def change(self, applied: int) -> JsonObj:
        """The fields a write of ``applied`` sets (merged with the resourceVersion)."""

    def write_bounds(self, capacity: Capacity) -> tuple[int | None, int | None]:
        """The bounds a write is clamped to: the object's own, by default."""
        return capacity.min_size, capacity.max_size

    async def read(self) -> Capacity:
        return self.capacity(await self._read())

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Patch the size once, on the version just read, if that read still shows
        ``expected``; a 409 is a ``ConflictError`` (no re-read, no second PATCH)."""
        self._refuse_early(deadline)
        obj = await self._read()
        current = self.capacity(obj)
        check_expected(self.describe(), expected, current.desired)
        applied = clamp(desired, *self.write_bounds(current), what=self.describe())
        if applied == current.desired:
            return ScaleResult(False, current.desired, desired, applied)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if not version:
            # Without it the patch would apply whatever changed since the read.
            raise PermanentActuatorError(f"{self.describe()}: the API sent no resourceVersion")
        body = {"metadata": {"resourceVersion": version}, **self.change(applied)}
        written = await self._requests.write(
            lambda timeout: self.patch(body, timeout),
            f"patch {self.describe()}",
            self._guard,
            deadline,
        )
        return ScaleResult(True, current.desired, desired, self._applied(written, applied))

    def _applied(self, written: Any, sent: int) -> int:
        """The size the server stored, from the patch's answer; what was sent if unreadable."""
        try:
            return self.capacity(written).desired if isinstance(written, dict) else sent
        except PermanentActuatorError:
            return sent

    async def _read(self) -> JsonObj:
        obj = await self._requests.read(self.get, f"read {self.describe()}")
        if not isinstance(obj, dict):
            raise PermanentActuatorError(f"{self.describe()}: the API sent {type(obj).__name__}")
        return obj


def whole(value: Any, what: str, *, default: int | None = None) -> int:
    """A whole number field; ``default`` where the API omits it."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentActuatorError(f"{what}: not a whole number: {value!r}")
    return value


class ScalableActuator(CustomObjectSizeActuator):
    """Reads and writes ``spec.replicas`` of any object's ``/scale`` subresource.

    The subresource answers an ``autoscaling/v1`` Scale whatever the object's own schema
    (the CRD's ``specReplicasPath`` maps it), so one actuator serves Argo Rollouts and every
    custom resource that declares a scale subresource. ``ready`` is the Scale's
    ``status.replicas``; a Scale carries no bounds.
    """

    def describe(self) -> str:
        ref = self.ref
        return f"{ref.plural}.{ref.group} {ref.namespace}/{ref.name}"

    async def get(self, limit_s: float) -> Any:
        return await self.objects.get_namespaced_custom_object_scale(
            *self.ref.path_args(), _request_timeout=limit_s
        )

    async def patch(self, body: JsonObj, limit_s: float) -> Any:
        # Typed loosely: the generated signature does not declare its underscore options.
        send: Callable[..., Awaitable[Any]] = self.objects.patch_namespaced_custom_object_scale
        return await send(
            *self.ref.path_args(), body, _content_type=MERGE_PATCH, _request_timeout=limit_s
        )

    def capacity(self, obj: JsonObj) -> Capacity:
        spec = obj.get("spec") or {}
        status = obj.get("status")
        # The API omits replicas when zero.
        return Capacity(
            desired=whole(spec.get("replicas"), f"{self.describe()} spec.replicas", default=0),
            ready=(
                whole(status.get("replicas"), f"{self.describe()} status.replicas", default=0)
                if isinstance(status, dict)
                else None
            ),
            min_size=None,
            max_size=None,
        )

    def change(self, applied: int) -> JsonObj:
        # A negative size is sent as is: the API server refuses it (422, a permanent error)
        # rather than it being quietly turned into zero.
        return {"spec": {"replicas": applied}}
