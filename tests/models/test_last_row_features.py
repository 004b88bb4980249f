"""The daemon's one-row features equal the last row of the full feature matrix."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.features import FEATURE_NAMES, FeatureSpec, build_features, last_row_features


@given(
    step=st.sampled_from([600.0, 1200.0, 3600.0]),
    lead_steps=st.integers(1, 6),
    size=st.integers(1, 1200),
    gaps=st.floats(0.0, 0.5),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=120, deadline=None)
def test_last_row_matches_build_features(
    step: float, lead_steps: int, size: int, gaps: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    spec = FeatureSpec(step_s=step, lead_steps=lead_steps, scale=25.0)
    times = 1_767_571_200.0 + step * np.arange(size, dtype=np.float64)
    values = rng.gamma(2.0, 30.0, size)
    values[rng.random(size) < gaps] = np.nan
    full = build_features(times, values, spec)
    last = last_row_features(times, values, spec)
    assert last.matrix.shape == (1, len(FEATURE_NAMES))
    np.testing.assert_allclose(
        last.matrix[0], full.matrix[-1], rtol=1e-9, atol=1e-9, equal_nan=True
    )
    np.testing.assert_allclose(last.anchor, full.anchor[-1:], rtol=1e-9, equal_nan=True)
