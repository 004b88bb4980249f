"""Model artifacts keep provenance and refuse a mismatch; thin history falls back, and says so."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from daemon.backtest.synthetic import TraceShape, generate_trace
from models.artifacts import load_model, save_model
from models.errors import ArtifactMismatchError, ModelError
from models.features import FeatureSpec, build_features
from models.forecaster import (
    GradientBoostingPeak,
    train_forecaster,
    training_rows,
)


@pytest.fixture(scope="module")
def trained() -> tuple[GradientBoostingPeak, FeatureSpec]:
    trace = generate_trace(TraceShape(days=4, step_s=600.0, seed=2))
    spec = FeatureSpec(step_s=600.0, lead_steps=2, scale=100.0)
    features = build_features(trace.times, trace.values, spec)
    outcome = train_forecaster(
        trace.times,
        trace.values,
        features,
        spec,
        len(trace),
        shortfall_target=0.01,
        fitted_at=float(trace.times[-1]),
    )
    assert isinstance(outcome.forecaster, GradientBoostingPeak), outcome.reason
    return outcome.forecaster, spec


def test_saved_model_round_trips_with_provenance(
    trained: tuple[GradientBoostingPeak, FeatureSpec], tmp_path: Path
) -> None:
    model, spec = trained
    meta_path = save_model(model, tmp_path, "web")
    meta = json.loads(meta_path.read_text())
    assert meta["provenance"]["sklearn_version"]
    assert meta["provenance"]["feature_names"][0] == "anchor"
    loaded = load_model(tmp_path, "web", spec)
    assert loaded.provenance == model.provenance
    features = build_features(np.arange(500.0) * 600.0, np.full(500, 300.0), spec)
    rows = np.arange(400, 500)
    np.testing.assert_array_equal(
        loaded.predict_log(features, rows), model.predict_log(features, rows)
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sklearn_version", "0.1.0", "sklearn_version"),
        ("feature_names", ["anchor"], "feature_names"),
        ("lead_steps", 7, "lead_steps"),
    ],
)
def test_a_mismatched_artifact_is_refused_with_the_reason(
    trained: tuple[GradientBoostingPeak, FeatureSpec],
    tmp_path: Path,
    field: str,
    value: object,
    message: str,
) -> None:
    model, spec = trained
    meta_path = save_model(model, tmp_path, "web")
    meta = json.loads(meta_path.read_text())
    meta["provenance"][field] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactMismatchError, match=message):
        load_model(tmp_path, "web", spec)


def test_a_tampered_or_missing_artifact_is_refused(
    trained: tuple[GradientBoostingPeak, FeatureSpec], tmp_path: Path
) -> None:
    model, spec = trained
    save_model(model, tmp_path, "web")
    (tmp_path / "web.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ArtifactMismatchError, match="checksum"):
        load_model(tmp_path, "web", spec)
    with pytest.raises(ModelError, match="no model artifact"):
        load_model(tmp_path, "other", spec)
    other_spec = dataclasses.replace(spec, step_s=60.0)
    save_model(model, tmp_path, "web")
    with pytest.raises(ArtifactMismatchError, match="step_s"):
        load_model(tmp_path, "web", other_spec)


@pytest.mark.parametrize(
    ("days", "expected"),
    [(0.5, "recent_peak: less than a day"), (1.5, "seasonal_naive: less than two days")],
)
def test_thin_history_falls_back_and_says_so(days: float, expected: str) -> None:
    trace = generate_trace(TraceShape(days=days, step_s=600.0))
    spec = FeatureSpec(step_s=600.0, lead_steps=2, scale=100.0)
    features = build_features(trace.times, trace.values, spec)
    outcome = train_forecaster(
        trace.times, trace.values, features, spec, len(trace), shortfall_target=0.01, fitted_at=0.0
    )
    assert outcome.reason.startswith(expected)


def test_training_rows_never_include_a_target_that_ends_at_or_after_the_cutoff() -> None:
    spec = FeatureSpec(step_s=60.0, lead_steps=5, scale=1.0)
    target = np.zeros(1000)
    rows = training_rows(target, np.zeros(1000), spec, cutoff=600, window_s=1e9)
    assert rows.max() + spec.lead_steps < 600
