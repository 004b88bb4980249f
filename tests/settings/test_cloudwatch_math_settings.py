"""CloudWatch metric math with named inputs in the configuration: checked at load, one line
naming the YAML path, in the JSON Schema, and shown in the AWS example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import ConfigError
from daemon.settings import CloudWatchQuery, Settings, load_settings, parse_settings
from daemon.settings.queries import INPUT_ID_PATTERN, referenced_ids

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
QUERY = "targets[0].query"


def config(query: Any) -> dict[str, Any]:
    return {
        "aws": {"region": "us-east-1"},
        "sources": {"cw": {"type": "cloudwatch"}},
        "targets": [
            {
                "name": "web",
                "kind": "asg",
                "group_name": "web",
                "source": "cw",
                "query": query,
                "unit_capacity": 100,
                "lead_time": "5m",
                "max_units": 20,
            }
        ],
    }


def metric(input_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": input_id, "namespace": "AWS/ApplicationELB", "metric_name": "RequestCount"} | (
        fields
    )


def test_inputs_and_an_expression_over_them_load() -> None:
    query = {
        "expression": "e1 / m2",
        "inputs": [
            metric("m1", statistic="Sum", dimensions={"TargetGroup": "tg"}),
            metric("m2", metric_name="HealthyHostCount"),
            {"id": "e1", "expression": "FILL(m1, 0) * 60"},
        ],
        "period": "5m",
    }
    loaded = parse_settings(config(query), "test.yaml").targets[0].query
    assert isinstance(loaded, CloudWatchQuery)
    assert [item.id for item in loaded.inputs] == ["m1", "m2", "e1"]
    assert loaded.inputs[0].statistic == "Sum" and loaded.inputs[0].dimensions == {
        "TargetGroup": "tg"
    }
    assert loaded.inputs[2].expression == "FILL(m1, 0) * 60" and loaded.inputs[2].namespace is None
    assert loaded.period == 300.0


@pytest.mark.parametrize(
    ("query", "path", "reason"),
    [
        (
            {"expression": "m1 / m3", "inputs": [metric("m1"), metric("m2")]},
            "expression",
            "unknown id 'm3'",
        ),
        (
            {"expression": "m1 / mm2", "inputs": [metric("m1"), metric("m2")]},
            "expression",
            "did you mean 'm2'?",
        ),
        (
            {"expression": "m1 + m1", "inputs": [metric("m1"), metric("m1")]},
            "inputs[1].id",
            "duplicate id 'm1' (also inputs[0])",
        ),
        ({"expression": "M1", "inputs": [metric("M1")]}, "inputs[0].id", "lowercase letter"),
        ({"expression": "m1", "inputs": [metric("1m")]}, "inputs[0].id", "invalid id '1m'"),
        ({"expression": "m-1", "inputs": [metric("m-1")]}, "inputs[0].id", "invalid id 'm-1'"),
        (
            {"expression": "elasticd_0", "inputs": [metric("elasticd_0")]},
            "inputs[0].id",
            "elasticd's",
        ),
        (
            {
                "expression": "e1",
                "inputs": [
                    metric("m1"),
                    {"id": "e1", "expression": "e2 + m1"},
                    {"id": "e2", "expression": "e1 * 2"},
                ],
            },
            "inputs[1].expression",
            "cycle: e1 -> e2 -> e1",
        ),
        (
            {"expression": "e1", "inputs": [{"id": "e1", "expression": "e1 + 1"}]},
            "inputs[0].expression",
            "cycle: e1 -> e1",
        ),
        (
            {"expression": "m1", "inputs": [metric("m1"), {"id": "e1", "expression": "m9"}]},
            "inputs[1].expression",
            "unknown id 'm9'",
        ),
        ({"expression": "m1 * 2"}, "expression", "no inputs are defined"),
        (
            {"namespace": "AWS/SQS", "metric_name": "x", "inputs": [metric("m1")]},
            "inputs",
            "need an expression",
        ),
        ({"expression": "m1", "inputs": [{"id": "m1"}]}, "inputs[0].metric_name", "required"),
        (
            {"expression": "m1", "inputs": [metric("m1", expression="m2")]},
            "inputs[0].expression",
            "not both",
        ),
        (
            {"expression": "m1", "inputs": [metric("m1", statistic="Avg")]},
            "inputs[0].statistic",
            "must match pattern",
        ),
        (
            {"expression": "m1", "inputs": [metric("m1", period="5m")]},
            "inputs[0].period",
            "unknown key",
        ),
    ],
)
def test_bad_inputs_name_the_yaml_path(query: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config(query), "test.yaml")
    assert caught.value.path == f"{QUERY}.{path}"
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("expression", "ids"),
    [
        ("m1 / m2 * 100", ["m1", "m2"]),
        ("SUM(METRICS()) / m1", ["m1"]),  # functions are calls, not ids
        ("FILL(m1, REPEAT) + 1e3 + 2.5E-2", ["m1"]),  # keywords and exponents are not ids
        ("IF(m1 > 0, m2 / m1, 0)", ["m1", "m2"]),
        ("SEARCH('{AWS/EC2,InstanceId} MetricName=\"cpu\"', 'Average', 300)", []),
        ("SELECT AVG(latency) FROM app WHERE queue = 'jobs'", []),  # Metrics Insights
        ("m1_total + m1_total", ["m1_total"]),
    ],
)
def test_the_ids_an_expression_refers_to(expression: str, ids: list[str]) -> None:
    assert referenced_ids(expression) == ids


def test_the_json_schema_describes_inputs_and_their_ids() -> None:
    schema = Settings.model_json_schema()
    definitions = schema["$defs"]
    query = definitions["CloudWatchQuery"]["properties"]
    assert query["inputs"]["items"] == {"$ref": "#/$defs/CloudWatchInput"}
    assert query["inputs"]["maxItems"] == 499
    assert "m1 / m2" in query["expression"]["description"]
    item = definitions["CloudWatchInput"]
    assert item["required"] == ["id"]
    assert item["additionalProperties"] is False
    assert item["properties"]["id"]["pattern"] == INPUT_ID_PATTERN
    # The schema's pattern is the one the loader applies (an editor flags what load refuses).
    assert re.fullmatch(INPUT_ID_PATTERN, "m1") and not re.fullmatch(INPUT_ID_PATTERN, "M1")
    assert set(item["properties"]) == {
        "id",
        "namespace",
        "metric_name",
        "dimensions",
        "statistic",
        "expression",
    }


def test_the_aws_example_computes_demand_with_metric_math() -> None:
    (target,) = load_settings(CONFIG_DIR / "aws.yaml").targets
    query = target.query
    assert isinstance(query, CloudWatchQuery) and query.expression is not None
    assert set(referenced_ids(query.expression)) == {item.id for item in query.inputs}
    assert all(item.namespace == "AWS/SQS" for item in query.inputs)
