"""The membership rules on the in-memory store and a fake clock: agreement, handoff waits,
fencing at the renew deadline, clean release, and no two writers under any schedule."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.sharding.member import HANDOFF_WAIT, NOT_FRESH, NOT_OWNER, Handoff, ShardMember
from daemon.sharding.memory import MemoryCoordination, MemoryStore
from tests.sharding.sim import LEASE, RENEW, RETRY, Sim

TARGETS = [f"target-{i}" for i in range(60)]


async def test_members_agree_and_every_target_has_one_owner() -> None:
    sim = Sim(TARGETS)
    for name in ("a", "b", "c"):
        sim.add(name)
    await sim.run(LEASE + 2 * RETRY)
    epochs = {member.epoch for member in sim.members.values()}
    assert epochs == {("a", "b", "c")}
    owned = [member.owned for member in sim.members.values()]
    assert sum(len(o) for o in owned) == len(TARGETS)
    assert set().union(*owned) == set(TARGETS)
    for target in TARGETS:
        assert len(sim.writable_by(target)) == 1


async def test_first_epoch_waits_a_lease_duration() -> None:
    sim = Sim(TARGETS)
    member = sim.add("a")
    await sim.run(RETRY)
    assert member.owned == frozenset(TARGETS)
    assert not member.may_write(TARGETS[0])
    await sim.run(LEASE)
    assert member.may_write(TARGETS[0])


async def b_just_joined() -> tuple[Sim, ShardMember, ShardMember]:
    """``a`` has led alone past its first wait; ``b`` joined and has stepped, ``a`` not yet."""
    sim = Sim(TARGETS)
    a = sim.add("a")
    await sim.run(LEASE + RETRY)
    b = sim.add("b")
    await sim.run(0.25)
    return sim, a, b


async def test_a_join_waits_and_the_old_owner_stops_when_it_sees_the_epoch() -> None:
    sim, a, b = await b_just_joined()
    moved = sorted(b.owned)
    assert moved, "b took nothing"
    assert all(not b.may_write(t) for t in moved)
    await sim.run(RETRY)
    assert all(not a.may_write(t) for t in moved)
    await sim.run(LEASE)
    assert all(b.may_write(t) for t in moved)
    assert sim.overlaps == []


async def test_a_skipped_write_says_why_the_gate_was_shut() -> None:
    """The audit's ``skipped`` names the member's reason, not the single instance's "not
    leader": the handoff wait, another owner (named), or the member's own lost freshness."""
    sim, a, b = await b_just_joined()
    moved = sorted(b.owned)
    kept = sorted(set(TARGETS) - set(moved))
    assert moved and kept
    assert b.gate(moved[0]).refusal == HANDOFF_WAIT
    assert b.gate(kept[0]).refusal == f"{NOT_OWNER} (owner: a)"
    sim.store.failing.add("b")
    await sim.run(RENEW + RETRY)
    assert not b.is_leader and b.gate(moved[0]).refusal == NOT_FRESH
    assert a.gate(kept[0]).is_leader  # a writes its own meanwhile


async def test_a_clean_release_hands_over_at_the_next_read() -> None:
    sim = Sim(TARGETS)
    for name in ("a", "b", "c"):
        sim.add(name)
    await sim.run(2 * LEASE)
    leaving = sorted(sim.members["c"].owned)
    await sim.release("c")
    await sim.run(RETRY + 0.5)
    for target in leaving:
        assert len(sim.writable_by(target)) == 1
    assert sim.overlaps == []


async def test_a_killed_member_is_replaced_after_its_lease() -> None:
    sim = Sim(TARGETS)
    for name in ("a", "b", "c"):
        sim.add(name)
    await sim.run(2 * LEASE)
    lost = sorted(sim.members["c"].owned)
    sim.kill("c")
    await sim.run(LEASE - RETRY)
    assert all(sim.writable_by(t) == [] for t in lost)
    await sim.run(2 * RETRY + 0.5)
    assert all(len(sim.writable_by(t)) == 1 for t in lost)
    assert sim.overlaps == []


