"""Traces at the precision the daemon keeps history in, streamed as the daemon sees them."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from daemon.backtest.trace import Trace
from daemon.core.conformal import ConformalTracker, grid_index
from daemon.forecasting import HISTORY_DTYPE, TargetForecaster
from daemon.runtime.planning import conformal_settings


def as_stored(trace: Trace) -> Trace:
    """The trace rounded to the daemon's history precision (float32), so a replay sees exactly
    the values the daemon's streaming forecaster does."""
    values = trace.values.astype(HISTORY_DTYPE).astype(np.float64)
    return Trace(trace.times, values, trace.step_s, trace.labels)


def streamed(daemon: TargetForecaster, trace: Trace) -> Iterator[tuple[float, str, float]]:
    """Feed ``trace`` through the daemon's forecaster step by step, as the daemon does: each day
    a fit on the history before that step (what the trainer reads from the source), then the
    sample, the forecast (NaN when none) with its rung, and the conformal offset."""
    per_day = round(86_400.0 / trace.step_s)
    # The conformal offset as the daemon computes it: the tournament's streaming tracker.
    tracker = ConformalTracker(conformal_settings(daemon.settings))
    for i, (now, value) in enumerate(zip(trace.times.tolist(), trace.values.tolist(), strict=True)):
        if i % per_day == 0:
            daemon.train_on(trace.times[:i], trace.values[:i], now)
            # Installed at once, as each fit of base_forecasts is (the tournament's canary,
            # which would hold it as a challenger first, is tested on its own).
            fresh = daemon.take_fresh()
            if fresh is not None:
                daemon.install(fresh[0])
        daemon.observe(now, None if math.isnan(value) else value)
        forecast, name = daemon.forecast(now)
        offset = tracker.update(
            grid_index(now, daemon.settings.step_s),
            None if math.isnan(value) else value,
            forecast,
            name,
        )
        yield (math.nan if forecast is None else forecast), name, offset
