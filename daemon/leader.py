"""One active instance: leader election on a coordination.k8s.io/v1 Lease.

Only the leader may write capacity; followers keep forecasting so they can take over warm.

Why a small implementation over ``CoordinationV1Api`` rather than
``kubernetes_asyncio.leaderelection``: that module never releases the lease on shutdown (a
successor waits a whole lease duration), treats a released lease (empty holder) as still held,
returns for good after losing leadership instead of standing again, and lets a hung renew
request outlive the renew deadline. The semantics below are client-go's:

- a follower takes a lease whose holder is empty, or that has not changed for its
  ``leaseDurationSeconds`` as measured on the follower's own monotonic clock (no trust in
  another host's wall clock);
- the leader renews every ``retry_period``; if no renew has succeeded for ``renew_deadline``
  (every request is cut off at that deadline) it stops being leader, which is before its
  lease can expire for anyone else because ``renew_deadline < lease_duration``;
- ``is_leader`` checks that deadline itself, so a stalled loop never leaves a stale "yes";
- ``write_deadline()`` is that deadline on ``time.monotonic()`` less a safety margin: the
  instant until which the lease still guarantees no other instance can lead. Writers pass it
  to the actuator, which sends nothing after it and cuts each request's timeout to it, so a
  leader frozen (SIGSTOP, a VM pause) mid-write cannot land a write after its successor
  started: both are computed from the clock alone, not from the renew loop having run;
- Lease requests do not take tokens from the client's shared rate limiter
  (:mod:`daemon.ratelimit_client`): a renewal queued behind scaling traffic could miss the
  renew deadline and hand the lease over for nothing; they are a few per retry period;
- on ``release()`` (client-go's ReleaseOnCancel) the leader stops first, then writes an empty
  holder with a 1 s duration, so a follower takes over on its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from daemon.errors import ConfigError

__all__ = [
    "AlwaysLeader",
    "LeaderElector",
    "Leadership",
    "resolve_lease_namespace",
]

log = logging.getLogger("elasticd.leader")

Clock = Callable[[], float]
LeadershipCallback = Callable[[bool], None]

# Where a pod's own namespace is mounted with its service-account token.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# The duration written on release: short, so even a follower that ignores the empty holder
# (an older client) takes over within a second.
RELEASED_DURATION_S = 1
NOT_LEADER = "not leader"
"""The audit's ``skipped`` for a write another instance holds the Lease for."""
# The part of the renew deadline kept back from writes, at most WRITE_MARGIN_MAX_S: a write
# started just before the deadline still has a little time to be refused before it.
WRITE_MARGIN_FRACTION = 0.1
WRITE_MARGIN_MAX_S = 1.0
# client-go's JitterFactor for followers: many replicas started together do not poll in step.
FOLLOWER_JITTER = 0.2

_REQUEST_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)


class Leadership(Protocol):
    """What the runtime needs from an election: ask before writing, run it, release it."""

    @property
    def is_leader(self) -> bool:
        """True only while this instance may write."""
        ...

    @property
    def leading(self) -> asyncio.Event:
        """Set while leader, cleared when leadership is lost or released."""
        ...

    @property
    def refusal(self) -> str:
        """Why a write is not sent while ``is_leader`` is False, as the audit's ``skipped``
        says it (``not leader``; a shard's gate says ``not owner`` or its handoff wait)."""
        ...

    def write_deadline(self) -> float | None:
        """The ``time.monotonic()`` instant until which no other instance can lead: writes
        must not be sent after it. ``None``: unbounded; in the past when not leader."""
        ...

    async def run(self) -> None:
        """The election agent; returns after ``release()``."""
        ...

    async def release(self) -> None:
        """Stop leading and let another instance take over at once."""
        ...


def resolve_lease_namespace(configured: str | None) -> str:
    """The configured namespace, else the namespace this pod runs in."""
    if configured:
        return configured
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError:
        namespace = ""
    if not namespace:
        raise ConfigError(
            "leader_election.namespace",
            "not set and not running in a pod (no service-account namespace file); set it",
        )
    return namespace


class AlwaysLeader:
    """Leadership when election is disabled: this instance always writes."""

    def __init__(self) -> None:
        self._leading = asyncio.Event()
        self._leading.set()
        self._released = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return not self._released.is_set()

    @property
    def leading(self) -> asyncio.Event:
        return self._leading

    @property
    def refusal(self) -> str:
        return NOT_LEADER

    def write_deadline(self) -> float | None:
        # No election: nothing else can lead, so no deadline, until released.
        return None if self.is_leader else -math.inf

    async def run(self) -> None:
        await self._released.wait()

    async def release(self) -> None:
        self._leading.clear()
        self._released.set()


