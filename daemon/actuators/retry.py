"""Retries and write discipline for actuators.

Reads are retried with backoff (:mod:`daemon.retry`'s policy), never past a caller's deadline.
Writes are never retried inside one ``scale()`` call: a retried write is how a leader frozen
mid-write overwrote its successor, and how one tick sent four PATCHes into a failing server.
Instead ``WriteGuard`` gives each target:

- the fence: no write request once the caller's lease deadline has passed (``FencedError``),
  and each request's timeout cut to the time the lease still guarantees;
- the precondition on what was read: a fresh size that differs from the one the decision was
  made on is a ``ConflictError`` (the caller re-plans next tick), nothing written;
- a backoff after a failed write (exponential with jitter over consecutive failures, capped,
  reset by a success), during which ``scale()`` sends nothing and says for how long.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from daemon.errors import (
    ActuatorError,
    ConflictError,
    FencedError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)
from daemon.ratelimit_client import Throttled
from daemon.retry import RetryPolicy, retry_async

__all__ = ["RetryPolicy", "WriteGuard", "check_expected", "throttled_error", "with_retries"]

T = TypeVar("T")
Clock = Callable[[], float]

# Defaults of the per-target write backoff: the first failure defers writes for 2.5-5 s (a
# tick or so), then 5-10 s, ... up to 5 minutes; a success resets it.
WRITE_BACKOFF_BASE_S = 5.0
WRITE_BACKOFF_CAP_S = 300.0
# A write needs at least this long before the lease deadline to be worth sending.
MIN_WRITE_WINDOW_S = 0.05
_SHARED_RNG = random.Random()


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation`` until it succeeds, fails permanently, or the attempts run out.

    Conflicts, fencing and throttling are never retried here: repeating them repeats a stale
    precondition, a lost lease, or a request the server told us not to send.
    """
    return await retry_async(
        operation,
        policy,
        what=what,
        retry_on=(TransientActuatorError,),
        never_retry=(ConflictError, FencedError, ThrottledError),
        sleep=sleep,
    )


def throttled_error(what: str, error: Throttled) -> ThrottledError:
    """The actuator error for a request the client's throttle refused to send."""
    return ThrottledError(f"{what}: {error}")


def check_expected(what: str, expected: int | None, found: int) -> None:
    """``ConflictError`` if the size just read is not the one the decision was made on."""
    if expected is not None and found != expected:
        raise ConflictError(
            f"{what}: changed by another writer since the decision was made: "
            f"expected {expected}, found {found}"
        )


class WriteGuard:
    """One target's write discipline: the lease fence and the backoff after failed writes."""

    def __init__(
        self,
        what: str,
        *,
        base_s: float = WRITE_BACKOFF_BASE_S,
        cap_s: float = WRITE_BACKOFF_CAP_S,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``what`` names the target in messages; ``clock`` is the monotonic clock the
        caller's deadlines are on."""
        self.what = what
        self._base = base_s
        self._cap = cap_s
        # One Random for every target's jitter (2.5 KB each; issue 10's memory budget).
        self._rng = rng or _SHARED_RNG
        self._clock = clock
        self._failures = 0
        self._deferred_until = -math.inf
        self._last_error = ""

    def check_deferred(self) -> None:
        """``ThrottledError`` while the backoff after a failed write lasts; sends nothing."""
        left = self._deferred_until - self._clock()
        if left > 0:
            raise ThrottledError(
                f"{self.what}: write deferred for {math.ceil(left)}s after {self._last_error}"
            )

    def fence(self, deadline: float | None, timeout: float) -> float:
        """The timeout for a write sent now: ``timeout`` cut to the time left before
        ``deadline``; ``FencedError`` (send nothing) when none is left."""
        if deadline is None:
            return timeout
        left = deadline - self._clock()
        if left < MIN_WRITE_WINDOW_S:
            raise FencedError(
                f"{self.what}: write not sent: the leader lease no longer guarantees this "
                f"instance is the only writer (deadline passed {max(-left, 0.0):.2f}s ago)"
            )
        return min(timeout, left)

    def failed(self, error: ActuatorError) -> None:
        """Note a failed write; a transient failure (5xx, timeout, connection) defers writes.

        Conflicts re-plan on the next tick, fencing and client throttling have their own
        gates, and a permanent error will not heal by waiting: none of them backs off here.
        """
        if isinstance(error, ConflictError | FencedError | ThrottledError | PermanentActuatorError):
            return
        self._failures += 1
        ceiling = min(self._cap, self._base * 2 ** (self._failures - 1))
        delay = self._rng.uniform(ceiling / 2, ceiling)
        self._deferred_until = self._clock() + delay
        self._last_error = str(error) or type(error).__name__

    def succeeded(self) -> None:
        self._failures = 0
        self._deferred_until = -math.inf
        self._last_error = ""

    @property
    def failures(self) -> int:
        """Consecutive failed writes so far."""
        return self._failures
