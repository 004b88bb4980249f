"""The daemon's own telemetry: Prometheus metrics, health state, and the server exposing both.

Three parts, each small:

- ``Telemetry`` owns every metric elasticd exports about itself, on a registry the caller
  passes in (tests build a fresh one; two daemons in one process must not share globals).
- ``HealthState`` answers liveness (the event loop is still turning) and readiness (some target
  is still deciding), each with reasons a human can act on, and keeps each target's state
  (source, model, actuator, last decision) for the ``/readyz`` body.
- ``TelemetryServer`` serves ``/healthz``, ``/readyz`` and ``/metrics`` with aiohttp; the
  ``health_server`` agent runs it for the life of the daemon.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from daemon import __version__
from daemon.core.types import Reason
from daemon.redact import redact_text
from daemon.status_page import StatusBoard, status_view

__all__ = [
    "HealthState",
    "Liveness",
    "Readiness",
    "Telemetry",
    "TelemetryServer",
    "build_app",
    "health_server",
    "loop_heartbeat",
    "serve_telemetry",
]

Clock = Callable[[], float]

# A tick normally takes milliseconds; a slow source query can take seconds. Buckets cover both
# so a p99 drifting towards the tick interval is visible before ticks start to overlap.
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Training fits weeks of history: from a fraction of a second to minutes on a busy host.
TRAINING_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _ModelAgeCollector:
    """Exports ``elasticd_model_age_seconds`` computed at scrape time.

    A gauge set at training time would freeze the age between trainings; the age must keep
    growing when the trainer is stuck, since that is exactly when an alert should fire.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.trained_at: dict[str, float] = {}

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        now = self._clock()
        for target, trained_at in sorted(self.trained_at.items()):
            family.add_metric([target], max(0.0, now - trained_at))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "elasticd_model_age_seconds",
            "Seconds since the model in use for the target was trained.",
            labels=["target"],
        )


class _TickGauges:
    """The gauges every tick sets, one value per target each, exported at scrape time.

    As labelled Gauges they were a metric object, a value object and a lock per target per
    gauge; here a target is one tuple.
    """

    GAUGES = (
        ("elasticd_observed_demand", "Demand observed at the last tick."),
        (
            "elasticd_forecast_peak",
            "Calibrated forecast of the peak demand over the lead time, at the last tick.",
        ),
        ("elasticd_desired_units", "Units the planner asked for."),
        (
            "elasticd_current_units",
            "Units the target had (ready + booting) when the tick read it.",
        ),
        (
            "elasticd_ready_units",
            "Units ready to serve when the tick read the target; -1 when the target cannot say.",
        ),
        (
            "elasticd_last_tick_timestamp_seconds",
            "When the target's last tick finished; alert when it stops moving.",
        ),
    )

    def __init__(self) -> None:
        self.values: dict[str, tuple[float, ...]] = {}

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        for target, values in sorted(self.values.items()):
            for family, value in zip(families, values, strict=True):
                family.add_metric([target], value)
        return families

    def _families(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, text, labels=["target"]) for name, text in self.GAUGES]


