"""Three ``elasticd run`` processes sharing nine Deployments on one fake API server.

Membership on Leases, scaled-down timings (lease 3 s, renew deadline 2 s, retry 0.4 s), demand
from the embedded simulator (so every target wants a new size every few ticks), one shared
state directory (models and decision state travel with the target) and an audit log each.
Each member's client sends its own bearer token, so the fake's write log says who wrote what.

The test: every target is written, each by one member at a time; a SIGTERM hands the
leaver's targets over at once; a kill -9 hands them over after the lease; never do two members'
writes to one target interleave (checked from the fake API's write log).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.e2e.daemon_process import DaemonProcess
from tests.runtime.test_app import simulator_config, write_config
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig

NAMESPACE = "shop"
TARGETS = [f"w{i}" for i in range(9)]
LEASE_S = 3.0


def scale_path(name: str) -> str:
    return f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/scale"


def member_config(tmp_path: Path, identity: str, kubeconfig: Path) -> Path:
    config = simulator_config(tmp_path / "state")
    config["audit"] = {"path": str(tmp_path / f"audit-{identity}.jsonl")}
    config["kubernetes"] = {"kubeconfig": str(kubeconfig), "in_cluster": False}
    config["sharding"] = {
        "enabled": True,
        "namespace": NAMESPACE,
        "identity": identity,
        "lease_duration": f"{LEASE_S:g}s",
        "renew_deadline": "2s",
        "retry_period": "0.4s",
    }
    base = config["targets"][0]
    config["targets"] = [
        base | {"name": name, "kind": "deployment", "namespace": NAMESPACE, "workload": name}
        for name in TARGETS
    ]
    return write_config(tmp_path / f"{identity}.yaml", config)


def scale_writes(fake: FakeKubeProcess) -> dict[str, list[tuple[float, str]]]:
    """Accepted scale writes per target: (when answered, which member)."""
    by_target: dict[str, list[tuple[float, str]]] = defaultdict(list)
    paths = {scale_path(name): name for name in TARGETS}
    for write in fake.writes():
        if write["path"] in paths and write["status"] == 200:
            by_target[paths[write["path"]]].append((write["time"], write["client"]))
    return by_target


def interleavings(writes: dict[str, list[tuple[float, str]]]) -> list[str]:
    """Targets whose writers alternate (A, B, A): two members writing in one window."""
    found = []
    for target, log in writes.items():
        tenures: list[str] = []
        for _, client in sorted(log):
            if not tenures or tenures[-1] != client:
                tenures.append(client)
        if len(tenures) != len(set(tenures)):
            found.append(f"{target}: {' -> '.join(tenures)}")
    return found


def metrics(daemon: DaemonProcess) -> str:
    url = daemon.wait_event("telemetry")["url"]
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def first_write_after(
    writes: dict[str, list[tuple[float, str]]], target: str, after: float, not_by: str
) -> float | None:
    times = [t for t, client in writes.get(target, []) if t > after and client != not_by]
    return min(times) - after if times else None


def test_three_members_share_targets_hand_over_and_never_overlap(tmp_path: Path) -> None:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        "---\n".join(
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: "
            f"{NAMESPACE}}}\nspec: {{replicas: 2}}\n"
            for name in TARGETS
        ),
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    daemons: dict[str, DaemonProcess] = {}
    settled_at = float("inf")
    try:
        for identity in ("a", "b", "c"):
            kubeconfig = write_kubeconfig(
                tmp_path / f"kubeconfig-{identity}", fake.url, token=identity
            )
            daemons[identity] = DaemonProcess(member_config(tmp_path, identity, kubeconfig))
        a, b, c = daemons["a"], daemons["b"], daemons["c"]
        # Members start a few seconds apart on a busy machine, so the first to start may own
        # (and write) everything until the others join: the ring settles when all three agree
        # and their handoff waits are over. From then on no member rejoins, so no target may
        # go back to a writer it had (the interleaving check below).
        a.wait_for(
            lambda: all(
                gauge(metrics(d), "elasticd_shard_ring_members") == 3 for d in daemons.values()
            ),
            timeout=60,
            what="three members in every ring",
        )
        settled_at = time.time() + LEASE_S
        a.wait_for(
            lambda: len(scale_writes(fake)) == len(TARGETS), timeout=60, what="every target written"
        )
        owned = {
            name: gauge(metrics(d), "elasticd_shard_owned_targets") for name, d in daemons.items()
        }
        assert sum(owned.values()) == len(TARGETS), owned
        assert all(count >= 1 for count in owned.values()), owned
        epochs = {gauge(metrics(d), "elasticd_shard_ring_epoch") for d in daemons.values()}
        assert len(epochs) == 1

        # A clean stop: c's targets are written by the others soon after (no lease wait).
        before = scale_writes(fake)
        c_targets = {t for t, log in before.items() if max(log)[1] == "c"}
        stopped_at = time.time()
        code, _ = c.stop(timeout=20)
        assert code == 0, c.tail()
        a.wait_for(
            lambda: all(
                first_write_after(scale_writes(fake), t, stopped_at, "c") is not None
                for t in c_targets
            ),
            timeout=20,
            what="c's targets written by their new owners",
        )
        clean = [first_write_after(scale_writes(fake), t, stopped_at, "c") for t in c_targets]

        # kill -9: b's targets wait for its lease to expire, then move to a.
        time.sleep(1.0)
        before = scale_writes(fake)
        b_targets = {t for t, log in before.items() if max(log)[1] == "b"}
        killed_at = time.time()
        b.kill()
        a.wait_for(
            lambda: all(
                first_write_after(scale_writes(fake), t, killed_at, "b") is not None
                for t in b_targets
            ),
            timeout=30,
            what="b's targets written by a",
        )
        killed = [first_write_after(scale_writes(fake), t, killed_at, "b") for t in b_targets]
        print(f"clean handover: {clean}; after kill -9: {killed}")
        assert all(x is not None and x >= LEASE_S - 0.5 for x in killed), killed
        handoffs = [line for line in audit_lines_of(tmp_path, "a") if line["reason"] == "handoff"]
        assert {line["target"] for line in handoffs} >= b_targets | c_targets
        # State travels with the target: the new owner resumed each one's decision state
        # (stabilisation window, calibration) from the shared state directory.
        restored = {line.get("target") for line in a.events("state_restored")}
        assert restored >= b_targets | c_targets
    finally:
        for daemon in daemons.values():
            daemon.kill()
        writes = scale_writes(fake)
        fake.stop()
    after_settling = {t: [w for w in log if w[0] > settled_at] for t, log in writes.items()}
    assert interleavings(after_settling) == []


def audit_lines_of(tmp_path: Path, identity: str) -> list[dict[str, Any]]:
    path = tmp_path / f"audit-{identity}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]
