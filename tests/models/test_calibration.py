"""Online calibration lands the realised short share near the target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.calibration import (
    CalibrationSettings,
    CalibrationState,
    calibrated,
    conformal_offset,
    log_residuals,
    observe_step,
)


def test_short_steps_raise_the_offset_and_served_steps_lower_it() -> None:
    settings = CalibrationSettings(shortfall_target=0.01, scale=10.0, gain=0.1)
    state = observe_step(CalibrationState(), settings, short=True)
    assert state.integral == pytest.approx(0.1 * 0.99)
    state = observe_step(state, settings, short=False)
    assert state.integral == pytest.approx(0.1 * 0.99 - 0.1 * 0.01)
    assert (state.observed_steps, state.short_steps) == (2, 1)


def test_integral_is_bounded_so_a_long_outage_cannot_wind_it_up() -> None:
    settings = CalibrationSettings(shortfall_target=0.01, scale=10.0, gain=1.0)
    state = CalibrationState()
    for _ in range(100):
        state = observe_step(state, settings, short=True)
    assert state.integral == settings.max_integral


@pytest.mark.parametrize("target", [0.005, 0.01, 0.05])
def test_quantile_tracker_meets_the_target_on_a_biased_forecast(target: float) -> None:
    """A forecast 30 % too low with noisy demand: the tracker corrects it to the target."""
    rng = np.random.default_rng(1)
    settings = CalibrationSettings(shortfall_target=target, scale=1.0, gain=0.02)
    state = CalibrationState()
    steps = 60_000
    demand = 100.0 * np.exp(rng.normal(0.0, 0.1, steps))
    for value in demand.tolist():
        capacity = calibrated(70.0, state, settings)
        state = observe_step(state, settings, short=value > capacity)
    assert 0.7 * target <= state.short_fraction <= 1.3 * target


def test_conformal_offset_is_the_upper_quantile_of_residuals() -> None:
    settings = CalibrationSettings(shortfall_target=0.1, scale=1.0)
    residuals = np.linspace(-1.0, 1.0, 201)
    assert conformal_offset(residuals, settings) == pytest.approx(0.8)
    assert conformal_offset(residuals[:10], settings) == 0.0  # too few to trust


def test_calibrated_forecast_keeps_nan_and_never_goes_negative() -> None:
    settings = CalibrationSettings(shortfall_target=0.01, scale=5.0)
    assert math.isnan(calibrated(float("nan"), CalibrationState(), settings))
    assert calibrated(1.0, CalibrationState(integral=-0.5), settings) >= 0.0
    residual = log_residuals(np.array([10.0]), np.array([5.0]), 5.0)[0]
    state = CalibrationState(conformal=float(residual))
    assert calibrated(5.0, state, settings) == pytest.approx(10.0)