class _TargetHistograms:
    """A histogram per target (``target`` label only), exported at scrape time.

    A labelled prometheus_client Histogram keeps, per target, a child object and a value
    object with its own lock per bucket: 3.7 KB a target for the tick durations' 14 buckets,
    and as much again for the training durations (7 MB of the daemon's 400 MB budget at 1,000
    targets). Here a target is one array of per-bucket counts and the sum. The exposition is
    the same (cumulative ``_bucket`` series with the same ``le`` values, ``_count``, ``_sum``)
    without the per-series ``_created`` samples, which nothing reads. Observations come from
    the event loop's thread only.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = (*buckets, math.inf)
        # As prometheus_client writes ``le``: "0.005", "10.0", "+Inf".
        self._labels = [repr(float(b)) if math.isfinite(b) else "+Inf" for b in self.bounds]
        self.values: dict[str, array[float]] = {}

    def observe(self, target: str, value: float) -> None:
        counts = self.values.get(target)
        if counts is None:
            counts = self.values[target] = array("d", bytes(8 * (len(self.bounds) + 1)))
        # The first bucket whose bound holds it, as prometheus_client's Histogram counts.
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def remove(self, target: str) -> None:
        self.values.pop(target, None)

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=["target"])]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["target"])
        for target, counts in sorted(self.values.items()):
            cumulative = list(accumulate(counts[:-1]))
            family.add_metric(
                [target], list(zip(self._labels, cumulative, strict=True)), counts[-1]
            )
        return [family]


class _PolicyCollector:
    """The tournament's scoreboard per target and policy, exported at scrape time: four
    labelled Gauges were twelve metric objects a target (over 10 MB at 1,000 targets)."""

    GAUGES = (
        (
            "elasticd_policy_score",
            "Each candidate policy's shadow score: mean billed units per step at the target's "
            "shortfall target (lower is better; docs/tournament.md).",
        ),
        (
            "elasticd_policy_mean_billed_units",
            "Each candidate policy's shadow mean billed units per step over the window.",
        ),
        (
            "elasticd_policy_short_share",
            "Each candidate policy's shadow share of short steps over the scoring window.",
        ),
        (
            "elasticd_policy_active",
            "1 for the policy the target acts on, 0 for the others running in shadow.",
        ),
    )

    def __init__(self) -> None:
        self.rows: dict[str, tuple[tuple[str, float, float, float, float], ...]] = {}

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        for target, rows in sorted(self.rows.items()):
            for policy, *values in rows:
                for family, value in zip(families, values, strict=True):
                    family.add_metric([target, policy], value)
        return families

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(name, text, labels=["target", "policy"]) for name, text in self.GAUGES
        ]


class _ReasonCollector:
    """Exports ``elasticd_decision_reason``: 1 for each target's last reason, 0 for every other
    reason it can give (all of them from the first tick, so a query for one that has not
    happened yet returns 0 rather than nothing).

    Built at scrape time from one string per target: a labelled gauge per (target, reason)
    was a dozen metric objects per target, about half of the daemon's metrics memory at
    1,000 targets, and a dozen locked sets every tick.
    """

    def __init__(self) -> None:
        self.last: dict[str, str] = {}
        self.extra: dict[str, set[str]] = {}  # reasons outside ``Reason`` a target gave
        self._known = tuple(sorted(r.value for r in Reason))

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for target, last in sorted(self.last.items()):
            for name in sorted({*self._known, *self.extra.get(target, ())}):
                family.add_metric([target, name], 1.0 if name == last else 0.0)
        return [family]

    def set(self, target: str, reason: str) -> None:
        self.last[target] = reason
        if reason not in self._known:
            self.extra.setdefault(target, set()).add(reason)

    def forget(self, target: str) -> None:
        self.last.pop(target, None)
        self.extra.pop(target, None)

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "elasticd_decision_reason",
            "1 for the reason behind the last decision, 0 for every other reason.",
            labels=["target", "reason"],
        )


class Telemetry:
    """Every metric elasticd exports about itself, labelled by ``target`` where it applies."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, clock: Clock = time.time
    ) -> None:
        """``registry``: where the metrics live; None builds a private one that also carries
        the process and platform collectors (memory, CPU, file descriptors of the daemon).
        ``clock``: epoch seconds, for the model age; the simulator passes its own.
        """
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.registry = registry
        t = ("target",)
        self._tick = _TickGauges()
        registry.register(self._tick)
        self._reason = _ReasonCollector()
        registry.register(self._reason)
        self._policies = _PolicyCollector()
        registry.register(self._policies)
        self.forecast_error = Gauge(
            "elasticd_forecast_log_residual",
            "log(actual peak / forecast peak) of the last forecast whose horizon has passed; "
            "positive means the forecast was too low.",
            t,
            registry=registry,
        )
        self.short_steps = Counter(
            "elasticd_short_steps",
            "Ticks where observed demand exceeded what the ready units serve.",
            t,
            registry=registry,
        )
        self.source_errors = Counter(
            "elasticd_source_errors",
            "Failed or unusable metric reads, by kind (transient, permanent, stale, ...).",
            ("target", "kind"),
            registry=registry,
        )
        self.actuator_errors = Counter(
            "elasticd_actuator_errors",
            "Failed reads or writes of the target, by kind.",
            ("target", "kind"),
            registry=registry,
        )
        self.writes = Counter(
            "elasticd_writes", "Scale writes sent to the target.", t, registry=registry
        )
        self.not_applied_steps = Counter(
            "elasticd_not_applied_steps",
            "Ticks short on ready capacity that the plan's own capacity would have served: "
            "its writes did not take effect (refused, failed or overridden).",
            t,
            registry=registry,
        )
        self.external_overrides = Counter(
            "elasticd_external_overrides",
            "Times another writer changed the target's size away from what elasticd wrote.",
            t,
            registry=registry,
        )
        self.fenced_writes = Counter(
            "elasticd_fenced_writes",
            "Writes not sent, or refused by a precondition, because leadership could not be "
            "proved or the target changed since it was read.",
            t,
            registry=registry,
        )
        self.policy_events = Counter(
            "elasticd_policy_switches",
            "Switches of the acting policy, demotions, and canary promotions and drops.",
            ("target", "kind"),
            registry=registry,
        )
        self.shortfall_target = Gauge(
            "elasticd_shortfall_target",
            "The target's shortfall_target: the share of ticks it accepts being short (the "
            "short-share alert compares elasticd_short_steps_total with it).",
            t,
            registry=registry,
        )
        self.time_to_ready = Gauge(
            "elasticd_time_to_ready_seconds",
            "Seconds the last scale-up took from the write until its units were ready; above "
            "the target's lead_time, capacity arrives late: raise lead_time.",
            t,
            registry=registry,
        )
        self.model_failures = Counter(
            "elasticd_model_failures",
            "Models dropped for the fallback because they failed to load or to forecast "
            "(their artifact is quarantined and a retrain requested).",
            ("target", "stage"),
            registry=registry,
        )
        self.tick_duration = _TargetHistograms(
            "elasticd_tick_duration_seconds",
            "Wall time of one observe-forecast-decide-act tick.",
            TICK_BUCKETS,
        )
        registry.register(self.tick_duration)
        self.training_duration = _TargetHistograms(
            "elasticd_training_duration_seconds",
            "Wall time of one model training.",
            TRAINING_BUCKETS,
        )
        registry.register(self.training_duration)
        self.leader = Gauge(
            "elasticd_leader",
            "1 when this instance is the leader and may write.",
            registry=registry,
        )
        self.reloads = Counter(
            "elasticd_config_reloads",
            "Configuration reloads, by result (ok or failed).",
            ("result",),
            registry=registry,
        )
        # Both results exist from the start so rate() over them works before the first reload.
        self.reloads.labels(result="ok")
        self.reloads.labels(result="failed")
        self._model_age = _ModelAgeCollector(clock)
        registry.register(self._model_age)
        self._clock = clock
        # What the status page (/, /status) draws: fed by the same calls as the gauges.
        self.status = StatusBoard(clock=clock)
        # Label values seen per target, so a target removed on reload can be forgotten whole.
        self._source_kinds: dict[str, set[str]] = {}
        self._actuator_kinds: dict[str, set[str]] = {}
        self._model_stages: dict[str, set[str]] = {}
        self._policy_kinds: dict[str, set[str]] = {}

    def record_tick(
        self,
        target: str,
        *,
        demand: float | None,
        forecast: float | None,
        desired: int,
        current: int,
        ready: int | None,
        reason: str,
        duration_s: float,
        bounds: tuple[int, int] | None = None,
    ) -> None:
        """One finished tick. ``None`` demand or forecast (missing data, no model) is exported
        as NaN rather than the last value, so a dashboard shows the gap instead of a lie.
        ``bounds``: the ``(min, max)`` units in force at this tick (a schedule's), for the
        status page."""
        nan = float("nan")
        self._tick.values[target] = (
            nan if demand is None else demand,
            nan if forecast is None else forecast,
            desired,
            current,
            -1 if ready is None else ready,
            self._clock(),
        )
        self._reason.set(target, str(reason))
        self.tick_duration.observe(target, duration_s)
        self.status.record(
            target,
            self._tick.values[target][-1],
            demand=demand,
            forecast=forecast,
            desired=desired,
            current=current,
            ready=ready,
            reason=str(reason),
            bounds=bounds,
        )

    def record_forecast_error(self, target: str, log_residual: float) -> None:
        """The log residual of the newest forecast whose horizon has passed."""
        self.forecast_error.labels(target).set(log_residual)

    def record_short_step(self, target: str) -> None:
        """Demand exceeded the ready units' capacity at this tick."""
        self.short_steps.labels(target).inc()

    def record_source_error(self, target: str, kind: str) -> None:
        self._source_kinds.setdefault(target, set()).add(kind)
        self.source_errors.labels(target, kind).inc()

    def record_actuator_error(self, target: str, kind: str) -> None:
        self._actuator_kinds.setdefault(target, set()).add(kind)
        self.actuator_errors.labels(target, kind).inc()

    def record_write(self, target: str) -> None:
        self.writes.labels(target).inc()

    def record_not_applied_step(self, target: str) -> None:
        """A short step the plan's own capacity would have served: its writes did not land."""
        self.not_applied_steps.labels(target).inc()

    def record_external_override(self, target: str) -> None:
        """Another writer changed the target's size away from what elasticd wrote."""
        self.external_overrides.labels(target).inc()

    def record_policy_scores(self, target: str, rows: Iterable[Any]) -> None:
        """The scoreboard (``daemon.core.tournament.CandidateScore`` rows)."""
        rows_seen = list(rows)
        self._policies.rows[target] = tuple(
            (row.name, row.score, row.mean_billed, row.short_share, 1.0 if row.active else 0.0)
            for row in rows_seen
        )
        self.status.set_policy(target, rows_seen)

    def record_policy_event(self, target: str, kind: str) -> None:
        self._policy_kinds.setdefault(target, set()).add(kind)
        self.policy_events.labels(target, kind).inc()

    def record_time_to_ready(self, target: str, seconds: float) -> None:
        self.time_to_ready.labels(target).set(seconds)

    def record_fenced_write(self, target: str) -> None:
        """A write withheld or refused by a fence (lease deadline, read precondition)."""
        self.fenced_writes.labels(target).inc()

    def record_model_failure(self, target: str, stage: str) -> None:
        """A model dropped for the fallback; ``stage`` is ``load`` or ``forecast``."""
        self._model_stages.setdefault(target, set()).add(stage)
        self.model_failures.labels(target, stage).inc()

    def record_training(
        self, target: str, duration_s: float, *, trained_at: float | None = None
    ) -> None:
        """A training finished; the model's age counts from ``trained_at`` (default: now)."""
        self.training_duration.observe(target, duration_s)
        self.set_model_trained_at(target, self._clock() if trained_at is None else trained_at)

    def set_model_trained_at(self, target: str, trained_at: float) -> None:
        """A model loaded from disk: its age counts from its own fit time, not the load."""
        self._model_age.trained_at[target] = trained_at

    def set_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def record_reload(self, ok: bool) -> None:
        self.reloads.labels(result="ok" if ok else "failed").inc()

    def forget_target(self, target: str) -> None:
        """Drop every series of a target removed from the configuration.

        Left in place, its last gauges would be scraped forever and look like a live target.
        """
        self._tick.values.pop(target, None)
        for metric in (
            self.forecast_error,
            self.short_steps,
            self.writes,
            self.not_applied_steps,
            self.external_overrides,
            self.fenced_writes,
            self.time_to_ready,
            self.shortfall_target,
            self.tick_duration,
            self.training_duration,
        ):
            metric.remove(target)
        self._reason.forget(target)
        for metric, seen in (
            (self.source_errors, self._source_kinds),
            (self.actuator_errors, self._actuator_kinds),
            (self.model_failures, self._model_stages),
            (self.policy_events, self._policy_kinds),
        ):
            for value in seen.pop(target, set()):
                metric.remove(target, value)
        self._policies.rows.pop(target, None)
        self._model_age.trained_at.pop(target, None)
        self.status.forget(target)