class _Outcome(enum.Enum):
    HELD = "held"  # we hold the lease (acquired or renewed)
    TAKEN = "taken"  # another holder's lease is valid
    FAILED = "failed"  # the request failed or lost a race; try again


class LeaderElector:
    """Campaigns for one Lease and keeps it; see the module docstring for the rules."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str,
        lease_name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_change: LeadershipCallback | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``on_change(is_leader)`` is called on every transition (e.g. to set the
        ``elasticd_leader`` gauge); ``clock`` is a monotonic clock in seconds."""
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")
        if not identity:
            raise ValueError("identity must not be empty: an empty holder means released")
        self.namespace = namespace
        self.lease_name = lease_name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._api = client.CoordinationV1Api(api_client)
        self._serialize = api_client.sanitize_for_serialization
        self._on_change = on_change
        self._clock = clock
        self._leading = asyncio.Event()
        self._stopping = asyncio.Event()
        # Held across each attempt and the release, so a renew in flight cannot land after
        # the release and re-claim the lease.
        self._lock = asyncio.Lock()
        self._renewed_at = -float("inf")
        # The lease as last read or written (its resourceVersion is the write precondition),
        # and when its content was first seen, on our clock, for the expiry check.
        self._lease: Any = None
        self._observed_version: str | None = None
        self._observed_at = -float("inf")

    def describe(self) -> str:
        return f"lease {self.namespace}/{self.lease_name} as {self.identity}"

    @property
    def is_leader(self) -> bool:
        # The deadline is checked here as well as in run(): a loop that stalled past it must
        # not let a caller write on a lease that may already be someone else's.
        return self._leading.is_set() and self._clock() - self._renewed_at < self.renew_deadline

    def write_deadline(self) -> float | None:
        """The last successful renew's start + ``renew_deadline`` - a margin, on ``clock``
        (``time.monotonic`` unless a test injected another); in the past when not leader.

        Computed from the clock alone: a process that was frozen past it and has just resumed
        sees it passed before its renew loop has had a chance to run.
        """
        if not self._leading.is_set():
            return -math.inf
        margin = min(WRITE_MARGIN_MAX_S, WRITE_MARGIN_FRACTION * self.renew_deadline)
        return self._renewed_at + self.renew_deadline - margin

    @property
    def leading(self) -> asyncio.Event:
        return self._leading

    @property
    def refusal(self) -> str:
        return NOT_LEADER

    async def run(self) -> None:
        """Follow until the lease is free, lead until it is lost, and stand again; return
        after ``release()``."""
        log.info("leader election started", extra={"lease": self.describe()})
        while not self._stopping.is_set():
            if self._leading.is_set():
                await self._renew_once()
                pause = min(self.retry_period, self._time_left())
            else:
                await self._acquire_once()
                pause = self.retry_period
                if not self._leading.is_set():
                    pause *= 1 + random.uniform(0, FOLLOWER_JITTER)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(pause, 0.0))

    async def release(self) -> None:
        """Stop leading (no more writes) and hand the lease over; never raises.

        Call it after the reconcilers have stopped, so no write is in flight.
        """
        self._stopping.set()
        async with self._lock:
            was_leader = self._leading.is_set()
            self._set_leading(False, "released")
            if not was_leader or self._lease is None:
                return
            try:
                await self._write_released()
            except _REQUEST_ERRORS as error:
                # The lease then simply expires; a successor waits one lease duration.
                log.warning(
                    "could not release the lease: %s",
                    _short(error, self.renew_deadline),
                    extra=self._extra(),
                )

    # -- one attempt ----------------------------------------------------------------------

    async def _acquire_once(self) -> None:
        async with self._lock:
            if self._stopping.is_set():
                return
            started = self._clock()
            outcome = await self._attempt(limit_s=self.retry_period)
            if outcome is _Outcome.HELD:
                self._renewed_at = started
                self._set_leading(True, "acquired")

    async def _renew_once(self) -> None:
        async with self._lock:
            if self._stopping.is_set():
                return
            started = self._clock()
            left = self._time_left()
            outcome = await self._attempt(limit_s=left) if left > 0 else _Outcome.FAILED
            if outcome is _Outcome.HELD:
                # The request's start, not its end: the server stamped it no earlier.
                self._renewed_at = started
            elif outcome is _Outcome.TAKEN:
                self._set_leading(False, "another instance holds the lease")
            elif self._time_left() <= 0:
                self._set_leading(False, f"no renewal for {self.renew_deadline:g}s")

    def _time_left(self) -> float:
        return self._renewed_at + self.renew_deadline - self._clock()

    async def _attempt(self, *, limit_s: float) -> _Outcome:
        """client-go's tryAcquireOrRenew: read, decide, write with the read's version."""
        try:
            return await asyncio.wait_for(self._try_acquire_or_renew(), timeout=limit_s)
        except _REQUEST_ERRORS as error:
            if isinstance(error, ApiException) and error.status == 409:
                log.debug("lost a race for the lease", extra=self._extra())
            else:
                log.warning("lease request failed: %s", _short(error, limit_s), extra=self._extra())
            return _Outcome.FAILED

    async def _try_acquire_or_renew(self) -> _Outcome:
        now = _micro_time()
        try:
            lease = await self._api.read_namespaced_lease(self.lease_name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            self._lease = await self._api.create_namespaced_lease(
                self.namespace, _as_lease(self._new_lease(now))
            )
            self._observe(self._lease)
            return _Outcome.HELD
        self._observe(lease)
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        duration = spec.lease_duration_seconds or self.lease_duration
        if holder and holder != self.identity and self._clock() < self._observed_at + duration:
            self._lease = lease
            return _Outcome.TAKEN
        body: dict[str, Any] = self._serialize(lease)
        ours = holder == self.identity
        body["spec"] = {
            **body.get("spec", {}),
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": now,
            "acquireTime": _micro_time(spec.acquire_time) if ours and spec.acquire_time else now,
            "leaseTransitions": (spec.lease_transitions or 0) + (0 if ours else 1),
        }
        self._lease = await self._api.replace_namespaced_lease(
            self.lease_name, self.namespace, _as_lease(body)
        )
        self._observe(self._lease)
        return _Outcome.HELD

    async def _write_released(self) -> None:
        body: dict[str, Any] = self._serialize(self._lease)
        spec = body.get("spec", {})
        if spec.get("holderIdentity") != self.identity:
            return
        now = _micro_time()
        body["spec"] = {
            **spec,
            "holderIdentity": "",
            "leaseDurationSeconds": RELEASED_DURATION_S,
            "renewTime": now,
            "acquireTime": now,
        }
        # A 409 here means someone wrote since: the lease is no longer ours to release.
        await asyncio.wait_for(
            self._api.replace_namespaced_lease(self.lease_name, self.namespace, _as_lease(body)),
            timeout=self.renew_deadline,
        )
        log.info("lease released", extra=self._extra())

    # -- bookkeeping ----------------------------------------------------------------------

    def _new_lease(self, now: str) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.lease_name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }

    def _observe(self, lease: Any) -> None:
        """Note when the lease's content last changed, on our own clock."""
        version = lease.metadata.resource_version if lease.metadata is not None else None
        if version != self._observed_version:
            self._observed_version = version
            self._observed_at = self._clock()

    def _set_leading(self, leading: bool, why: str) -> None:
        if leading == self._leading.is_set():
            return
        if leading:
            self._leading.set()
            log.info("became leader (%s)", why, extra=self._extra())
        else:
            self._leading.clear()
            self._renewed_at = -float("inf")
            log.warning("stopped leading (%s)", why, extra=self._extra())
        if self._on_change is not None:
            try:
                self._on_change(leading)
            except Exception:
                log.exception("leadership callback failed", extra=self._extra())

    def _extra(self) -> dict[str, str]:
        return {"lease": self.describe()}


def _as_lease(body: dict[str, Any]) -> client.V1Lease:
    """A dict body typed as the model the client declares. The client sends dicts as they
    are; a ``V1Lease`` would serialise its times with ``isoformat``, which the server refuses
    whenever the microseconds happen to be zero."""
    return cast(client.V1Lease, body)


def _micro_time(moment: datetime | None = None) -> str:
    """A MicroTime as the API server parses it (RFC 3339 with exactly six decimals, UTC);
    ``isoformat`` drops the decimals when they are zero, which the server would refuse."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short(error: BaseException, limit_s: float) -> str:
    """One line naming the failure; never empty (a TimeoutError's own text is)."""
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    if isinstance(error, TimeoutError):
        return f"timed out after {limit_s:.3g}s"
    return f"{type(error).__name__}: {error}".rstrip(": ")
