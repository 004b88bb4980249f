"""Bounded retries with exponential backoff and full jitter, for transient source errors.

One place for the retry policy, so every source backs off the same way. Only
``TransientSourceError`` is retried: a permanent error would fail again, and retrying it only
delays the report the operator needs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from daemon.errors import TransientSourceError

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """How often and how long to wait between attempts."""

    attempts: int = 4
    """Total attempts including the first; 1 turns retries off (tests, or a caller that retries)."""
    base_s: float = 0.2
    """Upper bound of the first wait; doubles each attempt."""
    cap_s: float = 5.0
    """Largest wait, so a long outage does not stall a tick for minutes."""
    rng: random.Random = field(default_factory=random.Random, compare=False)
    """Jitter source; seed it in tests for repeatable waits."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must be >= 0")

    def delay(self, retry: int) -> float:
        """Wait before retry number ``retry`` (1-based).

        Full jitter (uniform in ``[0, min(cap, base * 2**(retry-1))]``) spreads many daemons
        hitting the same throttled API apart, where a fixed schedule would make them collide.
        """
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry - 1))
        return self.rng.uniform(0.0, ceiling)


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation``, retrying ``TransientSourceError`` up to ``backoff.attempts`` in all.

    The last transient error is re-raised once attempts run out; ``what`` names the call in logs.
    """
    for attempt in range(1, backoff.attempts + 1):
        try:
            return await operation()
        except TransientSourceError as error:
            if attempt == backoff.attempts:
                raise
            wait = backoff.delay(attempt)
            log.info(
                "%s failed (attempt %d/%d), retrying in %.2fs: %s",
                what,
                attempt,
                backoff.attempts,
                wait,
                error,
            )
            await sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
