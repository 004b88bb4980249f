"""Scale a Deployment or StatefulSet through its ``/scale`` subresource.

The scale subresource needs the narrowest RBAC (get/patch on ``deployments/scale``) and carries
a resourceVersion, so a write made on a stale read fails with 409 instead of silently undoing
someone else's change. ``ready`` is the subresource's ``status.replicas`` (pods the controller
has created), read in the same call; the workload's readyReplicas would need a second read and
wider RBAC.

A write is fenced and made at most once per ``scale()`` call (see
:mod:`daemon.actuators.retry`): the size is read fresh, compared with the size the caller's
decision was made on, and patched with that read's resourceVersion as the precondition, so a
writer that overlaps another (a frozen leader resuming after losing its Lease) gets a 409 and
re-plans instead of overwriting. Every request goes through the client's shared
:class:`~daemon.ratelimit_client.ApiThrottle` (token bucket, Retry-After).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from daemon.actuators.base import Capacity, ScaleResult
from daemon.actuators.retry import (
    RetryPolicy,
    WriteGuard,
    check_expected,
    throttled_error,
    with_retries,
)
from daemon.errors import (
    ActuatorError,
    ConflictError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)
from daemon.ratelimit_client import ApiThrottle, Throttled, parse_retry_after, throttle_for

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


KUBE_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)


def map_api_error(
    error: BaseException, what: str, *, timeout: float | None = None
) -> ActuatorError:
    """The project's error for a failed API call, chosen by what the caller should do.

    ``timeout`` (seconds) is named in the message of a timed-out request.
    """
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        detail = f"{what}: HTTP {status} {_status_message(error)}".rstrip()
        if status == 409:
            return ConflictError(detail)
        if status == 429 or status >= 500 or status == 0:
            return TransientActuatorError(detail)
        return PermanentActuatorError(detail)
    if isinstance(error, TimeoutError):
        after = f" after {timeout:g}s" if timeout is not None else ""
        return TransientActuatorError(f"{what}: timed out{after}")
    return TransientActuatorError(f"{what}: {type(error).__name__}: {error}".rstrip(": "))


def retry_after_of(error: ApiException) -> float | None:
    """The seconds of an answer's ``Retry-After`` header, if it has a readable one."""
    headers: Any = error.headers
    if not headers:
        return None
    try:
        value = headers.get("Retry-After")
    except AttributeError:
        return None
    return parse_retry_after(value) if isinstance(value, str) else None


def _status_message(error: ApiException) -> str:
    """The server's ``Status.message`` if the body is one, else the HTTP reason (short logs)."""
    body: Any = error.body
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        message = None
    return str(message or error.reason or "")


DEFAULT_REQUEST_TIMEOUT_S = 10.0
"""Seconds a single request may take unless the target's settings say otherwise."""


class KubeRequests:
    """Reads (retried) and writes (once, fenced) on one shared ApiClient, through its throttle.

    A 429, or a 503 with ``Retry-After``, closes the client's gate for that kind of request
    (read or write) for every target on the client; ``ThrottledError`` then refuses requests
    without sending them until it opens again.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        retry: RetryPolicy,
        request_timeout: float,
        throttle: ApiThrottle | None = None,
    ) -> None:
        self.throttle = throttle or throttle_for(api_client)
        self._retry = retry
        self.timeout = request_timeout

    def ensure_writable(self, what: str) -> None:
        """``ThrottledError`` at once if the server told this client to hold its writes."""
        try:
            self.throttle.check("write")
        except Throttled as refused:
            raise throttled_error(what, refused) from refused

    async def read(self, request: Callable[[float], Awaitable[T]], what: str) -> T:
        """``request(timeout)`` once a token is free (waiting at most one request timeout),
        retried with backoff on transient errors other than throttling."""

        async def once() -> T:
            try:
                await self.throttle.admit("read", max_wait=self.timeout)
            except Throttled as refused:
                raise throttled_error(what, refused) from refused
            return await self._send("read", request, what, self.timeout)

        return await with_retries(once, self._retry, what=what)

    async def write(
        self,
        request: Callable[[float], Awaitable[T]],
        what: str,
        guard: WriteGuard,
        deadline: float | None,
    ) -> T:
        """``request(timeout)`` exactly once, or not at all: not after ``deadline``
        (``FencedError``), not while throttled; a failure feeds the target's backoff."""
        try:
            await self.throttle.admit("write", deadline=deadline, max_wait=self.timeout)
        except Throttled as refused:
            raise throttled_error(what, refused) from refused
        # Checked again after the wait for a token: immediately before the request.
        timeout = guard.fence(deadline, self.timeout)
        try:
            result = await self._send("write", request, what, timeout)
        except ActuatorError as error:
            guard.failed(error)
            raise
        guard.succeeded()
        return result

    async def _send(
        self, kind: str, request: Callable[[float], Awaitable[T]], what: str, limit_s: float
    ) -> T:
        try:
            result = await request(limit_s)
        except KUBE_ERRORS as error:
            raise self._mapped(kind, error, what, limit_s) from error
        self.throttle.succeeded(kind)
        return result

    def _mapped(self, kind: str, error: BaseException, what: str, timeout: float) -> ActuatorError:
        mapped = map_api_error(error, what, timeout=timeout)
        if isinstance(error, ApiException):
            status = int(error.status or 0)
            retry_after = retry_after_of(error)
            if status == 429 or (status == 503 and retry_after is not None):
                seconds = self.throttle.throttled(kind, retry_after, f"HTTP {status} on {what}")
                return ThrottledError(f"{mapped}; throttled: retry after {seconds:.3g}s")
        return mapped


