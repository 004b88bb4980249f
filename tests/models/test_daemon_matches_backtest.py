"""The daemon's streaming forecaster gives the backtest's forecasts, step for step."""

from __future__ import annotations

import numpy as np

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.walkforward import PlanConfig, base_forecasts, conformal_offsets
from daemon.forecasting import ForecastSettings, TargetForecaster
from tests.support.stored import as_stored, streamed


def test_streaming_forecasts_equal_the_walk_forward_replay() -> None:
    trace = as_stored(generate_trace(TraceShape(days=5, step_s=600.0, gap_share=0.02, seed=3)))
    config = PlanConfig(unit_capacity=100.0, lead_s=1200.0, warmup_s=86_400.0)
    settings = ForecastSettings(
        step_s=trace.step_s, lead_s=config.lead_s, unit_capacity=100.0, shortfall_target=0.01
    )
    replayed, sources, fits = base_forecasts(trace, config, settings.spec)
    assert any(fit.reason.startswith("model") for fit in fits)

    forecasts, names, offsets = zip(*streamed(TargetForecaster(settings), trace), strict=True)
    assert list(names) == sources
    np.testing.assert_allclose(np.array(forecasts), replayed, rtol=1e-6, equal_nan=True)
    replayed_offsets = conformal_offsets(trace, replayed, sources, config, settings.spec.lead_steps)
    assert np.any(replayed_offsets != 0.0)
    np.testing.assert_allclose(np.array(offsets), replayed_offsets, rtol=1e-6, atol=1e-9)
