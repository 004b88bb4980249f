"""The shared politeness module (token bucket, Retry-After, throttle backoff) and the
per-target write guard, on injected clocks: no test here waits for real time."""

from __future__ import annotations

import asyncio
import gc
import random
from email.utils import formatdate

import pytest

from daemon.actuators.retry import WriteGuard, check_expected
from daemon.errors import (
    ConflictError,
    FencedError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)
from daemon.ratelimit_client import (
    MAX_RETRY_AFTER_S,
    ApiThrottle,
    Throttled,
    TokenBucket,
    parse_retry_after,
    throttle_for,
    throttle_for_key,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """An asyncio.sleep stand-in that advances the clock instead of waiting."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.clock.now += delay


# -- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("30", 30.0), (" 5 ", 5.0), ("0", 0.0), ("-3", 0.0), ("1.5", 1.5), ("99999", 600.0)],
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 42, usegmt=True), now=now) == pytest.approx(42.0)
    assert parse_retry_after(formatdate(now - 42, usegmt=True), now=now) == 0.0
    assert parse_retry_after(formatdate(now + 10**6, usegmt=True), now=now) == MAX_RETRY_AFTER_S


@pytest.mark.parametrize("header", [None, "", "soon", "nan"])
def test_unreadable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header) is None


# -- token bucket ---------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5.0, burst=10, clock=clock)

    assert [bucket.reserve(max_wait=0.0) for _ in range(10)] == [0.0] * 10
    # The 11th request waits 1/rate; the next ones queue behind it.
    assert bucket.reserve(max_wait=1.0) == pytest.approx(0.2)
    assert bucket.reserve(max_wait=1.0) == pytest.approx(0.4)
    clock.now += 0.4
    assert bucket.reserve(max_wait=1.0) == pytest.approx(0.2)


def test_bucket_refuses_without_taking_a_token() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    assert bucket.reserve(max_wait=0.0) == 0.0

    assert bucket.reserve(max_wait=0.5) is None
    assert bucket.reserve(max_wait=0.5) is None
    # Refusals took nothing: one second later the next token is there.
    clock.now += 1.0
    assert bucket.reserve(max_wait=0.0) == 0.0


def test_bucket_never_saves_more_than_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5.0, burst=2, clock=clock)
    clock.now += 3600
    assert bucket.tokens == 2.0
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0.0, burst=1)


# -- throttle ----------------------------------------------------------------------------


async def test_admit_waits_for_a_token_within_the_deadline() -> None:
    clock = Clock()
    sleeps = Sleeps(clock)
    throttle = ApiThrottle(qps=2.0, burst=1, clock=clock, sleep=sleeps)

    await throttle.admit("write", deadline=clock.now + 1.0)
    await throttle.admit("write", deadline=clock.now + 1.0)

    assert sleeps.delays == [pytest.approx(0.5)]


async def test_admit_past_what_the_deadline_allows_is_refused_and_sends_nothing() -> None:
    clock = Clock()
    sleeps = Sleeps(clock)
    throttle = ApiThrottle(qps=1.0, burst=1, clock=clock, sleep=sleeps)
    await throttle.admit("read")

    with pytest.raises(Throttled, match="rate limited") as refused:
        await throttle.admit("write", deadline=clock.now + 0.3)
    assert str(refused.value)
    assert sleeps.delays == []
    with pytest.raises(Throttled):
        await throttle.admit("write", max_wait=0.3)


async def test_retry_after_closes_only_that_kind_for_that_long() -> None:
    clock = Clock()
    throttle = ApiThrottle(clock=clock, sleep=Sleeps(clock))

    assert throttle.throttled("write", 30.0, "HTTP 429") == 30.0
    with pytest.raises(Throttled, match=r"throttled: retry after 30s \(HTTP 429\)"):
        await throttle.admit("write")
    await throttle.admit("read")  # reads were not told to wait

    clock.now += 29.5
    with pytest.raises(Throttled, match="retry after 1s"):
        throttle.check("write")
    clock.now += 0.5
    await throttle.admit("write")


def test_throttling_without_retry_after_backs_off_more_each_time() -> None:
    clock = Clock()
    throttle = ApiThrottle(clock=clock, rng=random.Random(1))

    waits = [throttle.throttled("write", None) for _ in range(12)]

    # Jittered within [ceiling/2, ceiling], the ceiling doubling from 1 s up to 5 minutes.
    ceilings = [min(300.0, 2.0**n) for n in range(12)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    throttle.succeeded("write")
    assert throttle.throttled("write", None) <= 1.0


def test_a_shorter_retry_after_does_not_reopen_a_longer_gate() -> None:
    clock = Clock()
    throttle = ApiThrottle(clock=clock)
    throttle.throttled("write", 60.0)
    throttle.throttled("write", 1.0)
    assert throttle.blocked_for("write") == 60.0


def test_throttles_are_shared_per_client_object_and_per_key() -> None:
    class Client:
        pass

    one, other = Client(), Client()
    assert throttle_for(one) is throttle_for(one)
    assert throttle_for(one) is not throttle_for(other)
    assert throttle_for_key(("aws", "eks", "eu-west-1", None)) is throttle_for_key(
        ("aws", "eks", "eu-west-1", None)
    )
    # Held weakly: a closed and dropped client takes its throttle with it.
    throttle_for(other).throttled("write", 60.0)
    del other
    gc.collect()
    assert throttle_for(Client()).blocked_for("write") == 0.0


# -- write guard -----------------------------------------------------------------------------


def test_failed_writes_are_deferred_for_a_growing_capped_backoff() -> None:
    clock = Clock()
    guard = WriteGuard("web", base_s=5.0, cap_s=300.0, rng=random.Random(3), clock=clock)
    guard.check_deferred()

    deferrals = []
    for _ in range(10):
        guard.failed(TransientActuatorError("patch web: HTTP 500 boom"))
        with pytest.raises(ThrottledError, match=r"web: write deferred for \d+s after") as caught:
            guard.check_deferred()
        assert "HTTP 500 boom" in str(caught.value)
        deferrals.append(guard._deferred_until - clock.now)
    ceilings = [min(300.0, 5.0 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(deferrals, ceilings, strict=True))

    clock.now += 301
    guard.check_deferred()
    guard.succeeded()
    guard.failed(TransientActuatorError("timed out after 10s"))
    assert guard._deferred_until - clock.now <= 5.0  # a success started it over


@pytest.mark.parametrize(
    "error",
    [
        ConflictError("409"),
        FencedError("lease"),
        ThrottledError("429"),
        PermanentActuatorError("403"),
    ],
)
def test_conflicts_fencing_throttling_and_permanent_errors_do_not_defer(
    error: TransientActuatorError | PermanentActuatorError,
) -> None:
    guard = WriteGuard("web", clock=Clock())
    guard.failed(error)
    guard.check_deferred()
    assert guard.failures == 0


def test_fence_cuts_the_timeout_to_the_deadline_and_refuses_after_it() -> None:
    clock = Clock()
    guard = WriteGuard("web", clock=clock)
    assert guard.fence(None, 10.0) == 10.0
    assert guard.fence(clock.now + 30.0, 10.0) == 10.0
    assert guard.fence(clock.now + 2.5, 10.0) == 2.5
    with pytest.raises(FencedError, match="web: write not sent: the leader lease") as fenced:
        guard.fence(clock.now - 1.0, 10.0)
    assert "1.00s ago" in str(fenced.value)
    with pytest.raises(FencedError):
        guard.fence(clock.now, 10.0)


def test_check_expected() -> None:
    check_expected("web", None, 3)
    check_expected("web", 3, 3)
    with pytest.raises(
        ConflictError,
        match="web: changed by another writer since the decision was made: expected 3, found 5",
    ):
        check_expected("web", 3, 5)


def test_errors_are_never_empty() -> None:
    for error in (FencedError("x"), ThrottledError("y")):
        assert isinstance(error, TransientActuatorError) and str(error)


async def test_cancelled_wait_gives_its_token_back() -> None:
    clock = Clock()

    async def never(_: float) -> None:
        await asyncio.Event().wait()

    throttle = ApiThrottle(qps=1.0, burst=1, clock=clock, sleep=never)
    await throttle.admit("read")
    waiting = asyncio.create_task(throttle.admit("read"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    clock.now += 1.0
    assert throttle.bucket.tokens == pytest.approx(1.0)
