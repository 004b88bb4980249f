"""Replay the plan over a trace, walk-forward: it retrains on a cadence using only the past.

Features are causal, so they are built once for the whole trace. At each retraining cutoff the
forecaster is fit on rows whose target had fully happened before the cutoff and enters the
policy tournament (:mod:`daemon.core.tournament`) as a challenger; the champion's and the
challenger's forecasts for the steps up to the next cutoff are one vectorised prediction each.
The sequential part, every candidate's conformal offset, calibration and planner and the
referee, is :meth:`daemon.core.tournament.Tournament.step`, the very call the daemon's
reconciler makes.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from daemon.backtest.replay import ReplayLog, replay
from daemon.backtest.trace import Trace
from daemon.core.conformal import ConformalSettings, ConformalTracker, grid_index
from daemon.core.metric_floor import MetricPost, metric_floor, with_metric_reason
from daemon.core.tournament import (
    CHALLENGER,
    MODEL,
    SEASONAL,
    CandidateScore,
    Switch,
    Tournament,
    TournamentInputs,
    TournamentSettings,
    model_label,
)
from daemon.core.types import PlannerSettings
from models.calibration import CalibrationSettings
from models.features import FEATURE_NAMES, Features, FeatureSpec, build_features
from models.features import lead_steps_for as lead_steps
from models.forecaster import (
    DEFAULT_MAX_TRAIN_ROWS,
    DEFAULT_TRAIN_WINDOW_S,
    PeakForecaster,
    SeasonalNaive,
    forecast_demand,
    train_forecaster,
)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """Everything the plan replay needs besides the trace."""

    unit_capacity: float
    lead_s: float
    warmup_s: float
    shortfall_target: float = 0.01
    retrain_every_s: float = 86_400.0
    train_window_s: float = DEFAULT_TRAIN_WINDOW_S
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS
    reactive_utilisation: float = 1.0
    scale_down_stabilisation_s: float = 300.0
    min_units: int = 0
    max_units: int = 1_000_000
    calibration_gain: float = 0.03
    base_quantile: float | None = None  # None: derived from the shortfall target
    seed: int = 0
    # A target's own planner settings (``--config``); None: built from the fields above.
    planner: PlannerSettings | None = None
    tournament: TournamentSettings = field(default_factory=TournamentSettings)

    def planner_settings(self) -> PlannerSettings:
        if self.planner is not None:
            # The replay's lead time is the one the plan answers for (daemon.core.landed).
            return replace(self.planner, lead_s=self.lead_s)
        return PlannerSettings(
            lead_s=self.lead_s,
            unit_capacity=self.unit_capacity,
            min_units=self.min_units,
            max_units=self.max_units,
            # As a floor under the forecast, the reactive rule covers today's demand at 100 %:
            # headroom for what comes next is the forecast's job.
            reactive_utilisation=self.reactive_utilisation,
            scale_down_stabilisation_s=self.scale_down_stabilisation_s,
        )

    def calibration_settings(self) -> CalibrationSettings:
        return CalibrationSettings(
            shortfall_target=self.shortfall_target,
            scale=self.unit_capacity,
            gain=self.calibration_gain,
        )


@dataclass(frozen=True, slots=True)
class Fit:
    at: float
    reason: str
    seconds: float


@dataclass(frozen=True, slots=True)
class PlanReplay:
    log: ReplayLog
    base_forecast: FloatArray
    forecast: FloatArray
    reasons: tuple[str, ...]
    fits: tuple[Fit, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    active: tuple[str, ...] = ()
    """The policy the plan acted on at each step."""
    switches: tuple[Switch, ...] = ()
    """The tournament's switches, demotions, promotions and drops, in order."""
    scoreboard: tuple[CandidateScore, ...] = ()
    """The candidates' scores at the end of the replay."""
    decided_by: tuple[str, ...] = ()
    """With several metrics: the metric that decided each step (empty with one metric)."""

    @property
    def training_seconds(self) -> float:
        return sum(fit.seconds for fit in self.fits)


def retrain_cutoffs(trace: Trace, every_s: float) -> list[int]:
    """Grid indices at which the forecaster is refit: the start, then every ``every_s``."""
    per = max(1, round(every_s / trace.step_s))
    return list(range(0, len(trace), per))


