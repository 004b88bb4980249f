"""Each mistake is one ConfigError naming the dotted YAML path and the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import ConfigError
from daemon.settings import ConfigFileError, load_settings, parse_settings

Config = dict[str, Any]
WINDOW = {"name": "night", "cron": "0 19 * * 1-5", "duration": "12h", "max_units": 0}


def web(config: Config) -> Config:
    target: Config = config["targets"][0]
    return target


def node_link(**changes: Any) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        link: Config = {
            "target": "nodes",
            "pod_requests": {"cpu": "500m", "memory": "512Mi"},
            "node_allocatable": {"cpu": "4", "memory": "16Gi"},
        }
        link.update(changes)
        web(config)["node_group"] = link

    return apply


# (id, change to the minimal config, expected path, a fragment of the reason)
BAD_CONFIGS: list[tuple[str, Callable[[Config], None], str, str]] = [
    (
        "typo-key",
        lambda c: web(c).update(min_unit=2),
        "targets[0].min_unit",
        "unknown key; did you mean 'min_units'?",
    ),
    ("typo-top-key", lambda c: c.update(intervl="5s"), "intervl", "did you mean 'interval'?"),
    (
        "typo-kind",
        lambda c: web(c).update(kind="deploymnet"),
        "targets[0].kind",
        "did you mean 'deployment'?",
    ),
    (
        "typo-source-type",
        lambda c: c["sources"]["prom"].update(type="promethus"),
        "sources.prom.type",
        "did you mean 'prometheus'?",
    ),
    ("wrong-type", lambda c: web(c).update(max_units="many"), "targets[0].max_units", "integer"),
    ("wrong-type-list", lambda c: c.update(targets="web"), "targets", "must be a list"),
    ("negative-min", lambda c: web(c).update(min_units=-1), "targets[0].min_units", ">= 0"),
    (
        "max-below-min",
        lambda c: c["targets"][1].update(min_units=4, max_units=2),
        "targets[1].max_units",
        "must be >= min_units (4)",
    ),
    ("missing-max", lambda c: web(c).pop("max_units"), "targets[0].max_units", "missing"),
    ("unknown-source", lambda c: web(c).update(source="prometheus"), "targets[0].source", "'prom'"),
    (
        "duplicate-target",
        lambda c: c["targets"][1].update(name="web"),
        "targets[1].name",
        "duplicate",
    ),
    (
        "bad-cron",
        lambda c: web(c).update(schedules=[{**WINDOW, "cron": "0 25 * * *"}]),
        "targets[0].schedules[0].cron",
        "invalid cron",
    ),
    (
        "six-field-cron",
        lambda c: web(c).update(schedules=[{**WINDOW, "cron": "0 0 19 * * 1-5"}]),
        "targets[0].schedules[0].cron",
        "5 fields",
    ),
    (
        "bad-timezone",
        lambda c: web(c).update(schedules=[{**WINDOW, "timezone": "Mars/Olympus"}]),
        "targets[0].schedules[0].timezone",
        "unknown time zone",
    ),
    (
        "bad-duration",
        lambda c: web(c).update(lead_time="5 minutes"),
        "targets[0].lead_time",
        "invalid duration",
    ),
    ("zero-lead-time", lambda c: web(c).update(lead_time=0), "targets[0].lead_time", "> 0"),
    (
        "shortfall-out-of-range",
        lambda c: web(c).update(shortfall_target=0.5),
        "targets[0].shortfall_target",
        "< 0.5",
    ),
    (
        "act-via-for-other-kind",
        lambda c: web(c).update(act_via="asg-floor"),
        "targets[0].act_via",
        "not available for deployment",
    ),
    (
        "prometheus-without-query",
        lambda c: web(c).pop("query"),
        "targets[0].query",
        "PromQL",
    ),
    (
        "query-wrong-type",
        lambda c: web(c).update(query=5),
        "targets[0].query",
        "PromQL string or a CloudWatch query mapping",
    ),
    (
        "empty-window",
        lambda c: web(c).update(schedules=[{k: v for k, v in WINDOW.items() if k != "max_units"}]),
        "targets[0].schedules[0]",
        "at least one of",
    ),
    (
        "override-without-offset",
        lambda c: web(c).update(
            overrides=[
                {"name": "sale", "start": "2025-11-28T00:00:00", "end": "2025-11-29T00:00:00"}
            ]
        ),
        "targets[0].overrides[0].start",
        "timezone",
    ),
    (
        "override-ends-first",
        lambda c: web(c).update(
            overrides=[
                {
                    "name": "sale",
                    "start": "2025-11-29T00:00:00+00:00",
                    "end": "2025-11-28T00:00:00+00:00",
                    "min_units": 5,
                }
            ]
        ),
        "targets[0].overrides[0].end",
        "after start",
    ),
    (
        "node-link-to-unknown",
        node_link(target="nodez"),
        "targets[0].node_group.target",
        "did you mean 'nodes'?",
    ),
    (
        "pod-larger-than-node",
        node_link(pod_requests={"cpu": "8", "memory": "1Gi"}),
        "targets[0].node_group.pod_requests.cpu",
        "no pod would fit",
    ),
    (
        "bad-memory",
        node_link(pod_requests={"cpu": "1", "memory": "5Qi"}),
        "targets[0].node_group.pod_requests.memory",
        "invalid size",
    ),
    (
        "lease-timings",
        lambda c: c.update(leader_election={"lease_duration": "5s"}),
        "leader_election.renew_deadline",
        "< lease_duration",
    ),
    (
        "simulator-needs-trace-or-generate",
        lambda c: c["sources"].update(sim={"type": "simulator"}),
        "sources.sim.trace",
        "exactly one",
    ),
    (
        "url-without-scheme",
        lambda c: c["sources"]["prom"].update(url="prometheus:9090"),
        "sources.prom.url",
        "invalid URL",
    ),
    ("no-targets", lambda c: c.update(targets=[]), "targets", "at least 1"),
]


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_names_path_and_reason(
    config: Config, change: Callable[[Config], None], path: str, reason: str
) -> None:
    change(config)
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, "test.yaml")
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert "\n" not in str(caught.value)


def test_node_link_must_point_at_a_node_kind(config: Config) -> None:
    # An ASG-kind target is fine; a second Deployment is not.
    config["targets"].append({**web(config), "name": "api"})
    node_link(target="api")(config)
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, "test.yaml")
    assert caught.value.path == "targets[0].node_group.target"
    assert "expected a node target (asg, eks-nodegroup" in caught.value.reason


def test_message_is_path_then_reason(config: Config) -> None:
    config["targets"][1].update(min_units=4, max_units=2)
    with pytest.raises(ConfigError, match=r"^targets\[1\]\.max_units: must be >= min_units \(4\)$"):
        parse_settings(config, "test.yaml")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "elasticd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "interval: 15s\ntargets:\n  - name: web\n   kind: asg\n")
    with pytest.raises(ConfigFileError) as caught:
        load_settings(path)
    assert caught.value.path == f"{path}:4"


def test_duplicate_yaml_key_is_an_error_not_last_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "interval: 15s\ninterval: 1m\n")
    with pytest.raises(ConfigFileError) as caught:
        load_settings(path)
    assert caught.value.path == f"{path}:2"
    assert "duplicate key 'interval'" in caught.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="no such file"):
        load_settings(tmp_path / "absent.yaml")


@pytest.mark.parametrize(("text", "reason"), [("", "missing"), ("- a\n- b\n", "a list")])
def test_empty_or_non_mapping_file(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_settings(write(tmp_path, text))
