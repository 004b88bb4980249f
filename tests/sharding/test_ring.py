"""The ring's properties: stable across processes, balanced, and moving little on a change."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.sharding.ring import HashRing, stable_hash

NAMES = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
KEYS_3000 = [f"ns-{i % 40}/deployment-{i}" for i in range(3000)]


def _counts(ring: HashRing, keys: list[str]) -> dict[str | None, int]:
    counts: dict[str | None, int] = {member: 0 for member in ring.epoch}
    for key in keys:
        owner = ring.owner(key)
        counts[owner] = counts.get(owner, 0) + 1
    return counts


def test_the_hash_is_the_same_in_another_process() -> None:
    # Python salts hash() per process; the ring must not depend on it.
    code = "from daemon.sharding.ring import stable_hash; print(stable_hash('ns/web'))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert int(other.stdout) == stable_hash("ns/web")


def test_an_empty_ring_owns_nothing() -> None:
    assert HashRing(()).owner("x") is None


@settings(max_examples=40, deadline=None)
@given(st.lists(NAMES, min_size=3, max_size=3, unique=True))
def test_balance_at_three_members_and_3000_targets(members: list[str]) -> None:
    counts = _counts(HashRing(members), KEYS_3000)
    mean = len(KEYS_3000) / 3
    assert max(counts.values()) <= 1.25 * mean


@settings(max_examples=25, deadline=None)
@given(st.lists(NAMES, min_size=2, max_size=8, unique=True), st.data())
def test_one_member_joining_or_leaving_moves_at_most_1_over_n_plus_5_percent(
    members: list[str], data: st.DataObject
) -> None:
    keys = KEYS_3000[:1500]
    before = HashRing(members)
    leaving = data.draw(st.sampled_from(members))
    after = HashRing([m for m in members if m != leaving])
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    # Only the leaver's targets move, and they are about 1/N of them.
    assert all(before.owner(k) == leaving for k in moved)
    assert len(moved) / len(keys) <= 1 / len(members) + 0.05
    # A join is the same change read backwards.
    joined = [k for k in keys if after.owner(k) != before.owner(k)]
    assert all(before.owner(k) == leaving for k in joined)


def test_every_member_computes_the_same_owners_whatever_the_order() -> None:
    one = HashRing(["c", "a", "b"])
    two = HashRing(["b", "c", "a", "a"])
    assert one.epoch == two.epoch == ("a", "b", "c")
    assert all(one.owner(k) == two.owner(k) for k in KEYS_3000[:300])
