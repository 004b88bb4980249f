"""Scale a Deployment or StatefulSet through its ``/scale`` subresource.

The scale subresource needs the narrowest RBAC (get/patch on ``deployments/scale``) and carries
a resourceVersion, so a write made on a stale read fails with 409 instead of silently undoing
someone else's change. ``ready`` is the subresource's ``status.replicas`` (pods the controller
has created), read in the same call; the workload's readyReplicas would need a second read and
wider RBAC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from daemon.actuators.base import Capacity, ScaleResult
from daemon.actuators.retry import RetryPolicy, with_retries
from daemon.errors import (
    ActuatorError,
    ConflictError,
    PermanentActuatorError,
    TransientActuatorError,
)

log = logging.getLogger(__name__)

WorkloadKind = Literal["Deployment", "StatefulSet"]
T = TypeVar("T")

# A dict body would otherwise go out as strategic-merge-patch; merge-patch is the standard
# JSON form every API server and proxy understands the same way.
MERGE_PATCH = "application/merge-patch+json"


async def kube_api_client(kubeconfig: str | None, in_cluster: bool) -> client.ApiClient:
    """An ApiClient from the pod's service account, or else from a kubeconfig file.

    Each call gets its own Configuration, so clients for different clusters never share the
    library's global default. A client is costly (it loads the system CA store into its own
    SSL context, 0.84 MB) and pools its connections: share one per cluster between actuators,
    floors and event recorders, and close it once (the daemon's ``ClientPool`` does).
    """
    configuration = client.Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
    except (ConfigException, OSError) as error:
        where = "in-cluster service account" if in_cluster else (kubeconfig or "~/.kube/config")
        raise PermanentActuatorError(
            f"cannot load Kubernetes config from {where}: {error}"
        ) from error
    return client.ApiClient(configuration=configuration)


def map_api_error(error: BaseException, what: str) -> ActuatorError:
    """The project's error for a failed API call, chosen by what the caller should do."""
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        detail = f"{what}: HTTP {status} {_status_message(error)}"
        if status == 409:
            return ConflictError(detail)
        if status == 429 or status >= 500 or status == 0:
            return TransientActuatorError(detail)
        return PermanentActuatorError(detail)
    if isinstance(error, TimeoutError):
        return TransientActuatorError(f"{what}: timed out")
    return TransientActuatorError(f"{what}: {type(error).__name__}: {error}")


def _status_message(error: ApiException) -> str:
    """The server's ``Status.message`` if the body is one, else the HTTP reason (short logs)."""
    body: Any = error.body
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        message = None
    return str(message or error.reason or "")


class KubernetesScaleActuator:
    """Reads and writes ``spec.replicas`` of one Deployment or StatefulSet."""

    def __init__(
        self,
        api_client: client.ApiClient,
        kind: WorkloadKind,
        namespace: str,
        name: str,
        *,
        retry: RetryPolicy | None = None,
        conflict_attempts: int = 3,
        request_timeout: float = 10.0,
        close_client: bool = False,
    ) -> None:
        """``close_client``: whether ``close()`` also closes ``api_client``; leave it false when
        several actuators share one client."""
        if kind not in ("Deployment", "StatefulSet"):
            raise ValueError(f"unsupported workload kind {kind!r}")
        if conflict_attempts < 1:
            raise ValueError("conflict_attempts must be at least 1")
        self.kind: WorkloadKind = kind
        self.namespace = namespace
        self.name = name
        self._client = api_client
        self._apps = client.AppsV1Api(api_client)
        self._retry = retry or RetryPolicy()
        self._conflict_attempts = conflict_attempts
        self._timeout = request_timeout
        self._close_client = close_client
        # Typed loosely: the generated client's signatures do not declare its underscore options.
        self._read_fn: Callable[..., Awaitable[Any]]
        self._patch_fn: Callable[..., Awaitable[Any]]
        if kind == "Deployment":
            self._read_fn = self._apps.read_namespaced_deployment_scale
            self._patch_fn = self._apps.patch_namespaced_deployment_scale
        else:
            self._read_fn = self._apps.read_namespaced_stateful_set_scale
            self._patch_fn = self._apps.patch_namespaced_stateful_set_scale

    def describe(self) -> str:
        return f"{self.kind.lower()} {self.namespace}/{self.name}"

    async def read(self) -> Capacity:
        scale = await self._read_scale()
        return Capacity(
            desired=_replicas(scale.spec),
            ready=_replicas(scale.status) if scale.status is not None else None,
            min_size=None,
            max_size=None,
        )

    async def scale(self, desired: int) -> ScaleResult:
        """Patch ``spec.replicas`` on the version just read; on 409 re-read and try again.

        A negative ``desired`` is sent as is: the API server refuses it (422), which surfaces
        as ``PermanentActuatorError`` rather than being quietly turned into zero.
        """
        attempt = 0
        while True:
            attempt += 1
            scale = await self._read_scale()
            previous = _replicas(scale.spec)
            if previous == desired:
                return ScaleResult(
                    written=False, previous=previous, requested=desired, applied=desired
                )
            body = {
                "metadata": {"resourceVersion": scale.metadata.resource_version},
                "spec": {"replicas": desired},
            }
            try:
                written = await self._patch_scale(body)
            except ConflictError:
                if attempt >= self._conflict_attempts:
                    raise
                log.info(
                    "%s changed while scaling; re-reading (attempt %d)", self.describe(), attempt
                )
                continue
            return ScaleResult(
                written=True, previous=previous, requested=desired, applied=_replicas(written.spec)
            )

    async def close(self) -> None:
        if self._close_client:
            await self._client.close()

    async def _read_scale(self) -> Any:
        return await self._call(
            lambda: self._read_fn(self.name, self.namespace, _request_timeout=self._timeout),
            "read",
        )

    async def _patch_scale(self, body: dict[str, Any]) -> Any:
        # A retry after a timeout resends the same resourceVersion: if the first try did land,
        # the server answers 409 and scale() re-reads, finding nothing left to do.
        return await self._call(
            lambda: self._patch_fn(
                self.name,
                self.namespace,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=self._timeout,
            ),
            "patch",
        )

    async def _call(self, request: Callable[[], Awaitable[T]], verb: str) -> T:
        what = f"{verb} {self.describe()} scale"

        async def mapped() -> T:
            try:
                return await request()
            except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as error:
                raise map_api_error(error, what) from error

        return await with_retries(mapped, self._retry, what=what)


def _replicas(part: Any) -> int:
    """``replicas`` of a scale spec or status; the API omits it when zero."""
    value = getattr(part, "replicas", None)
    return int(value) if value is not None else 0
