"""EksNodegroupActuator with the real aioboto3 client against moto in server mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aioboto3
import pytest
from botocore.config import Config

from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.eks import EksNodegroupActuator
from daemon.actuators.retry import RetryPolicy
from daemon.errors import PermanentActuatorError, TransientActuatorError
from tests.actuators.conftest import CallLog

REGION = "us-east-1"


async def create_nodegroup(
    session: aioboto3.Session, endpoint: str, *, minimum: int, maximum: int, desired: int
) -> None:
    async with session.client("eks", region_name=REGION, endpoint_url=endpoint) as eks:
        await eks.create_cluster(
            name="prod",
            roleArn="arn:aws:iam::123456789012:role/eks",
            resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]},
        )
        await eks.create_nodegroup(
            clusterName="prod",
            nodegroupName="workers",
            nodeRole="arn:aws:iam::123456789012:role/nodes",
            subnets=["subnet-1", "subnet-2"],
            scalingConfig={"minSize": minimum, "maxSize": maximum, "desiredSize": desired},
        )


async def desired_size(session: aioboto3.Session, endpoint: str) -> int:
    async with session.client("eks", region_name=REGION, endpoint_url=endpoint) as eks:
        answer = await eks.describe_nodegroup(clusterName="prod", nodegroupName="workers")
    return int(answer["nodegroup"]["scalingConfig"]["desiredSize"])


@pytest.fixture
async def workers(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[EksNodegroupActuator]:
    session, calls = aws_session
    await create_nodegroup(session, moto_endpoint, minimum=1, maximum=5, desired=2)
    calls.operations.clear()
    actuator = EksNodegroupActuator(
        "prod",
        "workers",
        region=REGION,
        endpoint_url=moto_endpoint,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    yield actuator
    await actuator.close()


async def test_read(workers: EksNodegroupActuator) -> None:
    assert isinstance(workers, Actuator)
    assert workers.describe() == "eks nodegroup prod/workers"
    assert await workers.read() == Capacity(desired=2, ready=None, min_size=1, max_size=5)


async def test_scale_writes_desired_size(
    workers: EksNodegroupActuator, moto_endpoint: str, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    session, calls = aws_session

    assert await workers.scale(4) == ScaleResult(written=True, previous=2, requested=4, applied=4)
    assert calls.operations == ["DescribeNodegroup", "UpdateNodegroupConfig"]
    assert await desired_size(session, moto_endpoint) == 4
    # The bounds were not touched by a desiredSize-only update.
    assert (await workers.read()).min_size == 1


@pytest.mark.parametrize(("requested", "applied"), [(10, 5), (0, 1), (-3, 1)])
async def test_scale_is_clamped_to_the_group_bounds(
    workers: EksNodegroupActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    requested: int,
    applied: int,
) -> None:
    result = await workers.scale(requested)

    assert result == ScaleResult(written=True, previous=2, requested=requested, applied=applied)
    assert await desired_size(aws_session[0], moto_endpoint) == applied


async def test_no_write_when_unchanged(
    workers: EksNodegroupActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    assert await workers.scale(2) == ScaleResult(False, 2, 2, 2)
    # Clamping to the current size is also no change.
    await workers.scale(5)
    assert await workers.scale(9) == ScaleResult(False, 5, 9, 5)
    assert calls.operations.count("UpdateNodegroupConfig") == 1


async def test_missing_nodegroup_is_permanent(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    session, calls = aws_session
    actuator = EksNodegroupActuator(
        "prod",
        "absent",
        region=REGION,
        endpoint_url=moto_endpoint,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    try:
        with pytest.raises(PermanentActuatorError, match="ResourceNotFoundException"):
            await actuator.scale(3)
    finally:
        await actuator.close()
    assert calls.operations == ["DescribeNodegroup"]  # not retried


async def test_unreachable_endpoint_is_transient_after_retries(
    aws_session: tuple[aioboto3.Session, CallLog], aws_config: Config
) -> None:
    session, calls = aws_session
    actuator = EksNodegroupActuator(
        "prod",
        "workers",
        region=REGION,
        endpoint_url="http://127.0.0.1:9",  # discard port: connection refused
        session=session,
        client_config=aws_config,
        retry=RetryPolicy(attempts=2, base_delay=0.001),
    )
    try:
        with pytest.raises(TransientActuatorError, match="describe eks nodegroup"):
            await actuator.read()
    finally:
        await actuator.close()
    assert calls.operations == ["DescribeNodegroup", "DescribeNodegroup"]
