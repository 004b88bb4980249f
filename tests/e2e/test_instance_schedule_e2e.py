"""Issue 11 item 5 end to end: ``elasticd run`` stops a dev environment outside its window and
starts it a lead time before the window opens.

Real parts: the daemon as a process and moto in server mode (EC2 instances and an RDS
database). The window opens at a minute boundary a little under a minute away, and the lead
time is chosen so that its start falls a few seconds after the daemon starts: the resources,
running when the daemon starts, must first be stopped (outside the window) and then started
again no later than ``lead_time`` before the opening.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import yaml

from tests.e2e.daemon_process import DaemonProcess

REGION = "us-east-1"
# Seconds from the daemon's start to the lead time's start: enough to start and stop once.
STOPPED_FOR_S = 9.0
# How late after the lead time's start the start may be written: a tick (1 s) plus the calls.
SLACK_S = 3.0


def _decisions(state: Path) -> list[dict[str, Any]]:
    path = state / "decisions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stops(state: Path) -> list[dict[str, Any]]:
    return [d for d in _decisions(state) if d["written"] and d["desired"] == 0]


def _starts(state: Path) -> list[dict[str, Any]]:
    # The window asks for 10 (its desired_units); the three that exist are started.
    return [d for d in _decisions(state) if d["written"] and d["current"] == 0 and d["desired"]]


def test_stopped_outside_the_window_and_started_a_lead_time_before_it(
    tmp_path: Path, moto_endpoint: str
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    rds = boto3.client("rds", region_name=REGION, endpoint_url=moto_endpoint)
    instances = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=2,
            MaxCount=2,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "environment", "Value": "dev"}]}
            ],
        )["Instances"]
    ]
    rds.create_db_instance(
        DBInstanceIdentifier="orders",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
    )

    began = time.time()
    # The opening: the first minute boundary at least STOPPED_FOR_S + 20 s away.
    opens = math.ceil((began + STOPPED_FOR_S + 20.0) / 60.0) * 60.0
    lead = opens - began - STOPPED_FOR_S
    at = datetime.fromtimestamp(opens, UTC)
    config = {
        "interval": "1s",
        "state_dir": str(tmp_path / "state"),
        "log_format": "json",
        "telemetry": {"enabled": False},
        "training": {"cadence": "1h", "history_window": "1d"},
        "aws": {"region": REGION, "endpoint_url": moto_endpoint},
        "targets": [
            {
                "name": "dev",
                "kind": "instance-schedule",
                "ec2_tags": {"environment": "dev"},
                "rds_instances": ["orders"],
                "max_units": 10,
                "lead_time": f"{lead:.3f}s",
                "mode": "active",
                "schedules": [
                    {
                        "name": "office-hours",
                        "cron": f"{at.minute} {at.hour} * * *",
                        "duration": "1h",
                        "desired_units": 10,
                    }
                ],
            }
        ],
    }
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    state = tmp_path / "state"
    start_due = opens - lead

    daemon = DaemonProcess(path, env={"AWS_EC2_METADATA_DISABLED": "true"})
    try:
        daemon.wait_for(lambda: _stops(state), timeout=start_due - time.time(), what="stop")
        states = ec2.describe_instances(InstanceIds=instances)["Reservations"][0]["Instances"]
        assert {i["State"]["Name"] for i in states} == {"stopped"}
        db = rds.describe_db_instances(DBInstanceIdentifier="orders")["DBInstances"][0]
        assert db["DBInstanceStatus"] == "stopped"
        assert time.time() < start_due, "stopped too late to show the start"

        daemon.wait_for(
            lambda: _starts(state), timeout=start_due + SLACK_S + 5 - time.time(), what="start"
        )
        code, _ = daemon.stop(timeout=10)
    finally:
        daemon.kill()
    assert code == 0, daemon.tail()

    started = _starts(state)[0]
    # Not before the lead time's start, and at least (lead - slack) before the opening.
    assert start_due <= started["inputs"]["now"] <= start_due + SLACK_S, (start_due, started)
    assert started["inputs"]["windows"] == ["office-hours"]
    states = ec2.describe_instances(InstanceIds=instances)["Reservations"][0]["Instances"]
    assert {i["State"]["Name"] for i in states} == {"running"}
    db = rds.describe_db_instances(DBInstanceIdentifier="orders")["DBInstances"][0]
    assert db["DBInstanceStatus"] == "available"
