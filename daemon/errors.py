"""The project's own error vocabulary.

Adapters map their SDK's exceptions into these at one boundary, so the loop decides what to do
from the type alone: retry a transient error with backoff, report a configuration error and stop
trying, and never mistake one for the other.
"""

from __future__ import annotations

# Forecasting errors live in ``models`` (which never imports ``daemon``); re-exported here so
# callers find every error in one place.
from models.errors import ArtifactMismatchError, ModelError

__all__ = [
    "ActuatorError",
    "ArtifactMismatchError",
    "ConfigError",
    "ConflictError",
    "ElasticdError",
    "FencedError",
    "InputError",
    "ModelError",
    "PermanentActuatorError",
    "PermanentSourceError",
    "SourceError",
    "ThrottledError",
    "TransientActuatorError",
    "TransientSourceError",
]


class ElasticdError(Exception):
    """Base of every error elasticd raises on purpose."""


class ConfigError(ElasticdError):
    """A configuration value is invalid; ``path`` is its dotted YAML path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


class InputError(ElasticdError):
    """User-supplied data (a trace file, a flag) cannot be used; the message says why."""


class SourceError(ElasticdError):
    """A metric source failed."""


class TransientSourceError(SourceError):
    """A source failed in a way a retry may fix (timeout, 5xx, throttling)."""


class PermanentSourceError(SourceError):
    """A source failed in a way a retry will not fix (bad query, 4xx, unknown metric)."""


class ActuatorError(ElasticdError):
    """An actuator failed to read or write a target."""


class TransientActuatorError(ActuatorError):
    """A write or read failed in a way a retry may fix (timeout, 5xx, throttling)."""


class ConflictError(TransientActuatorError):
    """The object changed under us (HTTP 409, or a fresh read differs from the one the
    decision was made on): nothing was written; re-read and re-plan on the next tick."""


class FencedError(TransientActuatorError):
    """A write was not sent because this instance's leadership no longer guarantees that no
    other instance writes (the lease's write deadline has passed)."""


class ThrottledError(TransientActuatorError):
    """A request was not sent: the API client is rate limited, told us to wait (Retry-After),
    or the target's writes are backing off after a failure."""


class PermanentActuatorError(ActuatorError):
    """A write or read failed in a way a retry will not fix (404, 403, 422)."""
