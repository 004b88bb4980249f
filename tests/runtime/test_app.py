"""``elasticd run`` as a real process (signals, reloads, sd_notify, saved models), and the
composition root in-process (what ``TargetFactory`` builds for each ``act_via``).

The process tests use the simulator pair, so the daemon runs end to end (history, training,
ticks, writes, audit) with no server to start; its JSON log lines are what the tests read.
The in-process tests replay a daily trace on a simulator source whose wall clock the test
steps, against the fake Kubernetes API (in-process) and moto.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from daemon.audit import AuditLog
from daemon.errors import ConfigError
from daemon.runtime.app import Shared, TargetFactory
from daemon.runtime.target import TargetRuntime
from daemon.settings import Settings
from daemon.telemetry import HealthState, Telemetry
from tests.e2e.daemon_process import DaemonProcess
from tests.support.fake_kube import FakeKube, FakeKubeProcess, write_kubeconfig


def replay_start(hour_utc: int = 8) -> str:
    """Where a generated simulator trace starts so that its replay, a week into it, begins
    at ``hour_utc`` on the next such day: ahead of the wall clock, as a replay started now
    would be. Without it a generated trace starts now, so the demand a test saw depended on
    the hour it ran (at some hours a daemon sat at its minimum and never wrote)."""
    now = datetime.now(UTC)
    begins = now.replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    if begins <= now:
        begins += timedelta(days=1)
    return (begins - timedelta(days=7)).isoformat()


def simulator_config(state_dir: Path, **target: Any) -> dict[str, Any]:
    return {
        "interval": "0.5s",
        "state_dir": str(state_dir),
        "log_format": "json",
        "telemetry": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "training": {"cadence": "1h", "history_window": "3d"},
        "sources": {
            "sim": {
                "type": "simulator",
                "generate": {"days": 8, "step": "5m", "seed": 3},
                "speedup": 600,
                # The morning rise: the same demand at whatever hour the tests run.
                "start": replay_start(),
            }
        },
        "targets": [
            {
                "name": "checkout",
                "kind": "simulator",
                "source": "sim",
                "unit_capacity": 50,
                "lead_time": "2m",
                "min_units": 2,
                "max_units": 80,
                "max_demand_age": "30m",
                "mode": "active",
            }
            | target
        ],
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def audit_lines(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "decisions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class NotifySocket:
    """A NOTIFY_SOCKET as systemd binds it, read all along: the kernel queues only about ten
    datagrams, and the daemon drops a notification rather than block on a full queue."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.05)
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> list[str]:
        self._done.set()
        self._reader.join(timeout=5)
        self._sock.close()
        return self.messages


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def test_sigterm_exits_zero_within_ten_seconds_with_sd_notify(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "elasticd.yaml", simulator_config(state))
    # WatchdogSec=0.2s: systemd would expect a WATCHDOG=1 at least every 0.2 s.
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"}
    daemon = DaemonProcess(config, env=env)
    try:
        ready = daemon.wait_event("ready", timeout=60)
        assert ready["targets"] == ["checkout"]
        # Readiness needs a model or a first decision, so under load the first fit may still
        # be running at "ready" (the target ticks on its fallback meanwhile): wait for it.
        assert daemon.wait_event("trained", timeout=60)["forecaster"] == "model"
        daemon.wait_for(lambda: len(audit_lines(state)) >= 3, what="three decisions")
        url = daemon.events("telemetry")[0]["url"]
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'elasticd_desired_units{target="checkout"}' in metrics
        assert 'elasticd_writes_total{target="checkout"}' in metrics
        code, seconds = daemon.stop(timeout=10)
    finally:
        daemon.kill()
    assert code == 0, daemon.tail()
    assert seconds < 10
    assert daemon.events("stopped")
    messages = notify_socket.close()
    assert "READY=1" in messages
    assert "STOPPING=1" in messages
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    assert messages.count("WATCHDOG=1") >= 3
    # The trained model was saved under state_dir for the next start.
    assert (state / "models" / "checkout.json").exists()
    assert any(line["written"] for line in audit_lines(state))