async def test_a_member_that_cannot_renew_stops_writing_at_its_deadline() -> None:
    sim = Sim(TARGETS)
    a = sim.add("a")
    await sim.run(LEASE + RETRY)
    target = TARGETS[0]
    deadline = a.target_deadline(target)
    assert deadline is not None and math.isfinite(deadline)
    sim.store.failing.add("a")
    await sim.run(RENEW)
    assert not a.may_write(target)
    assert a.target_deadline(target) == -math.inf
    # Back in the store: it waits a lease duration, since others may have written meanwhile.
    sim.store.failing.discard("a")
    await sim.run(RETRY)
    assert a.owns(target) and not a.may_write(target)


async def test_a_frozen_member_resumes_fenced() -> None:
    sim = Sim(TARGETS)
    for name in ("a", "b"):
        sim.add(name)
    await sim.run(2 * LEASE)
    frozen = sorted(sim.members["b"].owned)
    sim.freeze("b", 3 * LEASE)
    await sim.run(LEASE + 2 * RETRY)
    assert all(sim.writable_by(t) == ["a"] for t in frozen)
    await sim.run(2 * LEASE)  # b resumes, rejoins, and takes its targets back after a wait
    await sim.run(LEASE + 2 * RETRY)
    assert sim.overlaps == []
    assert all(sim.writable_by(t) == ["b"] for t in frozen)


async def test_handoffs_are_reported_by_both_sides() -> None:
    seen: list[Handoff] = []
    sim = Sim(TARGETS)
    sim.add("a", on_handoff=seen.append)
    await sim.run(LEASE + RETRY)
    assert seen == []  # the first epoch takes from nobody
    b = sim.add("b")
    await sim.run(LEASE + 2 * RETRY)
    assert {h.target for h in seen} == set(b.owned)
    assert all(h.previous == "a" and h.owner == "b" for h in seen)
    had = sim.members["a"].owned
    seen.clear()
    c = sim.add("c")
    await sim.run(LEASE + 2 * RETRY)
    assert {h.target for h in seen} == had - sim.members["a"].owned
    assert {h.target for h in seen} <= c.owned


async def test_a_wall_clock_step_changes_nothing(monkeypatch: object) -> None:
    import time

    sim = Sim(TARGETS)
    for name in ("a", "b", "c"):
        sim.add(name)
    await sim.run(2 * LEASE)
    before = {name: (m.epoch, m.owned, m.handoffs_in) for name, m in sim.members.items()}
    real = time.time
    setattr(time, "time", lambda: real() + 300.0)  # noqa: B010
    try:
        await sim.run(2 * LEASE)
    finally:
        setattr(time, "time", real)  # noqa: B010
    after = {name: (m.epoch, m.owned, m.handoffs_in) for name, m in sim.members.items()}
    assert after == before


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["join", "release", "kill", "freeze", "cut"]),
        st.integers(0, 4),
        st.floats(0.5, 40.0),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
async def test_no_two_writers_under_any_schedule(events: list[tuple[str, int, float]]) -> None:
    sim = Sim(TARGETS[:24])
    for name in ("m0", "m1", "m2"):
        sim.add(name)
    await sim.run(LEASE + RETRY)
    joined = 3
    for kind, which, gap in events:
        alive = sim.alive()
        victim = alive[which % len(alive)] if alive else None
        if kind == "join":
            sim.add(f"m{joined}")
            joined += 1
        elif victim is not None and kind == "release":
            await sim.release(victim)
        elif victim is not None and kind == "kill":
            sim.kill(victim)
        elif victim is not None and kind == "freeze":
            sim.freeze(victim, gap * 2)
        elif victim is not None and kind == "cut":
            sim.store.failing.add(victim)
        await sim.run(gap, dt=0.5)
        sim.store.failing.clear()
    frozen_left = max([*sim.frozen_until.values(), sim.clock.now]) - sim.clock.now
    await sim.run(frozen_left + LEASE + 3 * RETRY, dt=0.5)
    assert sim.overlaps == []
    if sim.alive():
        # Settled: every target has exactly one writer.
        assert all(len(sim.writable_by(t)) == 1 for t in sim.targets)


async def test_a_slow_store_does_not_keep_a_member_from_becoming_fresh() -> None:
    # The store answers in 50 ms, five times the retry period: a member that is not fresh
    # must still wait for the answer (up to its renew deadline), or it never writes again.
    store = MemoryStore(delay=0.05)
    member = ShardMember(
        MemoryCoordination(store, "slow", lease_duration=1.0),
        lease_duration=1.0,
        renew_deadline=0.5,
        retry_period=0.01,
    )
    await member.step()
    assert member.is_leader
    assert member.epoch == ("slow",)
