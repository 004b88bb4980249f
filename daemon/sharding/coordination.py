"""The coordination Protocol every backend implements: one membership record per member.

A member keeps its own record alive (``renew``), reads everyone's (``view``) and, on a clean
stop, marks its record released (``release``). Liveness is the backend's to judge, because it
depends on the store: a Kubernetes Lease has no server-side expiry, so a Lease is live while
its content keeps changing within its duration *as measured on the reader's own monotonic
clock* (client-go's rule, immune to wall-clock steps on any host); an etcd lease is expired by
the server itself. Either way a record reads as expired no earlier than one lease duration
after its owner's last renewal started, which is what the fence in :mod:`.member` relies on.

Coordination cost is constant in the number of targets: one renewal and one read of the
members per member per retry period, whatever the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Coordination", "CoordinationError", "MemberView"]


class CoordinationError(Exception):
    """A request to the coordination store failed; the caller retries on its next period."""


@dataclass(frozen=True)
class MemberView:
    """Members as one read of the store found them: ``live`` ones (renewed within their
    duration) and ``released`` ones (stopped cleanly and handed over). A member in neither
    has vanished (or never existed)."""

    live: frozenset[str]
    released: frozenset[str] = frozenset()


class Coordination(Protocol):
    """One member's handle on the store; ``identity`` names its record."""

    identity: str

    def describe(self) -> str:
        """Where the records live, for logs."""
        ...

    async def renew(self) -> None:
        """Create or renew this member's record; ``CoordinationError`` if it failed."""
        ...

    async def view(self) -> MemberView:
        """Every member of the group as the store has them now; ``CoordinationError``."""
        ...

    async def release(self) -> None:
        """Mark this member's record released (others take its targets at once)."""
        ...

    async def close(self) -> None:
        """Close the client; the record is left as it is."""
        ...
