"""The ``reconciler`` agent: one per target, observe -> forecast -> decide -> act on its interval.

Only *decide* holds logic, and it is :func:`daemon.core.tick.tick`, the function
``elasticd backtest`` replays. Everything here is plumbing with one rule per failure:

- the metric read and the capacity read run concurrently, each under a timeout;
- missing, stale or invalid demand reaches the planner as ``None``, which never scales down;
- a transient error is counted, logged and simply retried on the next tick;
- a permanent error is logged loudly with its reason on every tick, and nothing is written;
- ``forecast-only`` decides, logs, counts and audits, but never calls ``actuator.scale``;
- a follower (another instance holds the Lease) does the same, so it takes over warm;
- a pod target linked to a node group also plans the nodes under it (``NodeLink``), and a
  node target takes the nodes its pods need as the floor of its tick (``LayerBoard``);
- every decision, written or not, is one line in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from daemon.actuators.base import Actuator, Capacity, ScaleResult, clamp
from daemon.actuators.events import ScaleEvents, scale_event
from daemon.audit import AuditLog, AuditRecord
from daemon.core.conformal import grid_index
from daemon.core.metric_floor import with_metric_reason
from daemon.core.stabilisation import Recommendations, stabilise_scale_down
from daemon.core.tick import TickResult, TickState
from daemon.core.tournament import CHALLENGER, MODEL, Switch, Tournament, TournamentInputs
from daemon.core.types import PlannerSettings
from daemon.errors import (
    ActuatorError,
    FencedError,
    PermanentActuatorError,
    PermanentSourceError,
    SourceError,
    TransientActuatorError,
    TransientSourceError,
)
from daemon.forecasting import TargetForecaster
from daemon.leader import AlwaysLeader, Leadership
from daemon.runtime.decision_state import DecisionStateStore, StateKey, decode, encode
from daemon.runtime.layers import LayerBoard, NodeLink, NodeRequest
from daemon.runtime.metric_board import MetricBoard, MetricPost
from daemon.runtime.planning import (
    conformal_settings,
    planner_settings,
    schedule_at,
    tournament_settings,
)
from daemon.settings import TargetConfig
from daemon.settings.target_base import metric_name
from daemon.sources.base import MetricQuery, MetricSource, Sample
from daemon.sources.policy import Checked, NegativePolicy, Rule, check_latest
from daemon.telemetry import HealthState, Telemetry

__all__ = ["Reconciler", "ScaleEvents", "TickReport"]

log = logging.getLogger("elasticd.reconciler")

T = TypeVar("T")
Clock = Callable[[], float]

# A write already sent should be allowed to finish; only a hung connection is cut off.
WRITE_TIMEOUT_S = 30.0
# Why a changed decision was not written although the target is active.
STOPPING = "stopping"
AT_OWN_BOUND = "at the target's own bound"
# How often the tournament's scoreboard is exported to /metrics (seconds of wall time).
SCORES_EXPORT_S = 60.0
# How often the whole tournament (tens of KB a target) is saved; the acting state, on which a
# scale-down depends, is saved every tick. A kill -9 loses at most this much of the scores.
TOURNAMENT_SAVE_S = 600.0
# A companion's post lapses after this many of its ticks: its metric then blocks scale-down.
METRIC_POST_TICKS = 3


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick saw and did (for tests and logs); ``decision`` is None when the target
    could not be read, since there is then nothing to decide from."""

    now: float
    demand: float | None
    demand_rule: str
    result: TickResult | None
    capacity: Capacity | None
    scaled: ScaleResult | None
    error: str | None
    skipped: str | None = None
    """Why a changed decision of an active target was not written (e.g. ``not leader``)."""


