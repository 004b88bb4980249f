"""Retries for actuators: transient errors only, and never ``ConflictError``.

Repeating a write that lost a race repeats the same stale precondition, so the caller re-reads
instead. The policy itself (backoff, jitter, bounds) is :mod:`daemon.retry`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from daemon.errors import ConflictError, TransientActuatorError
from daemon.retry import RetryPolicy, retry_async

__all__ = ["RetryPolicy", "with_retries"]

T = TypeVar("T")


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation`` until it succeeds, fails permanently, or the attempts run out."""
    return await retry_async(
        operation,
        policy,
        what=what,
        retry_on=(TransientActuatorError,),
        never_retry=(ConflictError,),
        sleep=sleep,
    )
