"""What every actuator offers the loop: read capacity, write a desired size, close.

One module per target kind implements ``Actuator``; the loop and the app see only this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Capacity:
    """A target's size as last read.

    ``ready`` is ``None`` when the target cannot say (an EKS node group reports no ready
    count); ``min_size``/``max_size`` are the target's own bounds, ``None`` when it has none
    (a Kubernetes scale subresource).
    """

    desired: int
    ready: int | None
    min_size: int | None
    max_size: int | None


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """The outcome of one ``scale`` call.

    ``requested`` is what the caller asked for, ``applied`` that value clamped to the target's
    own bounds, ``previous`` the desired size read just before; ``written`` is false when
    ``applied == previous`` and nothing was sent.
    """

    written: bool
    previous: int
    requested: int
    applied: int


@runtime_checkable
class Actuator(Protocol):
    """A scalable target. Errors are ``daemon.errors.ActuatorError`` subclasses only."""

    def describe(self) -> str:
        """A short human name for logs, e.g. ``deployment default/web``."""
        ...

    async def read(self) -> Capacity:
        """The current desired size, ready count and bounds."""
        ...

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Set the desired size (clamped to the target's bounds); no write if unchanged.

        At most one write request per call, never retried inside it. ``expected`` is the size
        (or floor) the caller's decision was made on: if a fresh read differs, nothing is
        written and ``ConflictError`` is raised (re-plan next tick); Kubernetes writes also
        carry that read's resourceVersion, so a racing writer gets a 409 (``ConflictError``).
        ``deadline`` is a ``time.monotonic()`` instant (the leader lease's write deadline):
        no request is sent at or after it (``FencedError``) and a write's timeout is cut to
        it. After a failed write the target's writes are deferred for a growing backoff, and
        a throttled client sends nothing until its Retry-After has passed (``ThrottledError``).
        """
        ...

    async def close(self) -> None:
        """Release connections this actuator opened."""
        ...


def clamp(
    desired: int, min_size: int | None, max_size: int | None, *, what: str | None = None
) -> int:
    """``desired`` within the target's own bounds; an unknown bound does not limit.

    With ``what`` (the target's description) a request that had to be clamped is logged.
    """
    applied = desired
    if max_size is not None:
        applied = min(applied, max_size)
    if min_size is not None:
        applied = max(applied, min_size)
    if what is not None and applied != desired:
        log.info("%s: %d clamped to %d (bounds %s..%s)", what, desired, applied, min_size, max_size)
    return applied
