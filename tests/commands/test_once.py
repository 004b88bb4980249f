"""``elasticd once``: one pass of the daemon's own tick over every target, then an exit status.

Real parts: the CLI as a subprocess, the in-repo fake Kubernetes API server as a process
(whose Deployments keep their size between runs, as a real cluster does) and a simulator
source (deterministic demand, no server to start).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.cli import main
from daemon.commands.once import TargetOutcome, exit_status
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[FakeKubeProcess]:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"replicas": 2},
            }
        ),
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    yield fake
    fake.stop()


def _config(tmp_path: Path, kube_url: str, *, broken: bool) -> Path:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_url)
    target = {
        "kind": "deployment",
        "namespace": "shop",
        "source": "sim",
        "unit_capacity": 50,
        "lead_time": "10m",
        "max_demand_age": "15m",
        "min_units": 1,
        "max_units": 60,
        "mode": "active",
    }
    targets = [{"name": "web", "workload": "web"} | target]
    if broken:
        # No such Deployment: its size cannot be read; the other target must still act.
        targets.append({"name": "gone", "workload": "gone"} | target)
    config = {
        "interval": "15s",
        "state_dir": str(tmp_path / "state"),
        "log_format": "json",
        "telemetry": {"enabled": False},
        "training": {"cadence": "1h", "history_window": "3d"},
        "kubernetes": {"kubeconfig": str(kubeconfig), "in_cluster": False},
        "sources": {
            "sim": {
                "type": "simulator",
                "generate": {"days": 4, "step": "5m", "seed": 7},
                "speedup": 1,
            }
        },
        "targets": targets,
    }
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _once(config: Path, *extra: str) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """(exit status, the printed JSON outcomes, the JSON log lines)."""
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "once", "--config", str(config), "-o", "json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(config.parent)},
    )
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    logged = []
    for line in result.stderr.splitlines():
        try:
            logged.append(json.loads(line))
        except ValueError:
            logged.append({"raw": line})
    return result.returncode, printed, logged


def _replicas(fake: FakeKubeProcess) -> int:
    url = f"{fake.url}/apis/apps/v1/namespaces/shop/deployments/web"
    request = urllib.request.Request(url, headers={"Authorization": "Bearer fake-token"})
    with urllib.request.urlopen(request, timeout=10) as response:
        replicas: int = json.load(response)["spec"]["replicas"]
    return replicas


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _hold_lease(fake: FakeKubeProcess, holder: str) -> None:
    """The Lease as a running daemon holds it (renewed just now, for an hour)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "elasticd", "namespace": "shop"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 3600,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    request = urllib.request.Request(
        f"{fake.url}/apis/coordination.k8s.io/v1/namespaces/shop/leases",
        data=json.dumps(lease).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer fake-token"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def _with_leader_election(config: Path) -> Path:
    settings = yaml.safe_load(config.read_text())
    settings["leader_election"] = {
        "enabled": True,
        "namespace": "shop",
        "identity": "cronjob-pass",
        "lease_duration": "3s",
        "renew_deadline": "2s",
        "retry_period": "500ms",
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


def test_one_pass_reports_a_failed_target_respects_the_lease_and_keeps_state(
    tmp_path: Path, fake_kube: FakeKubeProcess
) -> None:
    # A daemon holds the Lease: the pass decides, audits and prints, but writes nothing.
    _hold_lease(fake_kube, "daemon-0")
    config = _with_leader_election(_config(tmp_path, fake_kube.url, broken=True))

    code, printed, logged = _once(config)

    # The failed target fails the run (status 1) without stopping the other one.
    assert code == 1, logged
    assert [line["target"] for line in printed] == ["web", "gone"]
    web, gone = printed
    assert web["ok"] is True and web["error"] is None
    assert web["current"] == 2 and web["desired"] != 2
    assert (web["written"], web["skipped"]) == (False, "not leader")
    assert _replicas(fake_kube) == 2
    assert gone["ok"] is False and gone["desired"] is None
    assert "capacity read failed" in gone["error"]
    # The same audit record a daemon's tick writes, for the same decision.
    audit = [record for record in _audit(tmp_path) if record["target"] == "web"]
    assert [(r["desired"], r["reason"], r["inputs"]["skipped"]) for r in audit] == [
        (web["desired"], web["reason"], "not leader")
    ]
    assert not any(line.get("event") == "state_restored" for line in logged)
    assert (tmp_path / "state" / "targets" / "web.json").exists()

    # The daemon is gone (it released the Lease) and the broken target removed: the next timer
    # run takes the Lease and writes; every target fine, status 0, one text line; it decides
    # with the decision state (stabilisation window, calibration) the first run saved.
    fake_kube.update("Lease", "shop", "elasticd", {"spec": {"holderIdentity": ""}})
    config = _with_leader_election(_config(tmp_path, fake_kube.url, broken=False))
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "once", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("web: 2 -> ") and line.endswith(" written"), line
    written = int(line.split(" -> ")[1].split()[0])
    assert written > 2 and _replicas(fake_kube) == written
    restored = [json.loads(x) for x in result.stderr.splitlines() if "state_restored" in x]
    assert [entry["target"] for entry in restored] == ["web"]


def test_an_unusable_configuration_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("targets: [{name: x}]\n", encoding="utf-8")
    assert main(["once", "--config", str(config)]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "invalid configuration" in captured.err


def test_exit_status_is_one_when_any_target_failed() -> None:
    fine = TargetOutcome("a", ok=True, current=1, desired=1, reason="hold")
    failed = TargetOutcome("b", ok=False, error="capacity read failed (transient): boom")
    assert exit_status([fine, fine]) == 0
    assert exit_status([fine, failed]) == 1
    assert exit_status([]) == 0
    assert failed.line() == "b: FAILED capacity read failed (transient): boom"
    held = TargetOutcome("c", ok=True, current=3, desired=5, reason="forecast", skipped="x")
    assert held.line() == "c: 3 -> 5 (forecast) not written (x)"


def test_a_pass_decides_on_every_metric_of_a_target(
    tmp_path: Path, fake_kube: FakeKubeProcess
) -> None:
    """A target with two metrics: its companion ticks first in a pass and posts what its
    metric needs, so the target raises to it in the same pass (run concurrently, the target
    could tick before the post and hold, as on any missing metric)."""
    config = _config(tmp_path, fake_kube.url, broken=False)
    settings = yaml.safe_load(config.read_text())
    web = settings["targets"][0]
    del web["unit_capacity"]
    # The simulator serves one demand to both: rps's smaller unit capacity needs ten times
    # the units cpu does, so rps decides.
    web["metrics"] = [
        {"name": "cpu", "unit_capacity": 500},
        {"name": "rps", "unit_capacity": 50},
    ]
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")

    code, printed, logged = _once(config)

    assert code == 0, logged
    outcomes = {line["target"]: line for line in printed}
    assert set(outcomes) == {"web", "web.rps"}
    assert outcomes["web.rps"]["written"] is False  # a companion never writes
    web_line = outcomes["web"]
    assert web_line["desired"] == outcomes["web.rps"]["desired"] > 2
    assert web_line["reason"] == "metric=rps"
    assert _replicas(fake_kube) == web_line["desired"]
