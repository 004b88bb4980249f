"""Membership on etcd: one key per member, attached to an etcd lease the member keeps alive.

Outside Kubernetes the same protocol runs on the etcd the user already operates. Each member
writes ``<prefix>/<group>/members/<identity>`` with its own lease (TTL = the lease duration)
and renews by a keep-alive; etcd itself deletes the key when the lease is not renewed within
its TTL, counted by the server from the last keep-alive it received, which is no earlier than
the member's renewal began: the same guarantee the Kubernetes backend gets from measuring on
the reader's clock. Nobody's wall clock is read.

A member that stops cleanly rewrites its key as released (on a fresh short lease, so it
cleans itself up) and revokes its own lease.

aetcd is an optional dependency (``pip install elasticd[etcd]``): only this module imports it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import aetcd
import aetcd.exceptions

from daemon.settings.sharding import EtcdConfig
from daemon.sharding.coordination import CoordinationError, MemberView

__all__ = ["EtcdCoordination"]

_ERRORS = (aetcd.exceptions.ClientError, OSError, TimeoutError)
# Each gRPC call gives up after this many seconds (the member's own limit is tighter).
CALL_TIMEOUT_S = 5


class EtcdCoordination:
    """One member's key and lease under ``prefix``/``group``."""

    def __init__(
        self, etcd: Any, *, prefix: str, group: str, identity: str, lease_duration: float
    ) -> None:
        if not identity or "/" in identity:
            raise ValueError("identity must be non-empty and free of '/'")
        self.identity = identity
        self._etcd = etcd
        self._members = f"{prefix.rstrip('/')}/{group}/members/"
        self._key = (self._members + identity).encode()
        self._ttl = max(1, math.ceil(lease_duration))
        self._lease: Any = None

    @classmethod
    async def open(
        cls, config: EtcdConfig, *, group: str, identity: str, lease_duration: float
    ) -> EtcdCoordination:
        host, port = config.endpoint.rsplit(":", 1)
        etcd = aetcd.Client(
            host=host,
            port=int(port),
            username=config.username,
            password=config.password,
            timeout=CALL_TIMEOUT_S,
        )
        return cls(
            etcd,
            prefix=config.prefix,
            group=group,
            identity=identity,
            lease_duration=lease_duration,
        )

    def describe(self) -> str:
        return f"etcd key {self._key.decode()}"

    async def renew(self) -> None:
        try:
            if self._lease is not None:
                reply = await self._etcd.refresh_lease(self._lease.id)
                if reply is not None and reply.TTL > 0:
                    return
                # Expired on the server (this member was too slow): its key is gone; start over.
                self._lease = None
            self._lease = await self._etcd.lease(self._ttl)
            await self._etcd.put(self._key, _state("live"), lease=self._lease)
        except _ERRORS as error:
            raise CoordinationError(f"renewing {self.describe()}: {error!r}") from error

    async def view(self) -> MemberView:
        try:
            found = await self._etcd.get_prefix(self._members.encode())
        except _ERRORS as error:
            raise CoordinationError(f"reading {self._members}: {error!r}") from error
        live: set[str] = set()
        released: set[str] = set()
        for item in found:
            identity = item.key.decode()[len(self._members) :]
            try:
                state = json.loads(item.value).get("state")
            except (ValueError, AttributeError):
                continue
            if state == "live":
                live.add(identity)
            elif state == "released":
                released.add(identity)
        return MemberView(frozenset(live), frozenset(released))

    async def release(self) -> None:
        if self._lease is None:
            return
        try:
            short = await self._etcd.lease(self._ttl)
            await self._etcd.put(self._key, _state("released"), lease=short)
            await self._etcd.revoke_lease(self._lease.id)
        except _ERRORS as error:
            raise CoordinationError(f"releasing {self.describe()}: {error!r}") from error
        self._lease = None

    async def close(self) -> None:
        try:
            await self._etcd.close()
        except _ERRORS:
            return


def _state(state: str) -> bytes:
    return json.dumps({"state": state}).encode()
