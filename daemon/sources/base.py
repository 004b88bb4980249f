"""What every metric source returns and the one small Protocol it implements.

Times are epoch seconds as ``float`` everywhere, so sources, the planner and backtests share one
clock without converting between datetimes and milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

SpecT = TypeVar("SpecT")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Sample:
    """One observation: ``value`` at ``timestamp`` (epoch seconds)."""

    timestamp: float
    value: float


# eq=False: numpy arrays make the generated ``__eq__`` ambiguous; compare with ``same_as``.
@dataclass(frozen=True, eq=False)
class Series:
    """A time series on strictly increasing timestamps (epoch seconds), read-only.

    Missing points inside the range are NaN in ``values`` once the bad-data policy has run;
    sources return what the server said, NaN included.
    """

    timestamps: FloatArray
    values: FloatArray

    def __post_init__(self) -> None:
        # Copy into our own float64 arrays and freeze them: a caller mutating a shared array
        # would otherwise silently change history another component already reasoned about.
        timestamps = np.array(self.timestamps, dtype=np.float64, copy=True)
        values = np.array(self.values, dtype=np.float64, copy=True)
        if timestamps.ndim != 1 or values.ndim != 1 or timestamps.shape != values.shape:
            raise ValueError(
                f"timestamps and values must be 1-D and of equal length, got shapes "
                f"{timestamps.shape} and {values.shape}"
            )
        if timestamps.size > 1 and not bool(np.all(np.diff(timestamps) > 0)):
            raise ValueError("timestamps must be strictly increasing")
        timestamps.flags.writeable = False
        values.flags.writeable = False
        object.__setattr__(self, "timestamps", timestamps)
        object.__setattr__(self, "values", values)

    @classmethod
    def empty(cls) -> Series:
        """A series with no points: what a source returns when the query matched nothing."""
        return cls(np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.timestamps.size)

    def same_as(self, other: Series) -> bool:
        """True when both series hold the same points (NaN equal to NaN)."""
        return bool(
            np.array_equal(self.timestamps, other.timestamps)
            and np.array_equal(self.values, other.values, equal_nan=True)
        )


@dataclass(frozen=True)
class MetricQuery(Generic[SpecT]):
    """A named query in its source's own language.

    ``spec`` is PromQL text for Prometheus and a metric or metric-math spec for CloudWatch;
    ``name`` is how logs, counters and the planner refer to it.
    """

    name: str
    spec: SpecT


class MetricSource(Protocol[SpecT]):
    """A metrics system the daemon reads demand from.

    Implementations raise ``TransientSourceError`` when a retry may help and
    ``PermanentSourceError`` when it will not; they never return bad data silently changed:
    cleaning is the bad-data policy's job (``daemon.sources.policy``).
    """

    async def latest(self, query: MetricQuery[SpecT], now: float) -> Sample | None:
        """The newest sample at or before ``now``, or None when the query matched nothing."""
        ...

    async def history(
        self, query: MetricQuery[SpecT], start: float, end: float, step: float
    ) -> Series:
        """Points in ``[start, end]`` every ``step`` seconds; an empty series when none."""
        ...

    async def close(self) -> None:
        """Release connections this source opened; sessions passed in are left open."""
        ...
