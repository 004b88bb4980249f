"""The daemon's forecaster keeps nine days of history and no forecast record (the conformal
offset is the tournament's tracker), and reuses a forecast while the sample repeats."""

from __future__ import annotations

import numpy as np

from daemon.forecasting import ForecastSettings, TargetForecaster
from models.features import FloatArray

MINUTE_SETTINGS = ForecastSettings(
    step_s=60.0, lead_s=360.0, unit_capacity=50.0, shortfall_target=0.01
)
END = 1_767_571_200.0
"""The newest history point of these tests (2026-01-05 00:00 UTC)."""


def minute_times(days: int) -> FloatArray:
    """``days`` of one-minute steps ending at ``END``."""
    return END - 60.0 * np.arange(days * 1440 - 1, -1, -1, dtype=np.float64)


def flat_forecaster(days: int) -> TargetForecaster:
    """A forecaster of ``MINUTE_SETTINGS`` with ``days`` of flat demand (100) loaded."""
    forecaster = TargetForecaster(MINUTE_SETTINGS)
    times = minute_times(days)
    forecaster.load_history(times, np.full(times.size, 100.0))
    return forecaster


def test_loaded_history_keeps_nine_days_and_no_forecast_record() -> None:
    daemon = flat_forecaster(14)
    end = END

    # Nine days (what forecasts and calibration read), not the whole history loaded: a fit
    # reads its own window from the source.
    assert daemon._values.size == 9 * 1440
    # The conformal offset's record is the tournament's tracker's, not a second one here.
    assert not hasattr(daemon, "_forecasts")
    forecast, _ = daemon.forecast(end)
    assert forecast is not None


def test_a_repeated_sample_keeps_the_forecast_and_a_new_one_replaces_it() -> None:
    daemon = flat_forecaster(3)
    end = END
    daemon.observe(end + 60.0, 100.0)
    first, _ = daemon.forecast(end + 60.0)
    built = daemon._cached

    # Ticks within the same minute that read the same value reuse the forecast made for it.
    for second in (15.0, 30.0, 45.0):
        daemon.observe(end + 60.0 + second, 100.0)
        assert daemon.forecast(end + 60.0 + second) == (first, daemon.forecaster_name)
        assert daemon._cached is built
    # A changed value within the minute is forecast from afresh.
    daemon.observe(end + 60.0 + 50.0, 400.0)
    assert daemon._cached is None
    raised, _ = daemon.forecast(end + 60.0 + 50.0)
    assert raised is not None and first is not None and raised > first
