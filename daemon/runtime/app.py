"""The composition root: the one module that names concrete sources and actuators.

``TargetFactory.build`` turns one target of a ``Settings`` into a ``TargetRuntime`` (source,
actuator, forecaster, reconciler, trainer). Every target owns its own adapters, but the
connections under them are shared (``ClientPool``): one aiohttp session per Prometheus URL and
one Kubernetes ``ApiClient`` per cluster configuration, whatever the number of targets. A
thousand targets with a session each held a thousand connections to a Prometheus that serves
512, and a thousand ApiClients each loaded the system CA store (0.84 MB apiece). Each target
holds a reference, released when it closes; the last release closes the client, so replacing
a target on reload never closes a client another target still uses.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client

from daemon.actuators.base import Actuator
from daemon.actuators.events import ScaleEvents
from daemon.actuators.kubernetes import kube_api_client
from daemon.audit import AuditLog
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.trace import Trace, load_trace
from daemon.core.conformal import ConformalTracker
from daemon.errors import ConfigError
from daemon.forecasting import TargetForecaster
from daemon.kinds.base import AwsAccess
from daemon.kinds.registry import spec_of
from daemon.leader import AlwaysLeader, Leadership
from daemon.ratelimit_client import throttle_for
from daemon.runtime.clock import StepFreeClock
from daemon.runtime.decision_state import DecisionStateStore
from daemon.runtime.layers import NODE_MODEL_SUFFIX, LayerBoard, NodeLink, node_shape
from daemon.runtime.metric_board import MetricBoard
from daemon.runtime.planning import (
    conformal_settings,
    forecast_settings,
    node_layer_lead,
    tick_delay,
)
from daemon.runtime.reconciler import Reconciler
from daemon.runtime.target import Closer, TargetRuntime
from daemon.runtime.trainer import ModelTrainer
from daemon.settings import (
    CloudWatchQuery,
    CloudWatchSourceConfig,
    KubernetesWorkloadTarget,
    PrometheusSourceConfig,
    Settings,
    SimulatorSourceConfig,
    TargetConfig,
)
from daemon.settings.queries import CloudWatchInput
from daemon.settings.targets import NODE_KINDS
from daemon.simulation import WEEK_S, SimulatedWorld, rebase_trace
from daemon.sources.base import MetricQuery, MetricSource
from daemon.sources.cloudwatch_specs import CloudWatchExpression, CloudWatchMetric
from daemon.sources.no_demand import NoDemandSource
from daemon.sources.prometheus import PrometheusSource
from daemon.sources.simulator import SimulatorSource
from daemon.telemetry import HealthState, Telemetry

__all__ = [
    "ClientPool",
    "Shared",
    "TargetFactory",
    "aws_region",
    "fingerprint",
    "history_step",
    "open_kube_client",
    "query_spec",
    "simulator_trace",
]

log = logging.getLogger("elasticd.app")

# The forecaster's grid for metrics systems that can answer at any resolution: a minute is as
# fine as demand forecasting needs and keeps 14 days of history at 20k points.
DEFAULT_STEP_S = 60.0
# Reads of the source or the target that take longer count as a transient failure.
CALL_TIMEOUT_S = 10.0
# Connections one daemon opens to one Prometheus, shared by all its targets: at 1,000 targets
# every 15 s that is ~70 short queries a second, which a few connections carry; the cap keeps
# the daemon far below Prometheus's own limit (512 by default) however many targets it has.
PROMETHEUS_CONNECTIONS = 32
# History loads (each 14 days: a few long range queries) running at once across targets. All
# targets start together; unbounded, 1,000 of them time out in Prometheus's queue. Eight keep
# Prometheus and the daemon's JSON parsing busy without starving the ticks of connections.
HISTORY_LOADS = 8

Clock = Callable[[], float]
C = TypeVar("C")


class ClientPool:
    """Clients shared by every target that talks to the same endpoint, reference-counted.

    ``acquire`` opens a client for a key on first use and returns it with a release function;
    the last release closes it. A reload builds new targets before it closes the old ones, so
    a client in use across a reload is kept, and one no target uses any more is closed.
    """

    def __init__(self) -> None:
        self._clients: dict[Hashable, tuple[Any, Callable[[], Awaitable[None]]]] = {}
        self._users: dict[Hashable, int] = {}
        self._lock = asyncio.Lock()

    async def acquire(
        self,
        key: Hashable,
        open_client: Callable[[], Awaitable[C]],
        close: Callable[[C], Awaitable[None]],
    ) -> tuple[C, Closer]:
        """The client for ``key`` (opened now if none is) and the closer that releases it."""
        async with self._lock:
            if key not in self._clients:
                opened = await open_client()
                self._clients[key] = (opened, lambda: close(opened))
                self._users[key] = 0
            self._users[key] += 1
            shared: C = self._clients[key][0]
        released = False

        async def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            await self._release(key)

        return shared, release

    async def _release(self, key: Hashable) -> None:
        async with self._lock:
            self._users[key] -= 1
            if self._users[key] > 0:
                return
            del self._users[key]
            _, close = self._clients.pop(key)
        await close()

    def __len__(self) -> int:
        return len(self._clients)

    async def close(self) -> None:
        """Close every client still open (at shutdown, after every target has closed)."""
        async with self._lock:
            closers = [close for _, close in self._clients.values()]
            self._clients.clear()
            self._users.clear()
        for close in closers:
            try:
                await asyncio.wait_for(close(), timeout=5.0)
            except Exception as error:
                log.warning("closing a shared client failed: %r", error)


@dataclass(frozen=True)
class Shared:
    """What every target shares in one daemon process."""

    audit: AuditLog
    telemetry: Telemetry
    health: HealthState
    fit_slot: asyncio.Semaphore
    leadership: Leadership = field(default_factory=AlwaysLeader)
    """Asked right before every write; followers decide but never write."""
    layers: LayerBoard = field(default_factory=LayerBoard)
    """Pod targets post the nodes they need here; their node targets read it."""
    metrics: MetricBoard = field(default_factory=MetricBoard)
    """Companions of a target's further metrics post the units they need here."""
    history_slot: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(HISTORY_LOADS)
    )
    """Bounds the history loads running at once across targets."""
    clients: ClientPool = field(default_factory=ClientPool)
    clock: Clock = field(default_factory=StepFreeClock)
    """Every target's "now": wall time that a wall-clock step does not move (runtime.clock)."""
    """Prometheus sessions and Kubernetes clients, shared by the targets that use them."""


