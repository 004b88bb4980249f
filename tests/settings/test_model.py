"""Defaults, stored units and immutability of a valid configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from daemon.settings import (
    CloudWatchQuery,
    EksNodeGroupTarget,
    KubernetesWorkloadTarget,
    parse_settings,
)


def test_defaults_are_safe(config: dict[str, Any]) -> None:
    settings = parse_settings(config, "test")
    web = settings.targets[0]
    assert settings.interval == 15.0
    assert settings.state_dir == Path("/var/lib/elasticd")
    assert settings.audit.path == Path("/var/lib/elasticd/decisions.jsonl")
    assert settings.leader_election.enabled is False
    assert settings.leader_election.identity  # the host name
    # Nothing is written until the user opts in.
    assert web.mode == "forecast-only"
    assert web.act_via == "replicas"
    assert (web.min_units, web.shortfall_target, web.reactive_utilisation) == (1, 0.01, 1.0)
    # The same planner defaults as `elasticd backtest`, so its numbers describe this target;
    # and as cautious as the HPA: a 300 s scale-down window.
    assert (web.scale_down_stabilisation, web.scale_down_tolerance) == (300.0, 0.0)
    assert web.scale_down_limit is None


def test_targets_are_typed_by_kind(config: dict[str, Any]) -> None:
    web, nodes = parse_settings(config, "test").targets
    assert isinstance(web, KubernetesWorkloadTarget) and web.namespace == "shop"
    assert isinstance(nodes, EksNodeGroupTarget) and nodes.nodegroup == "web"


@pytest.mark.parametrize(
    ("written", "seconds"), [(300, 300.0), ("300s", 300.0), ("5m", 300.0), ("1h", 3600.0)]
)
def test_durations_are_stored_as_float_seconds(
    config: dict[str, Any], written: object, seconds: float
) -> None:
    config["targets"][0]["lead_time"] = written
    config["training"] = {"history_window": "7d"}
    settings = parse_settings(config, "test")
    assert settings.targets[0].lead_time == seconds
    assert settings.training.history_window == 7 * 86400.0


def test_audit_path_follows_state_dir_unless_set(config: dict[str, Any]) -> None:
    config["state_dir"] = "/srv/elasticd"
    assert parse_settings(config, "t").audit.path == Path("/srv/elasticd/decisions.jsonl")
    config["audit"] = {"path": "/var/log/elasticd.jsonl"}
    assert parse_settings(config, "t").audit.path == Path("/var/log/elasticd.jsonl")


def test_cloudwatch_query_takes_a_metric_spec(config: dict[str, Any]) -> None:
    config["sources"]["cw"] = {"type": "cloudwatch", "region": "eu-west-1"}
    config["targets"][1].update(
        source="cw",
        query={
            "namespace": "AWS/ApplicationELB",
            "metric_name": "RequestCount",
            "dimensions": {"LoadBalancer": "app/web/1"},
            "statistic": "Sum",
            "period": "5m",
        },
    )
    query = parse_settings(config, "t").targets[1].query
    assert isinstance(query, CloudWatchQuery)
    assert (query.metric_name, query.statistic, query.period) == ("RequestCount", "Sum", 300.0)


def test_settings_are_frozen(config: dict[str, Any]) -> None:
    settings = parse_settings(config, "test")
    with pytest.raises(pydantic.ValidationError):
        settings.targets[0].max_units = 99