class Reconciler:
    """Owns one target's tick state, forecaster and adapters; not shared between tasks."""

    def __init__(
        self,
        target: TargetConfig,
        *,
        source: MetricSource[Any],
        query: MetricQuery[Any],
        actuator: Actuator,
        forecaster: TargetForecaster,
        audit: AuditLog,
        telemetry: Telemetry,
        health: HealthState,
        clock: Clock = time.time,
        interval_s: float = 15.0,
        call_timeout_s: float = 10.0,
        negative: NegativePolicy = NegativePolicy.MISSING,
        leadership: Leadership | None = None,
        events: ScaleEvents | None = None,
        node_link: NodeLink | None = None,
        layers: LayerBoard | None = None,
        phase_s: float | None = None,
        size_read_max_age_s: float = 0.0,
        state_store: DecisionStateStore | None = None,
        metric_board: MetricBoard | None = None,
    ) -> None:
        """``clock``: epoch seconds on the target's own clock (a simulator's is accelerated);
        demand age and the planner's windows are measured on it. ``interval_s`` is wall time.
        ``call_timeout_s`` bounds each read of the source or the target. ``leadership`` is
        asked right before each write; None means this instance always writes. ``events``:
        where each write is reported as a Kubernetes Event, if anywhere. ``node_link``: this
        pod target plans the nodes of a node target; ``layers``: where a node target finds
        the nodes its pods need. ``phase_s``: how long after the first tick the second is due
        (default ``interval_s``); the cadence follows from it, so a random phase per target
        spreads targets that started together over the interval. ``size_read_max_age_s``: how
        long (on ``clock``) a read of the target's size is reused by later ticks (see
        ``_read_size``). ``state_store``: where the decision state is kept across restarts
        and reloads (None: in memory only). A negative demand sample is invalid (held, counted)
        unless ``negative`` says otherwise. ``metric_board``: where a target with several
        metrics finds what its companions need, and where a companion posts it."""
        self.target = target
        self.name = target.name
        self.source = source
        self.query = query
        self.actuator = actuator
        self.forecaster = forecaster
        self.audit = audit
        self.telemetry = telemetry
        self.health = health
        self.clock = clock
        self.interval_s = interval_s
        self.phase_s = interval_s if phase_s is None else min(max(phase_s, 0.0), interval_s)
        self.call_timeout_s = call_timeout_s
        self.negative = negative
        self.leadership: Leadership = leadership if leadership is not None else AlwaysLeader()
        self.events = events
        self.node_link = node_link
        self.layers = layers
        self._layer_floors: Recommendations = ()
        self.metric_board = metric_board
        telemetry.shortfall_target.labels(target.name).set(target.shortfall_target)
        self.metric = metric_name(target)
        self._companions = tuple(metric.name for metric in target.metrics[1:])
        self.settings: PlannerSettings = planner_settings(target)
        # Every decision goes through the policy tournament, as in `elasticd backtest`: the
        # candidates run in shadow and the target acts on the winner (docs/tournament.md).
        self.tournament = Tournament(
            tournament_settings(target),
            self.settings,
            forecaster.calibration_settings(),
            conformal_settings(forecaster.settings),
        )
        self._scores_exported_at = -math.inf
        self._tournament_saved_at = time.monotonic()
        self.ticks = 0
        self.size_read_max_age_s = size_read_max_age_s
        self._size_read: tuple[float, Capacity] | None = None
        self.state_store = state_store
        self._state_loaded = False
        # The size this instance last wrote (or found already in place); a different size on a
        # later read means another writer changed it (a GitOps controller, a person, an HPA).
        self._last_written: int | None = None
        self._stopping: asyncio.Event | None = None
        # A scale-up on its way: (when it was written, the size it asked for), until the
        # target reports that many ready; measures the actuator's real time-to-ready.
        self._booting: tuple[float, int] | None = None
        # Why this tick's demand could not be used, for the audit (None: it could).
        self._source_error: str | None = None

    @property
    def state(self) -> TickState:
        """The acting decision state: what the target's own decisions depend on."""
        return self.tournament.acting

    @state.setter
    def state(self, value: TickState) -> None:
        self.tournament.acting = value

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick every ``interval_s`` until ``stopping`` is set; a tick in flight finishes.

        Ticks keep a fixed cadence (the next one is due ``interval_s`` after the previous one
        started), and a tick that overran is not made up: a burst of catch-up ticks would
        only repeat the same decision. The first tick runs at once (readiness waits for a
        source reading); the second ``phase_s`` after it.
        """
        self._stopping = stopping
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.phase_s - self.interval_s
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception:
                # A bug in one tick must not end the target's loop: log it and try again.
                log.exception("tick failed unexpectedly", extra={"target": self.name})
            next_at = max(next_at + self.interval_s, loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=next_at - loop.time())
        # The scoreboard outlives the process: a restart resumes it instead of starting over.
        self._save_tournament()

    async def tick(self) -> TickReport:
        """One observe -> forecast -> decide -> act step."""
        began = time.perf_counter()
        now = self.clock()
        sample_or_error, capacity_or_error = await asyncio.gather(
            self._guard(self.source.latest(self.query, now), TransientSourceError, "metric read"),
            self._guard(self._read_size(now), TransientActuatorError, "capacity read"),
            return_exceptions=True,
        )
        checked, age_s, sample_time = self._observe(now, sample_or_error)
        if isinstance(capacity_or_error, BaseException):
            return await self._unreadable(now, checked, capacity_or_error)
        capacity = capacity_or_error
        self.health.actuator_ok(self.name)
        if not self._state_loaded:
            self._load_state(now, capacity)
        override = await self._external_override(capacity)
        time_to_ready = self._time_to_ready(now, capacity)
        self._enter_new_model(now)
        offered = self.forecaster.candidate_forecasts(now)
        tracker = self.tournament.candidates[MODEL].tracker
        residual = tracker.latest_residual() if tracker is not None else None
        if residual is not None:
            self.telemetry.record_forecast_error(self.name, residual)
        target = self.target
        schedule = schedule_at(target, now)
        low, high = schedule.plan_bounds
        layer_requests = self.layers.fresh(self.name, now) if self.layers is not None else []
        own_low = low
        if layer_requests:
            # The nodes the pods need, as this tick's floor: within the node group's own
            # bounds, and below the planner's damping, which still applies on top of it.
            # Several workloads on one group are packed apart, so their nodes add up.
            needed = sum(request.plan.nodes_desired for request in layer_requests)
            # The planner clamps to the floor after its own stabilisation, so a falling floor
            # gets the same window here: nodes are not shed on one wavering node forecast.
            needed, self._layer_floors = stabilise_scale_down(
                self._layer_floors, now, self.settings.scale_down_stabilisation_s, needed
            )
            low = min(max(low, needed), high)
        before_metrics = low
        metric_floor = None
        if self.metric_board is not None and self._companions:
            # The HPA's rule over several metrics: the largest need; an invalid metric holds.
            # Freshness on the monotonic clock, as the posts' expiry: the targets' own clock
            # may run faster (the simulator) or be another's (a test's).
            metric_floor = self.metric_board.floor(
                self.name, self._companions, time.monotonic(), capacity.desired
            )
            low = min(max(low, metric_floor.units), high)
        outcome = self.tournament.step(
            TournamentInputs(
                now=now,
                current_units=capacity.desired,
                ready_units=capacity.ready if capacity.ready is not None else capacity.desired,
                demand=checked.value,
                forecasts=offered,
                demand_age_s=age_s,
                min_units=low,
                max_units=high,
                sample_time=self._sample_step(sample_time),
            )
        )
        result = outcome.tick
        if outcome.promoted:
            self.forecaster.promote_challenger()
        elif outcome.dropped:
            self.forecaster.drop_challenger()
        base_forecast, forecast_source = offered.get(outcome.active, (None, outcome.active))
        for event in outcome.events:
            await self._report_switch(event)
        self._export_scores()
        if before_metrics > own_low:
            result = _with_layer_reason(result, layer_requests, before_metrics)
        if self.metric is not None:
            result = with_metric_reason(
                result, self.metric, metric_floor, self.settings.unit_capacity
            )
        if self.metric_board is not None and self.target.metric_of is not None:
            valid = checked.value is not None and age_s <= self.target.max_demand_age
            self.metric_board.publish(
                self.target.metric_of,
                MetricPost(
                    self.metric or self.name,
                    result.decision.desired,
                    now,
                    # Missing a few ticks (wall time, as interval_s) means the metric is not
                    # being read: invalid.
                    time.monotonic() + METRIC_POST_TICKS * self.interval_s,
                    valid,
                ),
            )
        layers: dict[str, Any] | None = None
        if self.node_link is not None:
            plan, node_forecast = self.node_link.plan(
                now,
                self.state.calibration,
                capacity.desired,
                result.decision.desired,
                pods_forecast=result.forecast,
                demand=checked.value,
                sample_time=self._sample_step(sample_time),
            )
            layers = {
                "node_target": self.node_link.node_target.name,
                "nodes_desired": plan.nodes_desired,
                "node_forecast": node_forecast,
                "pods_forecast": plan.pods_forecast,
                "reasons": list(plan.reasons),
            }
        elif layer_requests:
            layers = {
                "pods": {
                    request.pod_target: {
                        "nodes_desired": request.plan.nodes_desired,
                        "reasons": list(request.plan.reasons),
                    }
                    for request in layer_requests
                },
                "floor": low,
            }
        if result.short:
            self.telemetry.record_short_step(self.name)
        if result.not_applied:
            # Short on the target's real capacity although the plan's own would have served:
            # its writes did not take effect. Counted apart; the calibration does not learn it.
            self.telemetry.record_not_applied_step(self.name)
        # Decided, whatever the write does next: readiness means "deciding", and a write that
        # fails is reported on the actuator's own line.
        self.health.decided(self.name, self.interval_s)
        scaled, error, skipped = await self._act(result, capacity)
        self._save_state(now)
        self.ticks += 1
        report = TickReport(
            now, checked.value, checked.rule.value, result, capacity, scaled, error, skipped
        )
        duration = time.perf_counter() - began
        self.telemetry.record_tick(
            self.name,
            demand=checked.value,
            forecast=result.forecast,
            desired=result.decision.desired,
            current=capacity.desired,
            ready=capacity.ready,
            reason=result.decision.reason,
            duration_s=duration,
            bounds=schedule.plan_bounds,
        )
        await self._record(
            report, base_forecast, forecast_source, schedule.active, layers, override, time_to_ready
        )
        return report

    # -- observe ------------------------------------------------------------------------------

    def _sample_step(self, sample_time: float | None) -> float | None:
        """The start of the forecast grid step ``sample_time`` falls in: the calibration
        observes once per step, as the backtest does. Prometheus stamps an instant query's
        answer with the evaluation time, not the scrape's, so by its timestamp every tick
        would look like a new sample and be counted (six times a minute at 10 s ticks)."""
        if sample_time is None:
            return None
        step = self.forecaster.settings.step_s
        return grid_index(sample_time, step) * step

    async def _guard(self, call: Awaitable[T], timeout_error: type[Exception], what: str) -> T:
        """``call`` under the tick's timeout; a timeout becomes the transient error of its kind."""
        try:
            return await asyncio.wait_for(call, timeout=self.call_timeout_s)
        except TimeoutError:
            raise timeout_error(f"{what} timed out after {self.call_timeout_s:g}s") from None

    async def _read_size(self, now: float) -> Capacity:
        """The target's size, reused from an earlier tick while younger than the max age.

        An informer-style cache: at 1,000 targets reading every target's size every tick was
        a third of the daemon's CPU. Nothing is written from a reused size (the actuators
        re-read before they write, and any write empties this cache so the next tick sees
        its result); a change made by someone else is seen at most the max age later.
        """
        last = self._size_read
        # A clock that went back (a wall clock set back) does not keep a read alive; while a
        # scale-up boots, every tick reads, so its time-to-ready is measured to the tick.
        if (
            last is not None
            and self._booting is None
            and 0.0 <= now - last[0] < self.size_read_max_age_s
        ):
            return last[1]
        self._size_read = None
        capacity = await self.actuator.read()
        self._size_read = (now, capacity)
        return capacity

    def _observe(
        self, now: float, outcome: Sample | BaseException | None
    ) -> tuple[Checked, float, float | None]:
        """The checked demand, its age and its sample time; errors and bad values are counted
        and logged."""
        if isinstance(outcome, BaseException):
            kind = "permanent" if isinstance(outcome, PermanentSourceError) else "transient"
            self.telemetry.record_source_error(self.name, kind)
            self.health.source_failed(self.name, outcome)
            self._source_error = f"{kind}: {outcome or type(outcome).__name__}"
            if not isinstance(outcome, SourceError):
                log.error(
                    "metric read failed unexpectedly",
                    extra={"target": self.name, "kind": kind},
                    exc_info=outcome,
                )
            elif kind == "permanent":
                log.error(
                    "metric read failed permanently; fix the query or source: %s",
                    outcome,
                    extra={"target": self.name, "kind": kind},
                )
            else:
                log.warning(
                    "metric read failed, retrying next tick: %s",
                    outcome,
                    extra={"target": self.name, "kind": kind},
                )
            return Checked(None, Rule.EMPTY), math.inf, None
        self.health.source_reached(self.name)
        checked = check_latest(
            outcome, now=now, max_age_s=self.settings.max_demand_age_s, negative=self.negative
        )
        self._source_error = None
        if checked.rule not in (Rule.OK, Rule.NEGATIVE_CLAMPED):
            self.telemetry.record_source_error(self.name, checked.rule.value)
            self._source_error = f"demand unusable: {checked.rule.value}"
            self.health.source_failed(self.name, self._source_error)
            log.warning(
                "demand unusable (%s): holding, no scale-down",
                checked.rule.value,
                extra={"target": self.name, "rule": checked.rule.value},
            )
        if outcome is None:
            return checked, math.inf, None
        # A sample stamped after now (clock skew) counts as fresh, not as negative age.
        age = max(0.0, now - outcome.timestamp)
        self.forecaster.observe(outcome.timestamp, checked.value)
        if self.node_link is not None:
            self.node_link.forecaster.observe(outcome.timestamp, checked.value)
        return checked, age, outcome.timestamp

    # -- act ----------------------------------------------------------------------------------

    async def _act(
        self, result: TickResult, capacity: Capacity
    ) -> tuple[ScaleResult | None, str | None, str | None]:
        """(what was written, the error if the write failed, why it was not attempted)."""
        decision = result.decision
        if self.target.mode != "active" or not decision.changed:
            return None, None, None
        if self._stopping is not None and self._stopping.is_set():
            # SIGTERM or a reload retiring this target: a tick in flight finishes, but no new
            # write starts; the successor (or the next start) decides afresh.
            return None, None, STOPPING
        # Asked here, after the slow reads, not at the start of the tick: leadership may
        # have been lost while they ran, and a write on a lost Lease is what must not happen.
        if not self.leadership.is_leader:
            refusal = self.leadership.refusal
            log.debug("%s: %d not written", refusal, decision.desired, extra={"target": self.name})
            return None, None, refusal
        if clamp(decision.desired, capacity.min_size, capacity.max_size) == capacity.desired:
            # The resource's own bounds, read this tick, already hold what was asked (a window
            # wanting more instances than exist, an ASG at its MaxSize): sending the write
            # would only re-read and clamp to the same size again, every tick.
            return None, None, AT_OWN_BOUND
        # Written, failed or timed out, the size may have changed: the next tick reads it.
        self._size_read = None
        # The lease's write deadline bounds the whole write, and the actuator checks it again
        # right before each request: a leader frozen mid-write (SIGSTOP) that resumes after
        # losing the Lease must not land a write over its successor's.
        deadline = self.leadership.write_deadline()
        timeout = WRITE_TIMEOUT_S
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                self.telemetry.record_fenced_write(self.name)
                fenced = FencedError("not written: the lease no longer guarantees a sole writer")
                return None, self._actuator_failed("write", fenced), None
        try:
            scaled = await asyncio.wait_for(
                self.actuator.scale(
                    decision.desired,
                    # Conditional on what the decision was made from: a size changed since
                    # (another writer, a successor) is a conflict, re-planned next tick.
                    expected=capacity.desired,
                    deadline=deadline,
                ),
                timeout=timeout,
            )
        except FencedError as error:
            self.telemetry.record_fenced_write(self.name)
            return None, self._actuator_failed("write", error), None
        except (ActuatorError, TimeoutError) as error:
            return None, self._actuator_failed("write", error, timeout_s=timeout), None
        self._last_written = scaled.applied
        if scaled.written and scaled.applied > scaled.previous:
            self._booting = (self.clock(), scaled.applied)
        if scaled.written:
            self.telemetry.record_write(self.name)
            await self._report_write(scaled, result)
        log.info(
            "scaled %s from %d to %d (%s)",
            self.actuator.describe(),
            scaled.previous,
            scaled.applied,
            decision.reason,
            extra={
                "target": self.name,
                "event": "scaled",
                "previous": scaled.previous,
                "desired": decision.desired,
                "applied": scaled.applied,
                "written": scaled.written,
                "reason": decision.reason,
            },
        )
        return scaled, None, None

    async def _report_write(self, scaled: ScaleResult, result: TickResult) -> None:
        events = self.events
        if events is None:
            return
        reason, message = scale_event(
            scaled.previous,
            scaled.applied,
            result.forecast,
            result.decision.reason,
            floor=events.floor,
        )
        # Never raises and is bounded by its own short timeout: an Event is a courtesy to
        # people, and must not delay or fail the tick that already wrote.
        await events.record(reason, message)

    def _actuator_failed(
        self, what: str, error: BaseException, *, timeout_s: float | None = None
    ) -> str:
        kind = "permanent" if isinstance(error, PermanentActuatorError) else "transient"
        self.telemetry.record_actuator_error(self.name, kind)
        # str() of a bare TimeoutError is empty: say what happened rather than nothing.
        text = str(error) or type(error).__name__
        if isinstance(error, TimeoutError) and not str(error):
            text = f"timed out after {timeout_s:.3g}s" if timeout_s is not None else "timed out"
        message = f"{what} failed ({kind}): {text}"
        self.health.actuator_failed(self.name, message)
        extra = {"target": self.name, "kind": kind, "actuator": self.actuator.describe()}
        if kind == "permanent":
            log.error("%s; nothing written until it is fixed", message, extra=extra)
        elif isinstance(error, ActuatorError | TimeoutError):
            log.warning("%s; retrying next tick", message, extra=extra)
        else:
            log.error("%s", message, extra=extra, exc_info=error)
        return message

    async def _unreadable(self, now: float, checked: Checked, error: BaseException) -> TickReport:
        """The target could not be read: no current size, so no decision and no write."""
        message = self._actuator_failed("capacity read", error)
        self.ticks += 1
        await self._append(
            AuditRecord(
                target=self.name,
                reason="target_unreadable",
                inputs={
                    "now": now,
                    "demand": checked.value,
                    "demand_rule": checked.rule.value,
                    **({"source_error": self._source_error} if self._source_error else {}),
                },
                error=message,
            )
        )
        return TickReport(now, checked.value, checked.rule.value, None, None, None, message)

    # -- the tournament -----------------------------------------------------------------------

    def _enter_new_model(self, now: float) -> None:
        """A model fitted since the last tick enters the tournament: as the challenger while a
        trained champion acts (it must win its canary first), else as the champion at once."""
        fresh = self.forecaster.take_fresh()
        if fresh is None:
            return
        model, label = fresh
        if self.tournament.needs_canary():
            self.tournament.new_model(now, label)
            self.forecaster.set_challenger(model)
        else:
            self.forecaster.install(model)
            self.tournament.install_model(label)

    async def _report_switch(self, event: Switch) -> None:
        """A switch of the acting policy, a demotion, or a canary's promotion or drop: rare,
        and each one explained in the log, the audit, a metric and a Kubernetes Event."""
        self.telemetry.record_policy_event(self.name, event.kind)
        log.warning(
            "policy %s: %s -> %s: %s",
            event.kind,
            event.from_policy,
            event.to_policy,
            event.explanation,
            extra={"target": self.name, "event": f"policy_{event.kind}", **event.as_json()},
        )
        await self._append(
            AuditRecord(target=self.name, reason=f"policy_{event.kind}", inputs=event.as_json())
        )
        events = self.events
        if events is not None:
            await events.record(
                f"Policy{event.kind.capitalize()}",
                f"{event.from_policy} -> {event.to_policy}: {event.explanation}",
            )

    def _export_scores(self) -> None:
        """The scoreboard as gauges, once a minute: it changes slowly and costs a few
        microseconds per candidate to compute."""
        at = time.monotonic()
        if at - self._scores_exported_at < SCORES_EXPORT_S:
            return
        self._scores_exported_at = at
        self.telemetry.record_policy_scores(self.name, self.tournament.scoreboard())

    # -- state --------------------------------------------------------------------------------

    def _state_key(self) -> StateKey:
        return StateKey(
            unit_capacity=self.settings.unit_capacity,
            lead_s=self.settings.lead_s,
            shortfall_target=self.target.shortfall_target,
        )

    def _load_state(self, now: float, capacity: Capacity) -> None:
        """Restore the decision state before the first decision (once per reconciler).

        Without a saved state (a first start, a lost or corrupt file) the window is seeded
        with the current size: no scale-down for one stabilisation window, as a restarted
        HPA would have done had it remembered.
        """
        self._state_loaded = True
        saved = None
        if self.state_store is not None:
            saved = self.state_store.load(
                self.name, self._state_key(), keep_on_change=self.target.keep_state_on_change
            )
        if self.state_store is not None:
            # Saved under other settings, the scores are not restored (the store checks).
            self._load_tournament()
        if saved is not None:
            # The acting state is saved every tick, the tournament every few minutes: the
            # newer one wins for what the target's own decisions depend on.
            self.state = saved.state
            self._last_written = saved.last_written
            log.info(
                "decision state restored (saved %.0fs ago%s)",
                max(0.0, now - saved.saved_at),
                "; settings changed: window kept, calibration reset"
                if saved.settings_changed
                else "",
                extra={"target": self.name, "event": "state_restored"},
            )
            return
        if self.settings.scale_down_stabilisation_s > 0:
            seeded = replace(self.state.planner, recommendations=((now, capacity.desired),))
            self.state = replace(self.state, planner=seeded)

    def _load_tournament(self) -> None:
        assert self.state_store is not None
        data = self.state_store.load_tournament(self.name, self._state_key())
        if data is None:
            return
        try:
            self.tournament = Tournament.from_json(
                self.tournament.settings,
                self.tournament.planner,
                self.tournament.calibration,
                self.tournament.conformal,
                (encode, decode),
                data,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            log.warning(
                "tournament state malformed, starting its scores afresh: %s",
                error,
                extra={"target": self.name},
            )
            return
        if self.forecaster.challenger_name is None and CHALLENGER in self.tournament.candidates:
            # The challenger's model was not saved: its canary cannot go on.
            del self.tournament.candidates[CHALLENGER]
            self.tournament.canary_base = None
        log.info(
            "tournament restored: acting on %s",
            self.tournament.active,
            extra={"target": self.name, "event": "tournament_restored"},
        )

    def _save_tournament(self) -> None:
        self._tournament_saved_at = time.monotonic()
        if self.state_store is None:
            return
        try:
            self.state_store.save_tournament(
                self.name, self._state_key(), self.tournament.to_json((encode, decode))
            )
        except (OSError, ValueError) as error:
            log.error("tournament state not saved: %s", error, extra={"target": self.name})

    def _save_state(self, now: float) -> None:
        if self.state_store is None:
            return
        if time.monotonic() - self._tournament_saved_at >= TOURNAMENT_SAVE_S:
            self._save_tournament()
        try:
            self.state_store.save(
                self.name,
                self._state_key(),
                self.state,
                now=now,
                last_written=self._last_written,
            )
        except (OSError, ValueError) as error:
            # A full disk must not stop scaling; the state is kept in memory meanwhile.
            log.error("decision state not saved: %s", error, extra={"target": self.name})

    def _time_to_ready(self, now: float, capacity: Capacity) -> float | None:
        """Seconds the last scale-up took to be ready, once it is (None otherwise). Slower
        than the lead time means the plan's capacity arrives late: said loudly, since only a
        longer ``lead_time`` fixes it."""
        booting = self._booting
        if booting is None or capacity.ready is None:
            self._booting = None
            return None
        written_at, size = booting
        if capacity.desired < size:
            self._booting = None  # scaled down or overridden before it was ready
            return None
        if capacity.ready < size:
            return None
        self._booting = None
        elapsed = max(0.0, now - written_at)
        self.telemetry.record_time_to_ready(self.name, elapsed)
        lead = self.settings.lead_s
        if elapsed > 1.25 * lead + self.interval_s:
            log.warning(
                "units took %.0fs to become ready, lead_time is %.0fs: capacity arrives late; "
                "raise lead_time",
                elapsed,
                lead,
                extra={"target": self.name, "event": "slow_time_to_ready", "seconds": elapsed},
            )
        return elapsed

    async def _external_override(self, capacity: Capacity) -> dict[str, int] | None:
        """Another writer changed the size this instance last set: report it once (log,
        metric, Event) so a fight with a GitOps controller or a person is seen, not hidden."""
        expected = self._last_written
        if expected is None or capacity.desired == expected:
            return None
        self._last_written = None
        self.telemetry.record_external_override(self.name)
        log.warning(
            "%s changed by another writer: %d expected, %d found",
            self.actuator.describe(),
            expected,
            capacity.desired,
            extra={
                "target": self.name,
                "event": "external_override",
                "expected": expected,
                "found": capacity.desired,
            },
        )
        events = self.events
        if events is not None:
            # Never raises, bounded by its own timeout (see _report_write).
            await events.record(
                "ExternalOverride",
                f"size changed by another writer: elasticd set {expected}, found "
                f"{capacity.desired}; two controllers writing one object undo each other "
                "(a GitOps sync, an HPA, a person)",
                "Warning",
            )
        return {"expected": expected, "found": capacity.desired}

    # -- record -------------------------------------------------------------------------------

    async def _record(
        self,
        report: TickReport,
        base_forecast: float | None,
        forecast_source: str,
        windows: tuple[str, ...],
        layers: dict[str, Any] | None = None,
        override: dict[str, int] | None = None,
        time_to_ready: float | None = None,
    ) -> None:
        assert report.result is not None and report.capacity is not None
        decision = report.result.decision
        written = report.scaled is not None and report.scaled.written
        inputs: dict[str, Any] = {
            "now": report.now,
            "demand": report.demand,
            "demand_rule": report.demand_rule,
            "ready": report.capacity.ready,
            "base_forecast": base_forecast,
            "forecast_source": forecast_source,
            "reasons": list(decision.reasons),
            "forecast_units": decision.forecast_units,
            "reactive_units": decision.reactive_units,
            "mode": self.target.mode,
            "windows": list(windows),
        }
        if report.skipped is not None:
            inputs["skipped"] = report.skipped
        if self._source_error is not None:
            inputs["source_error"] = self._source_error
        if report.result.short is not None:
            inputs["short"] = report.result.short
            inputs["plan_short"] = report.result.plan_short
        if report.result.not_applied:
            # Short only because the plan's capacity was not in place: not the plan's miss.
            inputs["not_applied"] = True
        if override is not None:
            inputs["external_override"] = override
        if time_to_ready is not None:
            inputs["time_to_ready_s"] = round(time_to_ready, 3)
        if layers is not None:
            inputs["layers"] = layers
        await self._append(
            AuditRecord(
                target=self.name,
                reason=decision.reason,
                desired=decision.desired,
                current=decision.current,
                forecast=report.result.forecast,
                inputs=inputs,
                written=written,
                error=report.error,
            )
        )
        level = logging.INFO if decision.changed or report.error else logging.DEBUG
        log.log(
            level,
            "decided %d (now %d): %s",
            decision.desired,
            decision.current,
            decision.reason,
            extra={
                "target": self.name,
                "event": "decision",
                "demand": report.demand,
                "forecast": report.result.forecast,
                "forecast_source": forecast_source,
                "desired": decision.desired,
                "current": decision.current,
                "reason": decision.reason,
                "mode": self.target.mode,
                "written": written,
                "skipped": report.skipped,
            },
        )

    async def _append(self, record: AuditRecord) -> None:
        try:
            await self.audit.append_async(record)
        except OSError as error:
            # A full disk must not stop scaling: the decision is still logged here.
            log.error("audit log write failed: %s", error, extra={"target": self.name})


def _with_layer_reason(result: TickResult, requests: list[NodeRequest], floor: int) -> TickResult:
    """A node target's decision set by its pods' floor names the layer that drove it
    (``node_forecast``, ``pods_current``, ``pods_desired``) rather than just ``clamped_min``."""
    decision = result.decision
    if not requests or decision.desired != floor or decision.reason != "clamped_min":
        return result
    driver = max(requests, key=lambda request: request.plan.nodes_desired)
    reason = driver.plan.reason
    return replace(
        result, decision=replace(decision, reason=reason, reasons=(*decision.reasons, reason))
    )
