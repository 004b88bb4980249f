"""A fake Kubernetes API server on aiohttp, for the real ``kubernetes-asyncio`` client.

No real API server can run on the test machines (see /work/shared/TESTING.md), so this one
honours the semantics elasticd relies on and nothing more:

- apps/v1 Deployments and StatefulSets: get, list, create (POST, for seeding), replace, patch,
  and the ``/scale`` subresource (GET, PATCH as merge-patch or strategic-merge-patch, PUT);
- autoscaling/v2 HorizontalPodAutoscalers, coordination.k8s.io/v1 Leases, core/v1 Events;
- two custom resources: argoproj.io/v1alpha1 Rollouts, with a ``/scale`` subresource as their
  CRD declares (read and written through ``CustomObjectsApi``), and keda.sh/v1alpha1
  ScaledObjects, with KEDA's operator reduced to what elasticd meets: an HPA a ScaledObject
  owns (``ownerReferences``) follows its min/maxReplicaCount, and an edit to that HPA's
  bounds is undone;
- ``metadata.resourceVersion`` is one cluster-wide counter bumped on every change, a write that
  carries a stale one gets 409, a no-op write changes nothing (as the real server does);
- negative replicas get 422, unknown objects 404, and every error is a ``Status`` body.

Strategic-merge-patch is applied as a JSON merge patch: the objects the daemon patches have no
lists, where the two differ. JSON patch, watches and label selectors are not implemented.

Tests observe it through ``writes`` (every write request, accepted or not) and ``requests``
(every API request, reads included, with its arrival time) and steer it with ``inject_fault``
(a status, a delay that holds the request before it is processed, response headers such as
``Retry-After``). Run standalone for subprocess tests::

    python -m tests.support.fake_kube --port 0 [--seed-file objects.yaml]

It prints ``fake-kube listening on http://127.0.0.1:PORT`` once ready; ``GET /_fake/writes``
returns the write log, ``GET /_fake/requests`` the request log, ``POST /_fake/faults`` injects
faults, ``GET /_fake/faults`` says which have fired, and ``POST /_fake/update`` changes an
object as another writer would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import math
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

JsonObj = dict[str, Any]

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MERGE_PATCH_TYPES = frozenset(
    {"application/merge-patch+json", "application/strategic-merge-patch+json"}
)
REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the URL space and what it is called."""

    api_version: str
    plural: str
    kind: str
    scalable: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def qualified(self) -> str:
        """``deployments.apps``: how the real server names a resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCE_TYPES = (
    ResourceType("apps/v1", "deployments", "Deployment", scalable=True),
    ResourceType("apps/v1", "statefulsets", "StatefulSet", scalable=True),
    ResourceType("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ResourceType("coordination.k8s.io/v1", "leases", "Lease"),
    ResourceType("v1", "events", "Event"),
    ResourceType("argoproj.io/v1alpha1", "rollouts", "Rollout", scalable=True),
    ResourceType("keda.sh/v1alpha1", "scaledobjects", "ScaledObject"),
)
# What KEDA assumes when a ScaledObject omits its bounds.
KEDA_DEFAULT_MIN, KEDA_DEFAULT_MAX = 0, 100
BY_PATH = {(r.api_version, r.plural): r for r in RESOURCE_TYPES}
BY_KIND = {(r.api_version, r.kind): r for r in RESOURCE_TYPES}


@dataclass(frozen=True)
class WriteRecord:
    """One write request as the server saw it; ``status`` tells accepted from refused."""

    time: float
    verb: str
    path: str
    body: Any
    status: int
    content_type: str = ""
    # When the request arrived (``time`` is when it was answered, after any injected delay).
    arrived: float = 0.0
    # The bearer token it carried: which client sent it.
    client: str = ""


@dataclass(frozen=True)
class RequestRecord:
    """Any API request (reads too): when it arrived, what and when it was answered."""

    arrived: float
    verb: str
    path: str
    status: int
    time: float = 0.0
    client: str = ""


@dataclass
class _Fault:
    method: str | None
    status: int | None
    remaining: int
    delay: float
    headers: dict[str, str] = field(default_factory=dict)
    # Only requests from this client (bearer token), if set.
    client: str | None = None
    # Only a request that follows the same client's previous one on the path within this many
    # seconds, if set: e.g. the fresh read an actuator makes just before writing, not the
    # loop's read a tick earlier.
    within: float | None = None
    # Set when the fault first fires, so a test can act while a delayed request is held.
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    # How many requests it has held or answered so far.
    hits: int = 0


class KubeError(Exception):
    """Raised inside handlers; turned into a ``Status`` response at one place."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.headers = headers or {}


