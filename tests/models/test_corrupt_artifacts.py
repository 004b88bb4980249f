"""Issue 9 defect 5: artifacts that pass the checksum but hold no usable model are refused
with a reason (never a traceback), quarantined, and the forecaster keeps forecasting."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.forecasting import ForecastSettings, TargetForecaster
from models.artifacts import QUARANTINE_KEEP, load_model, quarantine, quarantined, save_model
from models.errors import ArtifactMismatchError, CorruptArtifactError, MissingArtifactError
from models.estimator import PeakQuantileRegressor
from models.features import build_features
from models.forecaster import GradientBoostingPeak, train_forecaster

STEP = 600.0
SETTINGS = ForecastSettings(step_s=STEP, lead_s=1200.0, unit_capacity=100.0, shortfall_target=0.01)
SPEC = SETTINGS.spec
Corruption = Callable[[Path], None]


@pytest.fixture(scope="module")
def model() -> GradientBoostingPeak:
    trace = generate_trace(TraceShape(days=4, step_s=STEP, seed=2))
    features = build_features(trace.times, trace.values, SPEC)
    outcome = train_forecaster(
        trace.times,
        trace.values,
        features,
        SPEC,
        len(trace),
        shortfall_target=0.01,
        fitted_at=float(trace.times[-1]),
    )
    assert isinstance(outcome.forecaster, GradientBoostingPeak), outcome.reason
    return outcome.forecaster


def _meta(directory: Path) -> dict[str, object]:
    meta: dict[str, object] = json.loads((directory / "web.json").read_text())
    return meta


def _write_meta(directory: Path, meta: object) -> None:
    (directory / "web.json").write_text(json.dumps(meta))


def _raw_meta(directory: Path, raw: bytes) -> None:
    (directory / "web.json").write_bytes(raw)


def _payload(directory: Path, payload: bytes) -> None:
    """Replace the pickle and fix the checksum, so only the content is wrong."""
    (directory / "web.pkl").write_bytes(payload)
    meta = _meta(directory)
    meta["sha256"] = hashlib.sha256(payload).hexdigest()
    _write_meta(directory, meta)


def _provenance(**changes: object) -> Corruption:
    def corrupt(directory: Path) -> None:
        meta = _meta(directory)
        provenance = meta["provenance"]
        assert isinstance(provenance, dict)
        for key, value in changes.items():
            if value is _DROP:
                del provenance[key]
            else:
                provenance[key] = value
        _write_meta(directory, meta)

    return corrupt


_DROP = object()


def _unfitted(directory: Path) -> None:
    _payload(directory, pickle.dumps(PeakQuantileRegressor()))


def _broken_trees(directory: Path) -> None:
    regressor = pickle.loads((directory / "web.pkl").read_bytes())
    regressor.trees_ = "not trees"
    _payload(directory, pickle.dumps(regressor))


def _nan_predicting(directory: Path) -> None:
    regressor = pickle.loads((directory / "web.pkl").read_bytes())
    regressor.trees_ = dataclasses.replace(regressor.trees_, baseline=math.nan)
    _payload(directory, pickle.dumps(regressor))


CORRUPTIONS: dict[str, Corruption] = {
    "json list": lambda d: _write_meta(d, [1, 2, 3]),
    "json null": lambda d: _write_meta(d, None),
    "not json": lambda d: _raw_meta(d, b"\xff\xfe{not json"),
    "no provenance": lambda d: _write_meta(d, {"format": 1, "sha256": _meta(d)["sha256"]}),
    "null provenance": lambda d: _write_meta(d, {**_meta(d), "provenance": None}),
    "provenance a list": lambda d: _write_meta(d, {**_meta(d), "provenance": []}),
    "null fit_window": _provenance(fit_window=None),
    "null feature_names": _provenance(feature_names=None),
    "missing step_s": _provenance(step_s=_DROP),
    "string quantile": _provenance(quantile="high"),
    "null sklearn_version": _provenance(sklearn_version=None),
    "unknown field": _provenance(colour="blue"),
    "garbage pickle": lambda d: _payload(d, b"\x80\x05garbage that is no pickle"),
    "truncated pickle": lambda d: _payload(d, (d / "web.pkl").read_bytes()[:200]),
    "empty pickle": lambda d: _payload(d, b""),
    "pickled dict": lambda d: _payload(d, pickle.dumps({"trees_": None})),
    "pickled string": lambda d: _payload(d, pickle.dumps("a model")),
    "unfitted regressor": _unfitted,
    "broken trees": _broken_trees,
    "NaN-predicting trees": _nan_predicting,
}


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupt_artifact_is_refused_with_a_reason(
    model: GradientBoostingPeak, tmp_path: Path, corruption: str
) -> None:
    save_model(model, tmp_path, "web")
    CORRUPTIONS[corruption](tmp_path)
    with pytest.raises(ArtifactMismatchError) as refused:
        load_model(tmp_path, "web", SPEC)
    assert str(refused.value)


def test_the_model_saved_loads_and_a_missing_one_is_only_missing(
    model: GradientBoostingPeak, tmp_path: Path
) -> None:
    save_model(model, tmp_path, "web")
    assert load_model(tmp_path, "web", SPEC).provenance == model.provenance
    with pytest.raises(MissingArtifactError):
        load_model(tmp_path, "api", SPEC)
    (tmp_path / "web.pkl").unlink()
    with pytest.raises(MissingArtifactError):
        load_model(tmp_path, "web", SPEC)


def _history(days: float) -> tuple[np.ndarray, np.ndarray]:
    trace = generate_trace(TraceShape(days=days, step_s=STEP, seed=4))
    return trace.times, trace.values


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_the_forecaster_refuses_quarantines_and_keeps_forecasting(
    model: GradientBoostingPeak, tmp_path: Path, corruption: str
) -> None:
    save_model(model, tmp_path, "web")
    CORRUPTIONS[corruption](tmp_path)
    forecaster = TargetForecaster(SETTINGS, clock=lambda: 1_800_000_000.0)
    times, values = _history(2.0)
    forecaster.load_history(times, values)

    refused = forecaster.load(tmp_path, "web", owner=True)

    assert refused is not None and "quarantined as" in refused
    assert not (tmp_path / "web.json").exists() and not (tmp_path / "web.pkl").exists()
    [moved] = quarantined(tmp_path, "web")
    assert moved.name == "web.quarantined-20270115T080000.000000Z"
    assert {path.name for path in moved.iterdir()} == {"web.json", "web.pkl"}
    forecast, rung = forecaster.forecast(float(times[-1]))
    assert rung == "recent_peak" and forecast is not None and forecast > 0


def test_a_read_only_user_never_moves_an_artifact(
    model: GradientBoostingPeak, tmp_path: Path
) -> None:
    save_model(model, tmp_path, "web")
    CORRUPTIONS["pickled dict"](tmp_path)
    refused = TargetForecaster(SETTINGS).load(tmp_path, "web")
    assert refused is not None and "quarantined" not in refused
    assert (tmp_path / "web.pkl").exists() and not quarantined(tmp_path, "web")


def test_only_the_newest_quarantined_copies_are_kept(tmp_path: Path) -> None:
    for i in range(QUARANTINE_KEEP + 2):
        (tmp_path / "web.json").write_text("[]")
        assert quarantine(tmp_path, "web", now=1_800_000_000.0 + i) is not None
    kept = quarantined(tmp_path, "web")
    assert len(kept) == QUARANTINE_KEEP
    assert kept[-1].name == "web.quarantined-20270115T080004.000000Z"
    assert quarantine(tmp_path, "web", now=1_800_000_100.0) is None  # nothing left to move
    # Two in the same instant do not collide.
    (tmp_path / "web.json").write_text("[]")
    first = quarantine(tmp_path, "api", now=1.0)
    (tmp_path / "api.json").write_text("[]")
    second = quarantine(tmp_path, "api", now=1.0)
    assert first is None and second is not None
    (tmp_path / "api.pkl").write_text("x")
    third = quarantine(tmp_path, "api", now=1.0)
    assert third is not None and third != second


def test_a_model_that_fails_to_forecast_is_dropped_quarantined_and_retrained(
    model: GradientBoostingPeak, tmp_path: Path
) -> None:
    """The wrong object that used to load, then fail every tick: here it loads (it predicts
    the probe rows) and then fails on real features. The target must still get a forecast."""
    forecaster = TargetForecaster(SETTINGS, clock=lambda: 1_800_000_000.0)
    times, values = _history(2.0)
    forecaster.load_history(times, values)
    save_model(model, tmp_path, "web")
    assert forecaster.load(tmp_path, "web", owner=True) is None
    assert forecaster.forecaster_name == "model"
    asked: list[str] = []
    forecaster.on_model_failure(asked.append)
    loaded = forecaster._forecaster
    assert isinstance(loaded, GradientBoostingPeak)
    # Its trees break after loading (memory corruption, a library bug: any exception).
    loaded.regressor.trees_ = None  # type: ignore[assignment]

    forecast, rung = forecaster.forecast(float(times[-1]))

    # Two days of history: the seasonal fallback, not the weakest one.
    assert rung == "seasonal_naive" and forecast is not None and forecast > 0
    assert forecaster.forecaster_name == "seasonal_naive"
    [reason] = asked
    assert reason.startswith("model failed to forecast: ") and "quarantined as" in reason
    assert forecaster.retrain_requested == reason
    assert not (tmp_path / "web.pkl").exists() and len(quarantined(tmp_path, "web")) == 1
    # Later ticks use the fallback quietly; a fit clears the request.
    assert forecaster.forecast(float(times[-1]) + STEP)[1] == "seasonal_naive"
    assert len(asked) == 1
    assert forecaster.train(float(times[-1])).startswith("model")
    assert forecaster.retrain_requested is None and forecaster.forecaster_name == "model"


def test_a_model_forecasting_nan_is_dropped(model: GradientBoostingPeak) -> None:
    forecaster = TargetForecaster(SETTINGS)
    times, values = _history(0.5)
    forecaster.load_history(times, values)
    broken = pickle.loads(pickle.dumps(model))
    broken.regressor.trees_ = dataclasses.replace(broken.regressor.trees_, baseline=math.nan)
    forecaster._forecaster = broken
    asked: list[str] = []
    forecaster.on_model_failure(asked.append)
    forecast, rung = forecaster.forecast(float(times[-1]))
    # Half a day of history: the recent peak.
    assert rung == "recent_peak" and forecast is not None
    assert asked and "non-finite" in asked[0]


def test_corrupt_error_is_a_mismatch() -> None:
    assert issubclass(CorruptArtifactError, ArtifactMismatchError)
