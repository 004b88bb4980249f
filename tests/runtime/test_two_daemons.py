"""Two ``elasticd run`` processes, one Lease: exactly one writes, and a SIGTERM hands over.

Both daemons size the same Deployment on one fake API server (as a process) with leader
election on and scaled-down timings (lease 4 s, renew deadline 3 s, retry 0.5 s). Demand comes
from the embedded simulator, so both want to change the replica count every few ticks; only
the Lease holder may. Each daemon has its own state_dir, so its audit log says what it wrote.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.daemon_process import DaemonProcess
from tests.runtime.test_app import audit_lines, simulator_config, write_config
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig

SCALE_PATH = "/apis/apps/v1/namespaces/shop/deployments/web/scale"
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/shop/leases/elasticd"
LEASE_S = 4.0


def daemon_config(
    tmp_path: Path,
    identity: str,
    kubeconfig: Path,
    *,
    lease_s: float = LEASE_S,
    renew_s: float = 3.0,
    retry_s: float = 0.5,
    target: dict[str, Any] | None = None,
    **settings: Any,
) -> Path:
    """A daemon sizing shop/web under leader election; ``target`` overrides keys of the
    target, ``settings`` adds top-level keys."""
    state = tmp_path / identity
    config = simulator_config(state) | settings
    config["kubernetes"] = {"kubeconfig": str(kubeconfig), "in_cluster": False}
    config["leader_election"] = {
        "enabled": True,
        "namespace": "shop",
        "identity": identity,
        "lease_duration": f"{lease_s:g}s",
        "renew_deadline": f"{renew_s:g}s",
        "retry_period": f"{retry_s:g}s",
    }
    config["targets"] = [
        config["targets"][0]
        | {"name": "web", "kind": "deployment", "namespace": "shop", "workload": "web"}
        | (target or {})
    ]
    return write_config(tmp_path / f"{identity}.yaml", config)


def became_leader(daemon: DaemonProcess) -> list[dict[str, Any]]:
    with daemon._lock:
        return [line for line in daemon.lines if line["message"].startswith("became leader")]


def lease(fake: FakeKubeProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{fake.url}/_fake/objects", timeout=10) as response:
        objects: list[dict[str, Any]] = json.load(response)
    (found,) = [o for o in objects if o["kind"] == "Lease"]
    return found


def written(state: Path) -> list[dict[str, Any]]:
    return [line for line in audit_lines(state) if line["written"]]


def test_one_leader_writes_and_a_sigterm_hands_over_at_once(tmp_path: Path) -> None:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
        "spec: {replicas: 1}\n",
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
    state_a, state_b = tmp_path / "a", tmp_path / "b"
    a = DaemonProcess(daemon_config(tmp_path, "a", kubeconfig))
    b: DaemonProcess | None = None
    try:
        # "a" starts first and takes the Lease; "b" then follows.
        a.wait_for(lambda: became_leader(a), timeout=60, what="a leading")
        b = DaemonProcess(daemon_config(tmp_path, "b", kubeconfig))
        follower = b
        b.wait_event("ready", timeout=60)
        # Both decide on every tick; wait until the follower wanted to write a few times.
        b.wait_for(
            lambda: (
                sum(line["inputs"].get("skipped") == "not leader" for line in audit_lines(state_b))
                >= 3
            ),
            what="three changes the follower did not write",
        )
        assert written(state_a), "the leader wrote nothing"
        assert not written(state_b), "the follower wrote"
        assert not became_leader(b)
        assert lease(fake)["spec"]["holderIdentity"] == "a"

        code, seconds = a.stop(timeout=10)
        assert code == 0, a.tail()
        took_over = follower.wait_for(
            lambda: became_leader(follower), timeout=LEASE_S, what="b leading"
        )
        follower.wait_for(lambda: written(state_b), timeout=15, what="a write by b")
        assert lease(fake)["spec"]["holderIdentity"] == "b"
        code_b, _ = follower.stop(timeout=10)
        assert code_b == 0, follower.tail()
    finally:
        a.kill()
        if b is not None:
            b.kill()
        writes = fake.writes()
        fake.stop()

    # "a" released the Lease on its way out (an empty holder), rather than let it expire.
    releases = [
        w
        for w in writes
        if w["path"] == LEASE_PATH and w["verb"] == "PUT" and w["status"] == 200
        if w["body"]["spec"]["holderIdentity"] == ""
    ]
    assert len(releases) == 2  # a's, then b's at its own exit
    handover_s = epoch(took_over[0]["time"]) - releases[0]["time"]
    # Every accepted replica write is one of the two daemons' audited writes: never both.
    patches = [w for w in writes if w["path"] == SCALE_PATH and w["verb"] == "PATCH"]
    assert all(w["status"] == 200 for w in patches)
    assert len(patches) == len(written(state_a)) + len(written(state_b))
    # The hand-over came on b's next poll, well inside one lease duration.
    assert handover_s < LEASE_S / 2, f"hand-over took {handover_s:.2f}s"
    print(
        f"\nleader's SIGTERM to exit {seconds:.2f}s; follower led {handover_s:.2f}s after release"
    )


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
