"""Traces at the precision the daemon keeps history in."""

from __future__ import annotations

import numpy as np

from daemon.backtest.trace import Trace
from daemon.forecasting import HISTORY_DTYPE


def as_stored(trace: Trace) -> Trace:
    """The trace rounded to the daemon's history precision (float32), so a replay sees exactly
    the values the daemon's streaming forecaster does."""
    values = trace.values.astype(HISTORY_DTYPE).astype(np.float64)
    return Trace(trace.times, values, trace.step_s, trace.labels)