def test_sighup_with_a_bad_config_keeps_the_running_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = tmp_path / "elasticd.yaml"
    good = simulator_config(state)
    write_config(path, good)
    daemon = DaemonProcess(path)
    try:
        daemon.wait_event("ready", timeout=60)

        bad = simulator_config(state, max_units=-1)
        write_config(path, bad)
        daemon.signal(signal.SIGHUP)
        failed = daemon.wait_event("reload_failed")
        assert failed["path"] == "targets[0].max_units"
        assert failed["level"] == "error"
        # Still running the old configuration: ticks keep coming, still in active mode.
        seen = len(audit_lines(state))
        daemon.wait_for(lambda: len(audit_lines(state)) >= seen + 3, what="ticks after reload")
        assert audit_lines(state)[-1]["inputs"]["mode"] == "active"
        assert daemon.process.poll() is None

        # A valid change replaces the changed target only.
        write_config(path, simulator_config(state, mode="forecast-only"))
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_event("reloaded")
        assert reloaded["restarted"] == ["checkout"]
        daemon.wait_for(
            lambda: audit_lines(state)[-1]["inputs"]["mode"] == "forecast-only",
            what="a forecast-only decision",
        )
        code, seconds = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert seconds < 10


def test_saved_model_is_reloaded_and_a_refused_one_retrained(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = tmp_path / "elasticd.yaml"
    write_config(path, simulator_config(state))
    first = DaemonProcess(path)
    try:
        first.wait_event("trained", timeout=60)
        assert first.stop()[0] == 0
    finally:
        first.kill()

    keep = simulator_config(state)
    keep["training"]["retrain_on_start"] = False
    write_config(path, keep)
    second = DaemonProcess(path)
    try:
        second.wait_event("ready", timeout=60)
        assert second.events("model_loaded")
        assert not second.events("trained")
        assert second.stop()[0] == 0
    finally:
        second.kill()

    # A model made for another lead time does not match this target: refused, retrained.
    write_config(path, keep | {"targets": [keep["targets"][0] | {"lead_time": "20m"}]})
    third = DaemonProcess(path)
    try:
        refused = third.wait_event("model_refused", timeout=60)
        assert "lead_steps" in refused["message"]
        third.wait_event("trained")
        assert third.stop()[0] == 0
    finally:
        third.kill()


def test_an_invalid_config_at_start_exits_with_its_yaml_path(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "elasticd.yaml", simulator_config(tmp_path / "state", lead_time="soon")
    )
    daemon = DaemonProcess(path)
    began = time.monotonic()
    try:
        code = daemon.process.wait(timeout=30)
    finally:
        daemon.kill()
    assert code == 78
    assert time.monotonic() - began < 30
    error = daemon.events("config_error")[0]
    assert error["path"] == "targets[0].lead_time"


def test_sigterm_lets_an_in_flight_write_finish(tmp_path: Path) -> None:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
        "spec: {replicas: 1}\n",
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    try:
        scale_path = "/apis/apps/v1/namespaces/shop/deployments/web/scale"
        # The first write is held for 3 s by the API server: SIGTERM arrives meanwhile.
        fake.inject_fault(scale_path, None, method="PATCH", delay=3.0)
        state = tmp_path / "state"
        config = simulator_config(state)
        config["kubernetes"] = {
            "kubeconfig": str(write_kubeconfig(tmp_path / "kubeconfig", fake.url)),
            "in_cluster": False,
        }
        config["targets"] = [
            config["targets"][0]
            | {"name": "web", "kind": "deployment", "namespace": "shop", "workload": "web"}
        ]
        daemon = DaemonProcess(write_config(tmp_path / "elasticd.yaml", config))
        try:
            # Ready once the source answered, which is just before the first (held) write.
            daemon.wait_event("ready", timeout=60)
            assert not fake.writes()
            code, seconds = daemon.stop(timeout=10)
        finally:
            daemon.kill()
        writes = fake.writes()
    finally:
        fake.stop()
    assert code == 0, daemon.tail()
    assert 1.5 < seconds < 10  # it waited for the write, and no longer than the grace
    # The held write finished, and its Event followed it before the exit.
    assert [(w["verb"], w["status"]) for w in writes] == [("PATCH", 200), ("POST", 201)]
    assert writes[1]["body"]["involvedObject"]["name"] == "web"
    decision = audit_lines(state)[-1]
    assert decision["written"] and decision["desired"] == writes[0]["body"]["spec"]["replicas"]


# -- the composition root in-process ------------------------------------------------------------

# The daily trace: 2026-01-01 00:00 UTC onwards, one-minute steps, demand 150 with a ten-minute
# ramp to 550 from 12:00, two hours high, and a ramp down, every day. The world starts a week
# in, at midnight (a week of history is what a simulator world offers at start).
TRACE_START = 1_767_225_600.0
TRACE_STEP = 60.0
TRACE_DAYS = 15
BASE, PEAK = 150.0, 550.0
RISE_S, HIGH_S, RAMP_S = 12 * 3600.0, 2 * 3600.0, 600.0
SPEEDUP = 60.0  # one wall second is one simulated minute
DAY_7 = TRACE_START + 7 * 86_400.0
HPA_PATH = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/web-hpa"
WEB_SCALE_PATH = "/apis/apps/v1/namespaces/shop/deployments/web/scale"


def daily_demand(t: float) -> float:
    into_day = (t - TRACE_START) % 86_400.0
    up = min(max((into_day - RISE_S) / RAMP_S, 0.0), 1.0)
    down = min(max((into_day - RISE_S - HIGH_S) / RAMP_S, 0.0), 1.0)
    return BASE + (PEAK - BASE) * (up - down)


def write_daily_trace(path: Path) -> Path:
    steps = int(TRACE_DAYS * 86_400 / TRACE_STEP)
    rows = ["timestamp,value"]
    for i in range(steps):
        t = TRACE_START + i * TRACE_STEP
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(f"{stamp},{daily_demand(t):g}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


class WallClock:
    """The simulator's wall clock, stepped by the test: no sleeping, no timing luck."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance_to(self, simulated: float) -> None:
        self.now = (simulated - DAY_7) / SPEEDUP


class FactoryHarness:
    """Builds targets with the real ``TargetFactory`` and ticks them by hand."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.trace = write_daily_trace(tmp_path / "trace.csv")
        self.audit_path = tmp_path / "decisions.jsonl"
        self.audit = AuditLog(self.audit_path)
        self.registry = CollectorRegistry()
        self.shared = Shared(
            self.audit, Telemetry(self.registry), HealthState(), asyncio.Semaphore(1)
        )
        self.wall = WallClock()
        self.factory = TargetFactory(self.shared, wall_clock=self.wall)
        self.runtimes: list[TargetRuntime] = []

    def settings(self, targets: list[dict[str, Any]], **extra: Any) -> Settings:
        config: dict[str, Any] = {
            "state_dir": str(self.tmp_path / "state"),
            "training": {"history_window": "7d"},
            "sources": {"sim": {"type": "simulator", "trace": str(self.trace), "speedup": SPEEDUP}},
            "targets": targets,
        } | extra
        return Settings.model_validate(config)

    async def build(self, settings: Settings) -> list[TargetRuntime]:
        self.wall.now = 0.0
        built = [await self.factory.build(settings, i) for i in range(len(settings.targets))]
        self.runtimes += built
        return built

    async def start(self, runtimes: list[TargetRuntime], at: float) -> None:
        """History up to ``at`` and a fitted model, as the runtime does before ticking."""
        self.wall.advance_to(at)
        for runtime in runtimes:
            await runtime.trainer.start()

    def audit_lines(self, target: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.audit_path.read_text().splitlines()]
        return [line for line in lines if target is None or line["target"] == target]

    async def close(self) -> None:
        for runtime in self.runtimes:
            await runtime.close()
        await self.shared.clients.close()
        self.audit.close()


@pytest.fixture
async def factory_harness(tmp_path: Path) -> AsyncIterator[FactoryHarness]:
    harness = FactoryHarness(tmp_path)
    yield harness
    await harness.close()


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[FakeKube, dict[str, Any]]]:
    """The in-process fake API and the settings section that points the daemon at it."""
    fake = FakeKube()
    await fake.start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
    yield fake, {"kubeconfig": str(kubeconfig), "in_cluster": False}
    await fake.stop()


def web_deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
    }


