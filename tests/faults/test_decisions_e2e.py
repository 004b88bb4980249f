"""Fault matrix, issue 9 defects 1, 3 and 4: the real daemon must never act wrongly on its own.

``elasticd run`` (a subprocess) sizes Deployments on the fake Kubernetes API server (a
subprocess too), reading demand from a scripted Prometheus in this process (defects 3 and 4) or
from the simulator source replaying a steady trace at 60x (defect 1, where the calibration must
see a new sample each tick). Time is compressed: ticks every second, a 24 s stabilisation window
where a test sets one.

- Defect 1: writes that do not take effect (PATCH answering 409, 429, 500, 403; a GitOps
  controller resetting the replicas) must not inflate the forecast. Steady demand 100 at 10 a
  unit wants 10 replicas: once writes work again the daemon writes 10, not the 18-49 it wrote
  before; the ticks that were short because of the failed writes are audited ``not_applied``
  and counted; a fight with another writer keeps desired at 10 and is logged, audited and
  counted as an ``external_override``.
- Defect 3: with default settings (no ``scale_down_stabilisation``: 300 s) one 0 sample does
  not scale down, and one -5 sample is an invalid sample (held and counted), not a 0.
- Defect 4: a kill -9 and a restart inside the stabilisation window, then a SIGHUP that edits
  the target, keep the window: nothing scales down until the window that began before the
  kill is over, and then it does (the restored window, not a fresh one). The state file is
  under ``state_dir/targets`` and private.
"""

from __future__ import annotations

import json
import math
import signal
import stat
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from daemon.backtest.synthetic import write_trace_csv
from daemon.backtest.trace import trace_from_arrays
from tests.e2e.daemon_process import DaemonProcess
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig
from tests.support.scripted_prometheus import ScriptedPrometheus

UNIT = 10.0
NAMESPACE = "shop"


def scale_path(workload: str) -> str:
    return f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{workload}/scale"


def query_of(workload: str) -> str:
    return f'sum(rate(http_requests_total{{app="{workload}"}}[1m]))'


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def prometheus() -> Iterator[ScriptedPrometheus]:
    fake = ScriptedPrometheus()
    yield fake
    fake.stop()


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Processes a test starts, killed at the end whatever happened."""
    processes: list[Any] = []
    yield processes
    for process in reversed(processes):
        if isinstance(process, DaemonProcess):
            process.kill()
        else:
            process.stop()


def fake_kube(tmp_path: Path, replicas: dict[str, int], started: list[Any]) -> FakeKubeProcess:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        yaml.safe_dump_all(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"replicas": count},
            }
            for name, count in replicas.items()
        ),
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    started.append(fake)
    return fake


def target(workload: str, *, source: str = "prom", **extra: Any) -> dict[str, Any]:
    """An active Deployment target at 10 a unit; ``extra`` overrides (defaults otherwise)."""
    query = {"query": query_of(workload)} if source == "prom" else {}
    return {
        "name": workload,
        "kind": "deployment",
        "namespace": NAMESPACE,
        "workload": workload,
        "source": source,
        **query,
        "unit_capacity": UNIT,
        "lead_time": "30s",
        "min_units": 1,
        "max_units": 100,
        "mode": "active",
    } | extra


def write_config(
    tmp_path: Path, prometheus: ScriptedPrometheus, fake: FakeKubeProcess, targets: list[Any]
) -> Path:
    return write_config_with(
        tmp_path, {"type": "prometheus", "url": prometheus.url, "timeout": "5s"}, fake, targets
    )


def write_config_with(
    tmp_path: Path, source: dict[str, Any], fake: FakeKubeProcess, targets: list[Any]
) -> Path:
    """``source`` is the one source, named after its type (``prom``, ``sim``)."""
    name = "prom" if source["type"] == "prometheus" else "sim"
    config = {
        "interval": "1s",
        "state_dir": str(tmp_path / "state"),
        "log_format": "json",
        # Always read the size fresh: the scenarios change it behind the daemon's back.
        "size_read_max_age": 0,
        "telemetry": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "training": {"cadence": "1h", "history_window": "1h"},
        "kubernetes": {
            "kubeconfig": str(write_kubeconfig(tmp_path / "kubeconfig", fake.url)),
            "in_cluster": False,
        },
        "sources": {name: source},
        "targets": targets,
    }
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start(config: Path, started: list[Any]) -> DaemonProcess:
    daemon = DaemonProcess(config)
    started.append(daemon)
    return daemon


# --- what the daemon did -------------------------------------------------------------------


def patches(fake: FakeKubeProcess, workload: str) -> list[dict[str, Any]]:
    """PATCHes of the workload's replicas, in order, each with ``replicas`` and ``status``."""
    return [
        w | {"replicas": w["body"]["spec"]["replicas"]}
        for w in fake.writes()
        if w["path"] == scale_path(workload) and w["verb"] == "PATCH"
    ]


