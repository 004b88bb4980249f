"""EcsServiceActuator with the real aioboto3 client against moto in server mode, over HTTP.

Throttling and server errors, which moto never sends, come from a loopback proxy in front of
moto answering as ECS does (JSON 1.1 ``__type``; tests/support/aws_fault_proxy.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aioboto3
import pytest
from botocore.config import Config

from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.ecs_service import EcsServiceActuator
from daemon.actuators.retry import RetryPolicy
from daemon.errors import (
    ConflictError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)
from daemon.ratelimit_client import ApiThrottle
from tests.support.aws_fault_proxy import AwsFaultProxy, fault_proxy
from tests.support.aws_sessions import CallLog, recording

REGION = "us-east-1"


@pytest.fixture(scope="module")
def shared_session() -> aioboto3.Session:
    return aioboto3.Session(region_name=REGION)


@pytest.fixture
def aws_session(shared_session: aioboto3.Session) -> Iterator[tuple[aioboto3.Session, CallLog]]:
    """Overrides conftest's: one session (its loaded service models) for the whole module."""
    yield from recording(shared_session)


class FakeClock:
    """Monotonic seconds the test moves by hand: throttling waits without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def create_service(
    session: aioboto3.Session, endpoint: str, *, desired: int, strategy: str = "REPLICA"
) -> None:
    async with session.client("ecs", region_name=REGION, endpoint_url=endpoint) as ecs:
        await ecs.create_cluster(clusterName="prod")
        await ecs.register_task_definition(
            family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}]
        )
        await ecs.create_service(
            cluster="prod",
            serviceName="web",
            taskDefinition="web",
            desiredCount=desired,
            schedulingStrategy=strategy,
        )


async def service_desired(session: aioboto3.Session, endpoint: str) -> int:
    async with session.client("ecs", region_name=REGION, endpoint_url=endpoint) as ecs:
        answer = await ecs.describe_services(cluster="prod", services=["web"])
    return int(answer["services"][0]["desiredCount"])


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[AwsFaultProxy]:
    async with fault_proxy(moto_endpoint) as running:
        yield running


def actuator_for(
    proxy: AwsFaultProxy,
    session: aioboto3.Session,
    config: Config,
    retry: RetryPolicy,
    *,
    cluster: str = "prod",
    service: str = "web",
) -> EcsServiceActuator:
    return EcsServiceActuator(
        cluster,
        service,
        region=REGION,
        endpoint_url=proxy.url,
        session=session,
        client_config=config,
        retry=retry,
    )


@pytest.fixture
async def web(
    proxy: AwsFaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[EcsServiceActuator]:
    session, calls = aws_session
    await create_service(session, moto_endpoint, desired=2)
    calls.operations.clear()
    actuator = actuator_for(proxy, session, aws_config, fast_retry)
    yield actuator
    await actuator.close()


async def test_read_reports_desired_running_and_no_bounds_of_its_own(
    web: EcsServiceActuator,
) -> None:
    assert isinstance(web, Actuator)
    assert web.describe() == "ecs service prod/web"
    # moto starts a new service's tasks as pending: none running yet.
    assert await web.read() == Capacity(desired=2, ready=0, min_size=0, max_size=None)


async def test_scale_updates_desired_count_once(
    web: EcsServiceActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, calls = aws_session

    assert await web.scale(5, expected=2) == ScaleResult(True, 2, 5, 5)
    assert calls.operations == ["DescribeServices", "UpdateService"]
    assert await service_desired(session, moto_endpoint) == 5
    assert (await web.read()).ready == 5


async def test_no_write_when_unchanged_and_negative_is_clamped_to_zero(
    web: EcsServiceActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    assert await web.scale(2) == ScaleResult(False, 2, 2, 2)
    assert await web.scale(-3) == ScaleResult(True, 2, -3, 0)
    assert await web.scale(0) == ScaleResult(False, 0, 0, 0)
    assert calls.operations.count("UpdateService") == 1


async def test_changed_since_the_decision_is_not_written(
    web: EcsServiceActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    with pytest.raises(ConflictError, match="expected 4, found 2"):
        await web.scale(6, expected=4)
    assert "UpdateService" not in calls.operations


@pytest.mark.parametrize(
    ("cluster", "service", "message"),
    [
        ("prod", "absent", r"ecs service prod/absent not found \(MISSING\)"),
        ("nowhere", "web", "ClusterNotFoundException"),
    ],
)
async def test_missing_service_or_cluster_is_permanent(
    web: EcsServiceActuator,
    proxy: AwsFaultProxy,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
    cluster: str,
    service: str,
    message: str,
) -> None:
    session, calls = aws_session
    missing = actuator_for(proxy, session, aws_config, fast_retry, cluster=cluster, service=service)
    try:
        with pytest.raises(PermanentActuatorError, match=message):
            await missing.scale(3)
    finally:
        await missing.close()
    # Not retried, nothing written; the working service next to it is unaffected.
    assert calls.operations == ["DescribeServices"]
    assert (await web.scale(3)).written


async def test_daemon_service_is_permanent(
    proxy: AwsFaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    session, _ = aws_session
    await create_service(session, moto_endpoint, desired=0, strategy="DAEMON")
    actuator = actuator_for(proxy, session, aws_config, fast_retry)
    try:
        with pytest.raises(PermanentActuatorError, match="DAEMON scheduling strategy"):
            await actuator.scale(3)
    finally:
        await actuator.close()


async def test_throttling_holds_writes_then_the_write_is_retried_after_retry_after(
    web: EcsServiceActuator,
    proxy: AwsFaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, calls = aws_session
    clock = FakeClock()
    web.client.throttle = ApiThrottle(clock=clock)
    proxy.fail("UpdateService", code="ThrottlingException", retry_after=5)

    with pytest.raises(ThrottledError, match=r"ThrottlingException.*retry after 5s"):
        await web.scale(6)
    # Held: the next tick sends nothing until Retry-After has passed.
    clock.now += 4
    with pytest.raises(ThrottledError, match=r"throttled: retry after 1s"):
        await web.scale(6)
    assert calls.operations.count("UpdateService") == 1

    clock.now += 1.5
    assert await web.scale(6) == ScaleResult(True, 2, 6, 6)
    assert proxy.answered == ["ThrottlingException 400"]
    assert await service_desired(session, moto_endpoint) == 6


async def test_throttling_without_retry_after_backs_off_longer_each_time(
    web: EcsServiceActuator, proxy: AwsFaultProxy, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    clock = FakeClock()
    web.client.throttle = ApiThrottle(clock=clock)
    proxy.fail("UpdateService", status=400, code="ThrottlingException", count=2)

    waits = []
    for _ in range(2):
        with pytest.raises(ThrottledError) as caught:
            await web.scale(4)
        waits.append(web.client.throttle.blocked_for("write"))
        assert "ThrottlingException" in str(caught.value)
        clock.now += waits[-1] + 0.01
    assert 0 < waits[0] < waits[1]
    assert (await web.scale(4)).written
    assert calls.operations.count("UpdateService") == 3


async def test_a_server_error_is_transient_and_defers_the_next_write(
    web: EcsServiceActuator, proxy: AwsFaultProxy, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    proxy.fail("UpdateService", status=500, code="ServerException")

    with pytest.raises(TransientActuatorError, match="ServerException"):
        await web.scale(4)
    with pytest.raises(ThrottledError, match="write deferred"):
        await web.scale(4)
    assert calls.operations.count("UpdateService") == 1
