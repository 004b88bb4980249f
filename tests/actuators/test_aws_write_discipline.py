"""Issue 9, defects 2 and 8, for AWS targets: real aioboto3 against moto in server mode,
through a loopback proxy that can answer an operation with a throttling or server error.

moto never throttles, so the proxy stands in for AWS's answers: the Query protocol's XML
``ErrorResponse`` (Auto Scaling) and the REST-JSON error (EKS), with ``Retry-After`` when asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiohttp import web
from botocore.config import Config

from daemon.actuators.autoscaling_group import AutoScalingGroupActuator
from daemon.actuators.aws_floors import AsgFloorActuator, NodegroupFloorActuator
from daemon.actuators.eks import EksNodegroupActuator
from daemon.actuators.retry import RetryPolicy
from daemon.errors import ConflictError, FencedError, ThrottledError, TransientActuatorError
from tests.actuators.conftest import CallLog
from tests.actuators.test_autoscaling_group import create_group, desired_capacity
from tests.actuators.test_eks import create_nodegroup

REGION = "us-east-1"
HOP_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection"}


@dataclass
class Fault:
    match: str
    status: int
    code: str
    retry_after: str | None
    remaining: int


@dataclass
class FaultProxy:
    """Forwards to moto, except requests whose "METHOD path body" contains a fault's match."""

    upstream: str
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)

    def fail(
        self,
        match: str,
        *,
        status: int = 400,
        code: str = "Throttling",
        retry_after: str | None = None,
        count: int = 1,
    ) -> None:
        self.faults.append(Fault(match, status, code, retry_after, count))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        text = f"{request.method} {request.path} {body.decode(errors='replace')}"
        for fault in self.faults:
            if fault.remaining > 0 and fault.match in text:
                fault.remaining -= 1
                self.answered.append(f"{fault.code} {fault.status}")
                return self._error(request, fault)
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"{self.upstream}{request.path_qs}",
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                data=body,
            ) as answer,
        ):
            payload = await answer.read()
            headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=answer.status, body=payload, headers=headers)

    @staticmethod
    def _error(request: web.Request, fault: Fault) -> web.Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if request.path == "/":  # the Query protocol (Auto Scaling): an XML ErrorResponse
            body = (
                '<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                f"<Error><Type>Sender</Type><Code>{fault.code}</Code>"
                "<Message>Rate exceeded</Message></Error><RequestId>r-1</RequestId>"
                "</ErrorResponse>"
            )
            return web.Response(
                status=fault.status, text=body, content_type="text/xml", headers=headers
            )
        headers["x-amzn-ErrorType"] = fault.code  # REST-JSON (EKS)
        return web.Response(
            status=fault.status,
            text=json.dumps({"message": "Rate exceeded"}),
            content_type="application/json",
            headers=headers,
        )


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    fault_proxy = FaultProxy(moto_endpoint)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fault_proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fault_proxy.url = f"http://127.0.0.1:{port}"
    yield fault_proxy
    await runner.cleanup()


