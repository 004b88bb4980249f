"""The reconciler against a real Kubernetes client and the in-repo fake API server.

Demand comes from a scripted source (the ``MetricSource`` Protocol in a few lines), so each
test says exactly which sample, gap or error a tick sees; the simulator pair covers the
accelerated clock.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from daemon.actuators.kubernetes import KubernetesScaleActuator, kube_api_client
from daemon.actuators.retry import RetryPolicy
from daemon.actuators.simulator import SimulatorActuator
from daemon.audit import AuditLog
from daemon.backtest.trace import trace_from_arrays
from daemon.errors import PermanentSourceError, TransientSourceError
from daemon.forecasting import TargetForecaster
from daemon.ratelimit_client import throttle_for
from daemon.runtime.planning import forecast_settings
from daemon.runtime.reconciler import Reconciler
from daemon.settings import KubernetesWorkloadTarget, SimulatorTarget, TrainingConfig
from daemon.simulation import SimulatedWorld
from daemon.sources.base import MetricQuery, Sample, Series
from daemon.sources.policy import NegativePolicy
from daemon.sources.simulator import SimulatorSource
from daemon.telemetry import HealthState, Telemetry
from tests.support.fake_kube import FakeKube, write_kubeconfig

NOW = 1_767_571_200.0 + 10 * 86_400.0
SCALE_PATH = "/apis/apps/v1/namespaces/shop/deployments/web/scale"


class ScriptedSource:
    """Answers ``latest`` from a script: a value, NaN, ``None`` (no data) or an error."""

    def __init__(self, *answers: float | Exception | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def latest(self, query: MetricQuery[Any], now: float) -> Sample | None:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return None if answer is None else Sample(now, answer)

    async def history(
        self, query: MetricQuery[Any], start: float, end: float, step: float
    ) -> Series:
        return Series.empty()

    async def close(self) -> None:
        return None


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def deployment(replicas: int) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
    }


def web_target(**overrides: Any) -> KubernetesWorkloadTarget:
    fields: dict[str, Any] = {
        "name": "web",
        "kind": "deployment",
        "namespace": "shop",
        "workload": "web",
        "source": "prom",
        "query": "sum(rate(requests_total[1m]))",
        "unit_capacity": 100,
        "lead_time": "5m",
        "min_units": 1,
        "max_units": 20,
        "mode": "active",
    }
    return KubernetesWorkloadTarget.model_validate(fields | overrides)


def flat_history(forecaster: TargetForecaster, level: float, hours: float = 6.0) -> None:
    """Hours of constant demand before NOW, so the fallback forecaster knows the level."""
    step = forecaster.settings.step_s
    times = np.arange(NOW - hours * 3600, NOW, step)
    forecaster.load_history(times, np.full(times.size, level))


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    fake = FakeKube()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def actuator(fake_kube: FakeKube, tmp_path: Path) -> AsyncIterator[KubernetesScaleActuator]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)
    api = await kube_api_client(str(kubeconfig), in_cluster=False)
    # As the composition root does: the shared client's rate limit, generous here, where the
    # fake clock makes a minute of ticks take milliseconds.
    throttle_for(api, qps=1000.0, burst=1000)
    yield KubernetesScaleActuator(
        api,
        "Deployment",
        "shop",
        "web",
        retry=RetryPolicy(attempts=1),
        close_client=True,
    )
    await api.close()


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.registry = CollectorRegistry()
        self.telemetry = Telemetry(self.registry)
        self.health = HealthState()
        self.audit_path = tmp_path / "decisions.jsonl"
        self.audit = AuditLog(self.audit_path)
        self.clock = FakeClock()

    def reconciler(
        self,
        target: KubernetesWorkloadTarget | SimulatorTarget,
        source: Any,
        actuator: Any,
        *,
        level: float | None = None,
        clock: Any = None,
        leadership: Any = None,
        state_store: Any = None,
        events: Any = None,
    ) -> Reconciler:
        forecaster = TargetForecaster(forecast_settings(target, TrainingConfig(), 60.0))
        if level is not None:
            flat_history(forecaster, level)
        return Reconciler(
            target,
            source=source,
            query=MetricQuery(target.name, target.query),
            actuator=actuator,
            forecaster=forecaster,
            audit=self.audit,
            telemetry=self.telemetry,
            health=self.health,
            clock=clock or self.clock,
            interval_s=1.0,
            call_timeout_s=2.0,
            leadership=leadership,
            state_store=state_store,
            events=events,
        )

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def counter(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, {"target": "web", **labels}) or 0.0


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_the_second_tick_comes_one_phase_after_the_first(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    # A random phase per target (the factory's) spreads targets that started together.
    fake_kube.seed(deployment(2))
    reconciler = harness.reconciler(web_target(), ScriptedSource(900.0), actuator, level=900.0)
    reconciler.interval_s, reconciler.phase_s = 30.0, 0.05
    stopping = asyncio.Event()
    running = asyncio.create_task(reconciler.run(stopping))

    await asyncio.sleep(1.0)
    stopping.set()
    await running

    # The first tick at once, the second after the phase, the third not before 30 s more.
    assert reconciler.ticks == 2


async def test_forecast_only_decides_and_audits_but_never_writes(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    reconciler = harness.reconciler(
        web_target(mode="forecast-only"), ScriptedSource(900.0), actuator, level=900.0
    )

    for _ in range(3):
        report = await reconciler.tick()
        harness.clock.now += 15

    assert report.result is not None
    assert report.result.decision.desired >= 9  # 900/s at 100 per unit needs 9 or more
    assert report.scaled is None
    assert fake_kube.writes == []
    assert fake_kube.get("Deployment", "shop", "web")["spec"]["replicas"] == 2
    lines = harness.audit_lines()
    assert len(lines) == 3
    assert all(not line["written"] and line["desired"] >= 9 for line in lines)
    assert lines[0]["inputs"]["mode"] == "forecast-only"
    assert harness.counter("elasticd_writes_total") == 0


async def test_active_writes_once_and_not_again_when_unchanged(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    reconciler = harness.reconciler(web_target(), ScriptedSource(500.0), actuator, level=500.0)

    first = await reconciler.tick()
    harness.clock.now += 15
    second = await reconciler.tick()

    assert first.scaled is not None and first.scaled.written
    desired = first.scaled.applied
    assert desired >= 5
    patches = fake_kube.writes_to(SCALE_PATH, verb="PATCH")
    assert [w.body["spec"] for w in patches] == [{"replicas": desired}]
    assert fake_kube.get("Deployment", "shop", "web")["spec"]["replicas"] == desired
    assert second.result is not None and second.result.decision.desired == desired
    assert second.scaled is None  # unchanged: the actuator is not even asked
    assert harness.counter("elasticd_writes_total") == 1
    assert [line["written"] for line in harness.audit_lines()] == [True, False]


@pytest.mark.parametrize(
    "answer", [math.nan, math.inf, -5.0, None], ids=["nan", "inf", "negative", "no-data"]
)
async def test_unusable_demand_never_scales_down(
    harness: Harness,
    fake_kube: FakeKube,
    actuator: KubernetesScaleActuator,
    answer: float | None,
) -> None:
    # The target was sized for a peak; the history says demand is low, so a forecast alone
    # would scale down. Without a usable demand sample it must hold.
    fake_kube.seed(deployment(10))
    target = web_target(scale_down_stabilisation=0, scale_down_limit=None)
    negative_means_missing = answer is not None and answer < 0
    reconciler = harness.reconciler(target, ScriptedSource(answer), actuator, level=100.0)
    if negative_means_missing:
        reconciler.negative = NegativePolicy.MISSING

    for _ in range(3):
        report = await reconciler.tick()
        harness.clock.now += 15

    assert report.demand is None
    assert report.result is not None
    assert report.result.decision.desired == 10
    assert report.result.decision.reason == "hold_missing_metrics"
    assert fake_kube.writes == []


async def test_stale_demand_counts_as_missing(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(10))

    class StaleSource(ScriptedSource):
        async def latest(self, query: MetricQuery[Any], now: float) -> Sample | None:
            return Sample(now - 3600, 50.0)  # an exporter that died an hour ago

    target = web_target(scale_down_stabilisation=0, scale_down_limit=None)
    reconciler = harness.reconciler(target, StaleSource(), actuator, level=100.0)

    report = await reconciler.tick()

    assert report.demand_rule == "stale"
    assert report.result is not None and report.result.decision.desired == 10
    assert harness.counter("elasticd_source_errors_total", kind="stale") == 1
    assert fake_kube.writes == []


async def test_transient_source_error_is_counted_and_the_next_tick_recovers(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(3))
    source = ScriptedSource(TransientSourceError("HTTP 503"), 300.0)
    reconciler = harness.reconciler(web_target(), source, actuator, level=300.0)

    failed = await reconciler.tick()
    harness.clock.now += 15
    recovered = await reconciler.tick()

    assert failed.demand is None
    assert failed.result is not None and failed.result.decision.reason == "hold_missing_metrics"
    assert harness.counter("elasticd_source_errors_total", kind="transient") == 1
    assert recovered.demand == 300.0
    assert recovered.result is not None
    assert recovered.result.decision.reason != "hold_missing_metrics"
    assert source.calls == 2


async def test_permanent_errors_write_nothing_and_are_reported_every_tick(
    harness: Harness,
    fake_kube: FakeKube,
    actuator: KubernetesScaleActuator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No Deployment at all: every read is a 404, which no retry fixes.
    source = ScriptedSource(PermanentSourceError("bad_data: parse error"))
    reconciler = harness.reconciler(web_target(), source, actuator, level=300.0)

    for _ in range(2):
        report = await reconciler.tick()

    assert report.result is None
    assert report.error is not None and "404" in report.error
    assert fake_kube.writes == []
    assert harness.counter("elasticd_actuator_errors_total", kind="permanent") == 2
    assert harness.counter("elasticd_source_errors_total", kind="permanent") == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert sum("parse error" in message for message in errors) == 2
    assert sum("404" in message for message in errors) == 2
    assert [line["error"] is not None for line in harness.audit_lines()] == [True, True]


async def test_simulator_targets_tick_on_the_accelerated_clock(harness: Harness) -> None:
    wall = FakeClock(1000.0)
    step = 300.0
    times = NOW - 8 * 86_400 + step * np.arange(int(9 * 86_400 / step), dtype=np.float64)
    world = SimulatedWorld(
        trace_from_arrays(times, np.full(times.size, 400.0)),
        unit_capacity=100.0,
        lead_s=120.0,
        speedup=600.0,
        initial_units=2,
        wall_clock=wall,
    )
    target = SimulatorTarget.model_validate(
        {
            "name": "web",
            "kind": "simulator",
            "source": "sim",
            "unit_capacity": 100,
            "lead_time": "2m",
            "max_units": 20,
            "max_demand_age": "10m",
            "mode": "active",
        }
    )
    reconciler = harness.reconciler(
        target, SimulatorSource(world), SimulatorActuator(world, "web"), clock=world.now
    )

    first = await reconciler.tick()
    wall.now += 1.0  # one wall second: ten simulated minutes
    second = await reconciler.tick()

    # Samples five simulated minutes apart are fresh on the simulated clock (max age 10m),
    # though the wall clock says they are days old.
    assert first.demand == 400.0 and second.demand == 400.0
    assert second.now - first.now == pytest.approx(600.0)
    assert first.scaled is not None and first.scaled.applied >= 4
    ready, pending = world.capacity()
    assert ready + pending == first.scaled.applied


async def test_an_active_override_sets_the_floor_and_is_audited(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    launch = {
        "name": "launch",
        "start": "2026-01-15T00:00:00Z",  # NOW is 2026-01-15 00:00 UTC
        "end": "2026-01-15T02:00:00Z",
        "min_units": 12,
    }
    limit = {"period": "1m", "max_percent": 10}
    target = web_target(overrides=[launch], scale_down_limit=limit)
    reconciler = harness.reconciler(target, ScriptedSource(150.0), actuator, level=150.0)

    during = await reconciler.tick()
    harness.clock.now += 3 * 3600  # the override has ended
    after = await reconciler.tick()

    assert during.result is not None and during.result.decision.desired == 12
    assert during.result.decision.reason == "clamped_min"
    assert harness.audit_lines()[0]["inputs"]["windows"] == ["launch"]
    # Afterwards the floor is gone: back down, at the 10 % a minute rate limit.
    assert after.result is not None and after.result.decision.desired == 10
    patches = fake_kube.writes_to(SCALE_PATH, verb="PATCH")
    assert [w.body["spec"]["replicas"] for w in patches] == [12, 10]
    assert harness.audit_lines()[1]["inputs"]["windows"] == []


@pytest.mark.parametrize(
    ("offset_s", "floor"),
    [(-6 * 60, 1), (-4 * 60, 10), (3599, 10), (3600, 1)],
    ids=["before-wake-up", "woken-a-lead-time-early", "last-second", "ended"],
)
async def test_schedule_floors_reach_the_planner_a_lead_time_early(
    harness: Harness,
    fake_kube: FakeKube,
    actuator: KubernetesScaleActuator,
    offset_s: float,
    floor: int,
) -> None:
    # 07:30 in Berlin is 06:30 UTC in January; NOW is a Thursday at 00:00 UTC; lead 5 min.
    window = {
        "name": "warmup",
        "cron": "30 7 * * 1-5",
        "duration": "1h",
        "timezone": "Europe/Berlin",
        "min_units": 10,
    }
    fake_kube.seed(deployment(1))
    target = web_target(schedules=[window], mode="forecast-only")
    reconciler = harness.reconciler(target, ScriptedSource(50.0), actuator, level=50.0)
    harness.clock.now = NOW + 6.5 * 3600 + offset_s

    report = await reconciler.tick()

    assert report.result is not None
    assert report.result.decision.desired == floor
    windows = harness.audit_lines()[-1]["inputs"]["windows"]
    assert windows == (["warmup"] if floor == 10 else [])
    # The status page shows the bounds in force, the window's, not only the file's.
    bounds = harness.telemetry.status.latest[target.name].bounds
    assert bounds is not None and bounds[0] == floor


class SwitchableLeadership:
    """The ``Leadership`` Protocol with a switch: the election itself is tested against the
    fake API in test_leader.py; here only the reconciler's use of the answer matters."""

    def __init__(self, leader: bool) -> None:
        self.leader = leader
        self.asked = 0
        self._leading = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        self.asked += 1
        return self.leader

    @property
    def leading(self) -> asyncio.Event:
        return self._leading

    @property
    def refusal(self) -> str:
        return "not leader"

    def write_deadline(self) -> float | None:
        return None if self.leader else -math.inf

    async def run(self) -> None:
        return None

    async def release(self) -> None:
        self.leader = False