def base_forecasts(
    trace: Trace, config: PlanConfig, spec: FeatureSpec
) -> tuple[FloatArray, list[str], list[Fit]]:
    """Walk-forward forecasts of the peak over the lead time, before calibration."""
    features = build_features(trace.times, trace.values, spec)
    forecast = np.full(len(trace), np.nan)
    sources = [""] * len(trace)
    fits: list[Fit] = []
    cutoffs = [*retrain_cutoffs(trace, config.retrain_every_s), len(trace)]
    for start, end in itertools.pairwise(cutoffs):
        began = time.perf_counter()
        outcome = train_forecaster(
            trace.times,
            trace.values,
            features,
            spec,
            start,
            shortfall_target=config.shortfall_target,
            fitted_at=float(trace.times[start]),
            window_s=config.train_window_s,
            max_rows=config.max_train_rows,
            quantile=config.base_quantile,
            random_state=config.seed,
        )
        rows = np.arange(start, end)
        forecast[start:end] = forecast_demand(outcome.forecaster, features, spec, rows)
        sources[start:end] = [outcome.forecaster.name] * (end - start)
        fits.append(Fit(float(trace.times[start]), outcome.reason, time.perf_counter() - began))
    return forecast, sources, fits


def conformal_settings(trace: Trace, config: PlanConfig) -> ConformalSettings:
    settings = config.calibration_settings()
    return ConformalSettings(
        step_s=trace.step_s,
        lead_steps=lead_steps(config.lead_s, trace.step_s),
        shortfall_target=settings.shortfall_target,
        scale=settings.scale,
        window_s=settings.window_s,
    )


def conformal_offsets(
    trace: Trace, forecast: FloatArray, sources: list[str], config: PlanConfig, k: int
) -> FloatArray:
    """The residual-quantile offset in force at each step for one forecast stream, from
    forecasts resolved by then: :class:`daemon.core.conformal.ConformalTracker` streamed over
    the trace, exactly as the daemon and the tournament compute it."""
    settings = conformal_settings(trace, config)
    if settings.lead_steps != k:
        settings = replace(settings, lead_steps=k)
    tracker = ConformalTracker(settings)
    offsets = np.zeros(len(trace))
    values = trace.values.tolist()
    predicted = forecast.tolist()
    for i, now in enumerate(trace.times.tolist()):
        offsets[i] = tracker.update(
            grid_index(now, trace.step_s), values[i], predicted[i], sources[i]
        )
    return offsets


class _FeatureWindow:
    """The feature rows of a sliding range of steps, built a week at a time from the history
    that reaches them: a whole trace's matrix is 152 bytes a step (1 GB for 6.75M steps) and
    building it needs four times that."""

    def __init__(self, trace: Trace, spec: FeatureSpec) -> None:
        self.trace, self.spec = trace, spec
        # The longest look-back of any feature (seven days of profile, its level's window, the
        # anchor's day-long fallback 4k steps back, the 16k-step maximum), with room to spare.
        self.lookback = 8 * spec.day_steps + 20 * spec.lead_steps
        self.chunk = 7 * spec.day_steps
        self.lo = self.hi = 0
        self.matrix = np.empty((0, len(FEATURE_NAMES)))
        self.anchor = np.empty(0)

    def rows(self, lo: int, hi: int) -> Features:
        """Features of steps ``lo .. hi - 1`` (row 0 is step ``lo``); ``lo`` never goes back."""
        if lo >= self.hi:
            self.lo = self.hi = lo
            self.matrix, self.anchor = self.matrix[:0], self.anchor[:0]
        elif lo > self.lo:
            # Copies, so the dropped rows are freed.
            self.matrix = self.matrix[lo - self.lo :].copy()
            self.anchor = self.anchor[lo - self.lo :].copy()
            self.lo = lo
        if self.hi < hi:
            end = min(len(self.trace), max(hi, self.hi + self.chunk))
            start = max(0, self.hi - self.lookback)
            built = build_features(
                self.trace.times[start:end], self.trace.values[start:end], self.spec
            )
            self.matrix = np.concatenate([self.matrix, built.matrix[self.hi - start :]])
            self.anchor = np.concatenate([self.anchor, built.anchor[self.hi - start :]])
            self.hi = end
        return Features(
            self.matrix[lo - self.lo : hi - self.lo], self.anchor[lo - self.lo : hi - self.lo]
        )


