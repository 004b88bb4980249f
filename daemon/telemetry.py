"""The daemon's own telemetry: Prometheus metrics, health state, and the server exposing both.

Three parts, each small:

- ``Telemetry`` owns every metric elasticd exports about itself, on a registry the caller
  passes in (tests build a fresh one; two daemons in one process must not share globals).
- ``HealthState`` answers liveness (the event loop is still turning) and readiness (models
  loaded and every target's source reached at least once), each with reasons a human can act on.
- ``TelemetryServer`` serves ``/healthz``, ``/readyz`` and ``/metrics`` with aiohttp; the
  ``health_server`` agent runs it for the life of the daemon.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from daemon.core.types import Reason

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
        self.tick_duration = Histogram(
            "elasticd_tick_duration_seconds",
            "Wall time of one observe-forecast-decide-act tick.",
            t,
            buckets=TICK_BUCKETS,
            registry=registry,
        )
        self.training_duration = Histogram(
            "elasticd_training_duration_seconds",
            "Wall time of one model training.",
            t,
            buckets=TRAINING_BUCKETS,
            registry=registry,
        )
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
        # Label values seen per target, so a target removed on reload can be forgotten whole.
        self._source_kinds: dict[str, set[str]] = {}
        self._actuator_kinds: dict[str, set[str]] = {}

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
    ) -> None:
        """One finished tick. ``None`` demand or forecast (missing data, no model) is exported
        as NaN rather than the last value, so a dashboard shows the gap instead of a lie."""
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
        self.tick_duration.labels(target).observe(duration_s)

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

    def record_training(
        self, target: str, duration_s: float, *, trained_at: float | None = None
    ) -> None:
        """A training finished; the model's age counts from ``trained_at`` (default: now)."""
        self.training_duration.labels(target).observe(duration_s)
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
            self.tick_duration,
            self.training_duration,
        ):
            metric.remove(target)
        self._reason.forget(target)
        for metric, seen in (
            (self.source_errors, self._source_kinds),
            (self.actuator_errors, self._actuator_kinds),
        ):
            for value in seen.pop(target, set()):
                metric.remove(target, value)
        self._model_age.trained_at.pop(target, None)


@dataclass(frozen=True, slots=True)
class Liveness:
    live: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]


class HealthState:
    """What ``/healthz`` and ``/readyz`` report; components update it as things happen.

    Liveness: the ``loop_heartbeat`` agent beats every few seconds. A stale beat means the loop
    is wedged or the agent died; a large lag means something blocked the loop (a fit run on it
    by mistake). Either way a restart is the right cure, which is what liveness is for.
    Readiness: every configured target has a model (trained or fallback) and its source
    answered at least once. Not being ready only means "do not trust my numbers yet".
    """

    def __init__(
        self,
        *,
        stale_after_s: float = 30.0,
        max_lag_s: float = 10.0,
        monotonic: Clock = time.monotonic,
    ) -> None:
        if stale_after_s <= 0 or max_lag_s <= 0:
            raise ValueError("stale_after_s and max_lag_s must be > 0")
        self._stale_after_s = stale_after_s
        self._max_lag_s = max_lag_s
        self._monotonic = monotonic
        self._last_beat: float | None = None
        self._last_lag_s = 0.0
        self._targets: tuple[str, ...] = ()
        self._models: set[str] = set()
        self._sources: set[str] = set()
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

    # Readiness

    def set_targets(self, targets: Iterable[str]) -> None:
        """The configured targets; state of targets no longer configured is dropped."""
        self._targets = tuple(dict.fromkeys(targets))
        self._models &= set(self._targets)
        self._sources &= set(self._targets)

    def model_loaded(self, target: str) -> None:
        self._models.add(target)

    def source_reached(self, target: str) -> None:
        self._sources.add(target)

    def set_stopping(self) -> None:
        """Shutdown began: stop advertising readiness before the reconcilers stop."""
        self._stopping = True

    def readiness(self) -> Readiness:
        reasons: list[str] = []
        if self._stopping:
            reasons.append("shutting down")
        if not self._targets:
            reasons.append("no targets configured")
        for target in self._targets:
            if target not in self._models:
                reasons.append(f"target {target}: no model loaded yet")
            if target not in self._sources:
                reasons.append(f"target {target}: metric source not reached yet")
        return Readiness(not reasons, tuple(reasons))


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
    """The aiohttp application: plain-text health answers and the metrics exposition."""

    async def healthz(_request: web.Request) -> web.Response:
        live = health.liveness()
        return _text(200, ["ok"]) if live.live else _text(503, live.reasons)

    async def readyz(_request: web.Request) -> web.Response:
        ready = health.readiness()
        return _text(200, ["ready"]) if ready.ready else _text(503, ready.reasons)

    async def metrics(request: web.Request) -> web.Response:
        # Negotiate like prometheus_client's own handlers: OpenMetrics when the scraper asks.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(
            body=encoder(telemetry.registry), headers={"Content-Type": content_type}
        )

    app = web.Application()
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
