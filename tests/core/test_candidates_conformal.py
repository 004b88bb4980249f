"""The streaming conformal tracker gives the walk-forward's old vectorised offsets, step for step.

``_vectorised`` is the walk-forward's former ``conformal_offsets``, kept here only as the
reference the one streaming implementation must reproduce.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.trace import Trace
from daemon.backtest.walkforward import (
    PlanConfig,
    base_forecasts,
    conformal_offsets,
    conformal_settings,
)
from daemon.core.conformal import ConformalSettings, ConformalTracker
from models.calibration import conformal_offset, log_residuals
from models.features import FeatureSpec, future_peak, lead_steps_for

REFRESH_S = 3600.0


def _vectorised(
    trace: Trace, forecast: np.ndarray, sources: list[str], config: PlanConfig, k: int
) -> np.ndarray:
    settings = config.calibration_settings()
    residuals = log_residuals(future_peak(trace.values, k), forecast, config.unit_capacity)
    rungs = np.asarray(sources)
    window = max(1, round(settings.window_s / trace.step_s))
    refresh = max(1, round(REFRESH_S / trace.step_s))
    offsets = np.zeros(len(trace))
    phase = -round(trace.start / trace.step_s) % refresh
    for i in range(phase, len(trace), refresh):
        last = i - k
        if last >= 0:
            lo = max(0, last - window)
            same = rungs[lo : last + 1] == rungs[i]
            offsets[i : i + refresh] = conformal_offset(residuals[lo : last + 1][same], settings)
    return offsets


def _case() -> tuple[Trace, PlanConfig, np.ndarray, list[str], int]:
    trace = generate_trace(TraceShape(days=10, step_s=600.0, gap_share=0.03, seed=5))
    config = PlanConfig(unit_capacity=100.0, lead_s=1800.0, warmup_s=86_400.0)
    k = lead_steps_for(config.lead_s, trace.step_s)
    spec = FeatureSpec(step_s=trace.step_s, lead_steps=k, scale=config.unit_capacity)
    forecast, sources, _ = base_forecasts(trace, config, spec)
    return trace, config, forecast, sources, k


def test_streaming_offsets_equal_the_old_vectorised_ones() -> None:
    trace, config, forecast, sources, k = _case()
    # Three rungs of the ladder over the trace: the rung filter is exercised.
    assert {"recent_peak", "seasonal_naive", "model"} <= set(sources)
    reference = _vectorised(trace, forecast, sources, config, k)
    assert np.count_nonzero(reference) > len(trace) // 2
    streamed = conformal_offsets(trace, forecast, sources, config, k)
    # The tracker stores residuals in float16 (memory at 1,000 targets): three significant
    # digits of a log residual, against the float64 reference.
    np.testing.assert_allclose(streamed, reference, rtol=2e-3, atol=2e-3)


def test_a_restored_tracker_carries_on_exactly() -> None:
    trace, config, forecast, sources, _ = _case()
    settings = conformal_settings(trace, config)
    whole, first = ConformalTracker(settings), ConformalTracker(settings)
    half = len(trace) // 2
    step = round(trace.start / trace.step_s)
    expected, got = [], []
    for i in range(len(trace)):
        value = None if np.isnan(trace.values[i]) else float(trace.values[i])
        predicted = None if np.isnan(forecast[i]) else float(forecast[i])
        expected.append(whole.update(step + i, value, predicted, sources[i]))
        if i == half:
            first = ConformalTracker.from_json(settings, json.loads(json.dumps(first.to_json())))
        got.append(first.update(step + i, value, predicted, sources[i]))
    assert got == expected


def test_a_skipped_step_counts_as_missing() -> None:
    trace, config, forecast, sources, _ = _case()
    settings = conformal_settings(trace, config)
    skipping, gapped = ConformalTracker(settings), ConformalTracker(settings)
    step = round(trace.start / trace.step_s)
    for i in range(len(trace)):
        value = None if np.isnan(trace.values[i]) else float(trace.values[i])
        predicted = None if np.isnan(forecast[i]) else float(forecast[i])
        if i % 7 == 3:
            gapped.update(step + i, None, None, sources[i])
            continue  # the daemon missed this step altogether
        assert skipping.update(step + i, value, predicted, sources[i]) == gapped.update(
            step + i, value, predicted, sources[i]
        )


def test_the_latest_residual_is_the_forecast_a_lead_ago_against_the_peak_since() -> None:
    settings = ConformalSettings(step_s=60.0, lead_steps=2, shortfall_target=0.01, scale=10.0)
    tracker = ConformalTracker(settings)
    assert tracker.latest_residual() is None
    for step, value in enumerate([30.0, 30.0, 30.0]):
        tracker.update(step, value, 30.0, "model")
    assert tracker.latest_residual() == pytest.approx(0.0, abs=1e-3)
    # Demand jumps to 90 for two steps: the forecast of 30 made two steps ago fell short.
    tracker.update(3, 90.0, 90.0, "model")
    tracker.update(4, 90.0, 90.0, "model")
    assert tracker.latest_residual() == pytest.approx(math.log1p(9.0) - math.log1p(3.0), rel=1e-3)
    tracker.update(6, None, None, "model")  # a skipped step and a gap: nothing resolved
    assert tracker.latest_residual() is None
