"""Membership on Kubernetes: one ``coordination.k8s.io/v1`` Lease per member.

Each member owns the Lease ``<group>-member-<identity>`` in the namespace, labelled with the
group, so two installations (two groups) never read or write each other's. Renewing replaces
the Lease with the version last read (``resourceVersion`` is the precondition: a 409 means
someone else wrote it, and the next attempt reads it again). A Lease is live while its
``resourceVersion`` keeps changing within its ``leaseDurationSeconds`` as measured on the
*reader's* monotonic clock from the moment the reader first saw that version (client-go's
rule): nobody's wall clock is trusted, so a step of any host's clock changes nothing.
``renewTime`` is written for people reading the Lease, never read back.

A member that stops cleanly writes an empty holder (released). Leases left by members gone
for ``GC_FACTOR`` lease durations are deleted by whoever reads them, with their version as a
precondition, so pods replaced by rollouts do not leave Leases behind forever.

Why a client of its own (see daemon.leader): renewals must never queue behind scaling traffic
in the shared client's rate limiter, or a busy member would miss its renew deadline.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from daemon.sharding.coordination import CoordinationError, MemberView

__all__ = ["GROUP_LABEL", "KubeLeaseCoordination", "member_lease_name"]

Clock = Callable[[], float]
WallClock = Callable[[], datetime]

GROUP_LABEL = "elasticd.io/shard-group"
MEMBER_ANNOTATION = "elasticd.io/shard-member"
# A Lease unchanged for this many of its durations belongs to a member long gone.
GC_FACTOR = 10
_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)
_NAME_MAX = 253


def member_lease_name(group: str, identity: str) -> str:
    """A valid Lease name for the member, distinct per (group, identity)."""
    raw = f"{group}-member-{identity}"
    name = re.sub(r"[^a-z0-9.-]", "-", raw.lower()).strip("-.")
    if name != raw or len(name) > _NAME_MAX:
        # Lower-casing or replacing characters could map two identities onto one name.
        digest = hashlib.blake2b(raw.encode(), digest_size=5).hexdigest()
        name = f"{name[: _NAME_MAX - 11]}-{digest}"
    return name


class KubeLeaseCoordination:
    """One member's Lease in ``namespace``; ``clock`` is monotonic, ``wall_clock`` only
    stamps ``renewTime`` for readers."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str,
        group: str,
        identity: str,
        lease_duration: float,
        clock: Clock = time.monotonic,
        wall_clock: WallClock = lambda: datetime.now(UTC),
        close_client: bool = True,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        self.identity = identity
        self.namespace = namespace
        self.group = group
        self.lease_name = member_lease_name(group, identity)
        self.lease_duration = lease_duration
        self._api_client = api_client
        self._close_client = close_client
        self._api = client.CoordinationV1Api(api_client)
        self._serialize = api_client.sanitize_for_serialization
        self._clock = clock
        self._wall_clock = wall_clock
        self._lease: dict[str, Any] | None = None
        # Lease name -> (resourceVersion, when this reader first saw it on ``clock``).
        self._seen: dict[str, tuple[str, float]] = {}

    def describe(self) -> str:
        return f"lease {self.namespace}/{self.lease_name}"

    async def renew(self) -> None:
        try:
            if self._lease is None:
                self._lease = await self._read_or_create()
                return
            try:
                self._lease = await self._replace(self._held(self._lease))
            except ApiException as error:
                if error.status not in (404, 409):
                    raise
                # Deleted or written by someone else (an administrator, a GC by a member that
                # thought this one gone): read it again and claim it afresh.
                self._lease = None
                self._lease = await self._read_or_create()
        except _ERRORS as error:
            raise CoordinationError(f"renewing {self.describe()}: {_short(error)}") from error

    async def view(self) -> MemberView:
        try:
            listed = await self._api.list_namespaced_lease(
                self.namespace, label_selector=f"{GROUP_LABEL}={self.group}"
            )
        except _ERRORS as error:
            raise CoordinationError(f"listing leases: {_short(error)}") from error
        now = self._clock()
        live: set[str] = set()
        released: set[str] = set()
        present: set[str] = set()
        stale: list[tuple[str, str]] = []
        for lease in listed.items or []:
            metadata = lease.metadata
            if metadata is None or (metadata.labels or {}).get(GROUP_LABEL) != self.group:
                continue  # a server that ignores label selectors
            name = metadata.name or ""
            member = (metadata.annotations or {}).get(MEMBER_ANNOTATION)
            if not member:
                continue
            present.add(name)
            version = metadata.resource_version or ""
            seen = self._seen.get(name)
            if seen is None or seen[0] != version:
                seen = (version, now)
                self._seen[name] = seen
            spec = lease.spec or client.V1LeaseSpec()
            duration = float(spec.lease_duration_seconds or self.lease_duration)
            if not spec.holder_identity:
                released.add(member)
            elif now - seen[1] < duration:
                live.add(member)
            if name != self.lease_name and now - seen[1] >= GC_FACTOR * duration:
                stale.append((name, version))
        for name in set(self._seen) - present:
            del self._seen[name]
        for name, version in stale:
            await self._collect(name, version)
        return MemberView(frozenset(live), frozenset(released))

    async def wall_clock_view(self) -> MemberView:
        """One read judged by each Lease's ``renewTime`` on this host's wall clock: for
        ``elasticd explain``, which reads once and cannot watch versions change. Never used
        to fence a write (a skewed clock would mislead it)."""
        try:
            listed = await self._api.list_namespaced_lease(
                self.namespace, label_selector=f"{GROUP_LABEL}={self.group}"
            )
        except _ERRORS as error:
            raise CoordinationError(f"listing leases: {_short(error)}") from error
        now = self._wall_clock()
        live: set[str] = set()
        released: set[str] = set()
        for lease in listed.items or []:
            metadata = lease.metadata
            if metadata is None or (metadata.labels or {}).get(GROUP_LABEL) != self.group:
                continue
            member = (metadata.annotations or {}).get(MEMBER_ANNOTATION)
            spec = lease.spec
            if not member or spec is None:
                continue
            if not spec.holder_identity:
                released.add(member)
                continue
            renewed = spec.renew_time
            duration = float(spec.lease_duration_seconds or self.lease_duration)
            if isinstance(renewed, datetime) and (now - renewed).total_seconds() < duration:
                live.add(member)
        return MemberView(frozenset(live), frozenset(released))

    async def release(self) -> None:
        if self._lease is None:
            return
        body = self._held(self._lease)
        body["spec"]["holderIdentity"] = ""
        body["spec"]["leaseDurationSeconds"] = 1
        try:
            self._lease = await self._replace(body)
        except _ERRORS as error:
            raise CoordinationError(f"releasing {self.describe()}: {_short(error)}") from error

    async def close(self) -> None:
        if self._close_client:
            await self._api_client.close()

    # -- requests -------------------------------------------------------------------------

    async def _read_or_create(self) -> dict[str, Any]:
        try:
            lease = await self._api.read_namespaced_lease(self.lease_name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            created = await self._api.create_namespaced_lease(
                self.namespace, _as_lease(self._new_body())
            )
            return cast(dict[str, Any], self._serialize(created))
        return await self._replace(self._held(self._serialize(lease)))

    async def _replace(self, body: dict[str, Any]) -> dict[str, Any]:
        replaced = await self._api.replace_namespaced_lease(
            self.lease_name, self.namespace, _as_lease(body)
        )
        return cast(dict[str, Any], self._serialize(replaced))

    async def _collect(self, name: str, version: str) -> None:
        # Best effort: another member may have deleted it first (404) or the member came
        # back (409 on the version); either way nothing to do.
        try:
            await self._api.delete_namespaced_lease(
                name,
                self.namespace,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(resource_version=version)
                ),
            )
        except _ERRORS:
            return
        self._seen.pop(name, None)

    def _new_body(self) -> dict[str, Any]:
        now = _micro_time(self._wall_clock())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.lease_name,
                "namespace": self.namespace,
                "labels": {GROUP_LABEL: self.group},
                "annotations": {MEMBER_ANNOTATION: self.identity},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def _held(self, current: dict[str, Any]) -> dict[str, Any]:
        """``current`` (its version kept as the precondition) renewed by this member."""
        fresh = self._new_body()
        metadata = {**current.get("metadata", {})}
        metadata["labels"] = {**(metadata.get("labels") or {}), GROUP_LABEL: self.group}
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            MEMBER_ANNOTATION: self.identity,
        }
        spec = {**current.get("spec", {}), **fresh["spec"]}
        if current.get("spec", {}).get("holderIdentity") == self.identity:
            spec["acquireTime"] = current["spec"].get("acquireTime", spec["acquireTime"])
        return {**current, "metadata": metadata, "spec": spec}


def _as_lease(body: dict[str, Any]) -> client.V1Lease:
    # As in daemon.leader: dict bodies are sent as they are (V1Lease would format times the
    # server refuses when their microseconds are zero).
    return cast(client.V1Lease, body)


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}".rstrip(": ")
