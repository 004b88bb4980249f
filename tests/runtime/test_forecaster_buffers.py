"""The daemon's forecaster keeps its forecast record only as long as calibration reads back,
and still gives the backtest's conformal offsets once older forecasts are dropped."""

from __future__ import annotations

import numpy as np

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.walkforward import PlanConfig, base_forecasts, conformal_offsets
from daemon.forecasting import ForecastSettings, TargetForecaster
from tests.support.stored import as_stored, streamed


def test_a_trimmed_forecast_record_gives_the_replays_offsets() -> None:
    # Ten days: past the week the conformal offset reads back, so the record is trimmed.
    trace = as_stored(generate_trace(TraceShape(days=10, step_s=600.0, gap_share=0.02, seed=5)))
    config = PlanConfig(unit_capacity=100.0, lead_s=1200.0, warmup_s=86_400.0)
    settings = ForecastSettings(
        step_s=trace.step_s, lead_s=config.lead_s, unit_capacity=100.0, shortfall_target=0.01
    )
    replayed, sources, _ = base_forecasts(trace, config, settings.spec)

    daemon = TargetForecaster(settings)
    per_day = round(86_400.0 / trace.step_s)
    offsets, largest = [], 0
    for _, _, offset in streamed(daemon, trace):
        offsets.append(offset)
        largest = max(largest, daemon._forecasts.size)

    week = 7 * per_day
    assert largest < 1.2 * week < len(trace)
    replayed_offsets = conformal_offsets(trace, replayed, sources, config, settings.spec.lead_steps)
    np.testing.assert_allclose(np.array(offsets), replayed_offsets, rtol=1e-6, atol=1e-9)
    assert np.any(np.array(offsets)[-per_day:] != 0.0)


def test_loaded_history_keeps_nine_days_and_a_week_of_forecast_record() -> None:
    settings = ForecastSettings(
        step_s=60.0, lead_s=360.0, unit_capacity=50.0, shortfall_target=0.01
    )
    daemon = TargetForecaster(settings)
    end = 1_767_571_200.0
    times = end - 60.0 * np.arange(14 * 1440 - 1, -1, -1, dtype=np.float64)
    daemon.load_history(times, np.full(times.size, 100.0))

    # Nine days (what forecasts and calibration read), not the whole history loaded: a fit
    # reads its own window from the source.
    assert daemon._values.size == 9 * 1440
    assert daemon._forecasts.size < 7.2 * 1440
    forecast, _ = daemon.forecast(end)
    assert forecast is not None
    assert daemon.latest_residual() is None  # the newest forecast has not resolved yet


def test_a_repeated_sample_keeps_the_forecast_and_a_new_one_replaces_it() -> None:
    settings = ForecastSettings(
        step_s=60.0, lead_s=360.0, unit_capacity=50.0, shortfall_target=0.01
    )
    daemon = TargetForecaster(settings)
    end = 1_767_571_200.0
    times = end - 60.0 * np.arange(3 * 1440 - 1, -1, -1, dtype=np.float64)
    daemon.load_history(times, np.full(times.size, 100.0))
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


def test_a_target_without_history_gets_no_offset_in_its_first_hour() -> None:
    settings = ForecastSettings(
        step_s=60.0, lead_s=360.0, unit_capacity=50.0, shortfall_target=0.01
    )
    daemon = TargetForecaster(settings)
    start = 1_767_571_200.0 + 1800.0  # mid-hour: the refresh block starts before the buffer
    for i in range(5):
        daemon.observe(start + 60.0 * i, 100.0)
        daemon.forecast(start + 60.0 * i)
        assert daemon.conformal_offset() == 0.0