def status_body(code: int, message: str, reason: str | None = None) -> JsonObj:
    """A ``Status`` object as the real server sends for a failed request."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _default_workload(obj: JsonObj) -> None:
    """Fill what the API server defaults, so the client (which validates) accepts the object."""
    name = obj["metadata"]["name"]
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    labels = spec.setdefault("selector", {}).setdefault("matchLabels", {"app": name})
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("labels", dict(labels))
    template.setdefault("spec", {}).setdefault(
        "containers", [{"name": "app", "image": "registry.invalid/app:1"}]
    )
    obj.setdefault("status", {})


def _selector_string(obj: JsonObj) -> str:
    labels = obj.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _check_replicas(value: Any, field_path: str, kind: str, name: str, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise KubeError(
            422,
            f'{kind} "{name}" is invalid: {field_path}: Invalid value: {value!r}: '
            f"must be greater than or equal to {minimum}",
        )


class FakeKube:
    """The fake API server's state and HTTP app; start it with ``start()`` inside a loop."""

    def __init__(self, *, instant_rollout: bool = True) -> None:
        # Keyed by (resource type, namespace, name); values are whole stored objects.
        self.objects: dict[tuple[ResourceType, str, str], JsonObj] = {}
        self.writes: list[WriteRecord] = []
        self.requests: list[RequestRecord] = []
        # When true a replica change is "rolled out" at once (status follows spec), which is
        # what most tests want; set false to watch a workload that is not ready yet.
        self.instant_rollout = instant_rollout
        self._resource_version = 0
        self._faults: dict[str, list[_Fault]] = {}
        self._last_arrival: dict[tuple[str, str], float] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    # ----- in-process API for tests -------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 picks a free port) and return the base URL."""
        # Binding the socket ourselves is how we learn the port the OS picked.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def seed(self, obj: JsonObj) -> JsonObj:
        """Store an object as if created through the API, without logging a client write."""
        rtype = BY_KIND.get((obj.get("apiVersion", ""), obj.get("kind", "")))
        if rtype is None:
            raise ValueError(f"fake-kube does not serve {obj.get('apiVersion')}/{obj.get('kind')}")
        namespace = obj.get("metadata", {}).get("namespace", "default")
        return copy.deepcopy(self._create(rtype, namespace, copy.deepcopy(obj)))

    def get(self, kind: str, namespace: str, name: str) -> JsonObj:
        """A copy of a stored object, looked up by kind (``"Deployment"``, ``"Lease"``...)."""
        return copy.deepcopy(self.objects[(self._type_of_kind(kind), namespace, name)])

    def update(self, kind: str, namespace: str, name: str, patch: JsonObj) -> JsonObj:
        """Merge ``patch`` into an object as another writer would (bumps resourceVersion).

        Not logged as a client write: it stands for a controller or a person elsewhere.
        """
        key = (self._type_of_kind(kind), namespace, name)
        self.objects[key] = self._commit(self.objects[key], merge_patch(self.objects[key], patch))
        self._keda_sync(namespace)
        return copy.deepcopy(self.objects[key])

    def inject_fault(
        self,
        path: str,
        status: int | None = 500,
        *,
        count: int = 1,
        method: str | None = None,
        delay: float = 0.0,
        retry_after: float | str | None = None,
        headers: dict[str, str] | None = None,
        client: str | None = None,
        within: float | None = None,
    ) -> asyncio.Event:
        """Make the next ``count`` requests on exactly ``path`` (and ``method``, if given)
        wait ``delay`` seconds and then answer ``status`` (or proceed if ``status`` is None),
        with ``headers`` (``retry_after`` is short for a ``Retry-After`` header: seconds or
        an HTTP date). The delay holds the request *before* it is processed, as a slow
        network or a loaded server would: a precondition is checked when it is released.
        ``client`` limits it to one bearer token; ``within`` to a request that comes at most
        that many seconds after the same client's previous request on ``path``.

        Returns an event set when the fault first fires.
        """
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = (
                f"{retry_after:g}" if isinstance(retry_after, int | float) else retry_after
            )
        fault = _Fault(
            method.upper() if method else None, status, count, delay, extra, client, within
        )
        self._faults.setdefault(path, []).append(fault)
        return fault.fired

    def pending_faults(self, path: str) -> int:
        """How many injected faults on ``path`` have not fired yet."""
        return sum(f.remaining for f in self._faults.get(path, []))

    def fired_faults(self, path: str) -> int:
        """How many requests on ``path`` injected faults have held or answered so far."""
        return sum(f.hits for f in self._faults.get(path, []))

    def clear_faults(self) -> None:
        self._faults.clear()

    def writes_to(self, path: str, *, verb: str | None = None) -> list[WriteRecord]:
        return [w for w in self.writes if w.path == path and (verb is None or w.verb == verb)]

    def requests_to(self, path: str, *, verb: str | None = None) -> list[RequestRecord]:
        """Every request on exactly ``path`` (reads too), optionally of one ``verb``."""
        return [r for r in self.requests if r.path == path and (verb is None or r.verb == verb)]

    def request_counts(self) -> dict[tuple[str, str], int]:
        """How many requests each (verb, path) received."""
        counts: dict[tuple[str, str], int] = {}
        for record in self.requests:
            key = (record.verb, record.path)
            counts[key] = counts.get(key, 0) + 1
        return counts

    # ----- storage --------------------------------------------------------------------------

    @staticmethod
    def _type_of_kind(kind: str) -> ResourceType:
        for rtype in RESOURCE_TYPES:
            if rtype.kind == kind:
                return rtype
        raise KeyError(kind)

    def _next_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _commit(self, old: JsonObj | None, new: JsonObj) -> JsonObj:
        """Store-side bookkeeping of a write; a write that changes nothing keeps its version."""
        if old is not None and new == old:
            return old
        meta = new.setdefault("metadata", {})
        if old is not None:
            # Identity fields are the server's, whatever the client sent.
            for key in ("uid", "creationTimestamp", "namespace", "name"):
                meta[key] = old["metadata"][key]
            if new.get("spec") != old.get("spec"):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
            else:
                meta["generation"] = old["metadata"].get("generation", 1)
        meta["resourceVersion"] = self._next_version()
        # Only a spec change rolls out, so a status set through ``update()`` stays as set.
        if self.instant_rollout and (old is None or new.get("spec") != old.get("spec")):
            self._roll_out(new)
        return new

    @staticmethod
    def _roll_out(obj: JsonObj) -> None:
        replicas = obj.get("spec", {}).get("replicas")
        if obj.get("kind") not in ("Deployment", "StatefulSet", "Rollout") or replicas is None:
            return
        status = obj.setdefault("status", {})
        for key in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"):
            status[key] = replicas
        status["observedGeneration"] = obj["metadata"].get("generation", 1)

    def _create(self, rtype: ResourceType, namespace: str, obj: JsonObj) -> JsonObj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not name:
            raise KubeError(422, f"{rtype.kind} is invalid: metadata.name: Required value")
        if meta.get("namespace", namespace) != namespace:
            raise KubeError(400, "the namespace of the object does not match the request")
        key = (rtype, namespace, name)
        if key in self.objects:
            raise KubeError(409, f'{rtype.qualified} "{name}" already exists', "AlreadyExists")
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now_rfc3339(),
            generation=1,
        )
        meta.pop("resourceVersion", None)
        if rtype.scalable:
            _default_workload(obj)
        self._validate(rtype, obj)
        self.objects[key] = self._commit(None, obj)
        self._keda_sync(namespace)
        return self.objects[key]

    @staticmethod
    def _validate(rtype: ResourceType, obj: JsonObj) -> None:
        name = obj["metadata"]["name"]
        spec = obj.get("spec", {})
        if rtype.scalable:
            _check_replicas(spec.get("replicas"), "spec.replicas", rtype.kind, name)
        elif rtype.kind == "HorizontalPodAutoscaler":
            maximum = spec.get("maxReplicas")
            _check_replicas(maximum, "spec.maxReplicas", rtype.kind, name, minimum=1)
            minimum = spec.get("minReplicas", 1)
            _check_replicas(minimum, "spec.minReplicas", rtype.kind, name, minimum=1)
            if minimum > maximum:
                raise KubeError(
                    422,
                    f'HorizontalPodAutoscaler "{name}" is invalid: spec.maxReplicas: Invalid '
                    f"value: {maximum}: must be greater than or equal to `minReplicas`",
                )
        elif rtype.kind == "ScaledObject":
            minimum = spec.get("minReplicaCount", KEDA_DEFAULT_MIN)
            maximum = spec.get("maxReplicaCount", KEDA_DEFAULT_MAX)
            _check_replicas(minimum, "spec.minReplicaCount", rtype.kind, name)
            _check_replicas(maximum, "spec.maxReplicaCount", rtype.kind, name, minimum=1)
            if minimum > maximum:
                # KEDA's admission webhook refuses it.
                raise KubeError(
                    422,
                    f'ScaledObject "{name}" is invalid: MinReplicaCount={minimum} must be less '
                    f"than MaxReplicaCount={maximum}",
                )

    def _keda_sync(self, namespace: str) -> None:
        """KEDA's operator as elasticd meets it: every HPA a ScaledObject owns gets the
        ScaledObject's bounds (minReplicas at least 1: KEDA scales 0 <-> 1 itself)."""
        for (rtype, ns, name), scaled in list(self.objects.items()):
            if rtype.kind != "ScaledObject" or ns != namespace:
                continue
            spec = scaled.get("spec", {})
            bounds = {
                "minReplicas": max(1, spec.get("minReplicaCount", KEDA_DEFAULT_MIN)),
                "maxReplicas": spec.get("maxReplicaCount", KEDA_DEFAULT_MAX),
            }
            for key, hpa in list(self.objects.items()):
                owners = hpa["metadata"].get("ownerReferences") or []
                owned = any(
                    o.get("kind") == "ScaledObject" and o.get("name") == name for o in owners
                )
                if key[0].kind != "HorizontalPodAutoscaler" or key[1] != ns or not owned:
                    continue
                if any(hpa.get("spec", {}).get(k) != v for k, v in bounds.items()):
                    self.objects[key] = self._commit(hpa, merge_patch(hpa, {"spec": bounds}))

    def _existing(self, rtype: ResourceType, namespace: str, name: str) -> JsonObj:
        try:
            return self.objects[(rtype, namespace, name)]
        except KeyError:
            raise KubeError(404, f'{rtype.qualified} "{name}" not found') from None

    @staticmethod
    def _check_precondition(rtype: ResourceType, current: JsonObj, sent: JsonObj) -> None:
        """A write naming a resourceVersion only applies to exactly that version."""
        wanted = sent.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            name = current["metadata"]["name"]
            raise KubeError(
                409,
                f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
            )

    def _replace(self, rtype: ResourceType, namespace: str, name: str, new: JsonObj) -> JsonObj:
        current = self._existing(rtype, namespace, name)
        if new.get("metadata", {}).get("name", name) != name:
            raise KubeError(400, "the name of the object does not match the name on the URL")
        self._check_precondition(rtype, current, new)
        new = copy.deepcopy(new)
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        # A client's copy carries the version it read; the stored one must not keep it.
        new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        new["metadata"]["name"] = name
        if rtype.scalable:
            _default_workload(new)
        self._validate(rtype, new)
        stored = self._commit(current, new)
        self.objects[(rtype, namespace, name)] = stored
        self._keda_sync(namespace)
        return self.objects[(rtype, namespace, name)]

    def _scale(self, rtype: ResourceType, obj: JsonObj) -> JsonObj:
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: meta[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": obj["spec"]["replicas"]},
            "status": {
                "replicas": obj.get("status", {}).get("replicas", 0),
                "selector": _selector_string(obj),
            },
        }

    def _write_scale(
        self, rtype: ResourceType, namespace: str, name: str, new_scale: JsonObj
    ) -> JsonObj:
        current = self._existing(rtype, namespace, name)
        self._check_precondition(rtype, current, new_scale)
        replicas = new_scale.get("spec", {}).get("replicas")
        _check_replicas(replicas, "spec.replicas", "Scale.autoscaling", name)
        updated = copy.deepcopy(current)
        updated["spec"]["replicas"] = replicas
        stored = self._commit(current, updated)
        self.objects[(rtype, namespace, name)] = stored
        return self._scale(rtype, stored)

    # ----- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await self._control(request)
        if request.path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if request.path == "/version":
            return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"})
        body: Any = None
        code = 500
        arrived = time.time()
        client = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        gap = arrived - self._last_arrival.get((client, request.path), -math.inf)
        self._last_arrival[(client, request.path)] = arrived
        headers: dict[str, str] = {}
        try:
            if request.method in WRITE_VERBS and request.can_read_body:
                raw = await request.read()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                    raise KubeError(400, "request body is not valid JSON") from None
            await self._apply_fault(request, client, gap)
            code, payload = self._route(request, body)
        except KubeError as error:
            code, payload = error.code, status_body(error.code, error.message, error.reason)
            headers = error.headers
        except Exception as error:  # a bug in the fake still answers a Status, not HTML
            code, payload = 500, status_body(500, f"fake-kube failed: {error!r}")
        finally:
            self.requests.append(
                RequestRecord(arrived, request.method, request.path, code, time.time(), client)
            )
            if request.method in WRITE_VERBS:
                content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
                self.writes.append(
                    WriteRecord(
                        time.time(),
                        request.method,
                        request.path,
                        body,
                        code,
                        content_type,
                        arrived,
                        client,
                    )
                )
        return web.json_response(payload, status=code, headers=headers)

    async def _apply_fault(self, request: web.Request, client: str, gap: float) -> None:
        for fault in self._faults.get(request.path, []):
            if (
                fault.remaining > 0
                and fault.method in (None, request.method)
                and fault.client in (None, client)
                and (fault.within is None or gap <= fault.within)
            ):
                fault.remaining -= 1
                fault.hits += 1
                fault.fired.set()
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    raise KubeError(
                        fault.status, f"injected fault on {request.path}", headers=fault.headers
                    )
                return

    def _route(self, request: web.Request, body: Any) -> tuple[int, JsonObj]:
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            api_version, rest = "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise KubeError(404, f"the server could not find the requested resource {request.path}")
        namespace: str | None = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        rtype = BY_PATH.get((api_version, rest[0])) if rest else None
        if rtype is None or len(rest) > 3:
            raise KubeError(404, f"the server could not find the requested resource {request.path}")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (sub != "scale" or not rtype.scalable):
            raise KubeError(404, f"the server could not find the requested resource {request.path}")
        method = request.method
        if method in ("PUT", "PATCH", "POST") and not isinstance(body, dict):
            raise KubeError(400, "the request body must be a JSON object")
        if not isinstance(body, dict):
            body = None  # a DELETE's options are accepted and ignored
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in MERGE_PATCH_TYPES:
                raise KubeError(
                    415, f"the body of the request was in an unknown format: {content_type}"
                )
        if name is None:
            return self._collection(rtype, namespace, method, body)
        if namespace is None:
            raise KubeError(404, f"the server could not find the requested resource {request.path}")
        if sub == "scale":
            return self._scale_request(rtype, namespace, name, method, body)
        return self._object(rtype, namespace, name, method, body)

    def _collection(
        self, rtype: ResourceType, namespace: str | None, method: str, body: JsonObj | None
    ) -> tuple[int, JsonObj]:
        if method == "GET":
            items = [
                copy.deepcopy(obj)
                for (t, ns, _), obj in sorted(self.objects.items(), key=lambda kv: kv[0][1:])
                if t == rtype and namespace in (None, ns)
            ]
            return 200, {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": str(self._resource_version)},
                "items": items,
            }
        if method == "POST" and namespace is not None and body is not None:
            return 201, copy.deepcopy(self._create(rtype, namespace, copy.deepcopy(body)))
        raise KubeError(405, f"method {method} is not allowed here")

    def _object(
        self, rtype: ResourceType, namespace: str, name: str, method: str, body: JsonObj | None
    ) -> tuple[int, JsonObj]:
        if method == "GET":
            return 200, copy.deepcopy(self._existing(rtype, namespace, name))
        if method == "PUT" and body is not None:
            return 200, copy.deepcopy(self._replace(rtype, namespace, name, body))
        if method == "PATCH" and body is not None:
            # The merged object keeps the patch's resourceVersion, so _replace checks it.
            current = self._existing(rtype, namespace, name)
            return 200, copy.deepcopy(
                self._replace(rtype, namespace, name, merge_patch(current, body))
            )
        if method == "DELETE":
            self._existing(rtype, namespace, name)
            del self.objects[(rtype, namespace, name)]
            self._next_version()
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": rtype.group, "kind": rtype.plural},
            }
        raise KubeError(405, f"method {method} is not allowed here")

    def _scale_request(
        self, rtype: ResourceType, namespace: str, name: str, method: str, body: JsonObj | None
    ) -> tuple[int, JsonObj]:
        current = self._existing(rtype, namespace, name)
        if method == "GET":
            return 200, self._scale(rtype, current)
        if method == "PUT" and body is not None:
            return 200, self._write_scale(rtype, namespace, name, body)
        if method == "PATCH" and body is not None:
            # The precondition is the version named in the patch, not in the merged result.
            self._check_precondition(rtype, current, body)
            merged = merge_patch(self._scale(rtype, current), body)
            return 200, self._write_scale(rtype, namespace, name, merged)
        raise KubeError(405, f"method {method} is not allowed on a scale subresource")

    async def _control(self, request: web.Request) -> web.Response:
        if request.path == "/_fake/writes" and request.method == "GET":
            return web.json_response([asdict(w) for w in self.writes])
        if request.path == "/_fake/faults" and request.method == "POST":
            spec = await request.json()
            self.inject_fault(
                spec["path"],
                spec.get("status", 500),
                count=int(spec.get("count", 1)),
                method=spec.get("method"),
                delay=float(spec.get("delay", 0.0)),
                retry_after=spec.get("retry_after"),
                headers=spec.get("headers"),
                client=spec.get("client"),
                within=spec.get("within"),
            )
            return web.json_response({"ok": True})
        if request.path == "/_fake/faults" and request.method == "GET":
            return web.json_response(
                {
                    path: {"pending": self.pending_faults(path), "fired": self.fired_faults(path)}
                    for path in self._faults
                }
            )
        if request.path == "/_fake/requests" and request.method == "GET":
            return web.json_response([asdict(r) for r in self.requests])
        if request.path == "/_fake/update" and request.method == "POST":
            spec = await request.json()
            try:
                updated = self.update(spec["kind"], spec["namespace"], spec["name"], spec["patch"])
            except KeyError as error:
                return web.json_response(status_body(404, f"no such object: {error}"), status=404)
            return web.json_response(updated)
        if request.path == "/_fake/faults" and request.method == "DELETE":
            self.clear_faults()
            return web.json_response({"ok": True})
        if request.path == "/_fake/objects" and request.method == "GET":
            return web.json_response([copy.deepcopy(o) for o in self.objects.values()])
        return web.json_response(status_body(404, "unknown control endpoint"), status=404)


