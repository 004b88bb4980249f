"""Membership on a real etcd (started on 127.0.0.1 for this module) with aetcd.

Server-side expiry is real time here: the lease TTL is etcd's minimum that this check can
rely on (2 s), and the one expiry test waits it out once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.sharding.etcd_server import EtcdServer, etcd_binary

pytest.importorskip("aetcd", reason="aetcd is not installed (pip install -e '.[dev]')")
if etcd_binary() is None:
    pytest.skip("etcd is not installed (tests/install-servers.sh)", allow_module_level=True)

from daemon.settings.sharding import EtcdConfig
from daemon.sharding.etcd import EtcdCoordination
from daemon.sharding.member import ShardMember

TTL = 2.0


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    server = EtcdServer.start()
    yield server
    server.stop()


@pytest.fixture
async def open_member(
    etcd: EtcdServer,
) -> AsyncIterator[Callable[..., Awaitable[EtcdCoordination]]]:
    group = f"g{uuid.uuid4().hex[:8]}"  # every test its own group: no state carries over
    opened: list[EtcdCoordination] = []

    async def make(identity: str, lease: float = TTL) -> EtcdCoordination:
        member = await EtcdCoordination.open(
            EtcdConfig(endpoint=etcd.endpoint), group=group, identity=identity, lease_duration=lease
        )
        opened.append(member)
        return member

    yield make
    for member in opened:
        await member.close()


async def test_members_renew_release_and_expire_on_the_server(
    open_member: Callable[..., Awaitable[EtcdCoordination]],
) -> None:
    a = await open_member("a")
    b = await open_member("b")
    await a.renew()
    await b.renew()
    await a.renew()  # a keep-alive, not a new lease
    view = await a.view()
    assert view.live == {"a", "b"} and view.released == frozenset()
    await b.release()
    view = await a.view()
    assert view.live == {"a"} and view.released == {"b"}
    await b.renew()  # back with a new lease
    assert (await a.view()).live == {"a", "b"}
    # b stops renewing (a kill -9): etcd deletes its key after the TTL, not before.
    stopped = asyncio.get_running_loop().time()
    while (await a.view()).live != {"a"}:
        assert asyncio.get_running_loop().time() - stopped < 4 * TTL, "b never expired"
        await asyncio.sleep(0.25)
        await a.renew()
    assert asyncio.get_running_loop().time() - stopped >= TTL - 0.5


async def test_groups_do_not_mix(etcd: EtcdServer) -> None:
    config = EtcdConfig(endpoint=etcd.endpoint)
    one = await EtcdCoordination.open(config, group="one", identity="x", lease_duration=TTL)
    two = await EtcdCoordination.open(config, group="two", identity="y", lease_duration=TTL)
    try:
        await one.renew()
        await two.renew()
        assert (await one.view()).live == {"x"}
        assert (await two.view()).live == {"y"}
        await one.release()
        await two.release()
    finally:
        await one.close()
        await two.close()


async def test_members_on_etcd_agree_and_hand_over_on_release(
    open_member: Callable[..., Awaitable[EtcdCoordination]],
) -> None:
    targets = {f"t{i}": f"t{i}" for i in range(60)}
    members = []
    for name in ("a", "b", "c"):
        member = ShardMember(
            await open_member(name, lease=3.0),
            lease_duration=3.0,
            renew_deadline=2.0,
            retry_period=0.5,
        )
        member.track(targets)
        members.append(member)
    for _ in range(2):
        for member in members:
            await member.step()
    assert {m.epoch for m in members} == {("a", "b", "c")}
    assert sum(len(m.owned) for m in members) == len(targets)
    leaving = members.pop()
    gone = leaving.owned
    await leaving.release()
    for member in members:
        await member.step()
    assert {m.epoch for m in members} == {("a", "b")}
    # Released cleanly after being live less than a lease: the others still wait (safe side).
    assert all(any(m.owns(t) for m in members) for t in gone)


def test_explain_names_the_owner_from_the_store(etcd: EtcdServer, tmp_path: Path) -> None:
    from daemon.settings import parse_settings
    from daemon.sharding.explain import ownership_lines
    from daemon.sharding.ring import HashRing
    from tests.runtime.test_app import simulator_config

    sharding = {
        "enabled": True,
        "backend": "etcd",
        "group": "explained",
        "identity": "x",
        "etcd": {"endpoint": etcd.endpoint},
    }
    settings = parse_settings(simulator_config(tmp_path) | {"sharding": sharding}, "test.yaml")
    target = settings.targets[0]

    async def join(identity: str) -> None:
        member = await EtcdCoordination.open(
            settings.sharding.etcd, group="explained", identity=identity, lease_duration=30
        )
        await member.renew()
        await member.close()

    asyncio.run(join("m1"))
    asyncio.run(join("m2"))
    (line,) = ownership_lines(settings, target)
    owner = HashRing(["m1", "m2"]).owner(target.name)
    assert f"owned by {owner};" in line and "live members m1, m2" in line
    # Sharding off: nothing is said, the output is as before.
    single = parse_settings(simulator_config(tmp_path), "test.yaml")
    assert ownership_lines(single, single.targets[0]) == []


async def test_a_member_whose_lease_expired_comes_back_with_a_new_one(
    open_member: Callable[..., Awaitable[EtcdCoordination]],
) -> None:
    # Frozen past its TTL (SIGSTOP): etcd dropped its key; the next renewal must notice the
    # dead lease and register again, not keep refreshing a lease that no longer exists.
    a = await open_member("a")
    b = await open_member("b")
    await a.renew()
    await b.renew()
    began = asyncio.get_running_loop().time()
    while "b" in (await a.view()).live:
        assert asyncio.get_running_loop().time() - began < 4 * TTL, "b never expired"
        await asyncio.sleep(0.25)
        await a.renew()
    await b.renew()
    assert (await a.view()).live == {"a", "b"}
