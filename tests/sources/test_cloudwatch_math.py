"""CloudWatch metric math with named inputs: from the YAML to GetMetricData and back.

moto 5.2.5 does not evaluate metric math: for an expression entry it returns the data of the
input whose id *is* the expression (``"m2"``), and nothing for ``m1 / m2``. So this module
tests in two parts:

- against moto's server with the real aioboto3 client: a query with hidden inputs is accepted
  as botocore serialises it, moto reads the inputs, and only the expression's output comes
  back (an expression that names one input, which moto can answer);
- against ``EvaluatingGetMetricData``, an in-repo fake of the one client method that
  evaluates + - * / over the inputs it is sent: what is sent for real arithmetic and for
  expressions over other expressions, and what is read back.
"""

from __future__ import annotations

import ast
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aioboto3
import numpy as np
import pytest

from daemon.runtime.app import query_spec
from daemon.settings import Settings, parse_settings
from daemon.sources.base import MetricQuery
from daemon.sources.cloudwatch import CloudWatchExpression, CloudWatchMetric, CloudWatchSource
from daemon.sources.retry import RetryPolicy

REGION = "us-east-1"
NO_RETRIES = RetryPolicy(attempts=1)
ALB = "app/shop/50dc6c495c0c9188"
TG = "targetgroup/web/73e2d6bc24d8a067"


def settings_with(query: dict[str, Any], endpoint: str = "http://127.0.0.1:1") -> Settings:
    return parse_settings(
        {
            "aws": {"region": REGION, "endpoint_url": endpoint},
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
        },
        "test.yaml",
    )


def requests_per_target(expression: str = "m1 / m2", **extra: Any) -> dict[str, Any]:
    """ALB requests (Sum) over healthy targets (Average), as a user writes it in YAML."""
    return {
        "expression": expression,
        "inputs": [
            {
                "id": "m1",
                "namespace": "AWS/ApplicationELB",
                "metric_name": "RequestCount",
                "dimensions": {"LoadBalancer": ALB, "TargetGroup": TG},
                "statistic": "Sum",
            },
            {
                "id": "m2",
                "namespace": "AWS/ApplicationELB",
                "metric_name": "HealthyHostCount",
                "dimensions": {"LoadBalancer": ALB, "TargetGroup": TG},
                "statistic": "Average",
            },
            *extra.pop("more_inputs", []),
        ],
        "period": "1m",
        **extra,
    }


# --- an in-repo fake that evaluates arithmetic ----------------------------------------------


class EvaluatingGetMetricData:
    """GetMetricData over fixed per-metric data, evaluating + - * / expressions by id.

    ``data`` maps ``(metric_name, stat)`` to one value per minute from ``start``. Every
    request is recorded in ``calls``; only entries with ReturnData true come back.
    """

    def __init__(self, data: dict[tuple[str, str], list[float]], start: float) -> None:
        self.data = data
        self.start = start
        self.calls: list[dict[str, Any]] = []

    async def get_metric_data(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        entries = {entry["Id"]: entry for entry in request["MetricDataQueries"]}
        first = request["StartTime"].timestamp()
        end = request["EndTime"].timestamp()
        times = [self.start + 60.0 * i for i in range(len(next(iter(self.data.values()))))]
        keep = [i for i, t in enumerate(times) if first <= t < end]

        def value_of(entry_id: str) -> np.ndarray[Any, Any]:
            entry = entries[entry_id]  # a KeyError here is an id the request did not define
            if "MetricStat" in entry:
                stat = entry["MetricStat"]
                series = self.data[(stat["Metric"]["MetricName"], stat["Stat"])]
                return np.asarray(series, dtype=np.float64)[keep]
            result: np.ndarray[Any, Any] = evaluate(
                ast.parse(entry["Expression"], mode="eval").body
            )
            return result

        def evaluate(node: ast.expr) -> Any:
            if isinstance(node, ast.Name):
                return value_of(node.id)
            if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
                return float(node.value)
            if isinstance(node, ast.BinOp):
                left, right = evaluate(node.left), evaluate(node.right)
                operations = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply}
                operations[ast.Div] = np.divide
                return operations[type(node.op)](left, right)
            raise AssertionError(f"the fake evaluates + - * / only, got {ast.dump(node)}")

        results = [
            {
                "Id": entry_id,
                "Label": entry.get("Label", entry_id),
                "Timestamps": [datetime.fromtimestamp(times[i], UTC) for i in keep],
                "Values": value_of(entry_id).tolist(),
                "StatusCode": "Complete",
            }
            for entry_id, entry in entries.items()
            if entry["ReturnData"]
        ]
        return {"MetricDataResults": results, "Messages": []}


REQUESTS = [120.0, 300.0, 90.0, 400.0]
HEALTHY = [2.0, 3.0, 3.0, 4.0]


def evaluating_source() -> tuple[CloudWatchSource, EvaluatingGetMetricData]:
    fake = EvaluatingGetMetricData(
        {("RequestCount", "Sum"): REQUESTS, ("HealthyHostCount", "Average"): HEALTHY}, 0.0
    )
    return CloudWatchSource(REGION, client=fake, backoff=NO_RETRIES), fake


