"""A discrete-time world of members on the in-memory store, for the fencing properties.

Time is a fake monotonic clock stepped in small increments; each member renews on its own
period unless frozen (SIGSTOP), killed (kill -9) or cut off from the store. At every instant
the world records, per target, until when each member could still land a write: a member that
passes a target's gate at ``t`` may send a write that lands up to that gate's write deadline.
Two members whose windows for one target overlap are two writers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.sharding.member import Handoff, ShardMember
from daemon.sharding.memory import MemoryCoordination, MemoryStore

LEASE = 15.0
RENEW = 10.0
RETRY = 2.0


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class Sim:
    targets: list[str]
    clock: FakeClock = field(default_factory=FakeClock)
    store: MemoryStore = field(init=False)
    members: dict[str, ShardMember] = field(default_factory=dict)
    next_step: dict[str, float] = field(default_factory=dict)
    frozen_until: dict[str, float] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    # (target, member) -> the latest instant a write sent by that member may land.
    exposure: dict[tuple[str, str], float] = field(default_factory=dict)
    # (target, member) -> when that member first could write it in its current tenure.
    overlaps: list[tuple[str, str, str, float]] = field(default_factory=list)
    writable_since: dict[str, float] = field(default_factory=dict)
    unowned_since: dict[str, float] = field(default_factory=dict)
    longest_unowned: float = 0.0

    def __post_init__(self) -> None:
        self.store = MemoryStore(clock=self.clock)

    def add(self, name: str, on_handoff: Callable[[Handoff], None] | None = None) -> ShardMember:
        member = ShardMember(
            MemoryCoordination(self.store, name, lease_duration=LEASE),
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            clock=self.clock,
            on_handoff=on_handoff,
        )
        member.track({target: target for target in self.targets})
        self.members[name] = member
        self.next_step[name] = self.clock.now
        return member

    async def release(self, name: str) -> None:
        # A clean stop ends the targets' writes first (the supervisor stops every target
        # runtime before it releases), so nothing of this member's is in flight any more.
        for (target, member), until in self.exposure.items():
            if member == name:
                self.exposure[(target, member)] = min(until, self.clock.now)
        await self.members[name].release()
        self.dead.add(name)

    def kill(self, name: str) -> None:
        self.dead.add(name)

    def freeze(self, name: str, seconds: float) -> None:
        self.frozen_until[name] = self.clock.now + seconds

    def alive(self) -> list[str]:
        return [name for name in self.members if name not in self.dead]

    async def run(self, seconds: float, dt: float = 0.25) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            for name in self.alive():
                if self.frozen_until.get(name, -math.inf) > self.clock.now:
                    continue
                if self.clock.now >= self.next_step[name]:
                    await self.members[name].step()
                    self.next_step[name] = self.clock.now + RETRY
            self.observe()
            self.clock.now += dt

    def observe(self) -> None:
        now = self.clock.now
        for target in self.targets:
            writers = []
            for name in self.alive():
                if self.frozen_until.get(name, -math.inf) > now:
                    continue  # a frozen process sends nothing (its old writes are in exposure)
                member = self.members[name]
                if member.may_write(target):
                    deadline = member.target_deadline(target)
                    assert deadline is not None
                    self.exposure[(target, name)] = max(
                        self.exposure.get((target, name), -math.inf), deadline
                    )
                    writers.append(name)
            for name in writers:
                for (other_target, other), until in self.exposure.items():
                    if other_target == target and other != name and until > now:
                        self.overlaps.append((target, other, name, now))
            if writers:
                since = self.unowned_since.pop(target, None)
                if since is not None:
                    self.longest_unowned = max(self.longest_unowned, now - since)
            else:
                self.unowned_since.setdefault(target, now)

    def writable_by(self, target: str) -> list[str]:
        return [n for n in self.alive() if self.members[n].may_write(target)]
