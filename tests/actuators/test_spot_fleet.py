"""SpotFleetActuator with the real aioboto3 client against moto in server mode, over HTTP.

Throttling, which moto never sends, comes from a loopback proxy in front of moto answering as
EC2 does (``<Response><Errors>``; tests/support/aws_fault_proxy.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioboto3
import pytest
from botocore.config import Config

from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.retry import RetryPolicy
from daemon.actuators.spot_fleet import SpotFleetActuator
from daemon.errors import PermanentActuatorError, ThrottledError, TransientActuatorError
from daemon.ratelimit_client import ApiThrottle
from tests.actuators.test_ecs_service import FakeClock
from tests.support.aws_fault_proxy import AwsFaultProxy, fault_proxy
from tests.support.aws_sessions import CallLog, recording
from tests.support.moto_server import MotoServer

REGION = "us-east-1"


@pytest.fixture(scope="module")
def shared_session() -> aioboto3.Session:
    return aioboto3.Session(region_name=REGION)


@pytest.fixture
def aws_session(shared_session: aioboto3.Session) -> Iterator[tuple[aioboto3.Session, CallLog]]:
    """Overrides conftest's: one session (its loaded service models) for the whole module."""
    yield from recording(shared_session)


# Weighted by vCPU: a c5.large counts 2 capacity units, a c5.xlarge 4.
WEIGHTED = [
    {"ImageId": "ami-12c6146b", "InstanceType": "c5.large", "WeightedCapacity": 2.0},
    {"ImageId": "ami-12c6146b", "InstanceType": "c5.xlarge", "WeightedCapacity": 4.0},
]


async def request_fleet(
    session: aioboto3.Session, endpoint: str, *, capacity: int, **extra: Any
) -> str:
    config = {
        "IamFleetRole": "arn:aws:iam::123456789012:role/fleet",
        "TargetCapacity": capacity,
        "Type": "maintain",
        "AllocationStrategy": "lowestPrice",
        "LaunchSpecifications": WEIGHTED,
    } | extra
    async with session.client("ec2", region_name=REGION, endpoint_url=endpoint) as ec2:
        answer = await ec2.request_spot_fleet(SpotFleetRequestConfig=config)
    return str(answer["SpotFleetRequestId"])


async def fleet_config(session: aioboto3.Session, endpoint: str, request_id: str) -> Any:
    async with session.client("ec2", region_name=REGION, endpoint_url=endpoint) as ec2:
        answer = await ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[request_id])
    return answer["SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"]


@pytest.fixture
def moto_endpoint(moto_server: MotoServer) -> str:
    """Overrides conftest's: no reset between tests (EC2's costs a fifth of a second), as
    each test requests its own fleet and reads only that one."""
    return moto_server.url


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[AwsFaultProxy]:
    async with fault_proxy(moto_endpoint) as running:
        yield running


def actuator_for(
    request_id: str,
    proxy: AwsFaultProxy,
    session: aioboto3.Session,
    config: Config,
    retry: RetryPolicy,
) -> SpotFleetActuator:
    return SpotFleetActuator(
        request_id,
        region=REGION,
        endpoint_url=proxy.url,
        session=session,
        client_config=config,
        retry=retry,
    )