@pytest.fixture
async def group(
    proxy: FaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[AutoScalingGroupActuator]:
    session, calls = aws_session
    await create_group(session, moto_endpoint, minimum=1, maximum=10, desired=3)
    calls.operations.clear()
    actuator = AutoScalingGroupActuator(
        "web-asg",
        region=REGION,
        endpoint_url=proxy.url,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    yield actuator
    await actuator.close()


@pytest.fixture
async def workers(
    proxy: FaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[EksNodegroupActuator]:
    session, calls = aws_session
    await create_nodegroup(session, moto_endpoint, minimum=1, maximum=8, desired=2)
    calls.operations.clear()
    actuator = EksNodegroupActuator(
        "prod",
        "workers",
        region=REGION,
        endpoint_url=proxy.url,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    yield actuator
    await actuator.close()


def writes(calls: CallLog) -> list[str]:
    return [op for op in calls.operations if not op.startswith("Describe")]


# -- the fence: a fresh read and the lease deadline (AWS has no compare-and-set) -------------------


async def test_group_changed_since_the_decision_is_not_written(
    group: AutoScalingGroupActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, calls = aws_session

    with pytest.raises(ConflictError, match="expected 2, found 3"):
        await group.scale(6, expected=2)

    assert calls.operations == ["DescribeAutoScalingGroups"]
    assert await desired_capacity(session, moto_endpoint) == 3
    assert (await group.scale(6, expected=3, deadline=time.monotonic() + 10)).written


async def test_group_past_the_deadline_sends_nothing(
    group: AutoScalingGroupActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    with pytest.raises(FencedError, match="leader lease"):
        await group.scale(6, expected=3, deadline=time.monotonic() - 0.01)
    assert calls.operations == []


async def test_nodegroup_changed_or_fenced_is_not_written(
    workers: EksNodegroupActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    with pytest.raises(ConflictError, match="expected 4, found 2"):
        await workers.scale(5, expected=4)
    with pytest.raises(FencedError):
        await workers.scale(5, expected=2, deadline=time.monotonic() - 1)
    assert calls.operations == ["DescribeNodegroup"]


async def test_floors_compare_the_floor_they_read(
    proxy: FaultProxy,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    session, calls = aws_session
    await create_group(session, moto_endpoint, minimum=2, maximum=6, desired=3)
    await create_nodegroup(session, moto_endpoint, minimum=1, maximum=8, desired=4)
    calls.operations.clear()
    options: dict[str, Any] = {
        "region": REGION,
        "endpoint_url": proxy.url,
        "session": session,
        "client_config": aws_config,
        "retry": fast_retry,
    }
    asg_floor = AsgFloorActuator("web-asg", **options)
    node_floor = NodegroupFloorActuator("prod", "workers", **options)
    try:
        with pytest.raises(ConflictError, match="expected 3, found 2"):
            await asg_floor.scale(4, expected=3)
        with pytest.raises(ConflictError, match="expected 3, found 1"):
            await node_floor.scale(4, expected=3)
        with pytest.raises(FencedError):
            await asg_floor.scale(4, expected=2, deadline=time.monotonic() - 1)
        assert writes(calls) == []
        assert (await asg_floor.scale(4, expected=2)).written
        assert (await node_floor.scale(3, expected=1)).written
    finally:
        await asg_floor.close()
        await node_floor.close()


# -- throttling, Retry-After, one write then a backoff ---------------------------------------------


async def test_throttling_with_retry_after_holds_writes_on_every_client_of_the_endpoint(
    group: AutoScalingGroupActuator,
    proxy: FaultProxy,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    session, calls = aws_session
    proxy.fail("Action=SetDesiredCapacity", code="Throttling", retry_after="20")

    with pytest.raises(
        ThrottledError, match=r"Throttling: Rate exceeded; throttled: retry after 20s"
    ):
        await group.scale(6)
    assert proxy.answered == ["Throttling 400"]

    # Another target (its own client) on the same region and endpoint is held as well.
    floor = AsgFloorActuator(
        "web-asg",
        region=REGION,
        endpoint_url=proxy.url,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    try:
        calls.operations.clear()
        for target in (group, floor):
            with pytest.raises(ThrottledError, match=r"throttled: retry after (19|20)s"):
                await target.scale(7)
        assert calls.operations == []
    finally:
        await floor.close()


async def test_throttling_without_retry_after_backs_off(
    workers: EksNodegroupActuator,
    proxy: FaultProxy,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    _, calls = aws_session
    proxy.fail("update-config", status=429, code="TooManyRequestsException", count=5)

    with pytest.raises(ThrottledError, match="TooManyRequestsException"):
        await workers.scale(5)
    with pytest.raises(ThrottledError, match=r"throttled: retry after 1s"):
        await workers.scale(5)
    assert writes(calls) == ["UpdateNodegroupConfig"]


async def test_a_failed_write_is_sent_once_then_deferred(
    group: AutoScalingGroupActuator,
    proxy: FaultProxy,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    _, calls = aws_session
    proxy.fail("Action=SetDesiredCapacity", status=500, code="InternalFailure", count=10)

    with pytest.raises(TransientActuatorError, match="InternalFailure") as caught:
        await group.scale(6)
    assert not isinstance(caught.value, ThrottledError)
    for _ in range(3):
        with pytest.raises(
            ThrottledError, match=r"write deferred for \d+s after .*InternalFailure"
        ):
            await group.scale(6)
    assert writes(calls) == ["SetDesiredCapacity"]
    assert proxy.answered == ["InternalFailure 500"]


async def test_a_throttled_read_is_not_retried(
    group: AutoScalingGroupActuator,
    proxy: FaultProxy,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    _, calls = aws_session
    proxy.fail("Action=DescribeAutoScalingGroups", code="RequestLimitExceeded", count=5)

    with pytest.raises(ThrottledError, match="RequestLimitExceeded"):
        await group.read()
    with pytest.raises(ThrottledError, match="throttled: retry after"):
        await group.read()
    assert calls.operations == ["DescribeAutoScalingGroups"]
