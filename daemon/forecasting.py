"""Per-target forecasting state for the daemon: history on a grid and the models.

The daemon forecasts exactly as ``elasticd backtest`` replays: the same causal features over
the same grid and the same training ladder; the conformal offset is the tournament's streaming
tracker (``daemon.core.conformal``), the one the backtest replays. The only difference is
that history arrives sample by sample instead of from a file.

Threading: :meth:`TargetForecaster.train` runs in a worker thread while the event loop keeps
calling :meth:`forecast`; training works on a snapshot and installs the new model with one
attribute assignment, which is atomic in CPython.

A model never stops a target from deciding: :meth:`forecast` does not raise. A model that
fails to predict is dropped for the best fallback rung the history supports, its artifact is
quarantined (when this forecaster owns it), and a retrain is requested (``on_model_failure``
tells the trainer at once; ``retrain_requested`` says so until a fit installs a model).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from daemon.core.tournament import CHALLENGER, MODEL, SEASONAL, model_label
from daemon.runtime.allocator import trim_heap, trim_heap_every
from models.artifacts import load_model, quarantine, save_model
from models.calibration import CalibrationSettings
from models.errors import MissingArtifactError, ModelError
from models.features import (
    Features,
    FeatureSpec,
    build_features,
    last_row_features,
    lead_steps_for,
)
from models.forecaster import (
    DEFAULT_TRAIN_WINDOW_S,
    GradientBoostingPeak,
    PeakForecaster,
    RecentPeak,
    SeasonalNaive,
    fallback_forecaster,
    forecast_demand,
    train_forecaster,
)

FloatArray = NDArray[np.float64]
ModelFailureListener = Callable[[str], None]
_SEASONAL = SeasonalNaive()


log = logging.getLogger("elasticd.forecasting")

# Features look back at most a week plus a lead time plus a day; keep a margin.
_FEATURE_HISTORY_S = 9 * 86_400.0
HISTORY_DTYPE = np.float32
_TRIM_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    step_s: float
    lead_s: float
    unit_capacity: float
    shortfall_target: float
    train_window_s: float = DEFAULT_TRAIN_WINDOW_S
    calibration_gain: float = 0.03

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(
            step_s=self.step_s,
            lead_steps=lead_steps_for(self.lead_s, self.step_s),
            scale=self.unit_capacity,
        )


class TargetForecaster:
    """History, model and recent forecasts of one target (owned by its reconciler)."""

    def __init__(
        self, settings: ForecastSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        """``clock``: epoch seconds, for the names of quarantined artifacts."""
        self.settings = settings
        self._clock = clock
        # The saved artifact this forecaster owns and the model it holds: the one moved aside
        # when that model fails. Only the daemon's trainer owns artifacts (``load(owner=True)``
        # and ``save``); a read-only user such as ``elasticd explain`` never moves them.
        self._artifact: tuple[Path, str, PeakForecaster] | None = None
        self._trained_at: float | None = None
        self._retrain_reason: str | None = None
        self._failure_listener: ModelFailureListener | None = None
        self._feature_failure: str | None = None
        self.spec = settings.spec
        self._lock = threading.Lock()
        self._first_index: int | None = None  # grid index of _values[0]
        # Demand per grid step, float32: 7 significant digits are far beyond any metric's
        # accuracy, and at 14-23 days of 1-minute steps float64 made it the largest part of
        # each target's memory. Everything computed from it is computed in float64.
        self._values = np.empty(0, dtype=HISTORY_DTYPE)
        self._forecaster: PeakForecaster = RecentPeak()
        # Only what forecasts and calibration read between fits: a fit reads its longer window
        # from the source (``train_on``). Kept for the whole training window, the buffer was
        # the largest part of each target's memory, and grew for nine days after start.
        self._capacity = math.ceil(_FEATURE_HISTORY_S / settings.step_s)
        self._cached: tuple[int, float | None, str] | None = None
        # The newest one-row features, for the other candidates at the same step.
        self._features: tuple[int, Features | None] | None = None
        # The policy tournament's models (daemon.core.tournament): a fit while a trained model
        # is in use waits in _fresh until the reconciler enters it as the challenger, which
        # forecasts beside the champion (_forecaster) until promoted or dropped.
        self._fresh: tuple[PeakForecaster, str] | None = None
        self._challenger: PeakForecaster | None = None
        self._candidates: tuple[int, int, dict[str, tuple[float | None, str]]] | None = None

    # -- history --------------------------------------------------------------------------

    def _index(self, timestamp: float) -> int:
        return math.floor(timestamp / self.settings.step_s)

    @property
    def buffer_s(self) -> float:
        """How much history the buffer keeps (and is loaded with at start)."""
        return self._capacity * self.settings.step_s

    @property
    def history_start(self) -> float | None:
        if self._first_index is None:
            return None
        return self._first_index * self.settings.step_s

    @property
    def history_end(self) -> float | None:
        if self._first_index is None or self._values.size == 0:
            return None
        return (self._first_index + self._values.size - 1) * self.settings.step_s

    def load_history(self, times: FloatArray, values: FloatArray) -> None:
        """Replace the buffer with a source's history (any timestamps; snapped to the grid)."""
        times = np.asarray(times, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        with self._lock:
            if times.size == 0:
                self._first_index, self._values = None, np.empty(0, dtype=HISTORY_DTYPE)
                return
            first, grid = self._on_grid(times, values, HISTORY_DTYPE)
            self._first_index, self._values = first, grid
            self._trim()
            self._cached = None

    def observe(self, timestamp: float, value: float | None) -> None:
        """Record the latest sample; ``None`` or NaN marks the step as missing."""
        index = self._index(timestamp)
        with self._lock:
            if self._first_index is None:
                self._first_index = index
                self._values = np.full(1, np.nan, dtype=HISTORY_DTYPE)
            self._extend_to(index)
            position = index - self._first_index
            if position < 0:
                return  # older than the buffer: nothing to learn from it any more
            # Only a new value makes the cached forecast stale: a 15 s tick re-reading a series
            # sampled each minute repeats it, and rebuilding the features (a week and more of
            # history) four times a minute was half the daemon's CPU at 1,000 targets.
            # NaN (nothing observed yet) differs from any value.
            usable = value is not None and math.isfinite(value) and value >= 0
            # Compared as stored: a float64 reading never equals its float32 copy.
            if usable and self._values[position] != HISTORY_DTYPE(value):
                self._values[position] = value
                self._cached = None

    def _extend_to(self, index: int) -> None:
        assert self._first_index is not None
        missing = index - (self._first_index + self._values.size - 1)
        if missing > 0:
            self._values = np.concatenate(
                (self._values, np.full(missing, np.nan, dtype=HISTORY_DTYPE))
            )
            self._trim()

    def _trim(self) -> None:
        # Trim in chunks so appending one step does not copy the whole buffer every time.
        excess = self._values.size - self._capacity
        if excess > self._capacity // 10 and self._first_index is not None:
            self._values = self._values[excess:].copy()
            self._first_index += excess

    def _snapshot(self, seconds: float | None) -> tuple[FloatArray, FloatArray]:
        """(times, values) of the newest ``seconds`` of history (all when None)."""
        with self._lock:
            if self._first_index is None:
                return np.empty(0), np.empty(0)
            stored = self._values
            first = self._first_index
            if seconds is not None:
                keep = min(stored.size, int(seconds / self.settings.step_s))
                first += stored.size - keep
                stored = stored[stored.size - keep :]
            values: FloatArray = stored.astype(np.float64)  # a copy, at the features' precision
        times = (first + np.arange(values.size, dtype=np.float64)) * self.settings.step_s
        return times, values

    # -- training -------------------------------------------------------------------------

    def _on_grid(
        self, times: FloatArray, values: FloatArray, dtype: type[np.floating[Any]]
    ) -> tuple[int, NDArray[Any]]:
        """(grid index of the first step, one value per step; NaN where none); later samples
        in a step win."""
        index = np.floor(times / self.settings.step_s).astype(np.int64)
        first = int(index[0])
        grid = np.full(int(index[-1]) - first + 1, np.nan, dtype=dtype)
        grid[index - first] = values
        return first, grid

    def train(self, now: float) -> str:
        """Fit on the history in the buffer (the last nine days), for when the source's
        history cannot be read; returns the ladder's reason."""
        times, values = self._snapshot(None)
        return self._fit(times, values, now)

    def train_on(self, times: FloatArray, values: FloatArray, now: float) -> str:
        """Fit on a source's history (the training window of it; any timestamps, snapped to
        the grid) and install the result; returns the ladder's reason. The buffer is not
        touched: the history is read for the fit and dropped after it."""
        times = np.asarray(times, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if times.size == 0:
            return self._fit(times, values, now)
        first, grid = self._on_grid(times, values, np.float64)
        grid_times = (first + np.arange(grid.size, dtype=np.float64)) * self.settings.step_s
        return self._fit(grid_times, grid, now)

    def _fit(self, times: FloatArray, values: FloatArray, now: float) -> str:
        if values.size == 0:
            self._forecaster = RecentPeak()
            self._trained_at = now
            self._retrain_reason = None
            self._cached = None
            return "recent_peak: no history yet"
        features = build_features(times, values, self.spec)
        outcome = train_forecaster(
            times,
            values,
            features,
            self.spec,
            values.size,
            shortfall_target=self.settings.shortfall_target,
            fitted_at=now,
            window_s=self.settings.train_window_s,
        )
        fitted = outcome.forecaster
        outcome_reason = outcome.reason
        if isinstance(fitted, GradientBoostingPeak) and isinstance(
            self._forecaster, GradientBoostingPeak
        ):
            # A trained model is in use: the new one is a challenger first (the canary), and
            # the reconciler enters it in the tournament at its next tick.
            self._fresh = (fitted, model_label(fitted.name, now))
        else:
            self._forecaster = fitted
        self._trained_at = now
        self._retrain_reason = None
        self._cached = None
        del features, outcome, fitted
        # The fit's scratch arrays are freed, the model kept: hand the freed pages of this
        # thread's malloc arena back (see trim_heap), or a thousand fits pin ~40 MB of holes.
        trim_heap()
        return outcome_reason

    @property
    def forecaster_name(self) -> str:
        return self._forecaster.name

    # -- the tournament's models ----------------------------------------------------------

    def take_fresh(self) -> tuple[PeakForecaster, str] | None:
        """A newly fitted model waiting to be entered in the tournament, and its label; taken
        once."""
        fresh, self._fresh = self._fresh, None
        return fresh

    def install(self, model: PeakForecaster) -> None:
        """Make ``model`` the champion at once (no trained champion to protect)."""
        self._forecaster = model
        self._cached = self._candidates = None

    def set_challenger(self, model: PeakForecaster | None) -> None:
        self._challenger = model
        self._candidates = None

    @property
    def challenger_name(self) -> str | None:
        return None if self._challenger is None else self._challenger.name

    def promote_challenger(self) -> None:
        """The challenger won its canary: it forecasts as the champion from now on."""
        if self._challenger is not None:
            self._forecaster, self._challenger = self._challenger, None
            self._cached = self._candidates = None

    def drop_challenger(self) -> None:
        self.set_challenger(None)

    def candidate_forecasts(self, now: float) -> dict[str, tuple[float | None, str]]:
        """Every forecasting candidate's base forecast for ``now``: the champion
        (``model``, with :meth:`forecast`'s failure handling), ``seasonal_naive``, and the
        ``challenger`` while one is on trial, from one row of features."""
        value, rung = self.forecast(now)
        index = self._index(now)
        cached = self._candidates
        challenger = self._challenger
        if cached is not None and cached[0] == index and cached[1] == id(challenger):
            return {**cached[2], MODEL: (value, rung)}
        found: dict[str, tuple[float | None, str]] = {MODEL: (value, rung)}
        features = self._features[1] if self._features and self._features[0] == index else None
        if features is not None:
            found[SEASONAL] = (self._safe_demand(_SEASONAL, features), _SEASONAL.name)
            if challenger is not None:
                try:
                    predicted = self._demand(challenger, features)
                except Exception as error:
                    # A challenger that cannot forecast has lost its canary.
                    log.warning("challenger dropped: it failed to forecast: %r", error)
                    self._challenger = challenger = None
                else:
                    found[CHALLENGER] = (
                        predicted if math.isfinite(predicted) else None,
                        challenger.name,
                    )
        self._candidates = (index, id(challenger), found)
        return found

    def _safe_demand(self, forecaster: PeakForecaster, features: Features) -> float | None:
        try:
            value = self._demand(forecaster, features)
        except Exception:
            return None
        return value if math.isfinite(value) else None

    @property
    def trained_at(self) -> float | None:
        """When the forecaster in use was fitted (a loaded model: its own fit time)."""
        return self._trained_at

    def save(self, directory: Path, name: str) -> None:
        """Persist the trained model; fallback rungs have nothing worth saving."""
        forecaster = self._forecaster
        if isinstance(forecaster, GradientBoostingPeak):
            save_model(forecaster, directory, name)
            self._artifact = (directory, name, forecaster)

    def load(self, directory: Path, name: str, *, owner: bool = False) -> str | None:
        """Install a saved model; returns why it was refused, or None when it was loaded.

        ``owner``: this forecaster owns the artifact (the daemon's trainer): one refused for
        any reason but absence is quarantined, and so is the model later if it fails to
        predict. Never raises.
        """
        try:
            model = load_model(directory, name, self.spec)
        except MissingArtifactError as error:
            return str(error)
        except Exception as error:  # load_model raises ModelError; anything else is a bug
            reason = str(error) if isinstance(error, ModelError) else repr(error)
            return reason + (self._quarantine(directory, name) if owner else "")
        self._forecaster = model
        self._trained_at = model.provenance.fitted_at
        if owner:
            self._artifact = (directory, name, model)
        self._cached = None
        return None

    def on_model_failure(self, listener: ModelFailureListener | None) -> None:
        """Call ``listener(reason)`` whenever a model is dropped and a retrain is needed
        (from the thread that found the failure: the event loop's, for ``forecast``)."""
        self._failure_listener = listener

    @property
    def retrain_requested(self) -> str | None:
        """Why a retrain is needed now (a model was dropped), or None; a fit clears it."""
        return self._retrain_reason

    def _quarantine(self, directory: Path, name: str) -> str:
        """Move the artifact aside; what happened, to append to the reason."""
        try:
            moved = quarantine(directory, name, now=self._clock())
        except OSError as error:
            return f" (could not quarantine it: {error})"
        return "" if moved is None else f" (quarantined as {moved})"

    def _drop_model(
        self, failed: PeakForecaster, error: BaseException, times: FloatArray, values: FloatArray
    ) -> PeakForecaster:
        """Replace a model that failed with the best fallback, quarantine its artifact, and
        ask for a retrain; returns the forecaster now in use."""
        outcome = fallback_forecaster(times, values, self.spec, values.size)
        if self._forecaster is failed:  # a fit may have installed a new model meanwhile
            self._forecaster = outcome.forecaster
            self._cached = None
        reason = f"{failed.name} failed to forecast: {error or type(error).__name__}"
        artifact = self._artifact
        if artifact is not None and artifact[2] is failed:
            self._artifact = None
            reason += self._quarantine(artifact[0], artifact[1])
        self._request_retrain(f"{reason}; using {outcome.forecaster.name} until it is retrained")
        return self._forecaster

    def _request_retrain(self, reason: str) -> None:
        self._retrain_reason = reason
        listener = self._failure_listener
        if listener is None:
            log.warning("%s", reason, extra={"event": "model_failed"})
            return
        try:
            listener(reason)
        except Exception:
            log.exception("model failure listener failed")

    # -- forecasting ----------------------------------------------------------------------

    def forecast(self, now: float) -> tuple[float | None, str]:
        """Base forecast of the peak over ``(now, now + lead]`` from history up to ``now``."""
        index = self._index(now)
        with self._lock:
            if self._first_index is None:
                return None, self._forecaster.name
            self._extend_to(index)
        cached = self._cached
        forecaster = self._forecaster
        if cached is not None and cached[0] == index:
            return cached[1], cached[2]
        times, values = self._snapshot(_FEATURE_HISTORY_S)
        try:
            # One row, computed alone: the same numbers as the full matrix's last row (tested).
            features = last_row_features(times, values, self.spec)
        except Exception as error:
            # No rung can forecast without features; the planner holds on observed demand.
            self._features = (index, None)
            self._report_feature_failure(error)
            return None, forecaster.name
        self._feature_failure = None
        self._features = (index, features)
        # This is the tick's churn (a week of history copied per target per minute): hand the
        # pages it leaves free back now and then, as each fit does (see trim_heap_every).
        trim_heap_every(_TRIM_EVERY_S)
        try:
            value = self._demand(forecaster, features)
        except Exception as error:
            if isinstance(forecaster, RecentPeak | SeasonalNaive):
                # A fallback reads the features directly: a non-finite one is no forecast at
                # this step, not a broken model; nothing is dropped.
                if not isinstance(error, ModelError):
                    self._report_feature_failure(error)
                value = math.nan
            else:
                forecaster = self._drop_model(forecaster, error, times, values)
                try:
                    value = self._demand(forecaster, features)
                except Exception:
                    value = math.nan
        result = None if not math.isfinite(value) else value
        self._cached = (index, result, forecaster.name)
        return result, forecaster.name

    def _demand(self, forecaster: PeakForecaster, features: Features) -> float:
        return float(forecast_demand(forecaster, features, self.spec, np.array([0]))[0])

    def _report_feature_failure(self, error: BaseException) -> None:
        """Logged once per distinct error, not on every tick it repeats."""
        text = repr(error)
        if text != self._feature_failure:
            self._feature_failure = text
            log.error("no forecast: features failed: %s", text, exc_info=error)

    def calibration_settings(self) -> CalibrationSettings:
        return CalibrationSettings(
            shortfall_target=self.settings.shortfall_target,
            scale=self.settings.unit_capacity,
            gain=self.settings.calibration_gain,
        )
