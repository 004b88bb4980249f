"""One aioboto3 session per test module, with a fresh record of calls per test.

Loading a service model is the slow part of opening a client (EC2's takes most of a second
per session); a session caches what it loaded, so tests that share one open clients at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aioboto3

__all__ = ["CallLog", "recording"]


@dataclass
class CallLog:
    """AWS operations a session's clients actually sent, seen through botocore's own events."""

    operations: list[str] = field(default_factory=list)

    def record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


def recording(session: aioboto3.Session) -> Iterator[tuple[aioboto3.Session, CallLog]]:
    """``session`` with a ``CallLog`` of the calls made while the generator is suspended
    (a fixture body: ``yield from recording(shared)``)."""
    calls = CallLog()
    session.events.register("before-call", calls.record)
    yield session, calls
    session.events.unregister("before-call", calls.record)
