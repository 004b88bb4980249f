"""The documented examples in config/ load, and say what their comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.settings import (
    AsgTarget,
    CloudWatchQuery,
    KubernetesWorkloadTarget,
    SimulatorSourceConfig,
    load_settings,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_three_documented_examples_exist() -> None:
    assert {path.name for path in EXAMPLES} >= {"local.yaml", "kubernetes.yaml", "aws.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_validates(path: Path) -> None:
    assert load_settings(path).targets


def test_local_example_runs_a_simulator_actively_on_loopback() -> None:
    settings = load_settings(CONFIG_DIR / "local.yaml")
    assert settings.state_dir == Path("state")
    assert settings.audit.path == Path("state") / "decisions.jsonl"
    assert (settings.telemetry.host, settings.telemetry.port) == ("127.0.0.1", 9464)
    (target,) = settings.targets
    assert (target.kind, target.mode) == ("simulator", "active")
    source = settings.sources[target.source]
    assert isinstance(source, SimulatorSourceConfig)
    assert source.speedup == 120
    assert source.generate is not None and source.generate.step == 300.0


def test_kubernetes_example_is_forecast_only_and_links_pods_to_nodes() -> None:
    settings = load_settings(CONFIG_DIR / "kubernetes.yaml")
    assert {target.mode for target in settings.targets} == {"forecast-only"}
    web = settings.target("web")
    assert isinstance(web, KubernetesWorkloadTarget)
    assert web.node_group is not None
    assert settings.target(web.node_group.target).kind == "eks-nodegroup"
    assert web.node_group.pod_requests.cpu == pytest.approx(0.5)
    assert web.node_group.pod_requests.memory == 512 * 2**20
    assert web.lead_time == 90.0


def test_aws_example_scales_to_zero_off_hours() -> None:
    settings = load_settings(CONFIG_DIR / "aws.yaml")
    (target,) = settings.targets
    assert isinstance(target, AsgTarget)
    assert isinstance(target.query, CloudWatchQuery)
    assert target.schedules
    assert all(window.max_units == 0 for window in target.schedules)
    assert settings.audit.max_bytes == 100 * 10**6