def fingerprint(settings: Settings, target: TargetConfig) -> Hashable:
    """Everything a target's parts are built from: equal fingerprints, nothing to rebuild."""
    return (
        target,
        # A pod target plans with its node target's lead time, bounds and schedules.
        _linked_node_target(settings, target),
        settings.sources.get(target.source),
        target.interval or settings.interval,
        settings.training,
        settings.state_dir,
        settings.audit,
        settings.aws,
        settings.kubernetes,
    )


def decision_state_dir(settings: Settings) -> Path:
    """Where each target's decision state (window, calibration, ledger) is kept."""
    return settings.state_dir / "targets"


def history_step(settings: Settings, target: TargetConfig, world: SimulatedWorld | None) -> float:
    """The forecaster's grid step: the trace's own for a simulator, else a minute (or the
    CloudWatch period when coarser, since finer steps would only repeat its points)."""
    if world is not None:
        return world.trace.step_s
    query = target.query
    if isinstance(query, CloudWatchQuery):
        return max(DEFAULT_STEP_S, query.period)
    return DEFAULT_STEP_S


class TargetFactory:
    """Builds targets from settings; ``wall_clock`` is injectable for tests of the simulator."""

    def __init__(self, shared: Shared, *, wall_clock: Clock = time.monotonic) -> None:
        self.shared = shared
        self.wall_clock = wall_clock

    async def build(self, settings: Settings, index: int) -> TargetRuntime:
        """The runtime for ``settings.targets[index]``; ``ConfigError`` if it cannot be built."""
        target = settings.targets[index]
        where = f"targets[{index}]"
        # None for a kind that reads no demand (its spec is demand_free).
        source_config = settings.sources.get(target.source)
        world = (
            self._world(source_config, target)
            if isinstance(source_config, SimulatorSourceConfig)
            else None
        )
        # The simulator's accelerated clock, or the process's step-free one (runtime.clock).
        clock: Clock = world.now if world is not None else self.shared.clock
        # Closed in order when the target goes: its adapters first, then its hold on the
        # shared clients under them.
        closers: list[Closer] = []
        try:
            source: MetricSource[Any] = (
                NoDemandSource()
                if spec_of(target.kind).demand_free
                else await self._source(settings, source_config, world, where, closers)
            )
            closers.insert(0, source.close)
            query: MetricQuery[Any] = MetricQuery(target.name, query_spec(target))
            actuator, events = await self._actuator(settings, target, world, where, closers)
            closers.insert(1, actuator.close)
        except BaseException:
            for closer in closers:
                await closer()
            raise
        step = history_step(settings, target, world)
        interval = target.interval or settings.interval
        forecaster = TargetForecaster(
            forecast_settings(
                target, settings.training, step, interval_s=tick_delay(settings, target)
            )
        )
        shared = self.shared
        node_link = self._node_link(settings, target, step, tick_delay(settings, target))
        companions = (
            [(target.name + NODE_MODEL_SUFFIX, node_link.forecaster)]
            if node_link is not None
            else []
        )
        reconciler = Reconciler(
            target,
            source=source,
            query=query,
            actuator=actuator,
            forecaster=forecaster,
            audit=shared.audit,
            telemetry=shared.telemetry,
            health=shared.health,
            clock=clock,
            interval_s=interval,
            call_timeout_s=CALL_TIMEOUT_S,
            # The simulator's reads cost nothing and its clock runs fast: it reads every tick.
            size_read_max_age_s=0.0 if world is not None else settings.size_read_max_age,
            leadership=shared.leadership,
            events=events,
            node_link=node_link,
            # Any node target may be linked from a pod target; unlinked ones find nothing.
            layers=shared.layers if target.kind in NODE_KINDS else None,
            metric_board=shared.metrics if target.metrics or target.metric_of else None,
            # A random phase, so targets started together do not all tick in the same instant.
            phase_s=random.uniform(0.0, interval),
            state_store=DecisionStateStore(decision_state_dir(settings)),
        )
        trainer = ModelTrainer(
            target.name,
            source=source,
            query=query,
            forecaster=forecaster,
            training=settings.training,
            model_dir=settings.state_dir / "models",
            telemetry=shared.telemetry,
            health=shared.health,
            fit_slot=shared.fit_slot,
            history_slot=shared.history_slot,
            clock=clock,
            companions=companions,
        )
        return TargetRuntime(
            name=target.name,
            fingerprint=fingerprint(settings, target),
            reconciler=reconciler,
            trainer=trainer,
            closers=closers,
        )

    def _node_link(
        self, settings: Settings, target: TargetConfig, step: float, delay_s: float
    ) -> NodeLink | None:
        """For a pod target with a ``node_group`` link: a second forecaster of its demand
        over the node plus pod lead time (``node_layer_lead``), and the board its
        plans are posted on."""
        node_target = _linked_node_target(settings, target)
        if node_target is None:
            return None
        assert isinstance(target, KubernetesWorkloadTarget) and target.node_group is not None
        node_lead = target.model_copy(update={"lead_time": node_layer_lead(target, node_target)})
        node_forecast = forecast_settings(
            node_lead,
            settings.training,
            step,
            interval_s=delay_s,
        )
        return NodeLink(
            pod_target=target,
            node_target=node_target,
            shape=node_shape(target.node_group),
            forecaster=TargetForecaster(node_forecast),
            board=self.shared.layers,
            tracker=ConformalTracker(conformal_settings(node_forecast)),
        )

    # -- sources --------------------------------------------------------------------------

    async def _source(
        self,
        settings: Settings,
        config: Any,
        world: SimulatedWorld | None,
        where: str,
        closers: list[Closer],
    ) -> MetricSource[Any]:
        """The target's source; a release of any shared client it uses goes on ``closers``."""
        if world is not None:
            return SimulatorSource(world)
        if isinstance(config, PrometheusSourceConfig):
            # Keyed by URL only: headers and timeouts go with each request, not the session.
            session, release = await self.shared.clients.acquire(
                ("prometheus", config.url), _prometheus_session, _close_session
            )
            closers.append(release)
            return PrometheusSource.from_config(config, session=session)
        if isinstance(config, CloudWatchSourceConfig):
            # Imported by the targets that read CloudWatch only (see ``aws``).
            from daemon.sources.cloudwatch import CloudWatchSource

            region = aws_region(config.region or settings.aws.region, f"{where}.source")
            return CloudWatchSource(
                region,
                endpoint_url=config.endpoint_url or settings.aws.endpoint_url,
                profile=config.profile or settings.aws.profile,
            )
        raise ConfigError(f"{where}.source", f"unsupported source {config!r}")

    def _world(self, config: SimulatorSourceConfig, target: TargetConfig) -> SimulatedWorld:
        trace = simulator_trace(config)
        span = float(trace.times[-1] - trace.times[0])
        return SimulatedWorld(
            trace,
            unit_capacity=target.unit_capacity,
            lead_s=target.lead_time,
            speedup=config.speedup,
            # A week of history to train on at once when the trace has it; else half of it.
            start_offset_s=min(WEEK_S, span / 2),
            wall_clock=self.wall_clock,
        )

    # -- actuators ------------------------------------------------------------------------

    async def _actuator(
        self,
        settings: Settings,
        target: TargetConfig,
        world: SimulatedWorld | None,
        where: str,
        closers: list[Closer],
    ) -> tuple[Actuator, ScaleEvents | None]:
        """The target's actuator as its kind builds it (``daemon.kinds``), and where its
        writes are reported as Events; a release of any shared client goes on ``closers``."""
        context = _BuildContext(self.shared, settings, world, where, closers)
        return await spec_of(target.kind).build(target, context)