def web_hpa(minimum: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web-hpa", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": minimum,
            "maxReplicas": 10,
        },
        "status": {"currentReplicas": minimum, "desiredReplicas": minimum},
    }


def web_target(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "kind": "deployment",
        "namespace": "shop",
        "workload": "web",
        "source": "sim",
        "unit_capacity": 100,
        "lead_time": "10m",
        "min_units": 1,
        "max_units": 10,
        "max_demand_age": "10m",
        "mode": "active",
    } | overrides


async def tick_through(
    harness: FactoryHarness,
    runtimes: list[TargetRuntime],
    start: float,
    end: float,
    after_tick: Any = None,
) -> None:
    """Tick every runtime every simulated minute over [start, end); ``after_tick()`` plays
    the other controllers (an HPA, a node autoscaler) between ticks."""
    at = start
    while at < end:
        harness.wall.advance_to(at)
        for runtime in runtimes:
            await runtime.reconciler.tick()
        if after_tick is not None:
            after_tick()
        at += TRACE_STEP


def crossing(old_units: int, unit: float = 100.0) -> float:
    """The first trace step on day 7 whose demand exceeds what ``old_units`` serve."""
    at = DAY_7 + RISE_S
    while daily_demand(at) <= old_units * unit:
        at += TRACE_STEP
    return at