async def test_a_follower_decides_and_audits_but_never_writes(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    leadership = SwitchableLeadership(leader=False)
    reconciler = harness.reconciler(
        web_target(), ScriptedSource(900.0), actuator, level=900.0, leadership=leadership
    )

    report = await reconciler.tick()
    harness.clock.now += 15
    leadership.leader = True  # the Lease was won: the same change is now written
    second = await reconciler.tick()

    assert report.result is not None and report.result.decision.desired >= 9
    assert report.scaled is None and report.skipped == "not leader"
    assert second.scaled is not None and second.scaled.written and second.skipped is None
    patches = fake_kube.writes_to(SCALE_PATH, verb="PATCH")
    assert [w.body["spec"]["replicas"] for w in patches] == [second.scaled.applied]
    first, written = harness.audit_lines()
    assert first["inputs"]["skipped"] == "not leader" and not first["written"]
    assert first["desired"] >= 9 and first["inputs"]["mode"] == "active"
    assert written["written"] and "skipped" not in written["inputs"]
    # Followers keep reporting, so a dashboard shows what they would do.
    assert harness.registry.get_sample_value("elasticd_desired_units", {"target": "web"}) >= 9


async def test_leadership_is_asked_after_the_reads_right_before_the_write(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    # The capacity read is held by the API server; leadership is lost meanwhile. A check at
    # the start of the tick would still say "leader" and write on a lost Lease.
    fake_kube.seed(deployment(2))
    leadership = SwitchableLeadership(leader=True)
    reconciler = harness.reconciler(
        web_target(), ScriptedSource(900.0), actuator, level=900.0, leadership=leadership
    )
    held = fake_kube.inject_fault(SCALE_PATH, None, method="GET", delay=0.5)

    async def lose_leadership() -> None:
        await held.wait()
        leadership.leader = False

    report, _ = await asyncio.gather(reconciler.tick(), lose_leadership())

    assert report.skipped == "not leader"
    assert fake_kube.writes_to(SCALE_PATH, verb="PATCH") == []
    assert leadership.asked == 1


async def test_forecast_error_is_exported_once_a_forecast_has_resolved(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(5))
    reconciler = harness.reconciler(
        web_target(mode="forecast-only"), ScriptedSource(500.0), actuator, level=500.0
    )
    lead_steps = reconciler.forecaster.spec.lead_steps
    for _ in range(lead_steps + 2):
        await reconciler.tick()
        harness.clock.now += 60
    residual = harness.registry.get_sample_value(
        "elasticd_forecast_log_residual", {"target": "web"}
    )
    # Flat demand after flat history: the resolved forecast was right, neither over nor short.
    assert residual is not None and abs(residual) < 0.05


async def test_a_size_read_is_reused_for_its_max_age_and_a_write_reads_afresh(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    reconciler = harness.reconciler(web_target(), ScriptedSource(500.0), actuator, level=500.0)
    reconciler.size_read_max_age_s = 60.0

    first = await reconciler.tick()  # reads 2, writes
    assert first.scaled is not None and first.scaled.written
    desired = first.scaled.applied
    harness.clock.now += 15
    await reconciler.tick()  # the write emptied the cache: reads the new size
    # Someone else scales the Deployment; the read 15 s ago is still used, and nothing is
    # written from it (the decision equals what that read said).
    fake_kube.update("Deployment", "shop", "web", {"spec": {"replicas": 10}})
    harness.clock.now += 30
    await reconciler.tick()
    harness.clock.now += 30  # 60 s after the last read: stale, read again
    last = await reconciler.tick()

    lines = harness.audit_lines()
    assert [line["current"] for line in lines] == [2, desired, desired, 10]
    assert [line["written"] for line in lines] == [True, False, False, True]
    # Only once the change was read did the plan act on it (back to its own number).
    assert last.scaled is not None and last.scaled.previous == 10
    patches = fake_kube.writes_to(SCALE_PATH, verb="PATCH")
    assert [w.body["spec"]["replicas"] for w in patches] == [desired, desired]