@dataclass(slots=True)
class _BuildContext:
    """What a kind's ``build`` may use: the shared clients, AWS access, the simulated world."""

    shared: Shared
    settings: Settings
    world: SimulatedWorld | None
    where: str
    closers: list[Closer]

    async def kube_api(self) -> client.ApiClient:
        kubeconfig, in_cluster = kube_client_config(self.settings)
        kube = self.settings.kubernetes

        async def open_api() -> client.ApiClient:
            api = await kube_api_client(kubeconfig, in_cluster)
            # One token bucket for the client every target shares (client-go's QPS/burst).
            throttle_for(api, qps=kube.qps, burst=kube.burst)
            return api

        api, release = await self.shared.clients.acquire(
            ("kubernetes", kubeconfig, in_cluster, kube.qps, kube.burst),
            open_api,
            _close_api_client,
        )
        self.closers.append(release)
        return api

    def aws(self) -> AwsAccess:
        # Imported here, by the targets that use AWS: a Kubernetes-only daemon does not carry
        # the AWS SDK (7 MB resident, 0.2 s of start-up).
        import aioboto3

        aws = self.settings.aws
        session = aioboto3.Session(profile_name=aws.profile) if aws.profile else None
        region = aws_region(aws.region, "aws.region")
        return AwsAccess(region=region, endpoint_url=aws.endpoint_url, session=session)


