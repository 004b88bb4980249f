"""A target that exists only inside a ``SimulatedWorld``: units boot for the world's lead time."""

from __future__ import annotations

from daemon.actuators.base import Capacity, ScaleResult
from daemon.actuators.retry import WriteGuard, check_expected
from daemon.errors import PermanentActuatorError
from daemon.simulation import SimulatedWorld

__all__ = ["SimulatorActuator"]


class SimulatorActuator:
    """Reads and resizes the world's capacity; it has no bounds of its own."""

    def __init__(self, world: SimulatedWorld, name: str) -> None:
        self._world = world
        self._name = name
        self._guard = WriteGuard(self.describe())

    def describe(self) -> str:
        return f"simulated {self._name}"

    async def read(self) -> Capacity:
        """Desired is every unit asked for (ready + booting), as a cloud reports it."""
        ready, pending = self._world.capacity()
        return Capacity(desired=ready + pending, ready=ready, min_size=None, max_size=None)

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Resize the world; the same fence and precondition as a real target."""
        self._guard.fence(deadline, 0.0)
        if desired < 0:
            # A real target rejects this too; the caller has a bug, so retrying cannot help.
            raise PermanentActuatorError(f"{self.describe()}: desired must be >= 0, got {desired}")
        ready, pending = self._world.capacity()
        previous = ready + pending
        check_expected(self.describe(), expected, previous)
        if desired == previous:
            return ScaleResult(written=False, previous=previous, requested=desired, applied=desired)
        self._world.scale(desired)
        return ScaleResult(written=True, previous=previous, requested=desired, applied=desired)

    async def close(self) -> None:
        """Nothing to release: the world lives in memory."""
