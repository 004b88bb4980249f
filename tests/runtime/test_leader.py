"""Leader election with the real kubernetes-asyncio client against the in-process fake API.

Timings are scaled down (lease 3 s, renew deadline 2 s, retry 0.2 s) so the whole file runs in
seconds; the assertions are about order (one leader at a time, hand-over well inside one lease
duration, step-down before expiry), which scaling keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from daemon.actuators.kubernetes import KubernetesScaleActuator, kube_api_client
from daemon.errors import ConfigError, FencedError
from daemon.leader import AlwaysLeader, LeaderElector, Leadership, resolve_lease_namespace
from tests.support.fake_kube import FakeKube, write_kubeconfig

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/default/leases/elasticd"
WEB_SCALE = "/apis/apps/v1/namespaces/default/deployments/web/scale"
LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.2


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
async def elector_factory(
    kube_client: client.ApiClient,
) -> AsyncIterator[Callable[..., LeaderElector]]:
    """Builds electors and runs each one's agent; all are released and awaited at the end."""
    running: list[tuple[LeaderElector, asyncio.Task[None]]] = []

    def make(identity: str, **timings: float) -> LeaderElector:
        elector = LeaderElector(
            kube_client,
            namespace="default",
            lease_name="elasticd",
            identity=identity,
            lease_duration=timings.get("lease", LEASE_S),
            renew_deadline=timings.get("renew", RENEW_S),
            retry_period=timings.get("retry", RETRY_S),
        )
        running.append((elector, asyncio.create_task(elector.run(), name=f"leader:{identity}")))
        return elector

    yield make
    for elector, task in running:
        await elector.release()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)