async def test_hpa_floor_raises_min_replicas_ahead_of_the_rise_and_lowers_it_after(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(2))
    fake.seed(web_hpa(2))
    settings = factory_harness.settings([web_target(act_via="hpa-floor")], kubernetes=kube_settings)
    runtimes = await factory_harness.build(settings)
    assert runtimes[0].reconciler.actuator.describe() == "hpa shop/web-hpa floor"
    await factory_harness.start(runtimes, DAY_7 + 11.5 * 3600)

    def hpa_controller() -> None:
        # The HPA's own loop, reduced to what matters here: it runs the floor it is given.
        floor = fake.get("HorizontalPodAutoscaler", "shop", "web-hpa")["spec"]["minReplicas"]
        fake.update(
            "HorizontalPodAutoscaler", "shop", "web-hpa", {"status": {"currentReplicas": floor}}
        )

    await tick_through(
        factory_harness, runtimes, DAY_7 + 11.5 * 3600, DAY_7 + 15 * 3600, hpa_controller
    )

    patches = fake.writes_to(HPA_PATH, verb="PATCH")
    floors = [w.body["spec"]["minReplicas"] for w in patches]
    lines = [line for line in factory_harness.audit_lines("web") if line["written"]]
    assert len(lines) == len(patches) and floors == [line["desired"] for line in lines]
    first_up = lines[0]
    # Raised a lead time before demand passed what the old floor serves, by the forecast.
    assert first_up["inputs"]["now"] <= crossing(2) - 600
    assert first_up["reason"] == "forecast" and first_up["inputs"]["demand"] <= 200
    assert first_up["desired"] > 2
    assert max(floors) >= PEAK / 100
    # And lowered again once the high period is over (a week-old model may also waver on the
    # ramp itself; that is the forecaster's business, not the floor's).
    after = [line for line in lines if line["inputs"]["now"] >= DAY_7 + RISE_S + HIGH_S]
    assert after and all(line["desired"] < line["current"] for line in after)
    final = fake.get("HorizontalPodAutoscaler", "shop", "web-hpa")["spec"]["minReplicas"]
    assert final == floors[-1] < max(floors)
    # Every floor write is an Event on the HPA, for `kubectl describe hpa`.
    events = scale_events(fake)
    assert len(events) == len(patches)
    assert {e["involvedObject"]["kind"] for e in events} == {"HorizontalPodAutoscaler"}
    assert {e["involvedObject"]["name"] for e in events} == {"web-hpa"}
    assert events[0]["reason"] == "ScaledAheadFloor"
    assert events[0]["message"].startswith(f"floor 2 -> {floors[0]}; forecast ")
    # The HPA sizes the Deployment: its scale subresource was never written.
    assert fake.writes_to(WEB_SCALE_PATH) == []


def scale_events(fake: FakeKube) -> list[dict[str, Any]]:
    posts = fake.writes_to("/api/v1/namespaces/shop/events", verb="POST")
    assert all(w.status == 201 for w in posts)
    return [w.body for w in posts]


async def test_a_replica_write_creates_an_event_on_the_workload(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(1))
    settings = factory_harness.settings([web_target()], kubernetes=kube_settings)
    runtimes = await factory_harness.build(settings)
    await factory_harness.start(runtimes, DAY_7 + 3600)

    await tick_through(factory_harness, runtimes, DAY_7 + 3600, DAY_7 + 3660)

    (patch,) = fake.writes_to(WEB_SCALE_PATH, verb="PATCH")
    replicas = patch.body["spec"]["replicas"]
    (event,) = scale_events(fake)
    assert event["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "shop",
    }
    assert event["reason"] == "ScaledAhead" and event["type"] == "Normal"
    assert event["message"].startswith(f"replicas 1 -> {replicas}; forecast ")
    assert event["message"].endswith(f"reason {factory_harness.audit_lines('web')[0]['reason']}")
    # The Event is stored: `kubectl describe deployment web` would list it.
    stored = fake.get("Event", "shop", event["metadata"]["name"])
    assert stored["reason"] == "ScaledAhead"


async def test_replicas_on_a_workload_an_hpa_owns_is_refused(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(2))
    fake.seed(web_hpa(2))
    settings = factory_harness.settings([web_target()], kubernetes=kube_settings)

    with pytest.raises(ConfigError) as refused:
        await factory_harness.build(settings)

    assert refused.value.path == "targets[0].act_via"
    assert refused.value.reason == (
        "Deployment shop/web is owned by HPA web-hpa; use act_via: hpa-floor"
    )
    assert fake.writes == []


