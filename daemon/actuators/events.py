"""Kubernetes Events on the target for every capacity write, visible in ``kubectl describe``.

An Event is a courtesy to the people watching the workload, not part of scaling: a failure is
logged and swallowed, and each request is bounded by a short timeout so a slow API server
cannot hold up the next tick. Events are created, never patched or aggregated: every write
differs (from, to, forecast), so client-go's count-merging would not apply.

An Event is a write on the same client as the scaling writes: it takes a token from the
client's shared throttle, is not sent while the server's Retry-After for writes lasts, and a
429 it gets closes that gate for the scaling writes too (the server said so to the client).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from daemon.actuators.kubernetes import retry_after_of
from daemon.ratelimit_client import Throttled, throttle_for

__all__ = ["KubernetesEventRecorder", "ScaleEvents", "scale_event"]

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]

# involvedObject.apiVersion for the kinds elasticd writes to.
API_VERSIONS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}
# The API server caps an Event's message at 1 KiB; a longer one would be refused outright.
MAX_MESSAGE = 1024


def scale_event(
    previous: int, applied: int, forecast: float | None, reason: str, *, floor: bool = False
) -> tuple[str, str]:
    """The (reason, message) of an Event for one write.

    ``reason`` is the planner's decision reason; ``floor`` says a minimum was written (an HPA's
    minReplicas) rather than the replica count.
    """
    what = "floor" if floor else "replicas"
    event_reason = ("ScaledAhead" if applied > previous else "ScaledDown") + (
        "Floor" if floor else ""
    )
    expected = f"{forecast:.4g}" if forecast is not None else "none"
    return event_reason, f"{what} {previous} -> {applied}; forecast {expected}; reason {reason}"


class KubernetesEventRecorder:
    """Creates core/v1 Events about objects in one namespace."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        component: str = "elasticd",
        *,
        host: str | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        """``host``: this instance's name in the Event's source (defaults to the host/pod)."""
        self.namespace = namespace
        self.component = component
        self.host = host or socket.gethostname()
        self._core = client.CoreV1Api(api_client)
        self._throttle = throttle_for(api_client)
        self._timeout = request_timeout

    async def record(
        self,
        kind: str,
        name: str,
        reason: str,
        message: str,
        type: EventType = "Normal",  # the Event field's name; shadows the builtin here
        *,
        api_version: str | None = None,
    ) -> bool:
        """Create one Event on ``kind``/``name``; True if the API server accepted it.

        Never raises (cancellation aside): a missing Event must not stop scaling.
        """
        body = self._event(kind, name, reason, message, type, api_version)
        try:
            await self._throttle.admit("write", max_wait=self._timeout)
        except Throttled as refused:
            log.warning(
                "event %s on %s %s/%s not sent: %s", reason, kind, self.namespace, name, refused
            )
            return False
        try:
            await asyncio.wait_for(
                self._core.create_namespaced_event(self.namespace, _as_event(body)),
                timeout=self._timeout,
            )
        except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as error:
            if isinstance(error, ApiException) and error.status == 429:
                self._throttle.throttled("write", retry_after_of(error), "HTTP 429 on an event")
            detail = (
                f"HTTP {error.status} {error.reason}"
                if isinstance(error, ApiException)
                else error.__class__.__name__
            )
            log.warning(
                "could not record event %s on %s %s/%s: %s",
                reason,
                kind,
                self.namespace,
                name,
                detail,
            )
            return False
        return True

    def _event(
        self,
        kind: str,
        name: str,
        reason: str,
        message: str,
        type: EventType,
        api_version: str | None,
    ) -> dict[str, Any]:
        now_ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9))
        return {
            "apiVersion": "v1",
            "kind": "Event",
            # client-go's naming: the object's name and a hex timestamp, unique per write.
            "metadata": {"name": f"{name}.{now_ns:x}", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": api_version or API_VERSIONS.get(kind, ""),
                "kind": kind,
                "name": name,
                "namespace": self.namespace,
            },
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "type": type,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }


def _as_event(body: dict[str, Any]) -> client.CoreV1Event:
    """A dict body typed as the declared model: the client sends dicts as they are, and a
    model would need datetime fields only to serialise them back into these strings."""
    return cast(client.CoreV1Event, body)


@dataclass(frozen=True, slots=True)
class ScaleEvents:
    """Where a Kubernetes target's writes are reported as Events (``kubectl describe``)."""

    recorder: KubernetesEventRecorder
    kind: str
    """The object written: the workload's kind, or ``HorizontalPodAutoscaler`` for a floor."""
    name: str
    floor: bool
    """A minimum was written (an HPA's minReplicas), not the replica count."""
    api_version: str | None = None
    """The object's group/version; None: the built-in kinds' (``API_VERSIONS``). A custom
    object (a ScaledObject, a Rollout) needs its own, or ``kubectl describe`` on it would not
    find the Event: the API matches an Event to its object by kind, name and apiVersion."""

    async def record(self, reason: str, message: str, type: EventType = "Normal") -> bool:
        """One Event on the object written; never raises (see ``KubernetesEventRecorder``).
        ``type`` is the Event field's name (it shadows the builtin here)."""
        return await self.recorder.record(
            self.kind, self.name, reason, message, type, api_version=self.api_version
        )
