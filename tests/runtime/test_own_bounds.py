"""A changed decision that the target's own bounds already hold is not sent.

An Auto Scaling group (moto, over HTTP) at its own MaxSize of 3 while demand asks for 9: the
old reconciler called the actuator every tick, which re-read the group, clamped 9 to 3 and
logged "scaled from 3 to 3"; now the reconciler sees from the size it read that nothing can
change and skips the call, saying why in the audit line."""

from __future__ import annotations

from typing import Any

import aioboto3
import boto3

from daemon.actuators.autoscaling_group import AutoScalingGroupActuator
from daemon.runtime.reconciler import AT_OWN_BOUND
from daemon.settings import AsgTarget
from tests.actuators.conftest import CallLog
from tests.runtime.test_reconciler import Harness, ScriptedSource

REGION = "us-east-1"


def create_group(endpoint: str, size: int) -> None:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    ec2.create_launch_template(
        LaunchTemplateName="batch",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    boto3.client(
        "autoscaling", region_name=REGION, endpoint_url=endpoint
    ).create_auto_scaling_group(
        AutoScalingGroupName="batch",
        LaunchTemplate={"LaunchTemplateName": "batch", "Version": "$Latest"},
        MinSize=1,
        MaxSize=size,
        DesiredCapacity=size,
        AvailabilityZones=[f"{REGION}a"],
    )


async def test_a_group_at_its_own_maximum_is_not_asked_again(
    tmp_path: Any, moto_endpoint: str
) -> None:
    create_group(moto_endpoint, 3)
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    calls = CallLog()
    session.events.register("before-call", calls.record)
    actuator = AutoScalingGroupActuator(
        "batch", region=REGION, endpoint_url=moto_endpoint, session=session
    )
    target = AsgTarget.model_validate(
        {
            "name": "web",
            "kind": "asg",
            "group_name": "batch",
            "source": "prom",
            "query": "sum(jobs)",
            "unit_capacity": 100,
            "lead_time": "5m",
            "max_units": 20,
            "mode": "active",
        }
    )
    harness = Harness(tmp_path)
    reconciler = harness.reconciler(target, ScriptedSource(900.0), actuator, level=900.0)  # type: ignore[arg-type]
    try:
        reports = []
        for _ in range(3):
            reports.append(await reconciler.tick())
            harness.clock.now += 15
    finally:
        await actuator.close()
    for report in reports:
        assert report.result is not None and report.result.decision.desired >= 9
        assert report.scaled is None and report.skipped == AT_OWN_BOUND
    assert "SetDesiredCapacity" not in calls.operations
    # One read a tick (the reconciler's own), not a second one inside a write attempt.
    assert calls.operations.count("DescribeAutoScalingGroups") == 3
    lines = harness.audit_lines()
    assert [line["written"] for line in lines] == [False, False, False]
