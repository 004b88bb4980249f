"""``metrics:`` on a target: the first metric is the target's own, each further one becomes a
forecast-only companion target, and mistakes name their YAML path."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.errors import ConfigError
from daemon.settings import parse_settings
from daemon.settings.target_base import metric_name

Config = dict[str, Any]

METRICS = [
    {"name": "cpu", "query": "sum(rate(cpu[1m]))", "unit_capacity": 0.8},
    {"name": "rps", "query": "sum(rate(req[1m]))", "unit_capacity": 50, "shortfall_target": 0.003},
]


def with_metrics(config: Config, metrics: list[dict[str, Any]]) -> Config:
    web = config["targets"][0]
    for key in ("query", "unit_capacity"):
        web.pop(key, None)
    web["metrics"] = metrics
    return config


def test_further_metrics_become_forecast_only_companions(config: Config) -> None:
    config["targets"][0]["mode"] = "active"
    settings = parse_settings(with_metrics(config, METRICS), "test.yaml")
    names = [target.name for target in settings.targets]
    web = settings.targets[0]
    companion = settings.target(f"{web.name}.rps")
    assert names[-1] == companion.name  # appended: the file's own indices stay
    assert (web.query, web.unit_capacity, web.mode) == ("sum(rate(cpu[1m]))", 0.8, "active")
    assert (companion.query, companion.unit_capacity) == ("sum(rate(req[1m]))", 50.0)
    assert (companion.shortfall_target, companion.mode) == (0.003, "forecast-only")
    assert companion.metric_of == web.name and companion.metric_index == 1
    assert (metric_name(web), metric_name(companion)) == ("cpu", "rps")
    assert companion.lead_time == web.lead_time and companion.max_units == web.max_units


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (lambda t: t.update(query="up"), "targets[0].query", "per metric"),
        (lambda t: t["metrics"].append(dict(METRICS[0])), "targets[0].metrics[2].name", "dup"),
        (
            lambda t: t["metrics"][1].update(unit_capacity=0),
            "targets[0].metrics[1].unit_capacity",
            "",
        ),
        (lambda t: t.update(metric_of="x"), "targets[0].metric_of", "set by elasticd"),
    ],
    ids=["query-beside-metrics", "duplicate-name", "zero-capacity", "metric_of-in-a-file"],
)
def test_mistakes_name_their_path(config: Config, change: Any, path: str, reason: str) -> None:
    with_metrics(config, [dict(m) for m in METRICS])
    change(config["targets"][0])
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, "test.yaml")
    assert caught.value.path == path, caught.value
    assert reason in caught.value.reason
