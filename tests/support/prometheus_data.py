"""The real Prometheus shared by the source and backtest tests: what is backfilled into it
(exact values, awkward series), started once per test session by ``tests/conftest.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.prometheus_server import Points, daily_pattern, start_prometheus

STEP = 60.0
LONG_DAYS = 14


@dataclass(frozen=True)
class PromData:
    """The running server's URL and what was backfilled into it, for exact assertions."""

    url: str
    base: float
    """Start of every backfilled series (a UTC midnight 15 days ago), epoch seconds."""
    series: dict[str, Points]


def _backfill(base: float) -> dict[str, Points]:
    return {
        # Two hours of 0, 1, 2, ...: exact values make off-by-one errors visible.
        "demand": [(base + i * STEP, float(i)) for i in range(120)],
        "weird": [
            (base + i * STEP, value)
            for i, value in enumerate([1.0, float("nan"), float("inf"), float("-inf"), -2.0])
        ],
        # Two series under one name: a query for ``split`` must be refused.
        'split{pod="a"}': [(base, 1.0), (base + STEP, 1.0)],
        'split{pod="b"}': [(base, 2.0), (base + STEP, 2.0)],
        # One series whose label changes mid-range: one series per chunk, two over the range.
        'changing{version="1"}': [(base + i * STEP, 1.0) for i in range(0, 10)],
        'changing{version="2"}': [(base + i * STEP, 2.0) for i in range(20, 30)],
        # 14 days at 60 s: 20,160 points, more than one range request may ask for.
        "long": daily_pattern(base, LONG_DAYS, STEP),
    }


def running_prometheus() -> Iterator[PromData]:
    """Start it, yield what it holds, stop it."""
    # Recent history (15 days back) so nothing is near any retention edge.
    base = (time.time() // 86400 - 15) * 86400
    series = _backfill(base)
    server = start_prometheus(series)
    try:
        yield PromData(url=server.url, base=base, series=series)
    finally:
        server.stop()
