"""The in-memory coordination backend: members in one process sharing one store.

For unit tests and benchmarks of the ring and the handoff rules: the store expires records on
an injected clock, so time can be stepped instead of slept, and faults are injected per member.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.sharding.coordination import CoordinationError, MemberView

__all__ = ["MemoryCoordination", "MemoryStore"]

Clock = Callable[[], float]


@dataclass
class _Record:
    renewed_at: float
    duration: float
    released: bool = False


@dataclass
class MemoryStore:
    """The shared store: ``records`` by identity; ``failing`` members get errors."""

    clock: Clock = time.monotonic
    records: dict[str, _Record] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    renewals: int = 0
    # Seconds (real time) each request takes: a slow store.
    delay: float = 0.0

    def view(self) -> MemberView:
        now = self.clock()
        live = {
            name
            for name, record in self.records.items()
            if not record.released and now < record.renewed_at + record.duration
        }
        released = {name for name, record in self.records.items() if record.released}
        return MemberView(frozenset(live), frozenset(released))


class MemoryCoordination:
    """One member's handle on a ``MemoryStore``."""

    def __init__(self, store: MemoryStore, identity: str, *, lease_duration: float) -> None:
        self.store = store
        self.identity = identity
        self.lease_duration = lease_duration

    def describe(self) -> str:
        return f"memory store as {self.identity}"

    async def _check(self) -> None:
        if self.store.delay:
            await asyncio.sleep(self.store.delay)
        if self.identity in self.store.failing:
            raise CoordinationError(f"{self.identity}: injected failure")

    async def renew(self) -> None:
        await self._check()
        self.store.renewals += 1
        self.store.records[self.identity] = _Record(self.store.clock(), self.lease_duration)

    async def view(self) -> MemberView:
        await self._check()
        return self.store.view()

    async def release(self) -> None:
        await self._check()
        record = self.store.records.get(self.identity)
        if record is not None:
            record.released = True

    async def close(self) -> None:
        return None
