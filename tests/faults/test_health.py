"""Fault matrix, honest health (issue 9 defect 11): /readyz of the real daemon as a process.

- Each target's state is in the /readyz JSON body: source (ok, error, last success age), model
  (rung, age, last error), actuator (ok, error), last decision age.
- Prometheus down shows as the target's source error, and clears when it answers again.
- A target that answers 404 decides nothing: its actuator error is in the body; with no other
  target deciding the daemon is not ready (503), with one other deciding it stays ready.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon_process import DaemonProcess
from tests.faults.test_models_and_history import FakePrometheus, audit, fake_kube_with
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.stop()


def readyz(daemon: DaemonProcess) -> tuple[int, dict[str, Any]]:
    url = daemon.wait_event("telemetry", timeout=30)["url"]
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_readyz(
    daemon: DaemonProcess, predicate: Any, timeout: float, what: str
) -> tuple[int, dict[str, Any]]:
    seen: list[tuple[int, dict[str, Any]]] = []

    def check() -> bool:
        seen.append(readyz(daemon))
        try:
            return bool(predicate(*seen[-1]))
        except KeyError:  # the target is not configured yet
            return False

    try:
        daemon.wait_for(check, timeout=timeout, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\nlast /readyz: {seen[-1] if seen else None}") from None
    return seen[-1]


def config(tmp_path: Path, prometheus_url: str, kubeconfig: Path, targets: list[str]) -> Path:
    body = {
        "interval": "1s",
        "state_dir": str(tmp_path / "state"),
        "log_format": "json",
        "telemetry": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "training": {"cadence": "6h", "history_window": "14d"},
        "kubernetes": {"kubeconfig": str(kubeconfig), "in_cluster": False},
        "sources": {"prom": {"type": "prometheus", "url": prometheus_url, "timeout": "5s"}},
        "targets": [
            {
                "name": name,
                "kind": "deployment",
                "namespace": "shop",
                "workload": name,
                "source": "prom",
                "query": "sum(rate(http_requests_total[5m]))",
                "unit_capacity": 50,
                "lead_time": "5m",
                "min_units": 1,
                "max_units": 20,
                "mode": "active",
            }
            for name in targets
        ],
    }
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[FakeKubeProcess]:
    # Only "web" exists: any other target answers 404.
    fake = fake_kube_with(tmp_path, {"web": 4})
    yield fake
    fake.stop()


def run(
    tmp_path: Path, prometheus: FakePrometheus, fake_kube: FakeKubeProcess, targets: list[str]
) -> DaemonProcess:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)
    return DaemonProcess(config(tmp_path, prometheus.url, kubeconfig, targets))


def test_readyz_reports_each_targets_state_and_a_source_outage(
    tmp_path: Path, prometheus: FakePrometheus, fake_kube: FakeKubeProcess
) -> None:
    prometheus.down.set()
    daemon = run(tmp_path, prometheus, fake_kube, ["web"])
    try:
        _, body = wait_readyz(
            daemon,
            lambda status, body: body["targets"]["web"]["source"]["ok"] is False,
            timeout=60,
            what="the source outage in /readyz",
        )
        web = body["targets"]["web"]
        assert "503" in web["source"]["error"] and "unavailable" in web["source"]["error"]
        assert web["source"]["last_success_age_s"] is None
        assert set(web) >= {"deciding", "last_decision_age_s", "source", "model", "actuator"}
        assert set(web["model"]) >= {"name", "age_s", "error"}
        prometheus.down.clear()
        _, body = wait_readyz(
            daemon,
            lambda status, body: (
                status == 200
                and body["targets"]["web"]["source"]["ok"] is True
                and body["targets"]["web"]["model"]["name"] == "model"
            ),
            timeout=60,
            what="the source back, a model, and ready",
        )
        web = body["targets"]["web"]
        assert web["source"]["error"] is None and web["source"]["last_success_age_s"] < 30
        assert web["model"]["age_s"] is not None and web["model"]["age_s"] < 60
        code, _ = daemon.stop(timeout=15)
    finally:
        daemon.kill()
    assert code == 0, daemon.tail()


def test_a_target_answering_404_alone_makes_the_daemon_unready(
    tmp_path: Path, prometheus: FakePrometheus, fake_kube: FakeKubeProcess
) -> None:
    daemon = run(tmp_path, prometheus, fake_kube, ["gone"])
    try:
        _, body = wait_readyz(
            daemon,
            lambda status, body: (
                status == 503
                and any("no target has decided" in reason for reason in body["reasons"])
            ),
            timeout=40,
            what="503: no target decides",
        )
        gone = body["targets"]["gone"]
        assert gone["actuator"]["ok"] is False and "404" in gone["actuator"]["error"]
        assert gone["deciding"] is False and gone["last_decision_age_s"] is None
        lines = audit(tmp_path / "state", "gone")
        assert lines and {line["reason"] for line in lines} == {"target_unreadable"}
        code, _ = daemon.stop(timeout=15)
    finally:
        daemon.kill()
    assert code == 0, daemon.tail()


def test_one_target_deciding_keeps_the_daemon_ready_and_shows_the_other_failing(
    tmp_path: Path, prometheus: FakePrometheus, fake_kube: FakeKubeProcess
) -> None:
    daemon = run(tmp_path, prometheus, fake_kube, ["web", "gone"])
    try:
        status, body = wait_readyz(
            daemon,
            lambda status, body: (
                body["targets"]["gone"]["actuator"]["ok"] is False
                and body["targets"]["web"]["deciding"] is True
            ),
            timeout=60,
            what="web deciding and gone's 404 in /readyz",
        )
        # Past the decision window (10 s at least), still ready: web decides.
        time.sleep(11)
        status, body = readyz(daemon)
        assert status == 200, body
        assert body["targets"]["web"]["last_decision_age_s"] < 5
        assert "404" in body["targets"]["gone"]["actuator"]["error"]
        code, _ = daemon.stop(timeout=15)
    finally:
        daemon.kill()
    assert code == 0, daemon.tail()
