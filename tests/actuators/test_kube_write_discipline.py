"""Issue 9, defects 2 and 8, for Kubernetes targets: the real client against the fake API.

A write is made on what was read and only while the lease guarantees this instance is the only
writer; at most one write request per ``scale()``; a failed write defers the target's next
ones; a 429's Retry-After holds every target on the client; a client never exceeds its rate.
"""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest
from kubernetes_asyncio import client

from daemon.actuators.kubernetes import KubernetesScaleActuator
from daemon.actuators.retry import RetryPolicy, WriteGuard
from daemon.errors import (
    ConflictError,
    FencedError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)
from daemon.ratelimit_client import ApiThrottle, throttle_for
from tests.actuators.conftest import deployment
from tests.support.fake_kube import FakeKube

WEB_SCALE = "/apis/apps/v1/namespaces/default/deployments/web/scale"
API_SCALE = "/apis/apps/v1/namespaces/default/deployments/api/scale"


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def actuator(
    api: client.ApiClient,
    name: str,
    retry: RetryPolicy,
    *,
    clock: Clock | None = None,
    **options: object,
) -> KubernetesScaleActuator:
    guard = WriteGuard(f"deployment default/{name}", rng=random.Random(5), clock=clock or Clock())
    return KubernetesScaleActuator(
        api,
        "Deployment",
        "default",
        name,
        retry=retry,
        write_guard=guard,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def web(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy, clock: Clock
) -> KubernetesScaleActuator:
    fake_kube.seed(deployment("web", 3))
    return actuator(kube_client, "web", fast_retry, clock=clock)


def patches(fake: FakeKube, path: str = WEB_SCALE) -> list[int]:
    return [w.status for w in fake.writes_to(path, verb="PATCH")]


# -- split brain: the precondition and the fence ------------------------------------------------


async def test_a_size_changed_since_the_decision_is_not_overwritten(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    # The decision was made on 3; another writer (a new leader, GitOps) has since set 8.
    fake_kube.update("Deployment", "default", "web", {"spec": {"replicas": 8}})

    with pytest.raises(
        ConflictError,
        match="changed by another writer since the decision was made: expected 3, found 8",
    ):
        await web.scale(5, expected=3)

    assert fake_kube.writes == []
    assert fake_kube.get("Deployment", "default", "web")["spec"]["replicas"] == 8
    # The next tick re-plans on 8.
    assert (await web.scale(5, expected=8)).written


async def test_no_request_at_all_after_the_lease_deadline(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    with pytest.raises(FencedError, match="leader lease") as fenced:
        await web.scale(5, expected=3, deadline=time.monotonic() - 0.01)

    assert str(fenced.value)
    assert fake_kube.requests == []


async def test_the_write_is_cut_off_at_the_lease_deadline(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(deployment("web", 3))
    web = actuator(kube_client, "web", fast_retry, request_timeout=30.0)
    # The API server holds the PATCH longer than the lease has left.
    fake_kube.inject_fault(WEB_SCALE, None, method="PATCH", delay=3.0)

    with pytest.raises(TransientActuatorError, match=r"timed out after 0\.\d+s") as caught:
        await web.scale(5, deadline=time.monotonic() + 0.5)

    assert not isinstance(caught.value, FencedError)
    # One PATCH, still held at the server (it logs a request when it answers).
    assert fake_kube.fired_faults(WEB_SCALE) == 1
    assert fake_kube.writes == []


async def test_a_write_that_would_have_to_wait_past_the_deadline_for_a_token_is_not_sent(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(deployment("web", 3))
    # One request every 10 s: the read takes the only token.
    slow = ApiThrottle(qps=0.1, burst=1)
    web = actuator(kube_client, "web", fast_retry, throttle=slow)

    with pytest.raises(ThrottledError, match="rate limited"):
        await web.scale(5, deadline=time.monotonic() + 2.0)

    assert [r.verb for r in fake_kube.requests] == ["GET"]


async def test_a_write_inside_the_deadline_goes_through(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    result = await web.scale(5, expected=3, deadline=time.monotonic() + 5.0)
    assert result.written and result.applied == 5
    assert patches(fake_kube) == [200]


# -- one write per call, then a backoff ----------------------------------------------------------


async def test_a_server_error_is_one_patch_then_writes_are_deferred(
    fake_kube: FakeKube, web: KubernetesScaleActuator, clock: Clock
) -> None:
    fake_kube.inject_fault(WEB_SCALE, 500, method="PATCH", count=100)

    with pytest.raises(TransientActuatorError, match="HTTP 500 injected fault"):
        await web.scale(5)
    assert patches(fake_kube) == [500]
    sent = len(fake_kube.requests)

    # The next ticks send nothing at all while the backoff lasts, and say why.
    for _ in range(3):
        with pytest.raises(ThrottledError, match=r"write deferred for \d+s after .*HTTP 500"):
            await web.scale(5)
    assert len(fake_kube.requests) == sent

    # After it: one more try, which fails again and defers for longer.
    clock.now += 5.0
    with pytest.raises(TransientActuatorError, match="500"):
        await web.scale(5)
    assert patches(fake_kube) == [500, 500]
    clock.now += 5.0
    with pytest.raises(ThrottledError, match="write deferred"):
        await web.scale(5)

    fake_kube.clear_faults()
    clock.now += 10.0
    assert (await web.scale(5)).written
    assert patches(fake_kube) == [500, 500, 200]


async def test_a_timed_out_write_says_so_and_is_deferred(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(deployment("web", 3))
    web = actuator(kube_client, "web", fast_retry, request_timeout=0.2)
    fake_kube.inject_fault(WEB_SCALE, None, method="PATCH", delay=1.0)

    with pytest.raises(TransientActuatorError) as caught:
        await web.scale(5)
    assert "timed out after 0.2s" in str(caught.value)
    with pytest.raises(ThrottledError, match=r"deferred .* after .*timed out after 0\.2s"):
        await web.scale(5)
    assert fake_kube.fired_faults(WEB_SCALE) == 1
    assert fake_kube.writes == []


async def test_a_refused_write_is_not_deferred(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    # 403 will not heal by waiting, and 422 was this call's value: nothing to back off from.
    fake_kube.inject_fault(WEB_SCALE, 403, method="PATCH")
    with pytest.raises(PermanentActuatorError, match="403"):
        await web.scale(5)
    assert (await web.scale(5)).written
    assert patches(fake_kube) == [403, 200]


# -- Retry-After and rate limits ------------------------------------------------------------------


async def test_retry_after_holds_every_write_on_the_client_without_sending(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(deployment("web", 3))
    fake_kube.seed(deployment("api", 2))
    web = actuator(kube_client, "web", fast_retry)
    api = actuator(kube_client, "api", fast_retry)
    fake_kube.inject_fault(WEB_SCALE, 429, method="PATCH", retry_after=30)

    with pytest.raises(ThrottledError, match=r"HTTP 429 .*retry after 30s"):
        await web.scale(5)
    sent = len(fake_kube.requests)

    for target in (web, api, web):
        with pytest.raises(ThrottledError, match=r"throttled: retry after (29|30)s"):
            await target.scale(7)
    assert len(fake_kube.requests) == sent
    assert patches(fake_kube) == [429]
    # Reads were not told to wait.
    assert (await api.read()).desired == 2


async def test_retry_after_ends_and_writes_resume(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(deployment("web", 3))
    clock = Clock()
    throttle = ApiThrottle(clock=clock)
    web = actuator(kube_client, "web", fast_retry, throttle=throttle, clock=clock)
    fake_kube.inject_fault(WEB_SCALE, 429, method="PATCH", retry_after=5)

    with pytest.raises(ThrottledError):
        await web.scale(5)
    clock.now += 4.9
    with pytest.raises(ThrottledError, match="retry after 1s"):
        await web.scale(5)
    clock.now += 0.1
    assert (await web.scale(5)).written
    assert patches(fake_kube) == [429, 200]


async def test_retry_after_as_an_http_date_and_on_a_503(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(deployment("web", 3))
    web = actuator(kube_client, "web", fast_retry)
    fake_kube.inject_fault(
        WEB_SCALE, 503, method="PATCH", retry_after=formatdate(time.time() + 120, usegmt=True)
    )

    with pytest.raises(ThrottledError, match="HTTP 503"):
        await web.scale(5)
    assert 100 < throttle_for(kube_client).blocked_for("write") <= 120


async def test_a_429_on_a_read_is_not_retried_into_the_server(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    fake_kube.inject_fault(WEB_SCALE, 429, method="GET", retry_after=10, count=5)

    with pytest.raises(ThrottledError, match="retry after 10s"):
        await web.read()
    with pytest.raises(ThrottledError, match="throttled: retry after"):
        await web.read()
    assert len(fake_kube.requests_to(WEB_SCALE)) == 1


async def test_requests_are_rate_limited_per_client(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(deployment("web", 3))
    fake_kube.seed(deployment("api", 2))
    # A burst of two and then one request per 100 s: with no time to wait, the third is refused.
    throttle_for(kube_client, qps=0.01, burst=2)
    web = actuator(kube_client, "web", fast_retry, request_timeout=0.05)
    api = actuator(kube_client, "api", fast_retry, request_timeout=0.05)

    await web.read()
    await api.read()
    with pytest.raises(ThrottledError, match="rate limited"):
        await web.read()
    assert len(fake_kube.requests) == 2
