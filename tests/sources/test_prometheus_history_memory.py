"""A range read becomes one array without a Python object per point beside the parsed JSON.

At start-up the daemon reads nine days of history for eight targets at once; every byte of
garbage a point makes then is kept by the allocator afterwards (issue 10: 1,000 targets within
400 MB). A list of (time, value) tuples cost ~110 bytes a point on top of the JSON.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from daemon.errors import PermanentSourceError
from daemon.sources.base import MetricQuery
from daemon.sources.prometheus import merge_chunks

QUERY = MetricQuery("demand", "sum(demand)")
POINTS = 13_000  # nine days of one-minute steps


def chunk(first: int, count: int) -> dict[str, object]:
    return {
        "metric": {"svc": "web"},
        "values": [[1_700_000_000 + 60 * i, f"{100 + i % 7}.5"] for i in range(first, count)],
    }


def test_merging_a_range_read_makes_no_object_per_point() -> None:
    parts = [chunk(0, POINTS // 2), chunk(POINTS // 2, POINTS)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        series = merge_chunks(QUERY, parts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(series) == POINTS
    assert series.values[3] == 103.5 and series.timestamps[-1] == 1_700_000_000 + 60 * 12_999
    # The result and its sorting copies are ~16-32 bytes a point each; tuples were ~110.
    assert (peak - before) / POINTS < 80


def test_a_merged_read_keeps_order_nan_and_infinities_and_refuses_malformed_points() -> None:
    late = {"metric": {}, "values": [[180, "+Inf"], [240, "-Inf"]]}
    early = {"metric": {}, "values": [[60, "NaN"], [120, "2"]]}

    series = merge_chunks(QUERY, [late, None, early])

    assert list(series.timestamps) == [60.0, 120.0, 180.0, 240.0]
    assert math.isnan(series.values[0]) and series.values[1] == 2.0
    assert np.array_equal(series.values[2:], [math.inf, -math.inf])
    with pytest.raises(PermanentSourceError, match="malformed sample"):
        merge_chunks(QUERY, [{"metric": {}, "values": [[60, "2"], [120]]}])