async def test_requests_per_target_from_the_yaml_sends_hidden_inputs() -> None:
    settings = settings_with(requests_per_target())
    spec = query_spec(settings.targets[0])
    assert isinstance(spec, CloudWatchExpression)
    source, fake = evaluating_source()
    series = await source.history(MetricQuery("web", spec), 0.0, 240.0, 60)
    np.testing.assert_allclose(series.values, [60.0, 100.0, 30.0, 100.0])
    np.testing.assert_array_equal(series.timestamps, [0.0, 60.0, 120.0, 180.0])
    (call,) = fake.calls
    entries = call["MetricDataQueries"]
    assert [entry["Id"] for entry in entries[:2]] == ["m1", "m2"]
    assert [entry["ReturnData"] for entry in entries] == [False, False, True]
    m1 = entries[0]["MetricStat"]
    assert (m1["Metric"]["MetricName"], m1["Stat"], m1["Period"]) == ("RequestCount", "Sum", 60)
    assert {d["Name"]: d["Value"] for d in m1["Metric"]["Dimensions"]} == {
        "LoadBalancer": ALB,
        "TargetGroup": TG,
    }
    assert entries[1]["MetricStat"]["Stat"] == "Average"
    assert entries[2]["Expression"] == "m1 / m2"


async def test_an_expression_over_another_expression_is_sent_hidden_too() -> None:
    query = requests_per_target(
        "(e1 - m2) / 2",
        more_inputs=[{"id": "e1", "expression": "m1 / m2"}],
    )
    spec = query_spec(settings_with(query).targets[0])
    assert isinstance(spec, CloudWatchExpression)
    assert dict(spec.inputs)["e1"] == "m1 / m2"
    source, fake = evaluating_source()
    series = await source.history(MetricQuery("web", spec), 0.0, 240.0, 60)
    expected = (np.array(REQUESTS) / np.array(HEALTHY) - np.array(HEALTHY)) / 2
    np.testing.assert_allclose(series.values, expected)
    entries = {entry["Id"]: entry for entry in fake.calls[0]["MetricDataQueries"]}
    assert entries["e1"] == {"Id": "e1", "Expression": "m1 / m2", "Period": 60, "ReturnData": False}


def test_a_plain_metric_and_an_expression_without_inputs_keep_their_shape() -> None:
    plain = query_spec(
        settings_with(
            {"namespace": "AWS/SQS", "metric_name": "NumberOfMessagesSent", "statistic": "Sum"}
        ).targets[0]
    )
    assert plain == CloudWatchMetric("AWS/SQS", "NumberOfMessagesSent", stat="Sum")
    search = "SUM(SEARCH('{AWS/SQS,QueueName} NumberOfMessagesSent', 'Sum', 60))"
    alone = query_spec(settings_with({"expression": search}).targets[0])
    assert alone == CloudWatchExpression(search, inputs=())


# --- against moto's server ------------------------------------------------------------------


@pytest.fixture
async def moto_alb(moto_endpoint: str) -> float:
    """Two hours of RequestCount (i) and HealthyHostCount (i % 5 + 1) a minute; minute 0."""
    base = (time.time() // 3600) * 3600 - 2 * 3600
    dimensions = [{"Name": "LoadBalancer", "Value": ALB}, {"Name": "TargetGroup", "Value": TG}]
    points = [
        {
            "MetricName": name,
            "Dimensions": dimensions,
            "Timestamp": datetime.fromtimestamp(base + i * 60 + 10, UTC),
            "Value": value,
        }
        for i in range(120)
        for name, value in (("RequestCount", float(i)), ("HealthyHostCount", float(i % 5 + 1)))
    ]
    session = aioboto3.Session()
    async with session.client(
        "cloudwatch", region_name=REGION, endpoint_url=moto_endpoint
    ) as client:
        for first in range(0, len(points), 150):
            await client.put_metric_data(
                Namespace="AWS/ApplicationELB", MetricData=points[first : first + 150]
            )
    return base


@pytest.fixture
async def moto_source(moto_endpoint: str) -> AsyncIterator[CloudWatchSource]:
    source = CloudWatchSource(REGION, endpoint_url=moto_endpoint, backoff=NO_RETRIES)
    yield source
    await source.close()


async def test_moto_reads_the_inputs_and_returns_only_the_expression(
    moto_source: CloudWatchSource, moto_alb: float
) -> None:
    # moto answers an expression naming one input id with that input's data: enough to see
    # the real request (hidden inputs, expression output) accepted and the output read back.
    for expression, expected in (("m1", np.arange(120.0)), ("m2", np.arange(120) % 5 + 1.0)):
        spec = query_spec(settings_with(requests_per_target(expression)).targets[0])
        series = await moto_source.history(
            MetricQuery("web", spec), moto_alb, moto_alb + 120 * 60, 60
        )
        np.testing.assert_array_equal(series.timestamps, moto_alb + 60.0 * np.arange(120))
        np.testing.assert_array_equal(series.values, expected)
