"""AutoScalingGroupActuator with the real aioboto3 client against moto in server mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aioboto3
import pytest
from botocore.config import Config

from daemon.actuators.autoscaling_group import AutoScalingGroupActuator
from daemon.actuators.aws import AwsClient
from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.retry import RetryPolicy
from daemon.errors import PermanentActuatorError
from tests.actuators.conftest import CallLog

REGION = "us-east-1"


async def create_group(
    session: aioboto3.Session, endpoint: str, *, minimum: int, maximum: int, desired: int
) -> None:
    # moto, like AWS, needs a launch template (or configuration) to create a group.
    async with session.client("ec2", region_name=REGION, endpoint_url=endpoint) as ec2:
        await ec2.create_launch_template(
            LaunchTemplateName="web",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )
    async with session.client("autoscaling", region_name=REGION, endpoint_url=endpoint) as asg:
        await asg.create_auto_scaling_group(
            AutoScalingGroupName="web-asg",
            LaunchTemplate={"LaunchTemplateName": "web", "Version": "$Latest"},
            MinSize=minimum,
            MaxSize=maximum,
            DesiredCapacity=desired,
            AvailabilityZones=[f"{REGION}a"],
        )


async def desired_capacity(session: aioboto3.Session, endpoint: str) -> int:
    async with session.client("autoscaling", region_name=REGION, endpoint_url=endpoint) as asg:
        answer = await asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web-asg"])
    return int(answer["AutoScalingGroups"][0]["DesiredCapacity"])


def actuator_for(
    name: str, endpoint: str, session: aioboto3.Session, config: Config, retry: RetryPolicy
) -> AutoScalingGroupActuator:
    return AutoScalingGroupActuator(
        name,
        region=REGION,
        endpoint_url=endpoint,
        session=session,
        client_config=config,
        retry=retry,
    )


@pytest.fixture
async def web(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[AutoScalingGroupActuator]:
    session, calls = aws_session
    await create_group(session, moto_endpoint, minimum=2, maximum=6, desired=3)
    calls.operations.clear()
    actuator = actuator_for("web-asg", moto_endpoint, session, aws_config, fast_retry)
    yield actuator
    await actuator.close()


async def test_read_counts_in_service_instances(web: AutoScalingGroupActuator) -> None:
    assert isinstance(web, Actuator)
    assert web.describe() == "auto scaling group web-asg"
    assert await web.read() == Capacity(desired=3, ready=3, min_size=2, max_size=6)


async def test_scale_sets_desired_capacity(
    web: AutoScalingGroupActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, calls = aws_session

    assert await web.scale(5) == ScaleResult(written=True, previous=3, requested=5, applied=5)
    assert calls.operations == ["DescribeAutoScalingGroups", "SetDesiredCapacity"]
    assert await desired_capacity(session, moto_endpoint) == 5
    assert (await web.read()).ready == 5


@pytest.mark.parametrize(("requested", "applied"), [(40, 6), (0, 2), (-1, 2)])
async def test_scale_is_clamped_to_the_group_bounds(
    web: AutoScalingGroupActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    requested: int,
    applied: int,
) -> None:
    result = await web.scale(requested)

    assert result == ScaleResult(written=True, previous=3, requested=requested, applied=applied)
    assert await desired_capacity(aws_session[0], moto_endpoint) == applied


async def test_no_write_when_unchanged(
    web: AutoScalingGroupActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    assert await web.scale(3) == ScaleResult(False, 3, 3, 3)
    await web.scale(2)
    assert await web.scale(1) == ScaleResult(False, 2, 1, 2)
    assert calls.operations.count("SetDesiredCapacity") == 1


async def test_missing_group_is_permanent(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    session, calls = aws_session
    actuator = actuator_for("absent", moto_endpoint, session, aws_config, fast_retry)
    try:
        with pytest.raises(PermanentActuatorError, match="auto scaling group absent not found"):
            await actuator.scale(3)
    finally:
        await actuator.close()
    assert calls.operations == ["DescribeAutoScalingGroups"]


async def test_unparseable_error_page_is_permanent_and_not_retried(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    # moto answers SetDesiredCapacity on a missing group with an HTML 500 page, which botocore
    # raises as ResponseParserError: the case where the group vanished after our describe.
    session, calls = aws_session
    autoscaling = AwsClient(
        "autoscaling",
        region=REGION,
        endpoint_url=moto_endpoint,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    try:
        with pytest.raises(PermanentActuatorError, match="unreadable response"):
            await autoscaling.call(
                "set_desired_capacity",
                "set capacity",
                AutoScalingGroupName="absent",
                DesiredCapacity=1,
            )
    finally:
        await autoscaling.close()
    assert calls.operations == ["SetDesiredCapacity"]
