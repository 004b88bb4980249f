"""Membership Leases with the real kubernetes-asyncio client against the in-process fake API.

The monotonic clock is a fake one stepped by the test (liveness is judged on it alone); the
wall clock only stamps ``renewTime``, and a test steps it by five minutes to show it is never
read back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from daemon.actuators.kubernetes import kube_api_client
from daemon.sharding.coordination import CoordinationError
from daemon.sharding.kube import GROUP_LABEL, KubeLeaseCoordination, member_lease_name
from daemon.sharding.member import ShardMember
from tests.sharding.sim import FakeClock
from tests.support.fake_kube import FakeKube, write_kubeconfig

LEASE = 15.0
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    fake = FakeKube()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def kube_client(fake_kube: FakeKube, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    api = await kube_api_client(
        str(write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)), in_cluster=False
    )
    yield api
    await api.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def member_of(
    kube_client: client.ApiClient, clock: FakeClock
) -> Callable[..., KubeLeaseCoordination]:
    def make(identity: str, group: str = "elasticd", **extra: object) -> KubeLeaseCoordination:
        return KubeLeaseCoordination(
            kube_client,
            namespace="default",
            group=group,
            identity=identity,
            lease_duration=LEASE,
            clock=clock,
            close_client=False,
            **extra,  # type: ignore[arg-type]
        )

    return make


async def test_a_renewed_lease_is_live_and_a_silent_one_expires_on_the_readers_clock(
    fake_kube: FakeKube, member_of: Callable[..., KubeLeaseCoordination], clock: FakeClock
) -> None:
    a, b = member_of("a"), member_of("b")
    await a.renew()
    await b.renew()
    lease = fake_kube.get("Lease", "default", member_lease_name("elasticd", "b"))
    assert lease["metadata"]["labels"][GROUP_LABEL] == "elasticd"
    assert lease["spec"]["holderIdentity"] == "b"
    assert (await a.view()).live == {"a", "b"}
    clock.now += LEASE - 1
    await a.renew()
    assert (await a.view()).live == {"a", "b"}  # b's version first seen LEASE-1 ago
    clock.now += 1
    assert (await a.view()).live == {"a"}
    await b.renew()  # a new version: live again from now
    assert (await a.view()).live == {"a", "b"}


async def test_a_wall_clock_step_changes_no_liveness(
    member_of: Callable[..., KubeLeaseCoordination], clock: FakeClock
) -> None:
    skewed = datetime.now(UTC) + timedelta(minutes=5)
    a, b = member_of("a"), member_of("b", wall_clock=lambda: skewed)
    for _ in range(3):
        await a.renew()
        await b.renew()
        clock.now += 5
        assert (await a.view()).live == {"a", "b"}
        assert (await b.view()).live == {"a", "b"}


async def test_release_reads_as_released(
    member_of: Callable[..., KubeLeaseCoordination],
) -> None:
    a, b = member_of("a"), member_of("b")
    await a.renew()
    await b.renew()
    await b.release()
    view = await a.view()
    assert view.live == {"a"} and view.released == {"b"}
    await b.renew()  # a restarted member with the same identity takes its Lease back
    assert (await a.view()).live == {"a", "b"}


async def test_another_group_is_invisible(
    member_of: Callable[..., KubeLeaseCoordination],
) -> None:
    a, other = member_of("a"), member_of("a", group="staging")
    await a.renew()
    await other.renew()
    assert a.lease_name != other.lease_name
    assert (await a.view()).live == {"a"}
    assert (await other.view()).live == {"a"}


async def test_leases_of_long_gone_members_are_collected(
    fake_kube: FakeKube, member_of: Callable[..., KubeLeaseCoordination], clock: FakeClock
) -> None:
    a, b = member_of("a"), member_of("b")
    await a.renew()
    await b.renew()
    await a.view()
    clock.now += 10 * LEASE
    await a.renew()
    await a.view()
    names = {lease["metadata"]["name"] for lease in fake_kube.objects.values()}
    assert member_lease_name("elasticd", "b") not in names
    assert member_lease_name("elasticd", "a") in names


async def test_a_lease_written_by_someone_else_is_reclaimed(
    fake_kube: FakeKube, member_of: Callable[..., KubeLeaseCoordination]
) -> None:
    a = member_of("a")
    await a.renew()
    fake_kube.update("Lease", "default", a.lease_name, {"spec": {"holderIdentity": "intruder"}})
    await a.renew()  # 409 on the stale version: read again and claim it
    assert fake_kube.get("Lease", "default", a.lease_name)["spec"]["holderIdentity"] == "a"


async def test_an_api_error_is_a_coordination_error(
    fake_kube: FakeKube, member_of: Callable[..., KubeLeaseCoordination]
) -> None:
    a = member_of("a")
    fake_kube.inject_fault(LEASES, 500, count=1)
    with pytest.raises(CoordinationError, match="HTTP 500"):
        await a.view()


def test_lease_names_are_valid_and_distinct() -> None:
    assert member_lease_name("elasticd", "web-7d9f") == "elasticd-member-web-7d9f"
    one, two = member_lease_name("g", "Pod_A"), member_lease_name("g", "pod-a")
    assert one != two
    assert len(member_lease_name("g", "x" * 400)) <= 253


async def test_members_on_leases_agree_on_one_owner_per_target(
    member_of: Callable[..., KubeLeaseCoordination], clock: FakeClock
) -> None:
    targets = {f"t{i}": f"t{i}" for i in range(90)}
    members = []
    for name in ("a", "b", "c"):
        member = ShardMember(
            member_of(name),
            lease_duration=LEASE,
            renew_deadline=10.0,
            retry_period=2.0,
            clock=clock,
        )
        member.track(targets)
        members.append(member)
    for _ in range(2):
        for member in members:
            await member.step()
    assert {m.epoch for m in members} == {("a", "b", "c")}
    for _ in range(8):  # a lease duration of renewals: the first epoch's wait is over
        clock.now += 2.0
        for member in members:
            await member.step()
    for target in targets:
        assert sum(m.may_write(target) for m in members) == 1


async def test_explains_one_shot_read_goes_by_renew_time(
    member_of: Callable[..., KubeLeaseCoordination],
) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    a, b, c = member_of("a"), member_of("b"), member_of("c", wall_clock=lambda: long_ago)
    for member in (a, b, c):
        await member.renew()
    await b.release()
    view = await a.wall_clock_view()
    assert view.live == {"a"}  # c's renewTime is older than its duration
    assert view.released == {"b"}
