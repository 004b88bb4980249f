"""LambdaConcurrencyActuator with the real aioboto3 client against the in-repo fake of Lambda's
provisioned-concurrency REST API (tests/support/fake_lambda.py): moto 5.2 does not implement
Get/Put/DeleteProvisionedConcurrencyConfig. The fake answers as AWS does, errors and
throttling included; its allocations stay IN_PROGRESS until the test calls ``finish``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator

import aioboto3
import pytest
from botocore.config import Config

from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.lambda_concurrency import LambdaConcurrencyActuator
from daemon.actuators.retry import RetryPolicy
from daemon.errors import (
    ConflictError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)
from daemon.ratelimit_client import ApiThrottle
from tests.actuators.test_ecs_service import FakeClock
from tests.support.aws_sessions import CallLog, recording
from tests.support.fake_lambda import FakeLambda

REGION = "us-east-1"


@pytest.fixture(scope="module")
def shared_session() -> aioboto3.Session:
    return aioboto3.Session(region_name=REGION)


@pytest.fixture
def aws_session(shared_session: aioboto3.Session) -> Iterator[tuple[aioboto3.Session, CallLog]]:
    """Overrides conftest's: one session (its loaded service models) for the whole module."""
    yield from recording(shared_session)


PUT = "PutProvisionedConcurrencyConfig"
DELETE = "DeleteProvisionedConcurrencyConfig"


@pytest.fixture
def fake() -> Iterator[FakeLambda]:
    server = FakeLambda(ready_after=None).start()
    server.add_function("checkout", ("live", "7"))
    yield server
    server.stop()


def actuator_for(
    fake: FakeLambda,
    session: aioboto3.Session,
    config: Config,
    retry: RetryPolicy,
    *,
    function: str = "checkout",
    qualifier: str = "live",
    allocation_timeout: float = 900.0,
) -> LambdaConcurrencyActuator:
    return LambdaConcurrencyActuator(
        function,
        qualifier,
        region=REGION,
        endpoint_url=fake.url,
        session=session,
        client_config=config,
        retry=retry,
        allocation_timeout=allocation_timeout,
    )