class KubeOptions(TypedDict, total=False):
    """How a Kubernetes actuator uses its client: every ``KubeWriter`` takes these.

    ``close_client``: whether ``close()`` also closes the client; leave it false when several
    actuators share one. ``throttle`` defaults to the client's shared one; ``write_guard`` to
    a fresh one for this target."""

    retry: RetryPolicy | None
    request_timeout: float
    close_client: bool
    throttle: ApiThrottle | None
    write_guard: WriteGuard | None


class KubeWriter:
    """What every Kubernetes actuator shares: its requests on one client (reads retried,
    writes once and fenced), its target's write guard, and whether ``close()`` closes the
    client. A subclass sets what ``describe()`` reads before calling ``__init__``."""

    def __init__(self, api_client: client.ApiClient, **options: Unpack[KubeOptions]) -> None:
        self._client = api_client
        self._requests = KubeRequests(
            api_client,
            retry=options.get("retry") or RetryPolicy(),
            request_timeout=options.get("request_timeout", DEFAULT_REQUEST_TIMEOUT_S),
            throttle=options.get("throttle"),
        )
        self._guard = options.get("write_guard") or WriteGuard(self.describe())
        self._close_client = options.get("close_client", False)

    def describe(self) -> str:
        raise NotImplementedError

    def _refuse_early(self, deadline: float | None) -> None:
        """Every refusal that needs no request, before a read is spent on a write that could
        not be sent: a deferred backoff, a throttled client, a passed write deadline."""
        self._guard.check_deferred()
        self._requests.ensure_writable(self.describe())
        self._guard.fence(deadline, self._requests.timeout)

    async def close(self) -> None:
        if self._close_client:
            await self._client.close()


class KubernetesScaleActuator(KubeWriter):
    """Reads and writes ``spec.replicas`` of one Deployment or StatefulSet."""

    def __init__(
        self,
        api_client: client.ApiClient,
        kind: WorkloadKind,
        namespace: str,
        name: str,
        **options: Unpack[KubeOptions],
    ) -> None:
        if kind not in ("Deployment", "StatefulSet"):
            raise ValueError(f"unsupported workload kind {kind!r}")
        self.kind: WorkloadKind = kind
        self.namespace = namespace
        self.name = name
        super().__init__(api_client, **options)
        self._apps = client.AppsV1Api(api_client)
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

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Patch ``spec.replicas`` once, on the version just read, if that read still shows
        ``expected``; a 409 is a ``ConflictError`` (no re-read, no second PATCH).

        A negative ``desired`` is sent as is: the API server refuses it (422), which surfaces
        as ``PermanentActuatorError`` rather than being quietly turned into zero.
        """
        self._refuse_early(deadline)
        scale = await self._read_scale()
        previous = _replicas(scale.spec)
        check_expected(self.describe(), expected, previous)
        if previous == desired:
            return ScaleResult(written=False, previous=previous, requested=desired, applied=desired)
        body = {
            "metadata": {"resourceVersion": scale.metadata.resource_version},
            "spec": {"replicas": desired},
        }
        written = await self._requests.write(
            lambda timeout: self._patch_fn(
                self.name,
                self.namespace,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=timeout,
            ),
            f"patch {self.describe()} scale",
            self._guard,
            deadline,
        )
        return ScaleResult(
            written=True, previous=previous, requested=desired, applied=_replicas(written.spec)
        )

    async def _read_scale(self) -> Any:
        return await self._requests.read(
            lambda timeout: self._read_fn(self.name, self.namespace, _request_timeout=timeout),
            f"read {self.describe()} scale",
        )


def _replicas(part: Any) -> int:
    """``replicas`` of a scale spec or status; the API omits it when zero."""
    value = getattr(part, "replicas", None)
    return int(value) if value is not None else 0
