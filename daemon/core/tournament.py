"""Every target runs its candidate policies in shadow and acts on the winner (the model canary).

Candidates (:mod:`daemon.core.candidates`), each a forecast stream put through the very same
:func:`daemon.core.tick.tick` as the plan, with its own conformal offset, calibration, planner
state and shadow capacity:

- ``model``: the champion, the trained model's forecast (or the ladder's fallback rung);
- ``challenger``: a newly trained model, until it is promoted to ``model`` or dropped;
- ``reactive``: the HPA rule (Kubernetes arithmetic with its tolerance) at a target
  utilisation tuned online so that its short share meets the target
  (:class:`daemon.core.candidates.ReactiveTuner`), handed to the planner as the demand to size
  for;
- ``seasonal_naive``: the daily/weekly profile's rise applied to today's level.

Each is scored on its shadow replay under ``shared/SCORING.md``; the score is the cost at
matched shortfall, from the candidate's own margins (:func:`daemon.core.candidates.matched_cost`;
``docs/tournament.md``).

The plan acts through one more tick, on the target's real capacity and with its own planner
state, fed the active candidate's forecast and conformal offset: stabilisation and rate limits
hold across a switch, because they were always applied to what the target really has. A switch
needs a margin held for a minimum time; an active policy far above the shortfall target is
demoted at once; a new model is a challenger first and is promoted only when, over the same
hours, it did not lose to the champion (the canary).

The :class:`Tournament` is a small mutable object (the conformal rings are too large to copy
each step); :meth:`Tournament.to_json` / :meth:`Tournament.from_json` persist it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from daemon.core.candidates import (
    Board,
    Candidate,
    MarginHistogram,
    ReactiveTuner,
    TickCodec,
    adjusted_cost,
    exchange_rate,
    hpa_stabilisation_s,
    log_margin,
    matched_cost,
    smoothed_share,
)
from daemon.core.conformal import ConformalSettings, ConformalTracker, grid_index
from daemon.core.landed import advance
from daemon.core.reactive import hpa_recommendation
from daemon.core.stabilisation import stabilise_scale_down
from daemon.core.tick import TickInputs, TickResult, TickState, demand_is_valid, tick
from daemon.core.types import PlannerSettings
from models.calibration import CalibrationSettings, with_conformal

MODEL = "model"
CHALLENGER = "challenger"
REACTIVE = "reactive"
SEASONAL = "seasonal_naive"
POLICIES = (MODEL, REACTIVE, SEASONAL)
"""The policies that can act; a challenger acts only once promoted to ``model``."""
_TRAINED_RUNG = "model"
DEFAULT_UTILISATION = 0.7
"""The reactive rule's utilisation before its arms have seen a step."""
_DAY = 86_400.0
_FRONTIER_REFRESH_S = 3_600.0
_REFEREE_S = 300.0
_HOUR = 3_600.0


def model_label(name: str, fitted_at: float) -> str:
    """How a fitted model is named in the switch log: its rung and fit time (UTC)."""
    return f"{name}@{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime(fitted_at))}"


