"""Politeness towards one API client: a token bucket, Retry-After, and throttling backoff.

Any adapter that talks to a remote API (Kubernetes, AWS, Prometheus) asks its client's
``ApiThrottle`` before each request and tells it about each throttled answer:

- a token bucket (client-go's default for Kubernetes: 5 requests per second, bursts of 10)
  shared by every target using the same client, so a thousand targets cannot stampede one API
  server; a request waits for a token only as long as its caller can afford, else it is
  refused with ``Throttled`` and nothing is sent;
- a server's ``Retry-After`` (seconds or an HTTP date) on a 429 or 503 closes the gate for
  that kind of request (e.g. ``"write"``) on that client until it has passed; a throttling
  answer without one (AWS ``ThrottlingException``) closes it for an exponential, jittered
  backoff that grows with each consecutive throttle and resets on the next success.

The module knows no SDK and raises only ``Throttled``: each adapter maps it to its own
transient error. Use::

    throttle = throttle_for(api_client)            # shared per client object (weakly held)
    await throttle.admit("write", deadline=...)    # raises Throttled: send nothing
    ...                                            # the request
    throttle.throttled("write", parse_retry_after(headers.get("Retry-After")))  # on 429/503
    throttle.succeeded("write")                    # on success
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from email.utils import parsedate_to_datetime

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_QPS",
    "MAX_RETRY_AFTER_S",
    "ApiThrottle",
    "Throttled",
    "TokenBucket",
    "forget_throttles",
    "parse_retry_after",
    "throttle_for",
    "throttle_for_key",
]

Clock = Callable[[], float]

# client-go's rest.Config defaults (QPS 5, Burst 10).
DEFAULT_QPS = 5.0
DEFAULT_BURST = 10
# A Retry-After longer than this is treated as this: a misconfigured proxy answering "one day"
# must not stop scaling for a day. Ten minutes is beyond anything an API server asks for.
MAX_RETRY_AFTER_S = 600.0
# Backoff after a throttling answer that names no Retry-After: 1 s, doubled per consecutive
# throttle, capped at 5 minutes, with jitter so many daemons do not return in step.
THROTTLE_BASE_S = 1.0
THROTTLE_CAP_S = 300.0


class Throttled(Exception):
    """No request was sent: the client is rate limited or told to wait. ``retry_in`` is how
    many seconds until a request of that kind may be sent (an estimate for the bucket)."""

    def __init__(self, message: str, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at
    ``MAX_RETRY_AFTER_S``; ``None`` when absent or unreadable. ``now`` is wall-clock time
    (``time.time()`` by default), needed only for a date."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; pure arithmetic on ``clock``.

    A reservation may run the bucket below zero: later callers then wait their turn in order,
    as Go's ``rate.Limiter.Reserve`` does, without a queue or a background task.
    """

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def reserve(self, max_wait: float) -> float | None:
        """Take one token and return how long to wait before using it, or ``None`` (taking
        nothing) if that would be longer than ``max_wait`` seconds."""
        self._refill()
        wait = max(0.0, (1.0 - self._tokens) / self.rate)
        if wait > max_wait:
            return None
        self._tokens -= 1.0
        return wait

    def refund(self) -> None:
        """Give back a reserved token that was not used (the caller was cancelled)."""
        self._refill()
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now


class ApiThrottle:
    """One API client's token bucket, and a Retry-After gate per kind of request."""

    def __init__(
        self,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``clock`` is monotonic seconds (the deadlines passed to ``admit`` use it too)."""
        self.bucket = TokenBucket(qps, burst, clock=clock)
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        # kind -> (monotonic instant before which nothing of that kind is sent, why)
        self._closed: dict[str, tuple[float, str]] = {}
        self._strikes: dict[str, int] = {}

    def blocked_for(self, kind: str) -> float:
        """Seconds until a request of ``kind`` may be sent again (0 when it may now)."""
        until, _ = self._closed.get(kind, (0.0, ""))
        return max(0.0, until - self._clock())

    def check(self, kind: str) -> None:
        """Raise ``Throttled`` if the server told us to wait for ``kind``; never waits."""
        left = self.blocked_for(kind)
        if left > 0:
            _, why = self._closed[kind]
            raise Throttled(f"throttled: retry after {math.ceil(left)}s ({why})", left)

    async def admit(
        self, kind: str, *, deadline: float | None = None, max_wait: float | None = None
    ) -> None:
        """Wait for a token, then return: the caller may send one request of ``kind``.

        ``Throttled`` (nothing sent, no token taken) if the gate for ``kind`` is closed, or if
        the token would come after ``deadline`` (monotonic) or after ``max_wait`` seconds.
        """
        self.check(kind)
        now = self._clock()
        limit = math.inf if max_wait is None else max_wait
        if deadline is not None:
            limit = min(limit, deadline - now)
        wait = self.bucket.reserve(max(limit, 0.0))
        if wait is None:
            needed = (1.0 - self.bucket.tokens) / self.bucket.rate
            raise Throttled(
                f"rate limited: no request slot within {max(limit, 0.0):.2g}s "
                f"({self.bucket.rate:g}/s, burst {self.bucket.burst})",
                needed,
            )
        if wait > 0:
            try:
                await self._sleep(wait)
            except BaseException:
                self.bucket.refund()
                raise
            # The server may have said "wait" to someone else while we queued.
            self.check(kind)

    def throttled(self, kind: str, retry_after: float | None, why: str = "") -> float:
        """Note a throttling answer (429, 503 with Retry-After, AWS Throttling) for ``kind``;
        returns the seconds the gate stays closed. Without ``retry_after`` the wait is an
        exponential backoff with jitter over consecutive throttles."""
        strikes = self._strikes.get(kind, 0) + 1
        self._strikes[kind] = strikes
        if retry_after is None:
            ceiling = min(THROTTLE_CAP_S, THROTTLE_BASE_S * 2 ** (strikes - 1))
            seconds = self._rng.uniform(ceiling / 2, ceiling)
        else:
            seconds = min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
        until = self._clock() + seconds
        current, _ = self._closed.get(kind, (0.0, ""))
        if until > current:
            self._closed[kind] = (until, why or "server asked to wait")
        return seconds

    def succeeded(self, kind: str) -> None:
        """A request of ``kind`` was answered without throttling: the backoff starts over."""
        self._strikes.pop(kind, None)


_BY_CLIENT: weakref.WeakKeyDictionary[object, ApiThrottle] = weakref.WeakKeyDictionary()
_BY_KEY: dict[Hashable, ApiThrottle] = {}


def throttle_for(
    client: object, *, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST
) -> ApiThrottle:
    """The throttle shared by everyone using ``client`` (held weakly: it goes with the
    client). ``qps``/``burst`` apply when the first user creates it."""
    throttle = _BY_CLIENT.get(client)
    if throttle is None:
        throttle = _BY_CLIENT[client] = ApiThrottle(qps, burst)
    return throttle


def throttle_for_key(
    key: Hashable, *, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST
) -> ApiThrottle:
    """The throttle shared by every client with the same ``key`` (e.g. an AWS service, region
    and endpoint, where each target opens its own client but the account's limits are shared)."""
    throttle = _BY_KEY.get(key)
    if throttle is None:
        throttle = _BY_KEY[key] = ApiThrottle(qps, burst)
    return throttle


def forget_throttles() -> None:
    """Drop every shared throttle (tests: no state carries from one test to the next)."""
    _BY_CLIENT.clear()
    _BY_KEY.clear()
