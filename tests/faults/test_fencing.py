"""Fault matrix, issue 9 defect 2: split brain mid-write, with two real daemons and SIGSTOP.

Two ``elasticd run`` processes share one Lease on the fake API server (a subprocess) and size
the same Deployment. Time is compressed: lease 3 s, renew deadline 2 s, retry 0.3 s, ticks
0.5 s. To tell their writes apart the two want different sizes: "a" at least 10 replicas,
"b" at most 3. So any accepted PATCH of 10 or more after "b" took over is "a" writing over
the new leader, which is what was seen: frozen inside its write, "a" resumed, logged
"stopped leading", got a 409 and re-read and PATCHed over "b" 130 ms later (HTTP 200).

- "a" is frozen (SIGSTOP) while the API server holds its PATCH; "b" takes over and writes;
  the held PATCH is answered; "a" resumes (SIGCONT): it never lands a write.
- "a" is frozen while the server holds the fresh read it makes just before writing; "b" takes
  over and writes; "a" resumes with a read that is valid but made after it lost the Lease: the
  write must be fenced (the lease deadline) or refused (the size changed since the decision).
  This needs the reconciler to pass ``expected`` and ``deadline`` to ``scale()``.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_process import DaemonProcess
from tests.runtime.test_app import audit_lines
from tests.runtime.test_two_daemons import (
    SCALE_PATH,
    became_leader,
    daemon_config,
    epoch,
    written,
)
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig

LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.3
HOLD_S = 6.0  # how long the API server holds the frozen leader's request
A_MIN = 10  # "a" wants at least this many replicas ...
B_MAX = 3  # ... and "b" at most this many


@dataclass
class Cluster:
    fake: FakeKubeProcess
    tmp_path: Path
    daemons: list[DaemonProcess]

    def start(self, identity: str, *, size_read_max_age: float, **target: Any) -> DaemonProcess:
        # Each daemon's own token: the fake logs it, so a request names its sender.
        kubeconfig = write_kubeconfig(
            self.tmp_path / f"kubeconfig-{identity}", self.fake.url, token=identity
        )
        config = daemon_config(
            self.tmp_path,
            identity,
            kubeconfig,
            lease_s=LEASE_S,
            renew_s=RENEW_S,
            retry_s=RETRY_S,
            target=target,
            size_read_max_age=size_read_max_age,
        )
        daemon = DaemonProcess(config)
        self.daemons.append(daemon)
        return daemon


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
        "spec: {replicas: 1}\n",
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    running = Cluster(fake, tmp_path, [])
    try:
        yield running
    finally:
        for daemon in running.daemons:
            if daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGCONT)
            daemon.kill()
        fake.stop()


def fired(fake: FakeKubeProcess) -> int:
    return fake.faults().get(SCALE_PATH, {}).get("fired", 0)


def accepted_patches(fake: FakeKubeProcess) -> list[dict[str, Any]]:
    return [
        w
        for w in fake.writes()
        if w["path"] == SCALE_PATH and w["verb"] == "PATCH" and w["status"] == 200
    ]


def stopped_leading(daemon: DaemonProcess) -> list[dict[str, Any]]:
    with daemon._lock:
        return [line for line in daemon.lines if "stopped leading" in line["message"]]


def two_daemons(cluster: Cluster, size_read_max_age: float) -> tuple[DaemonProcess, Any]:
    a = cluster.start("a", size_read_max_age=size_read_max_age, min_units=A_MIN, max_units=80)
    a.wait_for(lambda: written(cluster.tmp_path / "a"), timeout=60, what="a's first write")
    b = cluster.start("b", size_read_max_age=size_read_max_age, min_units=1, max_units=B_MAX)
    b.wait_event("ready", timeout=60)
    b.wait_for(
        lambda: any(
            line["inputs"].get("skipped") == "not leader"
            for line in audit_lines(cluster.tmp_path / "b")
        ),
        timeout=30,
        what="b deciding as a follower",
    )
    return a, b


def provoke_a_write(cluster: Cluster) -> None:
    """Give "a" a write to make now, whatever its demand does: another writer sets the
    Deployment between the two daemons' ranges, and "a" writes its floor back. Waiting for "a"
    to want a new size by itself made the test depend on where the simulated day was (at
    some hours "a" sat at its minimum for longer than the wait, and never wrote)."""
    cluster.fake.update("Deployment", "shop", "web", {"spec": {"replicas": B_MAX + 2}})


def freeze_until_taken_over(cluster: Cluster, a: DaemonProcess, b: DaemonProcess) -> float:
    """SIGSTOP ``a`` as soon as the server holds its request; return when ``b`` led (epoch)."""
    provoke_a_write(cluster)
    a.wait_for(lambda: fired(cluster.fake) >= 1, timeout=30, what="a's request held")
    a.signal(signal.SIGSTOP)
    took_over = b.wait_for(lambda: became_leader(b), timeout=LEASE_S + 5, what="b leading")
    b.wait_for(lambda: written(cluster.tmp_path / "b"), timeout=10, what="b's first write")
    return epoch(took_over[0]["time"])


def resume_and_watch(cluster: Cluster, a: DaemonProcess) -> None:
    """SIGCONT ``a`` once its held request was answered, and let it run a few ticks."""
    a.wait_for(
        lambda: any(w["time"] - w["arrived"] >= HOLD_S - 0.5 for w in cluster.fake.requests()),
        timeout=HOLD_S + 5,
        what="the held request answered",
    )
    a.signal(signal.SIGCONT)
    a.wait_for(lambda: stopped_leading(a), timeout=10, what="a stopped leading")
    began = len(audit_lines(cluster.tmp_path / "a"))
    a.wait_for(
        lambda: len(audit_lines(cluster.tmp_path / "a")) >= began + 4,
        timeout=10,
        what="a's ticks after resuming",
    )


def assert_only_b_wrote_after(cluster: Cluster, took_over: float) -> None:
    """Every PATCH accepted since ``b`` led is one of ``b``'s (sent with its token, and at
    most ``B_MAX`` replicas), and ``a`` audited no write."""
    after = [w for w in accepted_patches(cluster.fake) if w["time"] >= took_over]
    assert [w for w in after if w["client"] == "b"], "b wrote nothing after taking over"
    overwrites = [w for w in after if w["client"] != "b" or w["body"]["spec"]["replicas"] > B_MAX]
    assert not overwrites, f"the old leader wrote over the new one: {overwrites}"
    a_after = [
        line for line in audit_lines(cluster.tmp_path / "a") if epoch(line["time"]) >= took_over
    ]
    assert not [line for line in a_after if line["written"]], "a audited a write"


def test_a_leader_frozen_inside_its_patch_never_lands_it(cluster: Cluster) -> None:
    a, b = two_daemons(cluster, size_read_max_age=0)
    # Hold a's next PATCH at the server for longer than the lease.
    cluster.fake.inject_fault(SCALE_PATH, None, method="PATCH", delay=HOLD_S, client="a")

    took_over = freeze_until_taken_over(cluster, a, b)
    resume_and_watch(cluster, a)

    held = [
        w
        for w in cluster.fake.writes()
        if w["path"] == SCALE_PATH and w["time"] - w["arrived"] >= HOLD_S - 0.5
    ]
    assert [w["status"] for w in held] == [409], held
    assert_only_b_wrote_after(cluster, took_over)
    errors = [line["error"] for line in audit_lines(cluster.tmp_path / "a") if line.get("error")]
    print(f"\na's last write error: {errors[-1:]}")


def test_a_leader_frozen_before_its_patch_is_fenced(cluster: Cluster) -> None:
    a, b = two_daemons(cluster, size_read_max_age=0)
    # Hold the fresh read "a" makes inside scale(), just before its PATCH: the GET that comes
    # right after its tick's own read (ticks are 0.5 s apart).
    cluster.fake.inject_fault(SCALE_PATH, None, method="GET", delay=HOLD_S, client="a", within=0.2)

    took_over = freeze_until_taken_over(cluster, a, b)
    resume_and_watch(cluster, a)

    assert_only_b_wrote_after(cluster, took_over)