@dataclass(frozen=True, slots=True)
class TournamentSettings:
    """How a target's tournament runs (the daemon maps its YAML onto this)."""

    candidates: tuple[str, ...] = POLICIES
    """Policies that run in shadow and may act (``model`` always runs: it is the default)."""
    window_s: float = 7 * _DAY
    """Time constant of the scoreboard's exponential decay: the trailing window it scores."""
    reactive_window_s: float = 14 * _DAY
    """Decay time constant of the reactive rule's utilisation arms: the utilisation is a slow
    property of the traffic, and a shorter memory chases last week's bursts."""
    switch_margin: float = 0.05
    """Another policy must score this much lower (relative) than the active one to win."""
    switch_hold_s: float = 24 * _HOUR
    """... and keep winning by the margin for this long before the plan switches to it."""
    min_evidence_s: float = _DAY
    """A policy's burn-in: its first this long in shadow is not scored, and it competes after
    as long again of scored steps."""
    demote_factor: float = 2.0
    demote_window_s: float = _DAY
    """The active policy is demoted at once when its short steps over the last
    ``demote_window_s`` (decayed) exceed both ``demote_factor`` times and, by chance alone,
    clearly (three standard deviations and two steps) what the target allows there."""
    shortfall_elasticity: float = 0.2
    """How much cheaper a plan gets per doubling of its short share, in log terms (see
    ``adjusted_cost``): the canary's exchange rate between cost and shortfall where the
    reactive candidate's frontier is not there to give it."""
    canary_min_s: float = 3 * _HOUR
    """A challenger runs at least this long before it can be promoted."""
    canary_max_s: float = 2 * _DAY
    """A challenger that has not won by then is dropped."""
    canary_margin: float = 0.02
    """A challenger wins when its score over its hours is at most this much above the
    champion's over the same hours: a tie goes to the model trained on newer data."""
    shadow_conformal_window_s: float | None = None
    """The seasonal-naive shadow's conformal window (None: the model's, a week). Its residual
    ring is the largest part of a candidate's state (a week at 1-minute steps: 20 KB); two
    days cut it to 6 KB, but made that shadow's offsets noisy enough to lose a level-shift
    trace at 3 % (HPA/plan 0.87 -> 0.21 on nab 825cc2), so the default keeps the week."""
    pin: str | None = None
    """Act on this policy whatever the scores (the others still run and are scored)."""
    default: str = MODEL
    """The policy acting at the start, before any evidence."""

    def __post_init__(self) -> None:
        unknown = set(self.candidates) - set(POLICIES)
        if unknown:
            raise ValueError(f"unknown candidate policies: {sorted(unknown)}")
        if MODEL not in self.candidates:
            raise ValueError("the candidates must include 'model'")
        for name in (self.pin, self.default):
            if name is not None and name not in self.candidates:
                raise ValueError(f"policy {name!r} is not among the candidates")
        for label, value in (
            ("window_s", self.window_s),
            ("reactive_window_s", self.reactive_window_s),
            ("switch_hold_s", self.switch_hold_s),
            ("min_evidence_s", self.min_evidence_s),
            ("demote_window_s", self.demote_window_s),
            ("canary_min_s", self.canary_min_s),
            ("canary_max_s", self.canary_max_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        window = self.shadow_conformal_window_s
        if window is not None and not (math.isfinite(window) and window > 0):
            raise ValueError(f"shadow_conformal_window_s must be > 0, got {window!r}")
        if self.window_s <= 0 or self.reactive_window_s <= 0:
            raise ValueError("window_s and reactive_window_s must be > 0")
        if self.switch_margin < 0 or self.canary_margin < 0:
            raise ValueError("margins must be >= 0")
        if self.demote_factor <= 1:
            raise ValueError(f"demote_factor must be > 1, got {self.demote_factor!r}")
        if self.shortfall_elasticity < 0:
            raise ValueError("shortfall_elasticity must be >= 0")


@dataclass(frozen=True, slots=True)
class TournamentInputs:
    """One step: what the plan's tick gets, with a base forecast per forecasting candidate."""

    now: float
    current_units: int
    ready_units: int
    demand: float | None
    forecasts: Mapping[str, tuple[float | None, str]] = field(default_factory=dict)
    """``{candidate: (base forecast, rung)}`` for ``model``, ``challenger`` (while there is one)
    and ``seasonal_naive``; ``reactive`` needs none. A missing entry is no forecast."""
    demand_age_s: float = 0.0
    min_units: int | None = None
    max_units: int | None = None
    sample_time: float | None = None


@dataclass(frozen=True, slots=True)
class Switch:
    """A change of the acting policy or of the champion model, with its explanation."""

    at: float
    kind: str  # "switch", "demote", "promote", "drop"
    from_policy: str
    to_policy: str
    explanation: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "from": self.from_policy,
            "to": self.to_policy,
            "explanation": self.explanation,
        }


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One row of the scoreboard (what ``/metrics`` and ``elasticd explain`` show)."""

    name: str
    label: str
    score: float
    """Cost at matched shortfall: mean billed units per step at the target's short share."""
    mean_billed: float
    short_share: float
    steps: float
    active: bool


@dataclass(frozen=True, slots=True)
class TournamentResult:
    tick: TickResult
    """The acting decision; its reasons end with ``policy=<active>``."""
    active: str
    events: tuple[Switch, ...] = ()
    """Switches, demotions, promotions and drops made at this step (usually none)."""

    @property
    def promoted(self) -> bool:
        """The challenger became the champion: the caller now forecasts ``model`` with it."""
        return any(event.kind == "promote" for event in self.events)

    @property
    def dropped(self) -> bool:
        """The challenger lost its canary: the caller discards that model."""
        return any(event.kind == "drop" for event in self.events)


class Tournament:
    """One target's candidates, scoreboard and acting policy (mutable; one per target)."""

    def __init__(
        self,
        settings: TournamentSettings,
        planner: PlannerSettings,
        calibration: CalibrationSettings,
        conformal: ConformalSettings,
    ) -> None:
        self.settings = settings
        self.planner = planner
        self.calibration = calibration
        self.conformal = conformal
        self.candidates: dict[str, Candidate] = {
            name: self._fresh(name) for name in settings.candidates
        }
        # The reactive rule's headroom is its tuned utilisation, not a calibrated offset.
        self._fixed = replace(calibration, gain=0.0)
        self.active = settings.pin or settings.default
        self.acting = TickState()  # the plan's own state on the target's real capacity
        # The reactive rule's stabilisation window on the real capacity, while it acts.
        self.acting_recommendations: tuple[tuple[float, int], ...] = ()
        self.leader: str | None = None  # the policy currently winning by the margin
        self.leading_since: float | None = None
        self.canary_base: Board | None = None  # the champion's totals when the canary began
        self._frontier_cache: tuple[float, tuple[list[float], list[float]] | None] | None = None
        self._model_step: tuple[TickState, TickInputs, TickResult, TickState] | None = None
        self._refereed: int | None = None  # the referee period last judged
        self.last_sample = -math.inf  # the newest sample time stepped

    def _fresh(self, name: str) -> Candidate:
        if name == REACTIVE:
            return Candidate(name=name, tuner=ReactiveTuner())
        return Candidate(name=name, tracker=ConformalTracker(self.conformal_for(name)))

    def conformal_for(self, name: str) -> ConformalSettings:
        """The conformal settings of a candidate: the model's (and its challengers'), or the
        shorter window ``shadow_conformal_window_s`` gives the seasonal-naive shadow."""
        window = self.settings.shadow_conformal_window_s
        if name == SEASONAL and window is not None:
            return replace(self.conformal, window_s=window)
        return self.conformal

    def _calibration_for(self, name: str) -> CalibrationSettings:
        return self._fixed if name == REACTIVE else self.calibration

    # -- the per-step API ---------------------------------------------------------------

    def new_model(self, now: float, label: str) -> None:
        """A newly trained model: it becomes the challenger (replacing one still on trial).

        Until it is promoted the caller forecasts ``challenger`` with it and ``model`` with the
        champion. While the champion is only a fallback rung of the ladder (no trained model
        yet) there is nothing to protect, and the caller should install it as ``model``
        directly: :meth:`needs_canary` says which.
        """
        champion = self.candidates[MODEL]
        assert champion.tracker is not None
        self.candidates[CHALLENGER] = Candidate(
            name=CHALLENGER,
            tracker=champion.tracker.copy(),
            # Same capacity, planner window and calibration as the champion: a paired start.
            tick_state=champion.tick_state,
            started=now,
            label=label,
        )
        self.canary_base = champion.board

    def needs_canary(self) -> bool:
        """Whether a new model must prove itself first: only when the champion is a trained
        model (a fallback rung is replaced at once)."""
        return self.candidates[MODEL].tick_state.forecast_source == _TRAINED_RUNG

    def install_model(self, label: str) -> None:
        """Replace the champion's model without a canary (first model, fallback rung)."""
        self.candidates[MODEL].label = label

    def step(self, inputs: TournamentInputs) -> TournamentResult:
        """Shadow-replay every candidate for this step, update the scores, act on the winner."""
        index = grid_index(
            inputs.now if inputs.sample_time is None else inputs.sample_time,
            self.conformal.step_s,
        )
        demand_ok = demand_is_valid(
            inputs.demand, inputs.demand_age_s, self.planner.max_demand_age_s
        )
        sample = inputs.now if inputs.sample_time is None else inputs.sample_time
        # A daemon ticking faster than its metric is sampled sees each sample several times:
        # like tick()'s calibration, the reactive arms step once per new sample.
        fresh = sample > self.last_sample
        if fresh:
            self.last_sample = sample
        for candidate in self.candidates.values():
            self._shadow(candidate, inputs, index, demand_ok, fresh)
        events = self._referee(inputs.now)
        result = self._act(inputs, events)
        return TournamentResult(tick=result, active=self.active, events=tuple(events))

    def scoreboard(self) -> tuple[CandidateScore, ...]:
        """Every candidate's score over the window, the active one marked."""
        rows = []
        for name, candidate in self.candidates.items():
            board = candidate.board
            rows.append(
                CandidateScore(
                    name=name,
                    label=candidate.label,
                    score=self.candidate_score(name),
                    mean_billed=board.mean_billed,
                    short_share=board.short_share,
                    steps=board.steps,
                    active=name == self.active,
                )
            )
        return tuple(rows)

    # -- shadow replay ------------------------------------------------------------------

    def _forecast(
        self,
        candidate: Candidate,
        inputs: TournamentInputs,
        demand_ok: bool,
        current: int,
        acting: bool = False,
    ) -> tuple[float | None, str]:
        if candidate.tuner is not None:
            if not demand_ok or inputs.demand is None:
                return None, candidate.name
            # The HPA rule at the tuned utilisation, as the demand the plan should be sized
            # for: the planner turns it back into exactly those units.
            u = candidate.tuner.choose(self.calibration.shortfall_target, DEFAULT_UTILISATION)
            raw = hpa_recommendation(
                inputs.demand,
                current,
                self.planner.unit_capacity,
                u,
                self.planner.reactive_tolerance,
            )
            window = self.acting_recommendations if acting else candidate.recommendations
            units, window = stabilise_scale_down(
                window, inputs.now, hpa_stabilisation_s(self.planner), raw
            )
            if acting:
                self.acting_recommendations = window
            else:
                candidate.recommendations = window
            return units * self.planner.unit_capacity, candidate.name
        forecast, rung = inputs.forecasts.get(candidate.name, (None, candidate.name))
        if forecast is not None and not math.isfinite(forecast):
            forecast = None
        return forecast, rung

    def _shadow(
        self,
        candidate: Candidate,
        inputs: TournamentInputs,
        index: int,
        demand_ok: bool,
        fresh: bool = True,
    ) -> None:
        state = candidate.tick_state
        landed = advance(state.landed, inputs.now)
        if candidate.tuner is not None and fresh:
            candidate.tuner.step(
                inputs.now,
                inputs.demand if demand_ok else None,
                self.planner,
                self.settings.reactive_window_s,
            )
        forecast, rung = self._forecast(candidate, inputs, demand_ok, landed.total)
        offset = 0.0
        if candidate.tracker is not None:
            offset = candidate.tracker.update(
                index, inputs.demand if demand_ok else None, forecast, rung
            )
        previous = state.forecast_source
        if candidate.started is None or (previous and rung != previous):
            # A new rung (the trained model replacing a fallback) is a new policy: its record
            # starts afresh, as its calibration does in tick().
            candidate.started = inputs.now
            candidate.board = Board()
            candidate.margins = MarginHistogram()
        before = replace(state, calibration=with_conformal(state.calibration, offset))
        step_inputs = TickInputs(
            now=inputs.now,
            current_units=landed.total,
            ready_units=landed.ready,
            demand=inputs.demand,
            base_forecast=forecast,
            forecast_source=rung,
            demand_age_s=inputs.demand_age_s,
            min_units=inputs.min_units,
            max_units=inputs.max_units,
            sample_time=inputs.sample_time,
        )
        result, state = tick(
            self.planner, self._calibration_for(candidate.name), before, step_inputs
        )
        if candidate.name == MODEL:
            self._model_step = (before, step_inputs, result, state)
        candidate.tick_state = state
        if result.short is not None:  # a new, valid sample: one scored step
            assert candidate.started is not None
            # A policy's first ``min_evidence_s`` is its burn-in: its calibration and the
            # reactive rule's arms are still settling, and a week-long window would remember
            # that start for a week. The canary's totals count from the start.
            settled = inputs.now - candidate.started >= self.settings.min_evidence_s
            in_window = settled or candidate.name == CHALLENGER
            if in_window and inputs.demand is not None:
                candidate.margins.add(
                    inputs.now,
                    log_margin(inputs.demand, landed.ready, self.planner.unit_capacity),
                    self.settings.window_s,
                )
            candidate.board = candidate.board.add(
                inputs.now,
                state.landed.total,
                result.short,
                self.settings.window_s,
                in_window=in_window,
                recent_window_s=self.settings.demote_window_s,
            )

    # -- the referee --------------------------------------------------------------------

    def _frontier(self, now: float) -> tuple[list[float], list[float]] | None:
        """The target's cost/shortfall frontier (the canary's exchange rate), refreshed
        hourly: it describes weeks of traffic, and rebuilding it every step was a tenth of
        the replay's time."""
        reactive = self.candidates.get(REACTIVE)
        if reactive is None or reactive.tuner is None:
            return None
        cached = self._frontier_cache
        if cached is not None and now - cached[0] < _FRONTIER_REFRESH_S:
            return cached[1]
        frontier = reactive.tuner.frontier(self.calibration.shortfall_target)
        self._frontier_cache = (now, frontier)
        return frontier

    def _score(
        self,
        billed: float,
        short: float,
        steps: float,
        frontier: tuple[list[float], list[float]] | None,
    ) -> float:
        """The canary's cost at matched shortfall, from totals since the challenger began (no
        margin histogram covers the same hours for both). The exchange rate between cost and
        short steps is the target's own, measured by the reactive rule's arms when it runs;
        otherwise a fixed elasticity (``adjusted_cost``)."""
        target = self.calibration.shortfall_target
        if frontier is None or steps <= 0:
            return adjusted_cost(billed, short, steps, target, self.settings.shortfall_elasticity)
        share = smoothed_share(short, steps, target)
        return billed / steps * exchange_rate(frontier, share, target)

    def candidate_score(self, name: str) -> float:
        """A candidate's score over the window: its cost at matched shortfall, from its own
        margins (:func:`daemon.core.candidates.matched_cost`). Lower is better."""
        candidate = self.candidates[name]
        return matched_cost(
            candidate.board.mean_billed,
            candidate.margins,
            self.calibration.shortfall_target,
        )

    def _eligible(self, name: str, now: float) -> bool:
        candidate = self.candidates.get(name)
        if name == CHALLENGER or candidate is None or candidate.started is None:
            return False
        # After its burn-in, as long again of scored steps.
        settled = now - candidate.started >= 2 * self.settings.min_evidence_s
        # No margins (a state saved before they were kept): no score yet.
        return settled and candidate.board.steps > 0 and not candidate.margins.empty

    def _too_short(self, board: Board) -> bool:
        """Clearly over the target over the last day: more short steps than the target allows
        there by ``demote_factor``, and more than chance would give (a Poisson count at the
        target's rate: three standard deviations and two steps above it)."""
        expected = self.calibration.shortfall_target * board.recent_steps
        limit = max(self.settings.demote_factor * expected, expected + 3 * math.sqrt(expected) + 2)
        return board.recent_short > limit

    def _referee(self, now: float) -> list[Switch]:
        events: list[Switch] = []
        if self.settings.pin is not None:
            self._canary(now, events)
            self.active = self.settings.pin
            return events
        active_board = self.candidates[self.active].board
        demote = self._eligible(self.active, now) and self._too_short(active_board)
        period = math.floor(now / _REFEREE_S)
        if not demote and period == self._refereed:
            # Scores move slowly (a week's window): judging once per referee period is
            # enough for holds of hours, and judging every step was a fifth of the replay.
            # A demotion is checked every step.
            return events
        self._refereed = period
        self._canary(now, events)
        contenders = [name for name in POLICIES if self._eligible(name, now)]
        if not contenders:
            return events
        scores = {name: self.candidate_score(name) for name in contenders}
        active_score = scores.get(self.active, math.inf)
        if demote:
            safe = [
                n
                for n in contenders
                if n != self.active and not self._too_short(self.candidates[n].board)
            ]
            if safe:
                best = min(safe, key=lambda n: scores[n])
                recent = active_board.recent_short
                allowed = self.calibration.shortfall_target * active_board.recent_steps
                events.append(
                    self._switch(
                        now,
                        "demote",
                        best,
                        f"{self.active} was short on {recent:.1f} steps over the last "
                        f"{self.settings.demote_window_s / _HOUR:g} h (decayed) where the "
                        f"target {100 * self.calibration.shortfall_target:g}% allows "
                        f"{allowed:.1f}; {best} scored {scores[best]:.4g} units a step at the "
                        "target",
                    )
                )
                return events
        if self.active not in scores:
            return events  # no evidence on the acting policy yet: nothing to compare
        best = min(contenders, key=lambda n: scores[n])
        home = self.settings.default
        if self.active != home and home in scores and scores[home] <= active_score:
            # The default policy (the trained model) is home: away from it, a tie is enough
            # to return, while leaving it takes a clear margin. Ties never lock in a fallback.
            best = home
            wins = True
        else:
            wins = best != self.active and scores[best] < active_score * (
                1.0 - self.settings.switch_margin
            )
        if not wins:
            self.leader, self.leading_since = None, None
            return events
        if self.leader != best:
            self.leader, self.leading_since = best, now
        assert self.leading_since is not None
        if now - self.leading_since >= self.settings.switch_hold_s:
            held = (now - self.leading_since) / _HOUR
            events.append(
                self._switch(
                    now,
                    "switch",
                    best,
                    f"{best} scored {scores[best]:.4g} units a step at the target against "
                    f"{self.active}'s {active_score:.4g} for {held:.1f} h"
                    + (
                        " (the default policy wins ties)"
                        if best == home
                        else f" (margin {100 * self.settings.switch_margin:g}%)"
                    ),
                )
            )
        return events

    def _switch(self, now: float, kind: str, to: str, explanation: str) -> Switch:
        event = Switch(now, kind, self.active, to, explanation)
        # The acting state keeps its planner window and ledger (the real capacity's) and takes
        # the new policy's calibration, learnt on its own shadow.
        new = self.candidates[to].tick_state
        self.acting = replace(
            self.acting, calibration=new.calibration, forecast_source=self._source(to, new)
        )
        self.active = to
        self.leader, self.leading_since = None, None
        return event

    def _canary(self, now: float, events: list[Switch]) -> None:
        challenger = self.candidates.get(CHALLENGER)
        if challenger is None or challenger.started is None or self.canary_base is None:
            return
        age = now - challenger.started
        if age < self.settings.canary_min_s:
            return
        champion = self.candidates[MODEL].board
        base = self.canary_base
        frontier = self._frontier(now)
        champion_score = self._score(
            champion.total_billed - base.total_billed,
            champion.total_short - base.total_short,
            champion.total_steps - base.total_steps,
            frontier,
        )
        board = challenger.board
        challenger_score = self._score(
            board.total_billed, board.total_short, board.total_steps, frontier
        )
        wins = challenger_score <= champion_score * (1.0 + self.settings.canary_margin)
        if wins and not self._too_short(board):
            old = self.candidates[MODEL]
            self.candidates[MODEL] = replace(
                challenger, name=MODEL, started=old.started, margins=old.margins
            )
            # The champion's window record carries on: the new model is scored from here.
            self.candidates[MODEL].board = replace(
                board,
                billed=old.board.billed,
                short=old.board.short,
                steps=old.board.steps,
                updated=old.board.updated,
            )
            del self.candidates[CHALLENGER]
            self.canary_base = None
            former = old.label or "the champion"
            events.append(
                Switch(
                    now,
                    "promote",
                    MODEL,
                    MODEL,
                    f"model {challenger.label} scored {challenger_score:.4g} units a step at the "
                    f"target over its {age / _HOUR:.1f} h canary against {former}'s "
                    f"{champion_score:.4g}: promoted",
                )
            )
            if self.active == MODEL:
                new = self.candidates[MODEL].tick_state
                self.acting = replace(self.acting, forecast_source=self._source(MODEL, new))
        elif age >= self.settings.canary_max_s:
            del self.candidates[CHALLENGER]
            self.canary_base = None
            events.append(
                Switch(
                    now,
                    "drop",
                    CHALLENGER,
                    MODEL,
                    f"model {challenger.label} scored {challenger_score:.4g} units a step at the "
                    f"target over {age / _HOUR:.1f} h against the champion's "
                    f"{champion_score:.4g}: dropped",
                )
            )

    # -- acting -------------------------------------------------------------------------

    @staticmethod
    def _source(name: str, state: TickState) -> str:
        # A model candidate's rung says whether its forecast came from a fallback; the other
        # policies are no fallback, and the decision names them by ``policy=``.
        return state.forecast_source if name == MODEL else _TRAINED_RUNG

    def _act(self, inputs: TournamentInputs, events: list[Switch]) -> TickResult:
        del events
        chosen = self.candidates[self.active]
        forecast, _rung = self._forecast(
            chosen,
            inputs,
            demand_is_valid(inputs.demand, inputs.demand_age_s, self.planner.max_demand_age_s),
            inputs.current_units,
            acting=True,
        )
        source = self._source(self.active, chosen.tick_state)
        offset = 0.0 if chosen.tracker is None else chosen.tracker.offset
        before = replace(self.acting, calibration=with_conformal(self.acting.calibration, offset))
        acting_inputs = TickInputs(
            now=inputs.now,
            current_units=inputs.current_units,
            ready_units=inputs.ready_units,
            demand=inputs.demand,
            base_forecast=forecast,
            forecast_source=source,
            demand_age_s=inputs.demand_age_s,
            min_units=inputs.min_units,
            max_units=inputs.max_units,
            sample_time=inputs.sample_time,
        )
        done = self._model_step
        if (
            self.active == MODEL
            and done is not None
            and done[1] == acting_inputs
            and done[0] == before
        ):
            # The target is exactly where the model's shadow is: the same pure call would
            # give the same answer (most of a replay; a quarter of its time saved).
            result, self.acting = done[2], done[3]
        else:
            result, self.acting = tick(
                self.planner, self._calibration_for(self.active), before, acting_inputs
            )
        self._model_step = None
        decision = result.decision
        decision = replace(decision, reasons=(*decision.reasons, f"policy={self.active}"))
        return replace(result, decision=decision)

    # -- persistence --------------------------------------------------------------------

    def to_json(self, codec: TickCodec) -> dict[str, Any]:
        """Everything the tournament needs to carry on after a restart, as JSON values."""
        return {
            "version": 1,
            "active": self.active,
            "acting": codec[0](self.acting),
            "acting_recommendations": [list(r) for r in self.acting_recommendations],
            "last_sample": self.last_sample if math.isfinite(self.last_sample) else None,
            "leader": self.leader,
            "leading_since": self.leading_since,
            "canary_base": None if self.canary_base is None else _board_json(self.canary_base),
            "candidates": [c.to_json(codec) for c in self.candidates.values()],
        }

    @classmethod
    def from_json(
        cls,
        settings: TournamentSettings,
        planner: PlannerSettings,
        calibration: CalibrationSettings,
        conformal: ConformalSettings,
        codec: TickCodec,
        data: dict[str, Any],
    ) -> Tournament:
        """Restore :meth:`to_json`; candidates no longer configured are dropped, new ones start
        fresh, and a pin in the new settings wins."""
        tournament = cls(settings, planner, calibration, conformal)
        for item in data["candidates"]:
            candidate = Candidate.from_json(
                tournament.conformal_for(str(item["name"])), codec, item
            )
            if candidate.name in tournament.candidates or candidate.name == CHALLENGER:
                tournament.candidates[candidate.name] = candidate
        active = str(data["active"])
        tournament.active = settings.pin or (
            active if active in tournament.candidates else settings.default
        )
        tournament.acting = codec[1](data["acting"])
        tournament.acting_recommendations = tuple(
            (float(t), int(n)) for t, n in data["acting_recommendations"]
        )
        last = data["last_sample"]
        tournament.last_sample = -math.inf if last is None else float(last)
        tournament.leader = data["leader"]
        tournament.leading_since = data["leading_since"]
        base = data["canary_base"]
        tournament.canary_base = None if base is None else Board(**base)
        if CHALLENGER in tournament.candidates and tournament.canary_base is None:
            del tournament.candidates[CHALLENGER]
        return tournament


def _board_json(board: Board) -> dict[str, Any]:
    return {
        "billed": board.billed,
        "short": board.short,
        "steps": board.steps,
        "updated": board.updated,
        "total_billed": board.total_billed,
        "total_short": board.total_short,
        "total_steps": board.total_steps,
        "recent_short": board.recent_short,
        "recent_steps": board.recent_steps,
    }
