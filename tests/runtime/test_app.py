"""``elasticd run`` as a real process: signals, reloads, sd_notify, saved models.

The configuration uses the simulator pair, so the daemon runs end to end (history, training,
ticks, writes, audit) with no server to start; its JSON log lines are what the tests read.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon_process import DaemonProcess
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig


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
        assert daemon.events("trained")[0]["forecaster"] == "model"
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
    assert [(w["verb"], w["status"]) for w in writes] == [("PATCH", 200)]
    decision = audit_lines(state)[-1]
    assert decision["written"] and decision["desired"] == writes[0]["body"]["spec"]["replicas"]
