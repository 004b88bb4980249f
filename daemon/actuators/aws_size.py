"""The one read -> clamp -> write flow every AWS actuator follows.

A subclass says how to read its resource (``read_state``: a ``Capacity`` plus the raw answer
the write may need) and which request sets a new size (``write_request``); this class keeps
the discipline identical for all of them: deferred after a failed write, held while AWS
throttles, fenced by the caller's lease deadline, a fresh read compared with the size the
decision was made on (AWS has no compare-and-set; see :mod:`daemon.actuators.aws`), clamped
to the resource's own bounds read from the API, and no request when nothing changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Unpack

from daemon.actuators.aws import AwsClient, AwsOptions
from daemon.actuators.base import Capacity, ScaleResult, clamp
from daemon.actuators.retry import WriteGuard, check_expected

__all__ = ["AwsSizeActuator", "SizeState", "WriteRequest"]


@dataclass(frozen=True, slots=True)
class SizeState:
    """A resource as just read: its size and bounds, and the raw answer behind them."""

    capacity: Capacity
    raw: Any = None


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One API call that sets a new size: operation (snake_case), a verb for messages, params."""

    operation: str
    action: str
    params: dict[str, Any]


class AwsSizeActuator(ABC):
    """An ``Actuator`` for one sized AWS resource; subclasses name the service and the calls."""

    service: ClassVar[str]
    """The boto3 service (``autoscaling``, ``ecs``...)."""

    def __init__(self, **aws: Unpack[AwsOptions]) -> None:
        self.client = AwsClient(self.service, **aws)
        self._guard = WriteGuard(self.describe())

    @abstractmethod
    def describe(self) -> str:
        """A short human name for logs, e.g. ``ecs service prod/web``."""

    @abstractmethod
    async def read_state(self) -> SizeState:
        """Read the resource (``self.client.call``); ``PermanentActuatorError`` if it is gone."""

    @abstractmethod
    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        """The request that sets the size to ``applied`` (already clamped), given ``state``."""

    def write_bounds(self, capacity: Capacity) -> tuple[int | None, int | None]:
        """The bounds a requested size is clamped to; a floor overrides the minimum with 0."""
        return capacity.min_size, capacity.max_size

    async def read(self) -> Capacity:
        return (await self.read_state()).capacity

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Write the size once, within the resource's bounds, if a fresh read still shows
        ``expected``; never after ``deadline``."""
        what = self.describe()
        self._guard.check_deferred()
        self.client.ensure_writable(what)
        self._guard.fence(deadline, self.client.write_timeout)
        state = await self.read_state()
        current = state.capacity.desired
        check_expected(what, expected, current)
        low, high = self.write_bounds(state.capacity)
        applied = clamp(desired, low, high, what=what)
        if applied == current:
            return ScaleResult(False, current, desired, applied)
        request = self.write_request(applied, state)
        await self.client.write(
            request.operation,
            f"{request.action} {what}",
            self._guard,
            deadline,
            **request.params,
        )
        return ScaleResult(True, current, desired, applied)

    async def close(self) -> None:
        await self.client.close()