class _Models:
    """The walk-forward's trained models: the champion's and the challenger's forecasts for the
    current retraining block, computed per block (features are causal, so a block is one
    vectorised prediction)."""

    def __init__(self, trace: Trace, config: PlanConfig, spec: FeatureSpec) -> None:
        self.trace, self.config, self.spec = trace, config, spec
        self.features = _FeatureWindow(trace, spec)
        self.block: Features | None = None
        self.block_rows = np.empty(0, dtype=np.intp)
        self.seasonal: list[float] = []
        self.champion: PeakForecaster | None = None
        self.challenger: PeakForecaster | None = None
        self.block_start = 0
        self.champion_block: list[float] = []
        self.challenger_block: list[float] = []
        self.fits: list[Fit] = []

    def _predict(self, model: PeakForecaster | None, start: int, end: int) -> list[float]:
        if model is None:
            return [math.nan] * (end - start)
        assert self.block is not None
        predicted: list[float] = forecast_demand(
            model, self.block, self.spec, self.block_rows
        ).tolist()
        return predicted

    def retrain(self, tournament: Tournament, start: int, end: int) -> None:
        """Fit at the cutoff ``start`` and enter the model in the tournament."""
        trace, config = self.trace, self.config
        began = time.perf_counter()
        at = float(trace.times[start])
        # Only the training window reaches the fit: passing the whole trace made every fit
        # cost time in proportion to the trace's length (quadratic in all).
        lo = max(0, start - int(config.train_window_s / trace.step_s))
        self.block = self.features.rows(lo, end)
        self.block_rows = np.arange(start - lo, end - lo)
        outcome = train_forecaster(
            trace.times[lo:end],
            trace.values[lo:end],
            self.block,
            self.spec,
            start - lo,
            shortfall_target=config.shortfall_target,
            fitted_at=at,
            window_s=config.train_window_s,
            max_rows=config.max_train_rows,
            quantile=config.base_quantile,
            random_state=config.seed,
        )
        label = model_label(outcome.forecaster.name, at)
        if self.champion is None or not tournament.needs_canary():
            # No trained champion to protect yet: the new fit replaces it at once.
            tournament.install_model(label)
            self.champion, self.challenger = outcome.forecaster, None
        else:
            tournament.new_model(at, label)
            self.challenger = outcome.forecaster
        self.block_start = start
        self.seasonal = forecast_demand(
            SeasonalNaive(), self.block, self.spec, self.block_rows
        ).tolist()
        self.champion_block = self._predict(self.champion, start, end)
        self.challenger_block = self._predict(self.challenger, start, end)
        self.fits.append(Fit(at, outcome.reason, time.perf_counter() - began))

    def forecasts(self, i: int) -> dict[str, tuple[float | None, str]]:
        def usable(value: float) -> float | None:
            return value if math.isfinite(value) else None

        offset = i - self.block_start
        assert self.champion is not None
        found: dict[str, tuple[float | None, str]] = {
            MODEL: (usable(self.champion_block[offset]), self.champion.name),
            SEASONAL: (usable(self.seasonal[offset]), SEASONAL),
        }
        if self.challenger is not None:
            found[CHALLENGER] = (usable(self.challenger_block[offset]), self.challenger.name)
        return found

    def promote(self) -> None:
        self.champion, self.champion_block = self.challenger, self.challenger_block
        self.drop()

    def drop(self) -> None:
        self.challenger, self.challenger_block = None, []


@dataclass(frozen=True, slots=True)
class MetricReplay:
    """One further metric of a target with several (``metrics:``): its demand on the same
    grid as the target's own, and its own settings (unit capacity, shortfall target)."""

    name: str
    trace: Trace
    config: PlanConfig


class _Companion:
    """A further metric's walk-forward: its own models and tournament, as the daemon's
    companion target has its own forecaster and tournament."""

    def __init__(self, metric: MetricReplay) -> None:
        trace, config = metric.trace, metric.config
        spec = FeatureSpec(
            step_s=trace.step_s,
            lead_steps=lead_steps(config.lead_s, trace.step_s),
            scale=config.unit_capacity,
        )
        self.name = metric.name
        self.values = trace.values
        self.models = _Models(trace, config, spec)
        self.tournament = Tournament(
            config.tournament,
            config.planner_settings(),
            config.calibration_settings(),
            conformal_settings(trace, config),
        )

    def post(
        self, i: int, now: float, ready: int, total: int, retrain_end: int | None
    ) -> MetricPost:
        if retrain_end is not None:
            self.models.retrain(self.tournament, i, retrain_end)
        demand = float(self.values[i])
        valid = math.isfinite(demand)
        result = self.tournament.step(
            TournamentInputs(
                now=now,
                current_units=total,
                ready_units=ready,
                demand=demand if valid else None,
                forecasts=self.models.forecasts(i),
            )
        )
        if result.promoted:
            self.models.promote()
        elif result.dropped:
            self.models.drop()
        # Posted and read in the same step: fresh by construction.
        return MetricPost(self.name, result.tick.decision.desired, now, now, valid)