def landed(fake: FakeKubeProcess, workload: str) -> list[int]:
    return [p["replicas"] for p in patches(fake, workload) if p["status"] == 200]


def audit(tmp_path: Path, workload: str) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "decisions.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["target"] == workload]


def scrape(daemon: DaemonProcess) -> str:
    url = daemon.wait_event("telemetry", timeout=60)["url"]
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of ``name`` with exactly ``labels`` (0 when absent)."""
    # prometheus_client writes labels sorted by name.
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- defect 1 ------------------------------------------------------------------------------


def steady_trace(tmp_path: Path, demand: float) -> Path:
    """Two days of ``demand`` a minute up to now, as a simulator source replays it."""
    last = math.floor(time.time() / 60.0) * 60.0
    times = last - 60.0 * np.arange(2 * 1440, dtype=np.float64)[::-1]
    path = tmp_path / "steady.csv"
    write_trace_csv(trace_from_arrays(times, np.full(times.size, demand)), str(path))
    return path


def test_writes_that_do_not_take_effect_do_not_inflate_the_forecast(
    tmp_path: Path, started: list[Any]
) -> None:
    """web: its PATCHes fail (409 x3, 429 + Retry-After 2, 500 and its backoff, 403 x3), then
    work. api: another writer resets it to 3 replicas every half second. Both see steady
    demand 100, which 10 replicas serve; only a plan that learnt from its own shortfall keeps
    asking for 10.

    Demand comes from the simulator source at 60x (a new one-minute sample each second), so
    every tick is a new sample for the calibration, as every minute is at real speed."""
    fake = fake_kube(tmp_path, {"web": 1, "api": 1}, started)
    path = scale_path("web")
    fake.inject_fault(path, 409, method="PATCH", count=3)
    fake.inject_fault(path, 429, method="PATCH", retry_after=2)
    fake.inject_fault(path, 500, method="PATCH")
    fake.inject_fault(path, 403, method="PATCH", count=3)
    source = {"type": "simulator", "trace": str(steady_trace(tmp_path, 100.0)), "speedup": 60}
    targets = [target("web", source="sim"), target("api", source="sim")]
    daemon = start(write_config_with(tmp_path, source, fake, targets), started)

    # The other writer starts once the daemon has sized api itself.
    daemon.wait_for(lambda: landed(fake, "api"), timeout=60, what="api's first write")
    fighting = threading.Event()
    fighting.set()
    resets: list[float] = []

    def fight() -> None:
        while fighting.is_set():
            fake.update("Deployment", NAMESPACE, "api", {"spec": {"replicas": 3}})
            resets.append(time.time())
            time.sleep(0.5)

    fighter = threading.Thread(target=fight, daemon=True)
    fighter.start()
    try:
        daemon.wait_for(lambda: landed(fake, "web"), timeout=60, what="web's write landing")
        # Five more ticks of web with writes working, while the fight goes on.
        after = len(audit(tmp_path, "web")) + 5
        daemon.wait_for(lambda: len(audit(tmp_path, "web")) >= after, timeout=30, what="ticks")
    finally:
        fighting.clear()
        fighter.join(timeout=5)
    metrics = scrape(daemon)
    code, _ = daemon.stop(timeout=10)
    assert code == 0, daemon.tail()

    # web: every fault fired, one PATCH each, and then the healthy size, not an inflated one.
    statuses = [p["status"] for p in patches(fake, "web")]
    assert statuses[:8] == [409] * 3 + [429, 500] + [403] * 3, statuses
    assert landed(fake, "web") and max(landed(fake, "web")) <= 11, landed(fake, "web")
    web = audit(tmp_path, "web")
    assert max(line["desired"] for line in web) <= 11, [line["desired"] for line in web]
    not_applied = [line for line in web if line["inputs"].get("not_applied")]
    assert len(not_applied) >= 6, [line["inputs"] for line in web[:12]]
    assert all(line["inputs"]["plan_short"] is False for line in not_applied)
    assert metric(metrics, "elasticd_not_applied_steps_total", target="web") >= len(not_applied) - 2

    # api: the fight is seen and reported; desired stays where demand puts it.
    api = audit(tmp_path, "api")
    assert len(resets) >= 10
    assert max(line["desired"] for line in api) <= 11, [line["desired"] for line in api]
    assert max(landed(fake, "api")) <= 11, landed(fake, "api")
    overrides = [line for line in daemon.events("external_override") if line["target"] == "api"]
    assert len(overrides) >= 3, daemon.tail()
    assert overrides[0]["found"] == 3
    assert any("external_override" in line["inputs"] for line in api)
    assert metric(metrics, "elasticd_external_overrides_total", target="api") >= 3
    print(
        f"\nweb wrote {landed(fake, 'web')} after {len(statuses) - len(landed(fake, 'web'))} "
        f"failed PATCHes; {len(not_applied)} ticks not applied; api: {len(resets)} resets, "
        f"{len(overrides)} overrides, wrote {sorted(set(landed(fake, 'api')))}"
    )


# --- defect 3 ------------------------------------------------------------------------------


def test_one_zero_or_negative_sample_does_not_scale_down_by_default(
    tmp_path: Path, prometheus: ScriptedPrometheus, started: list[Any]
) -> None:
    """Default settings. The samples are stamped in one step of the forecast grid, so the
    forecast follows the newest value (as a model reacting to a glitch would) and only the
    stabilisation window stands between one bad sample and a scale-down."""
    query = query_of("web")
    fake = fake_kube(tmp_path, {"web": 10}, started)
    prometheus.set(query, 100.0)
    prometheus.pin(query, time.time())
    config = write_config(tmp_path, prometheus, fake, [target("web")])
    daemon = start(config, started)
    daemon.wait_for(lambda: len(audit(tmp_path, "web")) >= 3, timeout=60, what="three ticks")

    def three_more_reads() -> None:
        wanted = len(prometheus.answers(query)) + 3
        daemon.wait_for(
            lambda: len(prometheus.answers(query)) >= wanted, timeout=15, what="three reads"
        )

    for glitch in (0.0, -5.0):
        prometheus.script(query, [glitch])
        daemon.wait_for(lambda: not prometheus.scripted_left(query), timeout=10, what="glitch")
        # The glitch's tick has decided, and two ticks after it.
        three_more_reads()
    metrics = scrape(daemon)
    code, _ = daemon.stop(timeout=10)
    assert code == 0, daemon.tail()

    assert patches(fake, "web") == [], patches(fake, "web")
    lines = audit(tmp_path, "web")
    assert {line["desired"] for line in lines} == {10}, [line["desired"] for line in lines]
    zero = [line for line in lines if line["inputs"]["demand"] == 0.0]
    assert len(zero) == 1 and zero[0]["inputs"]["reactive_units"] == 0, zero
    negative = [line for line in lines if line["inputs"]["demand_rule"] == "negative_missing"]
    assert len(negative) == 1 and negative[0]["inputs"]["demand"] is None, negative
    assert metric(metrics, "elasticd_source_errors_total", target="web", kind="negative_missing")


# --- defect 4 ------------------------------------------------------------------------------

WINDOW_S = 24.0


def test_restart_and_reload_keep_the_stabilisation_window(
    tmp_path: Path, prometheus: ScriptedPrometheus, started: list[Any]
) -> None:
    """20 replicas on demand 200; demand falls to 100 at T (10 wanted). kill -9 at T+3, a
    restart, then a SIGHUP that changes max_units: nothing drops below 20 before T + window,
    and the drop to 10 comes right after it, as the window begun before the kill says."""
    query = query_of("web")
    fake = fake_kube(tmp_path, {"web": 20}, started)
    prometheus.set(query, 200.0)
    # One grid step: the forecast follows demand at once, so only the window holds capacity.
    prometheus.pin(query, time.time())
    web = target("web", scale_down_stabilisation=f"{WINDOW_S:g}s")
    config = write_config(tmp_path, prometheus, fake, [web])
    first = start(config, started)
    first.wait_for(lambda: len(audit(tmp_path, "web")) >= 3, timeout=60, what="three ticks")
    assert {line["desired"] for line in audit(tmp_path, "web")} == {20}

    prometheus.set(query, 100.0)
    fell = time.time()
    # The newest recommendation of 20 the window holds: the last tick that read 200.
    last_high = max(s.at for s in prometheus.answers(query) if s.value == 200.0)
    first.wait_for(
        lambda: any(s.value == 100.0 for s in prometheus.answers(query)), timeout=10, what="100"
    )
    time.sleep(max(0.0, fell + 3.0 - time.time()))
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    killed = time.time()

    state_file = tmp_path / "state" / "targets" / "web.json"
    assert state_file.exists()
    assert stat.S_IMODE(state_file.stat().st_mode) & 0o077 == 0, oct(state_file.stat().st_mode)
    assert stat.S_IMODE(state_file.parent.stat().st_mode) & 0o077 == 0
    saved = json.loads(state_file.read_text())
    assert any(count == 20 for _, count in saved["state"]["recommendations"]), saved

    second = start(config, started)
    second.wait_for(
        lambda: any(line["inputs"]["now"] > killed for line in audit(tmp_path, "web")),
        timeout=60,
        what="a decision after the restart",
    )
    restored = second.events("state_restored")
    assert restored, second.tail()
    # A reload that edits the target, still inside the window.
    config.write_text(config.read_text().replace("max_units: 100", "max_units: 90"))
    second.signal(signal.SIGHUP)
    reloaded = second.wait_event("reloaded", timeout=20)
    assert reloaded["restarted"] == ["web"]
    assert time.time() < last_high + WINDOW_S - 2, "restart too slow to test inside the window"

    second.wait_for(lambda: landed(fake, "web"), timeout=WINDOW_S + 20, what="the scale-down")
    code, _ = second.stop(timeout=10)
    assert code == 0, second.tail()

    (down,) = [p for p in patches(fake, "web") if p["status"] == 200][:1]
    assert down["replicas"] == 10
    # Not before the window that began before the kill is over, and not a whole window after
    # the reload either (a fresh window would have held until then).
    reload_at = reloaded_time(second)
    print(
        f"\nfell at 0; killed at {killed - fell:.1f}s; reloaded at {reload_at - fell:.1f}s; "
        f"scaled down to 10 at {down['arrived'] - fell:.1f}s (window {WINDOW_S:g}s)"
    )
    assert down["arrived"] >= last_high + WINDOW_S - 0.5
    assert down["arrived"] < min(last_high + WINDOW_S + 6, reload_at + WINDOW_S - 1)


def reloaded_time(daemon: DaemonProcess) -> float:
    from datetime import datetime

    line = daemon.events("reloaded")[0]
    return datetime.fromisoformat(str(line["time"]).replace("Z", "+00:00")).timestamp()