@dataclass(frozen=True, slots=True)
class Liveness:
    live: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]


# Readiness fails when no target has decided within this many of its intervals...
DECISION_INTERVALS = 3.0
# ...and never sooner than this: a tick waits up to a source read's timeout (10 s) before it
# decides, so a short interval alone would turn one slow read into an unready daemon.
MIN_DECISION_WINDOW_S = 10.0
# Error texts in the health body are for a human to read, not a log: the start is enough.
_MAX_ERROR_TEXT = 300


def _error_text(error: str | BaseException) -> str:
    """An error as the health body shows it: secrets masked (a source URL's password), cut."""
    text = (str(error) or type(error).__name__) if isinstance(error, BaseException) else error
    text = redact_text(text)
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


@dataclass(slots=True)
class _TargetHealth:
    """What one target last reported; times are on the HealthState's monotonic clock."""

    source_error: str | None = None
    source_ok_at: float | None = None
    model: str | None = None
    model_age: tuple[float, float] | None = None
    """(the model's age when reported, when that was): it keeps ageing between reports."""
    model_error: str | None = None
    actuator_error: str | None = None
    actuator_ok_at: float | None = None
    decided_at: float | None = None
    interval_s: float | None = None
    ticking: bool = False
    """The target's reconciler reports its ticks (decided / actuator_*): readiness then
    follows its decisions instead of the start-up checks."""