async def open_kube_client(settings: Settings) -> client.ApiClient:
    """A new Kubernetes client as ``settings.kubernetes`` says; the caller closes it.

    ``PermanentActuatorError`` if no configuration can be loaded.
    """
    return await kube_api_client(*kube_client_config(settings))


def kube_client_config(settings: Settings) -> tuple[str | None, bool]:
    """(kubeconfig path or None, in-cluster) as ``settings.kubernetes`` resolves here."""
    kube = settings.kubernetes
    in_cluster = (
        "KUBERNETES_SERVICE_HOST" in os.environ if kube.in_cluster == "auto" else kube.in_cluster
    )
    kubeconfig = str(kube.kubeconfig) if kube.kubeconfig is not None else None
    return kubeconfig, in_cluster


async def _prometheus_session() -> aiohttp.ClientSession:
    # Opened inside the running loop (aiohttp binds a session to it).
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=PROMETHEUS_CONNECTIONS))


async def _close_session(session: aiohttp.ClientSession) -> None:
    await session.close()


async def _close_api_client(api: client.ApiClient) -> None:
    await api.close()


def _linked_node_target(settings: Settings, target: TargetConfig) -> TargetConfig | None:
    link = target.node_group if isinstance(target, KubernetesWorkloadTarget) else None
    # Settings validation guarantees the name exists and is a node kind.
    return settings.target(link.target) if link is not None else None


def aws_region(region: str | None, path: str) -> str:
    """The region configured, else from the environment; ``ConfigError`` at ``path`` if none."""
    found = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not found:
        raise ConfigError(path, "no AWS region: set aws.region or AWS_REGION")
    return found


def query_spec(target: TargetConfig) -> Any:
    """The query in its source's own terms: PromQL text, or a CloudWatch metric spec."""
    query = target.query
    if not isinstance(query, CloudWatchQuery):
        return query  # PromQL text, or None for a simulator source
    period = int(query.period)

    def metric(fields: CloudWatchQuery | CloudWatchInput) -> CloudWatchMetric:
        assert fields.namespace is not None and fields.metric_name is not None  # settings check
        return CloudWatchMetric(
            namespace=fields.namespace,
            metric_name=fields.metric_name,
            dimensions=tuple(sorted(fields.dimensions.items())),
            stat=fields.statistic,
            period_s=period,
        )

    if query.expression is not None:
        # Inputs are metrics, or expressions over other inputs (the settings checked the ids).
        inputs = tuple(
            (item.id, item.expression if item.expression is not None else metric(item))
            for item in query.inputs
        )
        return CloudWatchExpression(query.expression, inputs=inputs, period_s=period)
    return metric(query)


def simulator_trace(config: SimulatorSourceConfig) -> Trace:
    """The trace a simulator source replays: its file (rebased to ``start``) or a generated one."""
    start = config.start.timestamp() if isinstance(config.start, datetime) else None
    if config.trace is not None:
        trace = load_trace(Path(config.trace))
        return trace if start is None else rebase_trace(trace, start)
    assert config.generate is not None  # settings check: exactly one of trace or generate
    generate = config.generate
    first = start if start is not None else math.floor(time.time() / generate.step) * generate.step
    return generate_trace(
        TraceShape(days=generate.days, step_s=generate.step, seed=generate.seed, start=first)
    )