async def test_hpa_floor_without_an_hpa_is_refused(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(2))
    settings = factory_harness.settings([web_target(act_via="hpa-floor")], kubernetes=kube_settings)

    with pytest.raises(ConfigError) as refused:
        await factory_harness.build(settings)

    assert refused.value.path == "targets[0].act_via"
    assert "no HPA targets Deployment shop/web" in refused.value.reason


async def test_replicas_goes_ahead_when_hpas_cannot_be_listed(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    # An older Role without list on HPAs: the check is skipped with a warning, not fatal.
    fake, kube_settings = kube
    fake.seed(web_deployment(2))
    fake.inject_fault("/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers", 403)
    settings = factory_harness.settings([web_target()], kubernetes=kube_settings)

    (runtime,) = await factory_harness.build(settings)

    assert runtime.reconciler.actuator.describe().startswith("deployment shop/web")


async def test_group_floors_are_built_for_asg_and_nodegroup_targets(
    factory_harness: FactoryHarness, moto_endpoint: str
) -> None:
    common = {"source": "sim", "unit_capacity": 100, "lead_time": "5m", "max_units": 10}
    settings = factory_harness.settings(
        [
            {"name": "asg", "kind": "asg", "group_name": "web-asg", "act_via": "asg-floor"}
            | common,
            {
                "name": "ng",
                "kind": "eks-nodegroup",
                "cluster": "prod",
                "nodegroup": "workers",
                "act_via": "nodegroup-floor",
            }
            | common,
            {"name": "ng-size", "kind": "eks-nodegroup", "cluster": "prod", "nodegroup": "workers"}
            | common,
        ],
        aws={"region": "us-east-1", "endpoint_url": moto_endpoint},
    )

    runtimes = await factory_harness.build(settings)

    assert [r.reconciler.actuator.describe() for r in runtimes] == [
        "auto scaling group web-asg floor",
        "eks nodegroup prod/workers floor",
        runtimes[2].reconciler.actuator.describe(),
    ]
    assert "floor" not in runtimes[2].reconciler.actuator.describe()


# -- shared clients (issue 3: a thousand targets, one connection pool per endpoint) -----------


async def test_kubernetes_targets_share_one_client_until_the_last_one_closes(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(1))
    settings = factory_harness.settings(
        [web_target(), web_target(name="web-2"), web_target(name="web-3")],
        kubernetes=kube_settings,
    )
    pool = factory_harness.shared.clients

    first, second, third = await factory_harness.build(settings)

    assert len(pool) == 1
    # Closing a target (as a reload replacing it does) leaves the others' client open.
    await first.close()
    await second.close()
    assert len(pool) == 1
    await factory_harness.start([third], DAY_7 + 3600)
    await tick_through(factory_harness, [third], DAY_7 + 3600, DAY_7 + 3660)
    assert fake.writes_to(WEB_SCALE_PATH, verb="PATCH"), "the last target still writes"
    await third.close()
    assert len(pool) == 0


async def test_a_refused_target_releases_the_shared_client(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(2))
    fake.seed(web_hpa(2))
    settings = factory_harness.settings([web_target()], kubernetes=kube_settings)

    with pytest.raises(ConfigError):
        await factory_harness.build(settings)

    assert len(factory_harness.shared.clients) == 0


class CountingPrometheus:
    """A Prometheus query endpoint on 127.0.0.1 that records each request's client port."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def query(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.ports.append(int(peer[1]) if peer else -1)
        form = await request.post()
        stamp = float(str(form["time"]))
        body = {"resultType": "vector", "result": [{"metric": {}, "value": [stamp, "150"]}]}
        return web.json_response({"status": "success", "data": body})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/query", self.query)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_prometheus_targets_share_one_session_and_its_connections(
    factory_harness: FactoryHarness, kube: tuple[FakeKube, dict[str, Any]]
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(3))
    prometheus = CountingPrometheus()
    await prometheus.start()
    try:
        settings = factory_harness.settings(
            [web_target(name=f"web-{i}", source="prom", query="sum(up)") for i in range(5)],
            kubernetes=kube_settings,
            sources={"prom": {"type": "prometheus", "url": prometheus.url}},
        )
        runtimes = await factory_harness.build(settings)
        for runtime in runtimes:
            report = await runtime.reconciler.tick()
            assert report.demand == 150.0

        # One session (and one Kubernetes client) for five targets; ticks one after another
        # reuse its one keep-alive connection instead of each target opening its own.
        assert len(factory_harness.shared.clients) == 2
        assert len(prometheus.ports) == 5
        assert len(set(prometheus.ports)) == 1
        for runtime in runtimes:
            await runtime.close()
        assert len(factory_harness.shared.clients) == 0
    finally:
        await prometheus.stop()