@pytest.fixture
async def fleet(
    proxy: AwsFaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[SpotFleetActuator]:
    session, calls = aws_session
    request_id = await request_fleet(session, moto_endpoint, capacity=8)
    calls.operations.clear()
    actuator = actuator_for(request_id, proxy, session, aws_config, fast_retry)
    yield actuator
    await actuator.close()


async def test_read_is_in_capacity_units(fleet: SpotFleetActuator) -> None:
    assert isinstance(fleet, Actuator)
    assert fleet.describe().startswith("spot fleet sfr-")
    # 8 vCPUs of weighted capacity, not 8 instances; moto fulfils at once.
    assert await fleet.read() == Capacity(desired=8, ready=8, min_size=0, max_size=None)


async def test_scale_modifies_target_capacity_in_capacity_units(
    fleet: SpotFleetActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, calls = aws_session

    assert await fleet.scale(14, expected=8) == ScaleResult(True, 8, 14, 14)
    assert calls.operations == ["DescribeSpotFleetRequests", "ModifySpotFleetRequest"]
    config = await fleet_config(session, moto_endpoint, fleet.request_id)
    assert config["TargetCapacity"] == 14
    assert (await fleet.read()).ready == 14


async def test_no_write_when_unchanged(
    fleet: SpotFleetActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    assert await fleet.scale(8) == ScaleResult(False, 8, 8, 8)
    assert "ModifySpotFleetRequest" not in calls.operations


def described(
    request_id: str,
    *,
    state: str = "active",
    target: int = 8,
    on_demand: int = 0,
    fulfilled: str = "8",
    fleet_type: str = "maintain",
) -> str:
    """DescribeSpotFleetRequests as EC2 answers it, for states and fields moto does not
    produce (moto drops Type and OnDemandTargetCapacity, and is never ``modifying``)."""
    return (
        '<DescribeSpotFleetRequestsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        "<requestId>r-1</requestId><spotFleetRequestConfigSet><item>"
        f"<spotFleetRequestId>{request_id}</spotFleetRequestId>"
        f"<spotFleetRequestState>{state}</spotFleetRequestState>"
        "<spotFleetRequestConfig>"
        f"<targetCapacity>{target}</targetCapacity>"
        f"<onDemandTargetCapacity>{on_demand}</onDemandTargetCapacity>"
        f"<fulfilledCapacity>{fulfilled}</fulfilledCapacity>"
        f"<type>{fleet_type}</type><iamFleetRole>arn:aws:iam::123456789012:role/fleet</iamFleetRole>"
        "</spotFleetRequestConfig></item></spotFleetRequestConfigSet>"
        "</DescribeSpotFleetRequestsResponse>"
    )


async def test_on_demand_part_is_the_lower_bound_and_fractions_round_down(
    fleet: SpotFleetActuator,
    proxy: AwsFaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, _ = aws_session
    canned = described(fleet.request_id, state="active", target=8, on_demand=4, fulfilled="7.5")
    proxy.answer("DescribeSpotFleetRequests", canned, count=2)

    assert await fleet.read() == Capacity(desired=8, ready=7, min_size=4, max_size=None)
    assert await fleet.scale(1) == ScaleResult(True, 8, 1, 4)
    assert (await fleet_config(session, moto_endpoint, fleet.request_id))["TargetCapacity"] == 4


async def test_a_fleet_still_modifying_is_not_written(
    fleet: SpotFleetActuator, proxy: AwsFaultProxy, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    canned = described(fleet.request_id, state="modifying", target=8, on_demand=0, fulfilled="6")
    proxy.answer("DescribeSpotFleetRequests", canned)

    with pytest.raises(TransientActuatorError, match="is modifying"):
        await fleet.scale(12)
    assert "ModifySpotFleetRequest" not in calls.operations
    assert (await fleet.scale(12)).written


async def test_a_one_time_request_fleet_is_permanent(
    fleet: SpotFleetActuator, proxy: AwsFaultProxy, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    proxy.answer("DescribeSpotFleetRequests", described(fleet.request_id, fleet_type="request"))

    with pytest.raises(PermanentActuatorError, match="only a 'maintain' fleet"):
        await fleet.scale(6)
    assert calls.operations == ["DescribeSpotFleetRequests"]


async def test_unknown_fleet_is_permanent_and_the_others_carry_on(
    fleet: SpotFleetActuator,
    proxy: AwsFaultProxy,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    session, calls = aws_session
    missing = actuator_for(
        "sfr-00000000-0000-0000-0000-000000000000", proxy, session, aws_config, fast_retry
    )
    try:
        with pytest.raises(PermanentActuatorError, match="not found"):
            await missing.scale(6)
    finally:
        await missing.close()
    assert calls.operations == ["DescribeSpotFleetRequests"]
    assert (await fleet.scale(12)).written


async def test_throttled_modify_is_held_then_retried_after_the_backoff(
    fleet: SpotFleetActuator,
    proxy: AwsFaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, calls = aws_session
    clock = FakeClock()
    fleet.client.throttle = ApiThrottle(clock=clock)
    proxy.fail("ModifySpotFleetRequest", code="RequestLimitExceeded", retry_after=3)

    with pytest.raises(ThrottledError, match=r"RequestLimitExceeded.*retry after 3s"):
        await fleet.scale(12)
    with pytest.raises(ThrottledError, match="throttled: retry after 3s"):
        await fleet.scale(12)
    assert calls.operations.count("ModifySpotFleetRequest") == 1

    clock.now += 3.5
    assert await fleet.scale(12) == ScaleResult(True, 8, 12, 12)
    config = await fleet_config(session, moto_endpoint, fleet.request_id)
    assert config["TargetCapacity"] == 12
