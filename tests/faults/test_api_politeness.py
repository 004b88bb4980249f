"""Fault matrix, issue 9 defect 8: the real daemon is polite to a struggling API server.

``elasticd run`` (a subprocess) sizes one Deployment on the fake API server (a subprocess too)
that answers its PATCHes with injected faults. The Deployment starts at 1 replica and the
target's minimum is 2, so the daemon wants to write on every tick (0.5 s) until a write lands.
Time is compressed: "Retry-After: 30" becomes 5.

- 429 with ``Retry-After: 5``: no PATCH for those 5 s, every target's tick says it is
  throttled, and the write lands once they are over (today: a PATCH every tick, and retries).
- 409: exactly one PATCH per tick, each audited as the conflict it was (today: three).
- 500: one PATCH, then writes deferred for a backoff while ticks go on (today: four PATCHes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_process import DaemonProcess
from tests.runtime.test_app import audit_lines, simulator_config, write_config
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig

SCALE_PATH = "/apis/apps/v1/namespaces/shop/deployments/web/scale"
INTERVAL_S = 0.5


def kube_target_config(tmp_path: Path, kubeconfig: Path, **extra: Any) -> Path:
    """One active Deployment target on the simulator's demand; no leader election."""
    state = tmp_path / "state"
    config = simulator_config(state)
    config["kubernetes"] = {"kubeconfig": str(kubeconfig), "in_cluster": False}
    # Always read the size fresh: the scenarios change it behind the daemon's back.
    config["size_read_max_age"] = 0
    config["targets"] = [
        config["targets"][0]
        | {"name": "web", "kind": "deployment", "namespace": "shop", "workload": "web"}
        | extra
    ]
    return write_config(tmp_path / "elasticd.yaml", config)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKubeProcess]:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
        "spec: {replicas: 1}\n",
        encoding="utf-8",
    )
    process = FakeKubeProcess.spawn(seed_file=seed)
    yield process
    process.stop()


@pytest.fixture
def start_daemon(tmp_path: Path, fake: FakeKubeProcess) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
        daemon = DaemonProcess(kube_target_config(tmp_path, kubeconfig))
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def patches(fake: FakeKubeProcess) -> list[dict[str, Any]]:
    return [w for w in fake.writes() if w["path"] == SCALE_PATH and w["verb"] == "PATCH"]


def errors(state: Path, text: str) -> list[dict[str, Any]]:
    return [line for line in audit_lines(state) if text in (line.get("error") or "")]


def test_retry_after_holds_every_patch_for_that_long(
    tmp_path: Path, fake: FakeKubeProcess, start_daemon: Any
) -> None:
    fake.inject_fault(SCALE_PATH, 429, method="PATCH", retry_after=5)
    daemon: DaemonProcess = start_daemon()

    daemon.wait_for(lambda: patches(fake), timeout=60, what="the first PATCH")
    landed = daemon.wait_for(
        lambda: len(patches(fake)) >= 2, timeout=15, what="a PATCH after the Retry-After"
    )
    assert landed
    first, second = patches(fake)[:2]
    assert (first["status"], second["status"]) == (429, 200)
    waited = second["arrived"] - first["time"]
    # Nothing in the 5 s the server asked for; ticks (0.5 s) went on and said why.
    assert waited >= 5.0 - 0.05, f"a PATCH {waited:.2f}s after Retry-After: 5"
    held = errors(tmp_path / "state", "throttled: retry after")
    assert len(held) >= 5, audit_lines(tmp_path / "state")[-3:]
    print(f"\nsecond PATCH {waited:.2f}s after the 429; {len(held)} ticks held")


def test_a_conflict_is_one_patch_per_tick(
    tmp_path: Path, fake: FakeKubeProcess, start_daemon: Any
) -> None:
    fake.inject_fault(SCALE_PATH, 409, method="PATCH", count=4)
    daemon: DaemonProcess = start_daemon()

    daemon.wait_for(
        lambda: any(p["status"] == 200 for p in patches(fake)),
        timeout=60,
        what="a PATCH that lands after four conflicts",
    )
    sent = patches(fake)
    until_landed = sent[: [p["status"] for p in sent].index(200) + 1]
    assert [p["status"] for p in until_landed] == [409, 409, 409, 409, 200]
    # One conflict per tick: each 409 is its own audited failure, not one of three retries.
    conflicts = errors(tmp_path / "state", "409")
    assert len(conflicts) == 4, [line.get("error") for line in conflicts]


def test_a_server_error_is_one_patch_then_a_backoff(
    tmp_path: Path, fake: FakeKubeProcess, start_daemon: Any
) -> None:
    fake.inject_fault(SCALE_PATH, 500, method="PATCH", count=100)
    daemon: DaemonProcess = start_daemon()

    daemon.wait_for(lambda: patches(fake), timeout=60, what="the first PATCH")
    first_at = time.monotonic()
    daemon.wait_for(lambda: len(patches(fake)) >= 2, timeout=15, what="a second PATCH")
    gap_s = time.monotonic() - first_at

    first, second = patches(fake)[:2]
    assert (first["status"], second["status"]) == (500, 500)
    # The backoff after a first failure is 2.5-5 s: ticks in between sent nothing.
    assert second["arrived"] - first["time"] >= 2.5 - 0.05
    deferred = errors(tmp_path / "state", "write deferred")
    assert len(deferred) >= 3, audit_lines(tmp_path / "state")[-3:]
    assert "HTTP 500" in deferred[0]["error"]
    print(f"\nsecond PATCH {gap_s:.2f}s after the first 500; {len(deferred)} ticks deferred")
