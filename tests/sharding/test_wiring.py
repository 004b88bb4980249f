"""How the daemon runs a member: the janitor's key, metrics of real targets only, gates on
every reconciler (also in ``elasticd once``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from daemon.errors import ElasticdError
from daemon.runtime.supervisor import Supervisor
from daemon.runtime.target import TargetRuntime
from daemon.settings import parse_settings
from daemon.sharding.member import ShardMember, TargetGate
from daemon.sharding.memory import MemoryCoordination, MemoryStore
from daemon.sharding.wiring import JANITOR_KEY, ShardMetrics, shard_keys
from tests.runtime.test_app import simulator_config
from tests.sharding.sim import FakeClock
from tests.support.fake_kube import FakeKube, write_kubeconfig


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    fake = FakeKube()
    await fake.start()
    yield fake
    await fake.stop()


def sharded_settings(tmp_path: Path, kubeconfig: Path | None = None) -> Any:
    config = simulator_config(tmp_path / "state")
    config["sharding"] = {"enabled": True, "namespace": "shop", "identity": "solo"}
    if kubeconfig is not None:
        config["kubernetes"] = {"kubeconfig": str(kubeconfig), "in_cluster": False}
    return parse_settings(config, "test.yaml")


def test_the_janitor_has_a_key_no_target_can_have(tmp_path: Path) -> None:
    settings = sharded_settings(tmp_path)
    keys = shard_keys(settings)
    assert keys[JANITOR_KEY] == JANITOR_KEY
    assert all(t.name != JANITOR_KEY for t in settings.targets)


async def test_metrics_count_targets_not_the_janitor() -> None:
    clock = FakeClock()
    member = ShardMember(
        MemoryCoordination(MemoryStore(clock=clock), "solo", lease_duration=15.0), clock=clock
    )
    member.track({"web": "web", "api": "api", JANITOR_KEY: JANITOR_KEY})
    await member.step()
    assert member.owns(JANITOR_KEY)
    registry = CollectorRegistry()
    registry.register(ShardMetrics(member, clock))
    text = generate_latest(registry).decode()
    assert "elasticd_shard_owned_targets 2.0" in text
    assert "elasticd_shard_ring_members 1.0" in text
    assert "elasticd_shard_seconds_since_renew 0.0" in text


async def test_a_one_shot_pass_gates_every_reconciler(fake_kube: FakeKube, tmp_path: Path) -> None:
    # Before the fix, `elasticd once` with sharding gave every reconciler the member itself,
    # which says "yes" once fresh: a pass wrote every target, other members' included.
    settings = sharded_settings(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url))
    supervisor = Supervisor(tmp_path / "config.yaml", settings, watch_interval_s=0)
    seen: dict[str, object] = {}

    async def one_pass(
        built: Mapping[str, TargetRuntime], failed: Mapping[str, ElasticdError]
    ) -> None:
        assert not failed
        seen.update({name: runtime.reconciler.leadership for name, runtime in built.items()})
        seen["shared"] = supervisor.shared.leadership

    await supervisor.run_pass(one_pass)
    assert seen and all(isinstance(gate, TargetGate) for gate in seen.values())
    assert isinstance(seen["shared"], TargetGate) and seen["shared"].target == JANITOR_KEY