async def until(condition: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds until ``condition`` holds, polled every 10 ms; fails after ``within`` seconds."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within, "condition not reached in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def holder(fake: FakeKube) -> str:
    return str(fake.get("Lease", "default", "elasticd")["spec"].get("holderIdentity", ""))


async def test_two_electors_never_lead_together(
    fake_kube: FakeKube, elector_factory: Callable[..., LeaderElector]
) -> None:
    a, b = elector_factory("a"), elector_factory("b")
    await until(lambda: a.is_leader or b.is_leader)

    # Several renew periods and more than one lease duration: the follower must not take
    # a lease that is being renewed.
    leaders_seen: set[str] = set()
    for _ in range(400):
        assert [a.is_leader, b.is_leader].count(True) == 1, "not exactly one leader"
        leaders_seen |= {e.identity for e in (a, b) if e.is_leader}
        await asyncio.sleep(0.01)

    assert len(leaders_seen) == 1
    (leader,) = leaders_seen
    assert holder(fake_kube) == leader
    lease = fake_kube.get("Lease", "default", "elasticd")["spec"]
    assert lease["leaseDurationSeconds"] == 3
    assert lease["leaseTransitions"] == 0
    # MicroTime: RFC 3339 with six decimals, as the real API server requires.
    assert len(lease["renewTime"]) == len("2024-01-01T00:00:00.000000Z")


async def test_release_hands_over_at_once(
    fake_kube: FakeKube, elector_factory: Callable[..., LeaderElector]
) -> None:
    # A long lease: without a release the follower would wait 30 s.
    first = elector_factory("first", lease=30.0, renew=20.0, retry=0.2)
    await until(lambda: first.is_leader)
    second = elector_factory("second", lease=30.0, renew=20.0, retry=0.2)
    await asyncio.sleep(0.5)
    assert not second.is_leader

    await first.release()
    assert not first.is_leader and not first.leading.is_set()
    released = fake_kube.get("Lease", "default", "elasticd")["spec"]
    assert released["holderIdentity"] == ""
    assert released["leaseDurationSeconds"] == 1

    took = await until(lambda: second.is_leader, within=2.0)
    assert took < 2.0
    assert holder(fake_kube) == "second"
    assert fake_kube.get("Lease", "default", "elasticd")["spec"]["leaseTransitions"] == 1
    assert not first.is_leader


async def test_renew_failures_drop_leadership_before_the_lease_expires(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    changes: list[tuple[float, bool]] = []
    elector = LeaderElector(
        kube_client,
        namespace="default",
        lease_name="elasticd",
        identity="a",
        lease_duration=LEASE_S,
        renew_deadline=RENEW_S,
        retry_period=RETRY_S,
        on_change=lambda leading: changes.append((time.monotonic(), leading)),
    )
    agent = asyncio.create_task(elector.run())
    try:
        await until(lambda: elector.is_leader)
        fake_kube.inject_fault(LEASE_PATH, 500, count=10_000, method="PUT")
        failing_from = time.monotonic()

        await until(lambda: not elector.is_leader, within=RENEW_S + 1.0)
        dropped = time.monotonic()
        # Within the renew deadline of the last good renew, and well before the lease
        # (LEASE_S) runs out for anyone else.
        assert dropped - failing_from <= RENEW_S + 0.3  # polling slack on a busy machine
        assert dropped - (failing_from - RETRY_S) < LEASE_S
        # is_leader turns false by the clock alone; the agent notices (callback, event) on
        # its next wake-up, which it schedules for the deadline.
        await until(lambda: len(changes) == 2, within=0.5)
        assert [leading for _, leading in changes] == [True, False]
        assert not elector.leading.is_set()
        # It kept trying: more than one renew was refused before it gave up.
        assert len(fake_kube.writes_to(LEASE_PATH, verb="PUT")) >= 3

        # Once the server answers again it stands again, and the lease still names it.
        fake_kube.clear_faults()
        await until(lambda: elector.is_leader, within=2.0)
    finally:
        await elector.release()
        await asyncio.wait_for(agent, timeout=5)


async def test_a_hung_renew_request_cannot_outlive_the_deadline(
    fake_kube: FakeKube,
    elector_factory: Callable[..., LeaderElector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    elector = elector_factory("a")
    await until(lambda: elector.is_leader)
    # Every lease request now hangs longer than the renew deadline.
    fake_kube.inject_fault(LEASE_PATH, None, count=10_000, delay=RENEW_S + 0.5)
    stuck_from = time.monotonic()

    with caplog.at_level(logging.WARNING, logger="elasticd.leader"):
        await until(lambda: not elector.is_leader, within=RENEW_S + 1.0)
        assert time.monotonic() - stuck_from <= RENEW_S + 0.3  # polling slack on a busy machine
        await until(lambda: "stopped leading" in caplog.text, within=2.0)
    # The log says what happened, not an empty TimeoutError.
    assert "lease request failed: timed out after " in caplog.text
    fake_kube.clear_faults()


async def test_leader_steps_down_when_another_holds_the_lease(
    fake_kube: FakeKube, elector_factory: Callable[..., LeaderElector]
) -> None:
    elector = elector_factory("a", lease=30.0, renew=20.0, retry=0.2)
    await until(lambda: elector.is_leader)
    # Another instance took the lease (say after this one was paused past its expiry).
    fake_kube.update("Lease", "default", "elasticd", {"spec": {"holderIdentity": "b"}})

    took = await until(lambda: not elector.is_leader, within=2.0)
    assert took < 1.0
    await asyncio.sleep(0.5)
    assert not elector.is_leader and holder(fake_kube) == "b"


async def test_release_of_a_follower_writes_nothing(
    fake_kube: FakeKube, elector_factory: Callable[..., LeaderElector]
) -> None:
    leader = elector_factory("a")
    await until(lambda: leader.is_leader)
    follower = elector_factory("b")
    await asyncio.sleep(0.3)
    writes = len(fake_kube.writes)

    await follower.release()
    assert holder(fake_kube) == "a"
    assert all(w.body["spec"]["holderIdentity"] == "a" for w in fake_kube.writes[writes:])


async def test_write_deadline_is_the_renew_deadline_of_the_last_renew(
    fake_kube: FakeKube, elector_factory: Callable[..., LeaderElector]
) -> None:
    leader = elector_factory("a")
    await until(lambda: leader.is_leader)
    follower = elector_factory("b")
    await asyncio.sleep(3 * RETRY_S)

    now = time.monotonic()
    deadline = leader.write_deadline()
    assert deadline is not None
    # Renewed within the last retry period; a margin is kept back from the renew deadline.
    assert now < deadline <= now + RENEW_S - 0.1 * RENEW_S
    assert deadline > now + RENEW_S - 0.1 * RENEW_S - 2 * RETRY_S
    follower_deadline = follower.write_deadline()
    assert follower_deadline is not None and follower_deadline < now


async def test_a_frozen_leader_is_fenced_before_its_renew_loop_runs(
    fake_kube: FakeKube,
    kube_client: client.ApiClient,
    elector_factory: Callable[..., LeaderElector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_kube.seed(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3},
        }
    )
    web = KubernetesScaleActuator(kube_client, "Deployment", "default", "web")
    leader = elector_factory("a")
    await until(lambda: leader.is_leader)
    deadline_before = leader.write_deadline()
    lease_writes = len(fake_kube.writes)

    # SIGSTOP, as the event loop sees it: nothing of this process runs for longer than the
    # renew deadline. (A real SIGSTOP of a daemon is tests/faults/test_fencing.py.)
    time.sleep(RENEW_S + 0.3)  # noqa: ASYNC251 - blocking the loop is the point

    # First thing on resuming, before the renew loop has had a turn: not leader, the write
    # deadline has passed, and a write made with it sends nothing.
    assert len(fake_kube.writes) == lease_writes
    assert not leader.is_leader
    deadline = leader.write_deadline()
    assert deadline is not None and deadline == deadline_before
    assert deadline < time.monotonic()
    with pytest.raises(FencedError):
        await web.scale(5, expected=3, deadline=deadline)
    assert fake_kube.writes_to(WEB_SCALE) == []
    # The loop then notices and says so.
    with caplog.at_level(logging.WARNING, logger="elasticd.leader"):
        await until(lambda: "stopped leading" in caplog.text, within=2.0)


async def test_always_leader() -> None:
    always: Leadership = AlwaysLeader()
    assert always.is_leader and always.leading.is_set()
    agent = asyncio.create_task(always.run())
    await asyncio.sleep(0)
    assert not agent.done()
    assert always.write_deadline() is None  # no election: unbounded
    await always.release()
    await asyncio.wait_for(agent, timeout=1)
    assert not always.is_leader and not always.leading.is_set()
    released = always.write_deadline()
    assert released is not None and released < time.monotonic()


def test_settings_timings_are_checked(kube_client: client.ApiClient) -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        LeaderElector(
            kube_client,
            namespace="default",
            lease_name="x",
            identity="a",
            lease_duration=5,
            renew_deadline=5,
        )


def test_lease_namespace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_lease_namespace("ops") == "ops"
    mounted = tmp_path / "namespace"
    mounted.write_text("shop\n")
    monkeypatch.setattr("daemon.leader.SERVICE_ACCOUNT_NAMESPACE", mounted)
    assert resolve_lease_namespace(None) == "shop"
    monkeypatch.setattr("daemon.leader.SERVICE_ACCOUNT_NAMESPACE", tmp_path / "missing")
    with pytest.raises(ConfigError) as error:
        resolve_lease_namespace(None)
    assert error.value.path == "leader_election.namespace"