@pytest.fixture
async def live(
    fake: FakeLambda,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[LambdaConcurrencyActuator]:
    actuator = actuator_for(fake, aws_session[0], aws_config, fast_retry)
    yield actuator
    await actuator.close()


def writes(fake: FakeLambda) -> list[tuple[str, int]]:
    """(operation, HTTP status) of every Put and Delete the fake answered."""
    return [(r.operation, r.status) for r in fake.requests() if r.method != "GET"]


async def test_nothing_configured_reads_as_zero_bounded_by_the_account(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    assert isinstance(live, Actuator)
    assert live.describe() == "lambda checkout:live provisioned concurrency"
    # 1000 unreserved, of which AWS keeps 100 for functions without reserved concurrency.
    assert await live.read() == Capacity(desired=0, ready=0, min_size=0, max_size=900)
    fake.set_account(concurrent_executions=500, unreserved=300)
    assert (await live.read()).max_size == 200


async def test_put_then_in_progress_then_ready(
    live: LambdaConcurrencyActuator, fake: FakeLambda, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daemon.actuators.lambda_concurrency")

    assert await live.scale(25, expected=0) == ScaleResult(True, 0, 25, 25)
    assert writes(fake) == [(PUT, 202)]
    assert fake.requests(PUT)[0].body == {"ProvisionedConcurrentExecutions": 25}
    assert fake.requests(PUT)[0].qualifier == "live"
    # Allocating: requested, nothing ready yet.
    assert await live.read() == Capacity(desired=25, ready=0, min_size=0, max_size=900)

    fake.finish("checkout", "live")
    assert await live.read() == Capacity(desired=25, ready=25, min_size=0, max_size=900)
    statuses = [r.status for r in caplog.records if hasattr(r, "status")]
    assert statuses == ["NONE", "IN_PROGRESS", "READY"]


async def test_no_change_while_in_progress_and_none_when_unchanged(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    fake.set_config("checkout", "live", 10, status="IN_PROGRESS", allocated=4)
    assert await live.read() == Capacity(desired=10, ready=4, min_size=0, max_size=900)

    # AWS refuses a change while one is in progress: nothing is sent, next tick retries.
    with pytest.raises(TransientActuatorError, match="IN_PROGRESS"):
        await live.scale(30)
    assert await live.scale(10) == ScaleResult(False, 10, 10, 10)
    assert writes(fake) == []

    fake.finish("checkout", "live")
    assert (await live.scale(30)).written
    assert writes(fake) == [(PUT, 202)]


async def test_zero_deletes_the_config_and_the_account_bound_clamps(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    fake.set_config("checkout", "live", 10)
    assert await live.scale(0) == ScaleResult(True, 10, 0, 0)
    assert writes(fake) == [(DELETE, 204)]
    assert fake.config("checkout", "live") is None

    fake.set_account(concurrent_executions=1000, unreserved=150)
    assert await live.scale(80) == ScaleResult(True, 0, 80, 50)
    assert fake.requests(PUT)[-1].body == {"ProvisionedConcurrentExecutions": 50}


async def test_reserved_concurrency_is_the_bound_when_set(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    fake.set_reserved("checkout", 30)
    assert (await live.read()).max_size == 30
    assert await live.scale(45) == ScaleResult(True, 0, 45, 30)
    assert writes(fake) == [(PUT, 202)]


async def test_changed_since_the_decision_is_not_written(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    fake.set_config("checkout", "live", 12)
    with pytest.raises(ConflictError, match="expected 10, found 12"):
        await live.scale(20, expected=10)
    assert writes(fake) == []


async def test_a_stuck_allocation_is_reported(
    fake: FakeLambda,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    actuator = actuator_for(fake, aws_session[0], aws_config, fast_retry, allocation_timeout=600)
    fake.set_config(
        "checkout", "live", 40, status="IN_PROGRESS", allocated=0, modified=time.time() - 1200
    )
    try:
        with pytest.raises(
            TransientActuatorError,
            match=r"of 40 still IN_PROGRESS after 1[12]\d\ds \(allocation_timeout 600s\)",
        ):
            await actuator.read()
    finally:
        await actuator.close()


async def test_a_failed_allocation_is_permanent_with_aws_reason(
    live: LambdaConcurrencyActuator, fake: FakeLambda, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("checkout", "live", "FUNCTION_ERROR_INIT_FAILURE: init crashed")
    assert (await live.scale(5)).written
    fake.finish("checkout", "live")

    with pytest.raises(
        PermanentActuatorError, match="allocation of 5 FAILED: FUNCTION_ERROR_INIT_FAILURE"
    ):
        await live.scale(8)
    assert writes(fake) == [(PUT, 202)]
    assert any(r.levelno == logging.WARNING and "FAILED" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("function", "qualifier", "message"),
    [
        ("absent", "live", "ResourceNotFoundException: Function not found"),
        ("checkout", "blue", "ResourceNotFoundException: Function not found.*:blue"),
    ],
)
async def test_missing_function_or_alias_is_permanent_and_the_others_carry_on(
    live: LambdaConcurrencyActuator,
    fake: FakeLambda,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
    function: str,
    qualifier: str,
    message: str,
) -> None:
    session, calls = aws_session
    missing = actuator_for(
        fake, session, aws_config, fast_retry, function=function, qualifier=qualifier
    )
    try:
        with pytest.raises(PermanentActuatorError, match=message):
            await missing.scale(3)
    finally:
        await missing.close()
    # One read, not retried; nothing written.
    assert calls.operations == ["GetProvisionedConcurrencyConfig"]
    assert (await live.scale(3)).written


async def test_throttled_put_is_held_for_retry_after_then_sent(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    clock = FakeClock()
    live.client.throttle = ApiThrottle(clock=clock)
    fake.inject_fault(PUT, status=429, code="TooManyRequestsException", retry_after=7)

    with pytest.raises(ThrottledError, match=r"TooManyRequestsException.*retry after 7s"):
        await live.scale(9)
    with pytest.raises(ThrottledError, match=r"throttled: retry after 7s"):
        await live.scale(9)
    assert writes(fake) == [(PUT, 429)]

    clock.now += 7.5
    assert await live.scale(9) == ScaleResult(True, 0, 9, 9)
    assert writes(fake) == [(PUT, 429), (PUT, 202)]


async def test_throttled_reads_back_off_and_recover(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    clock = FakeClock()
    live.client.throttle = ApiThrottle(clock=clock)
    fake.inject_fault("GetProvisionedConcurrencyConfig", status=429, count=2)

    waits = []
    for _ in range(2):
        with pytest.raises(ThrottledError, match="TooManyRequestsException"):
            await live.read()
        waits.append(live.client.throttle.blocked_for("read"))
        clock.now += waits[-1] + 0.01
    assert 0 < waits[0] < waits[1]
    assert (await live.read()).desired == 0


async def test_another_writers_allocation_in_between_is_transient(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    fake.inject_fault(
        PUT,
        status=409,
        code="ResourceConflictException",
        message="The operation cannot be performed at this time. An update is in progress",
    )
    with pytest.raises(TransientActuatorError, match="ResourceConflictException") as caught:
        await live.scale(6)
    assert not isinstance(caught.value, PermanentActuatorError)


async def test_a_server_error_is_transient_and_defers_the_next_write(
    live: LambdaConcurrencyActuator, fake: FakeLambda
) -> None:
    fake.inject_fault(PUT, status=500, code="ServiceException", message="internal")
    with pytest.raises(TransientActuatorError, match="ServiceException"):
        await live.scale(6)
    with pytest.raises(ThrottledError, match="write deferred"):
        await live.scale(6)
    assert writes(fake) == [(PUT, 500)]