def replay_plan(
    trace: Trace,
    config: PlanConfig,
    *,
    progress: bool | None = None,
    metric: str | None = None,
    further: tuple[MetricReplay, ...] = (),
) -> PlanReplay:
    """Replay the plan through the scoring rules, exactly as the daemon would have decided: the
    tournament's :meth:`~daemon.core.tournament.Tournament.step` once per grid step, a fit at
    each retraining cutoff entering the tournament as a challenger.

    With ``further`` metrics (the target's own is ``metric``), each runs its own walk-forward
    in lockstep, and their decisions floor the target's step through
    :func:`daemon.core.metric_floor.metric_floor`, as the daemon's companions do."""
    began = time.perf_counter()
    k = lead_steps(config.lead_s, trace.step_s)
    spec = FeatureSpec(step_s=trace.step_s, lead_steps=k, scale=config.unit_capacity)
    models = _Models(trace, config, spec)
    planner = config.planner_settings()
    tournament = Tournament(
        config.tournament,
        planner,
        config.calibration_settings(),
        conformal_settings(trace, config),
    )
    companions = [_Companion(metric) for metric in further]
    names = tuple(companion.name for companion in companions)
    decided_by: list[str] = [""] * len(trace) if companions else []
    cutoffs = [*retrain_cutoffs(trace, config.retrain_every_s), len(trace)]
    block_end = dict(itertools.pairwise(cutoffs))
    # Not a list: Python floats for every step are 32 bytes a step (216 MB for 6.75M).
    values = trace.values
    base = np.full(len(trace), np.nan)
    forecasts = np.full(len(trace), np.nan)
    reasons: list[str] = [""] * len(trace)
    active: list[str] = [""] * len(trace)
    events: list[Switch] = []
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(trace), desc="replay", unit="step", disable=not show, mininterval=0.5)

    def policy(i: int, now: float, ready: int, total: int) -> int:
        retrain_end = block_end.get(i)
        if retrain_end is not None:
            models.retrain(tournament, i, retrain_end)
        demand = float(values[i])
        offered = models.forecasts(i)
        floor = None
        low, high = planner.min_units, planner.max_units
        if companions:
            posts = {c.name: c.post(i, now, ready, total, retrain_end) for c in companions}
            floor = metric_floor(posts, names, now, total)
            low = min(max(low, floor.units), high)
        result = tournament.step(
            TournamentInputs(
                now=now,
                current_units=total,
                ready_units=ready,
                demand=demand if math.isfinite(demand) else None,
                forecasts=offered,
                min_units=low if companions else None,
                max_units=high if companions else None,
            )
        )
        if companions:
            tick = with_metric_reason(result.tick, metric or "", floor, planner.unit_capacity)
            result = replace(result, tick=tick)
            decided_by[i] = tick.decision.reasons[-1].removeprefix("metric=")
        if result.promoted:
            models.promote()
        elif result.dropped:
            models.drop()
        events.extend(result.events)
        acted = offered.get(result.active, (demand if math.isfinite(demand) else None, ""))[0]
        if acted is not None:
            base[i] = acted
        if result.tick.forecast is not None:
            forecasts[i] = result.tick.forecast
        reasons[i] = result.tick.decision.reason
        active[i] = result.active
        if i % 2048 == 0:
            bar.update(min(2048, len(trace) - bar.n))
        return result.tick.decision.desired

    log = replay(trace.times, config.lead_s, policy)
    bar.update(len(trace) - bar.n)
    bar.close()
    return PlanReplay(
        log=log,
        base_forecast=base,
        forecast=forecasts,
        reasons=tuple(reasons),
        fits=tuple(models.fits),
        seconds=time.perf_counter() - began,
        active=tuple(active),
        switches=tuple(events),
        scoreboard=tournament.scoreboard(),
        decided_by=tuple(decided_by),
    )
