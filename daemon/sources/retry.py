"""Retries for sources: only ``TransientSourceError`` is retried.

A permanent error would fail again, and retrying it only delays the report the operator needs.
The policy itself (backoff, jitter, bounds) is :mod:`daemon.retry`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from daemon.errors import TransientSourceError
from daemon.retry import RetryPolicy, retry_async

__all__ = ["RetryPolicy", "retry_transient"]

T = TypeVar("T")


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``operation``, retrying ``TransientSourceError`` up to ``policy.attempts`` in all."""
    return await retry_async(
        operation, policy, what=what, retry_on=(TransientSourceError,), sleep=sleep
    )
