"""EMR actuators with the real aioboto3 client: instance groups against moto in server mode
(it implements ListInstanceGroups and ModifyInstanceGroups); the managed scaling floor against
``tests/support/fake_emr.py``, since moto 5.2 lacks Get/PutManagedScalingPolicy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
from botocore.config import Config

from daemon.actuators.base import Actuator
from daemon.actuators.emr import EmrInstanceGroupActuator, EmrManagedScalingFloorActuator
from daemon.actuators.retry import RetryPolicy
from daemon.errors import ConflictError, PermanentActuatorError, ThrottledError
from tests.actuators.conftest import CallLog
from tests.support.fake_emr import FakeEmr

REGION = "us-east-1"


async def create_cluster(session: aioboto3.Session, endpoint: str, *, task: int) -> str:
    async with session.client("emr", region_name=REGION, endpoint_url=endpoint) as emr:
        answer = await emr.run_job_flow(
            Name="etl",
            ReleaseLabel="emr-7.0.0",
            Instances={
                "InstanceGroups": [
                    {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1},
                    {"InstanceRole": "CORE", "InstanceType": "m5.xlarge", "InstanceCount": 2},
                    {"InstanceRole": "TASK", "InstanceType": "m5.xlarge", "InstanceCount": task},
                ],
                "KeepJobFlowAliveWhenNoSteps": True,
            },
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )
    return str(answer["JobFlowId"])


async def task_count(session: aioboto3.Session, endpoint: str, cluster: str) -> int:
    async with session.client("emr", region_name=REGION, endpoint_url=endpoint) as emr:
        groups = (await emr.list_instance_groups(ClusterId=cluster))["InstanceGroups"]
    return next(
        int(g["RequestedInstanceCount"]) for g in groups if g["InstanceGroupType"] == "TASK"
    )


@pytest.fixture
def retry() -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005)


async def test_instance_group_reads_and_resizes_the_task_group(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    retry: RetryPolicy,
) -> None:
    session, calls = aws_session
    cluster = await create_cluster(session, moto_endpoint, task=2)
    actuator = EmrInstanceGroupActuator(
        cluster,
        "TASK",
        region=REGION,
        endpoint_url=moto_endpoint,
        session=session,
        client_config=aws_config,
        retry=retry,
    )
    assert isinstance(actuator, Actuator)
    try:
        capacity = await actuator.read()
        assert capacity.desired == 2
        result = await actuator.scale(5, expected=2)
        assert (result.written, result.previous, result.applied) == (True, 2, 5)
        assert await task_count(session, moto_endpoint, cluster) == 5
        calls.operations.clear()
        unchanged = await actuator.scale(5, expected=5)
        assert not unchanged.written
        assert "ModifyInstanceGroups" not in calls.operations  # nothing changed: no write
        with pytest.raises(ConflictError):  # someone else resized it since the decision
            await actuator.scale(7, expected=3)
        assert await task_count(session, moto_endpoint, cluster) == 5
    finally:
        await actuator.close()


async def test_a_core_group_never_goes_below_one_and_unknown_groups_are_permanent(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    retry: RetryPolicy,
) -> None:
    session, _ = aws_session
    cluster = await create_cluster(session, moto_endpoint, task=1)
    args: dict[str, Any] = {
        "region": REGION,
        "endpoint_url": moto_endpoint,
        "session": session,
        "client_config": aws_config,
        "retry": retry,
    }
    core = EmrInstanceGroupActuator(cluster, "CORE", **args)
    missing = EmrInstanceGroupActuator(cluster, "ig-NOPE", **args)
    try:
        result = await core.scale(0)
        assert result.applied == 1  # clamped: HDFS lives on the core nodes
        with pytest.raises(PermanentActuatorError, match="not found"):
            await missing.read()
    finally:
        await core.close()
        await missing.close()


@pytest.fixture
async def fake_emr() -> AsyncIterator[FakeEmr]:
    fake = FakeEmr()
    await fake.start()
    yield fake
    await fake.stop()


def floor_for(fake: FakeEmr, cluster: str, config: Config) -> EmrManagedScalingFloorActuator:
    return EmrManagedScalingFloorActuator(
        cluster,
        region=REGION,
        endpoint_url=fake.url,
        session=aioboto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ),
        client_config=config,
        retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005),
    )


LIMITS = {
    "UnitType": "Instances",
    "MinimumCapacityUnits": 2,
    "MaximumCapacityUnits": 20,
    "MaximumOnDemandCapacityUnits": 10,
}


async def test_managed_scaling_floor_raises_the_minimum_and_keeps_every_other_limit(
    fake_emr: FakeEmr, aws_config: Config
) -> None:
    fake_emr.policies["j-ABC"] = {"ComputeLimits": dict(LIMITS)}
    floor = floor_for(fake_emr, "j-ABC", aws_config)
    try:
        assert (await floor.read()).desired == 2
        result = await floor.scale(35, expected=2)
        assert result.applied == 20  # clamped to the policy's own maximum
        [sent] = fake_emr.writes()
        assert sent["ManagedScalingPolicy"]["ComputeLimits"] == {
            **LIMITS,
            "MinimumCapacityUnits": 20,
        }
        assert not (await floor.scale(20, expected=20)).written
        assert len(fake_emr.writes()) == 1
    finally:
        await floor.close()


async def test_managed_scaling_floor_throttling_and_missing_policy(
    fake_emr: FakeEmr, aws_config: Config
) -> None:
    fake_emr.policies["j-ABC"] = {"ComputeLimits": dict(LIMITS)}
    fake_emr.policies["j-NOPOLICY"] = None
    floor = floor_for(fake_emr, "j-ABC", aws_config)
    bare = floor_for(fake_emr, "j-NOPOLICY", aws_config)
    try:
        # A throttled read is reported, and the client holds its next read for the backoff
        # AWS asked for instead of hammering it; that read then succeeds.
        fake_emr.faults["GetManagedScalingPolicy"] = [(400, "ThrottlingException")]
        with pytest.raises(ThrottledError):
            await floor.read()
        gets = len(fake_emr.calls)
        with pytest.raises(ThrottledError):  # held: nothing sent until the backoff passes
            await floor.read()
        assert len(fake_emr.calls) == gets
        await asyncio.sleep(1.1)  # the first backoff is at most a second
        assert (await floor.read()).desired == 2
        # A throttled write is sent once and not re-sent inside the call: the target reports
        # it, the reconciler re-plans next tick.
        fake_emr.faults["PutManagedScalingPolicy"] = [(400, "ThrottlingException")]
        with pytest.raises(ThrottledError):
            await floor.scale(5, expected=2)
        assert len(fake_emr.writes()) == 1
        policy = fake_emr.policies["j-ABC"]
        assert policy is not None and policy["ComputeLimits"]["MinimumCapacityUnits"] == 2
        with pytest.raises(PermanentActuatorError, match="no managed scaling policy"):
            await bare.read()
    finally:
        await floor.close()
        await bare.close()