def load_seed_file(path: str | Path) -> list[JsonObj]:
    """Objects from a YAML file of one or more documents (``---``-separated)."""
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def write_kubeconfig(
    path: str | Path, server_url: str, namespace: str = "default", *, token: str = "fake-token"
) -> Path:
    """A kubeconfig pointing at ``server_url`` with a dummy bearer ``token`` (the fake logs
    it as the request's ``client``, so two daemons' requests can be told apart)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
        "users": [{"name": "fake", "user": {"token": token}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    target = Path(path)
    target.write_text(yaml.safe_dump(config), encoding="utf-8")
    return target


@dataclass
class FakeKubeProcess:
    """The fake run as a subprocess, for tests that run the daemon as a subprocess too."""

    process: subprocess.Popen[str]
    url: str

    @classmethod
    def spawn(
        cls, *, seed_file: str | Path | None = None, cwd: str | Path | None = None
    ) -> FakeKubeProcess:
        command = [sys.executable, "-m", "tests.support.fake_kube", "--port", "0"]
        if seed_file is not None:
            command += ["--seed-file", str(seed_file)]
        if cwd is None:
            cwd = Path(__file__).resolve().parents[2]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=cwd)
        assert process.stdout is not None
        # The first stdout line names the URL; reading it blocks until the server listens,
        # and gives "" if the process died first.
        line = process.stdout.readline()
        if "listening on " not in line:
            process.kill()
            raise RuntimeError(f"fake-kube did not start: {line!r}")
        return cls(process=process, url=line.rsplit(" ", 1)[1].strip())

    def writes(self) -> list[JsonObj]:
        with urllib.request.urlopen(f"{self.url}/_fake/writes", timeout=10) as response:
            result: list[JsonObj] = json.load(response)
            return result

    def requests(self) -> list[JsonObj]:
        """Every API request so far: ``arrived``, ``verb``, ``path``, ``status``, ``time``
        (answered)."""
        with urllib.request.urlopen(f"{self.url}/_fake/requests", timeout=10) as response:
            result: list[JsonObj] = json.load(response)
            return result

    def faults(self) -> dict[str, dict[str, int]]:
        """Per faulted path: how many faults are ``pending`` and how many ``fired``."""
        with urllib.request.urlopen(f"{self.url}/_fake/faults", timeout=10) as response:
            result: dict[str, dict[str, int]] = json.load(response)
            return result

    def inject_fault(self, path: str, status: int | None = 500, **options: Any) -> None:
        """As ``FakeKube.inject_fault``: ``count``, ``method``, ``delay``, ``retry_after``,
        ``headers``, ``client``, ``within``."""
        self._post("/_fake/faults", {"path": path, "status": status, **options})

    def update(self, kind: str, namespace: str, name: str, patch: JsonObj) -> JsonObj:
        """Change an object as another writer would (bumps its resourceVersion)."""
        return self._post(
            "/_fake/update", {"kind": kind, "namespace": namespace, "name": name, "patch": patch}
        )

    def _post(self, path: str, payload: JsonObj) -> JsonObj:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: JsonObj = json.load(response)
            return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


async def _serve(port: int, seed_file: str | None) -> None:
    fake = FakeKube()
    if seed_file:
        for obj in load_seed_file(seed_file):
            fake.seed(obj)
    url = await fake.start(port=port)
    print(f"fake-kube listening on {url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Kubernetes API server for tests.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed-file", help="YAML file of objects to create at start")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.seed_file))


if __name__ == "__main__":
    main()