class HealthState:
    """What ``/healthz`` and ``/readyz`` report; components update it as things happen.

    Liveness: the ``loop_heartbeat`` agent beats every few seconds. A stale beat means the loop
    is wedged or the agent died; a large lag means something blocked the loop (a fit run on it
    by mistake). Either way a restart is the right cure, which is what liveness is for.

    Readiness: the daemon is doing its job, i.e. at least one target has decided within
    ``decision_intervals`` of its interval (a target whose source is down still decides: it
    holds; one whose capacity read fails does not). Before any target reports a tick, the
    start-up checks stand in: every target has a model (trained or fallback) and its source
    answered once. Not being ready means "do not trust my numbers": a daemon that decides
    nothing is not trusted, however alive its event loop is.

    Each target's state (source, model, actuator, last decision) is reported whole in the
    ``/readyz`` body, ready or not, so an operator sees which target is failing and why.
    """

    def __init__(
        self,
        *,
        stale_after_s: float = 30.0,
        max_lag_s: float = 10.0,
        monotonic: Clock = time.monotonic,
        clock: Clock = time.time,
        decision_intervals: float = DECISION_INTERVALS,
        min_decision_window_s: float = MIN_DECISION_WINDOW_S,
    ) -> None:
        """``monotonic``: ages and staleness; ``clock``: epoch seconds, the default ``now``
        for a model's fit time (``model_state``)."""
        if stale_after_s <= 0 or max_lag_s <= 0:
            raise ValueError("stale_after_s and max_lag_s must be > 0")
        if decision_intervals <= 0 or min_decision_window_s < 0:
            raise ValueError("decision_intervals must be > 0, min_decision_window_s >= 0")
        self._stale_after_s = stale_after_s
        self._max_lag_s = max_lag_s
        self._monotonic = monotonic
        self._clock = clock
        self._decision_intervals = decision_intervals
        self._min_decision_window_s = min_decision_window_s
        self._last_beat: float | None = None
        self._last_lag_s = 0.0
        self._targets: tuple[str, ...] = ()
        self._none_is_ready = False
        self._models: set[str] = set()
        self._sources: set[str] = set()
        self._states: dict[str, _TargetHealth] = {}
        self._stopping = False

    # Liveness

    def beat(self, lag_s: float) -> None:
        """The loop woke ``lag_s`` seconds later than it asked to."""
        self._last_beat = self._monotonic()
        self._last_lag_s = lag_s

    def liveness(self) -> Liveness:
        reasons: list[str] = []
        if self._last_beat is not None:
            # Before the first beat the daemon is starting: not a reason to kill it.
            age = self._monotonic() - self._last_beat
            if age > self._stale_after_s:
                reasons.append(f"no event-loop heartbeat for {age:.1f}s")
        if self._last_lag_s > self._max_lag_s:
            reasons.append(f"event loop blocked for {self._last_lag_s:.1f}s")
        return Liveness(not reasons, tuple(reasons))

    # What targets report

    def set_targets(self, targets: Iterable[str], *, none_is_ready: bool = False) -> None:
        """The configured targets; state of targets no longer configured is dropped.
        ``none_is_ready``: having none is fine (a sharded member the ring gives no target now
        is a healthy standby, not a broken daemon)."""
        self._targets = tuple(dict.fromkeys(targets))
        self._none_is_ready = none_is_ready
        configured = set(self._targets)
        self._models &= configured
        self._sources &= configured
        for gone in set(self._states) - configured:
            del self._states[gone]

    def _state(self, target: str) -> _TargetHealth:
        state = self._states.get(target)
        if state is None:
            state = self._states[target] = _TargetHealth()
        return state

    def model_loaded(self, target: str) -> None:
        self._models.add(target)

    def model_state(
        self,
        target: str,
        name: str | None,
        trained_at: float | None,
        error: str | BaseException | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """The model in use: its rung ``name`` (``model``, ``seasonal_naive``,
        ``recent_peak``; None: none yet), when it was fitted (epoch seconds on the target's
        clock, with ``now`` on the same clock; default this state's clock), and the last
        training or loading error (None once a fit succeeded)."""
        state = self._state(target)
        state.model = name
        if trained_at is None:
            state.model_age = None
        else:
            reported_now = self._clock() if now is None else now
            state.model_age = (max(0.0, reported_now - trained_at), self._monotonic())
        state.model_error = None if error is None else _error_text(error)
        if name is not None:
            self._models.add(target)

    def source_reached(self, target: str) -> None:
        """The target's source answered (a sample, or no data: it answered)."""
        self._sources.add(target)
        state = self._state(target)
        state.source_ok_at = self._monotonic()
        state.source_error = None

    def source_failed(self, target: str, error: str | BaseException) -> None:
        """A read of the target's source failed (timeout, refused, HTTP error...)."""
        self._state(target).source_error = _error_text(error)

    def actuator_ok(self, target: str) -> None:
        """A read or write of the target succeeded."""
        state = self._state(target)
        state.ticking = True
        state.actuator_ok_at = self._monotonic()
        state.actuator_error = None

    def actuator_failed(self, target: str, error: str | BaseException) -> None:
        """A read or write of the target failed (a 404, a timeout, a refused write...)."""
        state = self._state(target)
        state.ticking = True
        state.actuator_error = _error_text(error)

    def decided(self, target: str, interval_s: float) -> None:
        """The target made a decision (written or not) at this tick; it ticks every
        ``interval_s`` seconds of wall time."""
        state = self._state(target)
        state.ticking = True
        state.decided_at = self._monotonic()
        state.interval_s = interval_s

    def set_stopping(self) -> None:
        """Shutdown began: stop advertising readiness before the reconcilers stop."""
        self._stopping = True

    # Readiness

    def _decision_window_s(self, state: _TargetHealth) -> float | None:
        if state.interval_s is None:
            return None
        return max(self._decision_intervals * state.interval_s, self._min_decision_window_s)

    def _deciding(self, state: _TargetHealth, now: float) -> bool:
        window = self._decision_window_s(state)
        return (
            window is not None and state.decided_at is not None and now - state.decided_at <= window
        )

    def readiness(self) -> Readiness:
        reasons: list[str] = []
        if self._stopping:
            reasons.append("shutting down")
        if not self._targets and not self._none_is_ready:
            reasons.append("no targets configured")
        now = self._monotonic()
        states = {target: self._states.get(target) for target in self._targets}
        ticking = {t for t, state in states.items() if state is not None and state.ticking}
        # Start-up: every target must have a model (trained, loaded or a fallback) before the
        # daemon says it is ready, so readiness (and systemd's READY=1) does not come while
        # most targets are still training because one of them was quick.
        for target in self._targets:
            if target not in ticking and target not in self._models:
                reasons.append(f"target {target}: no model loaded yet")
        if ticking:
            if not any(
                state is not None and self._deciding(state, now) for state in states.values()
            ):
                reasons.append(
                    f"no target has decided within {self._decision_intervals:g} intervals"
                )
                for target, state in states.items():
                    reasons.append(f"target {target}: {self._why_not_deciding(state, now)}")
        else:
            for target in self._targets:
                if target not in self._sources:
                    reasons.append(f"target {target}: metric source not reached yet")
        return Readiness(not reasons, tuple(reasons))

    def _why_not_deciding(self, state: _TargetHealth | None, now: float) -> str:
        if state is None or not state.ticking:
            return "not ticking yet (loading history or training)"
        if state.decided_at is None:
            why = "no decision yet"
        else:
            why = (
                f"last decision {now - state.decided_at:.0f}s ago (interval {state.interval_s:g}s)"
            )
        for part, error in (("actuator", state.actuator_error), ("source", state.source_error)):
            if error is not None:
                why += f"; {part}: {error}"
        return why

    def target_report(self, target: str) -> dict[str, Any]:
        """One target's state as the ``/readyz`` body shows it; ages in seconds, None where
        nothing is known yet; ``ok`` None until the part has been tried."""
        state = self._states.get(target) or _TargetHealth()
        now = self._monotonic()

        def age(at: float | None) -> float | None:
            return None if at is None else round(max(0.0, now - at), 3)

        model_age = None
        if state.model_age is not None:
            reported_age, reported_at = state.model_age
            model_age = round(reported_age + max(0.0, now - reported_at), 3)
        source_ok = (
            False if state.source_error is not None else (True if target in self._sources else None)
        )
        actuator_ok = (
            False
            if state.actuator_error is not None
            else (True if state.actuator_ok_at is not None else None)
        )
        return {
            "deciding": self._deciding(state, now) if state.ticking else None,
            "last_decision_age_s": age(state.decided_at),
            "interval_s": state.interval_s,
            "source": {
                "ok": source_ok,
                "error": state.source_error,
                "last_success_age_s": age(state.source_ok_at),
            },
            "model": {
                "name": state.model,
                "loaded": target in self._models,
                "age_s": model_age,
                "error": state.model_error,
            },
            "actuator": {
                "ok": actuator_ok,
                "error": state.actuator_error,
                "last_success_age_s": age(state.actuator_ok_at),
            },
        }

    def report(self) -> dict[str, Any]:
        """The ``/readyz`` body: readiness, its reasons, and every target's state."""
        ready = self.readiness()
        return {
            "status": "ready" if ready.ready else "not ready",
            "ready": ready.ready,
            "reasons": list(ready.reasons),
            "targets": {target: self.target_report(target) for target in self._targets},
        }


async def loop_heartbeat(health: HealthState, interval_s: float = 1.0) -> None:
    """Agent: beat ``health`` every ``interval_s``, reporting how late the loop woke us."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval_s)
        health.beat(max(0.0, loop.time() - asked - interval_s))


def _text(status: int, lines: Iterable[str]) -> web.Response:
    return web.Response(status=status, text="".join(f"{line}\n" for line in lines))


def build_app(telemetry: Telemetry, health: HealthState) -> web.Application:
    """The aiohttp application: ``/healthz`` in plain text, ``/readyz`` as JSON (readiness,
    its reasons and each target's state), the metrics exposition, and the status page at
    ``/`` and ``/status``."""

    async def healthz(_request: web.Request) -> web.Response:
        live = health.liveness()
        return _text(200, ["ok"]) if live.live else _text(503, live.reasons)

    async def readyz(_request: web.Request) -> web.Response:
        # JSON, so an operator (or a probe's log) sees every target's state, not one word.
        body = health.report()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def metrics(request: web.Request) -> web.Response:
        # Negotiate like prometheus_client's own handlers: OpenMetrics when the scraper asks.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(
            body=encoder(telemetry.registry), headers={"Content-Type": content_type}
        )

    app = web.Application()
    # The status page for people (no Grafana needed); relative links, so a path prefix works.
    status = status_view(telemetry.status, health.report, f"elasticd {__version__}")
    app.router.add_get("/", status)
    app.router.add_get("/status", status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class TelemetryServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` and beats the loop heartbeat.

    ``port=0`` binds a free port; ``port`` then tells which one.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        health: HealthState,
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
        heartbeat_interval_s: float = 1.0,
    ) -> None:
        self._app = build_app(telemetry, health)
        self._health = health
        self._host = host
        self._requested_port = port
        self._heartbeat_interval_s = heartbeat_interval_s
        self._runner: web.AppRunner | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the telemetry server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(runner)
        self._heartbeat = asyncio.create_task(
            loop_heartbeat(self._health, self._heartbeat_interval_s), name="loop_heartbeat"
        )

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._port = None


def _bound_port(runner: web.AppRunner) -> int:
    # TCP sites report (host, port), or (host, port, flow, scope) for IPv6.
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the telemetry server bound no socket")


async def health_server(server: TelemetryServer) -> None:
    """Agent: run the telemetry server until cancelled, then stop it."""
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


async def serve_telemetry(
    telemetry: Telemetry, health: HealthState, host: str = "127.0.0.1", port: int = 9464
) -> TelemetryServer:
    """Start a ``TelemetryServer``; the caller stops it with ``await server.stop()``."""
    server = TelemetryServer(telemetry, health, host=host, port=port)
    await server.start()
    return server
