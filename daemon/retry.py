"""The one retry policy of elasticd: bounded exponential backoff with full jitter.

Sources and actuators each decide *which* errors are worth retrying (their transient ones) and
bind that in their own ``retry`` module; how long to wait and how often lives here, once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

SHARED_RNG = random.Random()
"""The jitter source of every ``RetryPolicy`` not given its own."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a transient failure before giving it to the caller."""

    #: Tries in all, the first included; 1 means no retry (tests, or a caller that retries).
    attempts: int = 4
    #: Seconds; the cap of the first backoff, doubled after each failure.
    base_delay: float = 0.2
    #: Seconds; no single backoff exceeds this, so a tick is never stalled for long.
    max_delay: float = 5.0
    #: Random source; injectable so tests are reproducible. By default one shared by every
    #: policy: jitter needs no stream of its own, and a Random is 2.5 KB (the daemon builds
    #: a policy per target; issue 10's memory budget).
    rng: random.Random = field(default_factory=lambda: SHARED_RNG, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed tries.

        Full jitter (uniform in ``[0, min(max, base * 2**(failures-1))]``) spreads many daemons
        hitting the same throttled API apart, where a fixed schedule would make them collide.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return self.rng.uniform(0.0, ceiling)


async def retry_async(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    retry_on: tuple[type[Exception], ...],
    never_retry: tuple[type[Exception], ...] = (),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation``, retrying ``retry_on`` errors (but not ``never_retry`` ones) up to
    ``policy.attempts`` tries in all; the last error is re-raised. ``what`` names it in logs."""
    failures = 0
    while True:
        try:
            return await operation()
        except never_retry:
            raise
        except retry_on as error:
            failures += 1
            if failures >= policy.attempts:
                raise
            delay = policy.backoff(failures)
            log.warning("%s failed (%s); retry %d in %.2fs", what, error, failures, delay)
            await sleep(delay)
