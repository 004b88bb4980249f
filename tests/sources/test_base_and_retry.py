"""Value objects stay immutable and valid; the backoff helper retries only what may pass."""

from __future__ import annotations

import random

import numpy as np
import pytest

from daemon.errors import PermanentSourceError, TransientSourceError
from daemon.sources.base import MetricSource, Series
from daemon.sources.cloudwatch import CloudWatchSource, CloudWatchSpec
from daemon.sources.prometheus import PrometheusSource
from daemon.sources.retry import RetryPolicy, retry_transient


def test_series_copies_and_freezes_its_arrays() -> None:
    timestamps = np.array([1.0, 2.0, 3.0])
    series = Series(timestamps, np.array([1, 2, 3]))
    timestamps[0] = 99.0
    assert series.timestamps[0] == 1.0
    assert series.values.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        series.values[0] = 5.0
    assert len(series) == 3
    assert series.same_as(Series(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])))


@pytest.mark.parametrize(
    ("timestamps", "values", "message"),
    [
        ([1.0, 2.0], [1.0], "equal length"),
        ([2.0, 1.0], [1.0, 1.0], "strictly increasing"),
        ([1.0, 1.0], [1.0, 1.0], "strictly increasing"),
    ],
)
def test_series_refuses_invalid_shapes(
    timestamps: list[float], values: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Series(np.array(timestamps), np.array(values))


def test_backoff_delays_grow_within_cap() -> None:
    backoff = RetryPolicy(attempts=10, base_delay=1.0, max_delay=4.0, rng=random.Random(1))
    delays = [backoff.backoff(retry) for retry in range(1, 8)]
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


async def test_retry_transient_retries_then_succeeds() -> None:
    calls: list[int] = []
    waits: list[float] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientSourceError("busy")
        return "ok"

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    result = await retry_transient(flaky, RetryPolicy(attempts=3), what="test", sleep=sleep)
    assert result == "ok"
    assert len(calls) == 3
    assert len(waits) == 2


async def test_retry_transient_gives_up_and_never_retries_permanent() -> None:
    calls: list[str] = []

    async def sleep(seconds: float) -> None:
        pass

    async def always(error: Exception) -> None:
        calls.append(type(error).__name__)
        raise error

    with pytest.raises(TransientSourceError):
        await retry_transient(
            lambda: always(TransientSourceError("x")),
            RetryPolicy(attempts=2),
            what="t",
            sleep=sleep,
        )
    assert calls == ["TransientSourceError"] * 2
    calls.clear()
    with pytest.raises(PermanentSourceError):
        await retry_transient(
            lambda: always(PermanentSourceError("x")),
            RetryPolicy(attempts=5),
            what="t",
            sleep=sleep,
        )
    assert calls == ["PermanentSourceError"]


def test_both_sources_satisfy_the_protocol() -> None:
    # Checked by mypy (strict) as much as at run time: a signature drift fails type checking.
    prometheus: MetricSource[str] = PrometheusSource("http://127.0.0.1:9")
    cloudwatch: MetricSource[CloudWatchSpec] = CloudWatchSource("us-east-1")
    assert callable(prometheus.history)
    assert callable(cloudwatch.latest)
