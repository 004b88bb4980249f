"""One replica's membership: keep its record alive, agree on the ring, gate every write.

The rules (docs/sharding.md explains them for operators):

- **Freshness.** Every ``retry_period`` the member renews its record and then reads every
  member's. An iteration where both succeed makes it *fresh* as of the iteration's start, on
  the monotonic clock. A member that has not been fresh for ``renew_deadline`` writes nothing
  (every gate checks the clock itself, so a frozen loop cannot leave a stale "yes"), which is
  before its record can read as expired to anyone (``renew_deadline < lease_duration``).
- **Epoch.** The epoch is the sorted set of live members (this one included while fresh); the
  ring over it names every target's owner. A target is written only by the member that owns it
  in the epoch that member last adopted, and only until ``fresh_at + renew_deadline``: that
  bound is the write deadline passed to actuators, so a write begun on a view older than a
  change can land no later than ``renew_deadline`` after that view was read.
- **Handoff.** A member that gains a target waits before its first write to it:
  * one ``lease_duration`` when the previous owner is still live (a join moved the target):
    the previous owner's view is at most ``renew_deadline`` old, so by then it has either seen
    the new epoch or stopped writing at its deadline;
  * nothing when the previous owner vanished: the store reads a record as expired no earlier
    than one lease duration after its last renewal began, past that member's own deadline;
  * nothing when the previous owner released its record cleanly (it stopped its targets
    first), provided it had been live for a lease duration (so no other member can still
    hold a view from before it joined);
  * one ``lease_duration`` for everything at the first epoch, or after this member lost its
    freshness (it cannot know who wrote meanwhile).
- **Clean stop.** ``release()`` closes every gate and marks the record released; the others
  take its targets on their next read.

Every duration is measured on ``clock`` (``time.monotonic``): a wall-clock step on any host
changes no ownership and no deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from daemon.sharding.coordination import Coordination, CoordinationError, MemberView
from daemon.sharding.ring import VIRTUAL_NODES, Epoch, HashRing

__all__ = ["Handoff", "ShardMember", "TargetGate"]

log = logging.getLogger("elasticd.sharding")

Clock = Callable[[], float]

# As in daemon.leader: the part of the renew deadline kept back from writes.
WRITE_MARGIN_FRACTION = 0.1
WRITE_MARGIN_MAX_S = 1.0
# Members started together do not renew in step.
JITTER = 0.1
# After a failed rebalance (a target could not be built), retry after this many periods.
REBALANCE_RETRY_PERIODS = 5
# Why a member does not write a target (the audit's ``skipped``; a single instance says
# "not leader").
NOT_FRESH = "membership not fresh"
NOT_OWNER = "not owner"
HANDOFF_WAIT = "handoff wait"


@dataclass(frozen=True)
class Handoff:
    """A target changed owner in this member's view: ``previous`` -> ``owner`` (either may be
    None: no ring yet, or no member). ``wait_s``: how long the new owner (when this member)
    holds its first write."""

    target: str
    previous: str | None
    owner: str | None
    wait_s: float
    epoch: Epoch


class ShardMember:
    """The membership agent and the source of every target's gate.

    It also has the shape of :class:`daemon.leader.Leadership` for the process as a whole
    (``is_leader``: fresh; ``run``; ``release``), so the supervisor runs and releases it where
    it runs and releases a leader election.
    """

    def __init__(
        self,
        coordination: Coordination,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        virtual_nodes: int = VIRTUAL_NODES,
        clock: Clock = time.monotonic,
        on_epoch: Callable[[], Awaitable[None]] | None = None,
        on_handoff: Callable[[Handoff], None] | None = None,
        on_fresh: Callable[[bool], None] | None = None,
    ) -> None:
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")
        self.coordination = coordination
        self.identity = coordination.identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.virtual_nodes = virtual_nodes
        self._clock = clock
        self._on_epoch = on_epoch
        self._on_handoff = on_handoff
        self._on_fresh = on_fresh
        self._fresh_at = -math.inf
        self._fresh = False
        # False at the start and after a loss of freshness: the next epoch's targets all wait.
        self._ring_trusted = False
        self._ring = HashRing((), virtual_nodes=virtual_nodes)
        self._keys: dict[str, str] = {}
        self._owned: set[str] = set()
        self._not_before: dict[str, float] = {}
        # When each live member was first seen live without a break, and for how long the
        # members that left had been live (the released-member rule needs it).
        self._live_since: dict[str, float] = {}
        self._lived_for: dict[str, float] = {}
        self._leading = asyncio.Event()
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self.handoffs_in = 0
        self.handoffs_out = 0
        self.epoch_changes = 0
        self.renewed_at = -math.inf

    # -- what the rest of the daemon asks ---------------------------------------------------

    @property
    def epoch(self) -> Epoch:
        return self._ring.epoch

    @property
    def owned(self) -> frozenset[str]:
        """The tracked targets this member owns in its epoch (writable or still waiting)."""
        return frozenset(self._owned)

    def owner(self, target: str) -> str | None:
        """The owner of a tracked target (or of a key) in this member's epoch."""
        return self._ring.owner(self._keys.get(target, target))

    def owns(self, target: str) -> bool:
        return target in self._owned

    def describe(self) -> str:
        return self.coordination.describe()

    @property
    def is_leader(self) -> bool:
        """Fresh: this member may write the targets it owns."""
        return (
            self._fresh
            and not self._stopping.is_set()
            and self._clock() - self._fresh_at < self.renew_deadline
        )

    @property
    def leading(self) -> asyncio.Event:
        return self._leading

    @property
    def refusal(self) -> str:
        return NOT_FRESH

    def write_deadline(self) -> float | None:
        """The instant (on ``clock``) after which no write may be sent; past when not fresh."""
        if not self.is_leader:
            return -math.inf
        margin = min(WRITE_MARGIN_MAX_S, WRITE_MARGIN_FRACTION * self.renew_deadline)
        return self._fresh_at + self.renew_deadline - margin

    def refusal_for(self, target: str) -> str:
        """Why ``target`` may not be written now (the audit's ``skipped``), most basic first."""
        if not self.is_leader:
            return NOT_FRESH
        if target not in self._owned:
            owner = self.owner(target)
            return NOT_OWNER if owner is None else f"{NOT_OWNER} (owner: {owner})"
        return HANDOFF_WAIT

    def may_write(self, target: str) -> bool:
        return (
            target in self._owned
            and self.is_leader
            and self._clock() >= self._not_before.get(target, math.inf)
        )

    def target_deadline(self, target: str) -> float | None:
        return self.write_deadline() if self.may_write(target) else -math.inf

    def wait_left(self, target: str) -> float:
        """Seconds before this member may first write an owned target (0: it may)."""
        return max(0.0, self._not_before.get(target, math.inf) - self._clock())

    def gate(self, target: str) -> TargetGate:
        """The per-target Leadership a reconciler asks before each write."""
        return TargetGate(self, target)

    def track(self, keys: Mapping[str, str]) -> None:
        """The targets this process is configured with, and each one's ring key. Targets new
        to the configuration that this member owns wait a lease duration: another member
        may have had them under its own configuration."""
        now = self._clock()
        self._keys = dict(keys)
        previous = self._owned
        self._owned = {t for t, key in self._keys.items() if self._ring.owner(key) == self.identity}
        for target in self._owned - previous:
            self._not_before[target] = now + self.lease_duration
        for target in set(self._not_before) - self._owned:
            del self._not_before[target]

    # -- the agent ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew, read and adopt every ``retry_period`` until ``release()``."""
        log.info("sharding member started", extra={"member": self.describe()})
        notifier = asyncio.create_task(self._notify(), name="shard_rebalancer")
        try:
            while not self._stopping.is_set():
                await self.step()
                pause = self.retry_period * (1 - random.uniform(0, JITTER))
                if self._fresh:
                    pause = min(pause, max(0.0, self._time_left()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=pause)
            await self._released.wait()
        finally:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifier
            with contextlib.suppress(Exception):
                await self.coordination.close()

    async def step(self) -> None:
        """One renew-and-read; public so tests can drive the member on a fake clock."""
        async with self._lock:
            if self._stopping.is_set():
                return
            started = self._clock()
            left = self._time_left()
            # A fresh member's attempt must end by its deadline; one that is not fresh has no
            # deadline to keep, and cutting it at the retry period would keep it from ever
            # becoming fresh again while the store answers slowly (an overloaded API server).
            limit = left if self._fresh and left > 0 else self.renew_deadline
            try:
                view = await asyncio.wait_for(self._renew_and_read(), timeout=limit)
            except (CoordinationError, TimeoutError, OSError) as error:
                reason = str(error) or f"timed out after {limit:.3g}s"
                log.warning("membership renewal failed: %s", reason, extra=self._extra())
                if self._fresh and self._time_left() <= 0:
                    self._lose_freshness(f"no renewal for {self.renew_deadline:g}s")
                return
            if self._fresh and started - self._fresh_at >= self.renew_deadline:
                # The loop stalled (SIGSTOP, a paused VM) past the deadline: others may have
                # declared this member gone and taken its targets meanwhile.
                self._lose_freshness("resumed after the renew deadline")
            self._fresh_at = started
            self.renewed_at = started
            if not self._fresh:
                self._fresh = True
                self._leading.set()
                self._report_fresh(True)
            self._adopt(view, started)

    async def _renew_and_read(self) -> MemberView:
        await self.coordination.renew()
        return await self.coordination.view()

    async def release(self) -> None:
        """Stop writing everything, then mark the record released; never raises.

        Call it after the target runtimes have stopped, so no write is in flight.
        """
        self._stopping.set()
        try:
            async with self._lock:
                was_fresh = self._fresh
                self._fresh = False
                self._leading.clear()
                self._not_before.clear()
                if was_fresh:
                    try:
                        await asyncio.wait_for(
                            self.coordination.release(), timeout=self.renew_deadline
                        )
                        log.info("membership released", extra=self._extra())
                    except (CoordinationError, TimeoutError, OSError) as error:
                        # The record then expires; the others wait for that instead.
                        log.warning("could not release the membership: %s", error)
        finally:
            self._released.set()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _time_left(self) -> float:
        return self._fresh_at + self.renew_deadline - self._clock()

    def _lose_freshness(self, why: str) -> None:
        if not self._fresh:
            return
        self._fresh = False
        self._ring_trusted = False
        self._leading.clear()
        self._not_before = {target: math.inf for target in self._owned}
        log.warning("stopped writing every target (%s)", why, extra=self._extra())
        self._report_fresh(False)

    def _adopt(self, view: MemberView, now: float) -> None:
        live = set(view.live) | {self.identity}
        for member in list(self._live_since):
            if member not in live:
                self._lived_for[member] = now - self._live_since.pop(member)
        for member in live:
            self._live_since.setdefault(member, now)
        epoch = tuple(sorted(live))
        trusted = self._ring_trusted
        self._ring_trusted = True
        if epoch == self._ring.epoch and trusted:
            return
        old = self._ring if trusted else None
        self._ring = HashRing(epoch, virtual_nodes=self.virtual_nodes)
        self.epoch_changes += 1
        owned: set[str] = set()
        for target, key in self._keys.items():
            owner = self._ring.owner(key)
            previous = old.owner(key) if old is not None else None
            if owner == self.identity:
                owned.add(target)
                if target in self._owned and old is not None:
                    continue
                wait = self._handoff_wait(previous, view)
                self._not_before[target] = now + wait
                if previous is not None and previous != self.identity:
                    self.handoffs_in += 1
                    self._report(Handoff(target, previous, owner, wait, epoch))
            elif target in self._owned:
                self._not_before.pop(target, None)
                self.handoffs_out += 1
                self._report(Handoff(target, self.identity, owner, 0.0, epoch))
        self._owned = owned
        log.info(
            "ring epoch: %d member(s), %d of %d target(s) here",
            len(epoch),
            len(owned),
            len(self._keys),
            extra={**self._extra(), "event": "epoch", "epoch": list(epoch)},
        )
        self._changed.set()

    def _handoff_wait(self, previous: str | None, view: MemberView) -> float:
        if previous is None:
            return self.lease_duration
        if previous in view.live:
            return self.lease_duration
        if previous in view.released:
            lived = self._lived_for.get(previous, 0.0)
            return 0.0 if lived >= self.lease_duration else self.lease_duration
        # Vanished: its record read as expired, which the store allows no earlier than one
        # lease duration after its last renewal began (past its own renew deadline).
        return 0.0

    def _report(self, handoff: Handoff) -> None:
        if self._on_handoff is None:
            return
        try:
            self._on_handoff(handoff)
        except Exception:
            log.exception("handoff callback failed", extra=self._extra())

    def _report_fresh(self, fresh: bool) -> None:
        if self._on_fresh is not None:
            try:
                self._on_fresh(fresh)
            except Exception:
                log.exception("freshness callback failed", extra=self._extra())

    async def _notify(self) -> None:
        # Apart from the renew loop: starting and stopping target runtimes can take seconds
        # (a tick's grace period, a model load), which must never delay a renewal.
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._on_epoch is None:
                continue
            try:
                await self._on_epoch()
            except Exception:
                # A target that cannot be built now (its API unreachable) must not stay
                # unowned until the next epoch change: try again a few periods later.
                log.exception("rebalancing after an epoch change failed", extra=self._extra())
                await asyncio.sleep(REBALANCE_RETRY_PERIODS * self.retry_period)
                self._changed.set()

    def _extra(self) -> dict[str, str]:
        return {"member": self.identity}


class TargetGate:
    """One target's write permission, in the shape of :class:`daemon.leader.Leadership`:
    owned in the member's epoch, past its handoff wait, and the member fresh."""

    def __init__(self, member: ShardMember, target: str) -> None:
        self.member = member
        self.target = target

    @property
    def is_leader(self) -> bool:
        return self.member.may_write(self.target)

    @property
    def leading(self) -> asyncio.Event:
        return self.member.leading

    @property
    def refusal(self) -> str:
        return self.member.refusal_for(self.target)

    def write_deadline(self) -> float | None:
        return self.member.target_deadline(self.target)

    async def run(self) -> None:
        # The member's own agent runs the membership; a gate has nothing to run.
        await self.member._released.wait()

    async def release(self) -> None:
        return None
