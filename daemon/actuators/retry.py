"""One retry policy for every actuator: bounded exponential backoff with full jitter.

Only ``TransientActuatorError`` is retried, and not ``ConflictError``: repeating a write that
lost a race repeats the same stale precondition, so the caller re-reads instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from daemon.errors import ConflictError, TransientActuatorError

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a transient failure before giving it to the caller."""

    #: Tries in all, the first included; 1 means no retry.
    attempts: int = 4
    #: Seconds; the cap of the first backoff, doubled after each failure.
    base_delay: float = 0.2
    #: Seconds; no single backoff exceeds this, so a tick is never stalled for long.
    max_delay: float = 5.0
    #: Random source; injectable so tests are reproducible.
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed tries (full jitter, so that many daemons
        hitting the same throttled API do not retry in lock-step)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return self.rng.uniform(0.0, ceiling)


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation`` until it succeeds, fails permanently, or the attempts run out."""
    failures = 0
    while True:
        try:
            return await operation()
        except ConflictError:
            raise
        except TransientActuatorError as error:
            failures += 1
            if failures >= policy.attempts:
                raise
            delay = policy.backoff(failures)
            log.warning("%s failed (%s); retry %d in %.2fs", what, error, failures, delay)
            await sleep(delay)
