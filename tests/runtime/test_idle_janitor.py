"""Releasing idle instances against moto in server mode over HTTP: EC2 DescribeInstances and
StopInstances, and CloudWatch GetMetricData over datapoints put into moto with PutMetricData
(an hour of 5-minute points: moto is slow with thousands, see TESTING.md)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from daemon.actuators.idle_instances import IdleInstances
from daemon.audit import AuditLog
from daemon.leader import AlwaysLeader
from daemon.ratelimit_client import forget_throttles
from daemon.runtime.janitor import check_rule
from daemon.settings.idle import IdleReleaseConfig
from daemon.sources.cloudwatch import CloudWatchSource

REGION = "us-east-1"
PERIOD = 300


@pytest.fixture(autouse=True)
def fresh_throttles() -> Iterator[None]:
    forget_throttles()
    yield
    forget_throttles()


def _instances(endpoint: str, count: int, tags: dict[str, str]) -> list[str]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    answer = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return sorted(i["InstanceId"] for i in answer["Instances"])


def _put(endpoint: str, instance: str, metric: str, values: list[float], end: float) -> None:
    """One value per period, the last period ending at ``end``."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=endpoint)
    first = end - PERIOD * len(values)
    cloudwatch.put_metric_data(
        Namespace="AWS/EC2",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "InstanceId", "Value": instance}],
                "Timestamp": datetime.fromtimestamp(first + i * PERIOD + 30, UTC),
                "Value": value,
            }
            for i, value in enumerate(values)
        ],
    )


def _states(endpoint: str) -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    return {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }


def _rule(dry_run: bool) -> IdleReleaseConfig:
    return IdleReleaseConfig.model_validate(
        {
            "name": "dev-idle",
            "ec2_tags": {"environment": "dev"},
            "metrics": [
                {"metric_name": "CPUUtilization", "below": 5},
                {"metric_name": "NetworkIn", "statistic": "Sum", "below": 100_000},
            ],
            "window": "1h",
            "period": "5m",
            "dry_run": dry_run,
        }
    )


async def _check(endpoint: str, rule: IdleReleaseConfig, audit: AuditLog, now: float) -> Any:
    instances = IdleInstances(
        rule.name, rule.ec2_tags, rule.exclude_tag, region=REGION, endpoint_url=endpoint
    )
    metrics = CloudWatchSource(REGION, endpoint_url=endpoint)
    try:
        return await check_rule(
            rule,
            instances=instances,
            metrics=metrics,
            audit=audit,
            leadership=AlwaysLeader(),
            clock=lambda: now,
        )
    finally:
        await instances.close()
        await metrics.close()


async def test_only_the_idle_instance_is_stopped_with_the_numbers_said(
    moto_endpoint: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    idle, busy, quiet_but_kept, new = _instances(moto_endpoint, 4, {"environment": "dev"})
    (untagged,) = _instances(moto_endpoint, 1, {"environment": "prod"})
    boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint).create_tags(
        Resources=[quiet_but_kept], Tags=[{"Key": "elasticd:keep-running", "Value": "yes"}]
    )
    now = math.floor(time.time() / PERIOD) * PERIOD + 10.0
    end = math.floor(now / PERIOD) * PERIOD
    for instance in (idle, quiet_but_kept, untagged):
        _put(moto_endpoint, instance, "CPUUtilization", [1.5] * 12, end)
        _put(moto_endpoint, instance, "NetworkIn", [4_000.0] * 12, end)
    # Busy for one period of the hour; the new one has reported for a quarter of an hour.
    _put(moto_endpoint, busy, "CPUUtilization", [1.0] * 7 + [60.0] + [1.0] * 4, end)
    _put(moto_endpoint, busy, "NetworkIn", [4_000.0] * 12, end)
    _put(moto_endpoint, new, "CPUUtilization", [0.5] * 3, end)
    _put(moto_endpoint, new, "NetworkIn", [100.0] * 3, end)
    audit = AuditLog(tmp_path / "decisions.jsonl")

    # The dry run says what it would do and does nothing.
    dry = await _check(moto_endpoint, _rule(dry_run=True), audit, now)
    actions = {o.instance: o.action for o in dry}
    assert actions == {
        idle: "would_stop",
        busy: "kept",
        new: "kept",
        quiet_but_kept: "excluded",
    }
    assert set(_states(moto_endpoint).values()) == {"running"}

    with caplog.at_level(logging.WARNING, logger="elasticd.idle"):
        done = await _check(moto_endpoint, _rule(dry_run=False), audit, now)

    assert {o.instance: o.action for o in done} == actions | {idle: "stopped"}
    states = _states(moto_endpoint)
    assert states[idle] == "stopped"
    assert {states[i] for i in (busy, new, quiet_but_kept, untagged)} == {"running"}
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "idle_stopped"]
    message = line.getMessage()
    assert message.startswith(f"stopped {idle}: idle: CPUUtilization peak 1.5 < 5 (12 of 12")
    assert "NetworkIn peak 4000 < 100000" in message and "for 3600s" in message
    kept = {o.instance: o.reason for o in done}
    assert "CPUUtilization peak 60 >= 5" in kept[busy]
    assert "(3 of 12 periods)" in kept[new]

    audit.close()
    records = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(r["reason"], r["inputs"]["instance"], r["written"]) for r in records] == [
        ("idle_would_stop", idle, False),
        ("idle_stopped", idle, True),
    ]
    cpu = records[1]["inputs"]["metrics"]["CPUUtilization"]
    assert cpu == {"peak": 1.5, "below": 5.0, "points": 12, "periods": 12}
