"""Features are causal and compute what their names say."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.features import (
    FEATURE_NAMES,
    FeatureSpec,
    build_features,
    future_peak,
    peak_target,
    seasonal_peak,
    shifted,
    trailing_max,
    trailing_mean,
)


def brute_trailing(values: np.ndarray, window: int, reduce: str) -> np.ndarray:
    out = np.full(values.size, np.nan)
    for i in range(values.size):
        chunk = values[max(0, i - window + 1) : i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.max() if reduce == "max" else chunk.mean()
    return out


values_strategy = st.lists(
    st.one_of(st.floats(0, 1000, allow_nan=False), st.just(float("nan"))), min_size=1, max_size=60
)


@given(values=values_strategy, window=st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_trailing_windows_match_a_brute_force_loop(values: list[float], window: int) -> None:
    array = np.asarray(values, dtype=np.float64)
    np.testing.assert_allclose(trailing_max(array, window), brute_trailing(array, window, "max"))
    np.testing.assert_allclose(
        trailing_mean(array, window), brute_trailing(array, window, "mean"), rtol=1e-9, atol=1e-9
    )


def test_future_peak_is_the_max_of_the_next_k_steps() -> None:
    values = np.array([1.0, 5.0, 2.0, np.nan, 3.0, 0.0])
    # The last two windows run past the end of the data: unknown, not zero.
    np.testing.assert_array_equal(
        future_peak(values, 2), np.array([5.0, 2.0, 3.0, 3.0, np.nan, np.nan])
    )


def test_shifted_moves_values_later_in_time() -> None:
    np.testing.assert_array_equal(shifted(np.array([1.0, 2.0, 3.0]), 1), [np.nan, 1.0, 2.0])
    np.testing.assert_array_equal(shifted(np.array([1.0, 2.0, 3.0]), -1), [2.0, 3.0, np.nan])


def test_seasonal_peak_refuses_a_window_that_reaches_the_future() -> None:
    assert np.isnan(seasonal_peak(np.arange(10.0), period=4, lead_steps=4)).all()
    assert seasonal_peak(np.arange(10.0), period=4, lead_steps=1)[5] == 2.0


@given(
    cut=st.integers(10, 400),
    factor=st.floats(0.0, 10.0),
    seed=st.integers(0, 1000),
)
@settings(max_examples=25, deadline=None)
def test_no_feature_row_changes_when_the_future_changes(cut: int, factor: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = FeatureSpec(step_s=3600.0, lead_steps=3, scale=10.0)
    times = 1_767_571_200.0 + 3600.0 * np.arange(500, dtype=np.float64)
    values = rng.gamma(2.0, 20.0, 500)
    values[rng.random(500) < 0.05] = np.nan
    changed = values.copy()
    changed[cut + 1 :] = changed[cut + 1 :] * factor + 5.0
    before = build_features(times, values, spec)
    after = build_features(times, changed, spec)
    np.testing.assert_array_equal(before.matrix[: cut + 1], after.matrix[: cut + 1])
    np.testing.assert_array_equal(before.anchor[: cut + 1], after.anchor[: cut + 1])


def test_feature_matrix_has_one_named_column_each() -> None:
    spec = FeatureSpec(step_s=300.0, lead_steps=2, scale=100.0)
    times = 1_767_571_200.0 + 300.0 * np.arange(100, dtype=np.float64)
    features = build_features(times, np.full(100, 250.0), spec)
    assert features.matrix.shape == (100, len(FEATURE_NAMES))
    # A flat demand has nothing to forecast: the target is zero relative to the anchor.
    target = peak_target(np.full(100, 250.0), spec, features.anchor)
    assert np.nanmax(np.abs(target)) < 1e-12


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("step_s", {"step_s": 0.0, "lead_steps": 1, "scale": 1.0}),
        ("lead_steps", {"step_s": 60.0, "lead_steps": 0, "scale": 1.0}),
        ("scale", {"step_s": 60.0, "lead_steps": 1, "scale": -1.0}),
    ],
)
def test_spec_rejects_nonsense(field: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=field):
        FeatureSpec(**kwargs)  # type: ignore[arg-type]
