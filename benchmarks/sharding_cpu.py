"""Per-member CPU when sharded, against one instance doing every target.

Usage: python benchmarks/sharding_cpu.py [--targets 90] [--members 3] [--interval 1s]
    [--window 60s]

Runs the real daemon (``python -m daemon run``) on the embedded simulator: first one instance
with every target (sharding off), then ``--members`` instances with ``sharding.enabled`` on
the fake Kubernetes API server's Leases, each owning about 1/N of the targets. After every
target is ticking, each process's CPU time (utime + stime from /proc) is sampled over the same
window. Goal (issue 14): each member uses about 1/N of the single instance's CPU, within 15 %
(a member's is at most 1.15/N of it). Start-up (history loads and first fits) is excluded: the
window starts once every process has been ready for a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.core.durations import parse_duration  # noqa: E402
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig  # noqa: E402

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def config(
    workdir: Path, name: str, targets: int, interval: str, sharding: dict[str, Any] | None
) -> Path:
    body: dict[str, Any] = {
        "interval": interval,
        "state_dir": str(workdir / "state"),
        "audit": {"path": str(workdir / f"audit-{name}.jsonl")},
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
                "name": f"t{i:03d}",
                "kind": "simulator",
                "source": "sim",
                "unit_capacity": 50,
                "lead_time": "2m",
                "min_units": 2,
                "max_units": 80,
                "max_demand_age": "30m",
                "mode": "active",
            }
            for i in range(targets)
        ],
    }
    if sharding is not None:
        body["sharding"] = sharding
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name).
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def start(path: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert process.stderr is not None
    for line in process.stderr:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "telemetry":
            # Keep draining stderr, or the daemon blocks on a full pipe.
            subprocess.Popen(["cat"], stdin=process.stderr, stdout=subprocess.DEVNULL)
            return process, str(record["url"])
    raise SystemExit(f"{path.name}: the daemon exited before serving telemetry")


def owned_targets(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("elasticd_shard_owned_targets "):
                return int(float(line.split()[1]))
    return 0


def ready_and_owned(url: str) -> tuple[bool, float | None]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            ready = response.status == 200
    except OSError:
        ready = False
    owned = None
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("elasticd_shard_writable_targets "):
                    owned = float(line.split()[1])
    except OSError:
        pass
    return ready, owned


def measure(
    processes: list[tuple[subprocess.Popen[str], str]], targets: int, window: float, sharded: bool
) -> list[float]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = [ready_and_owned(url) for _, url in processes]
        writable = sum(owned or 0 for _, owned in states)
        if all(ready for ready, _ in states) and (not sharded or writable == targets):
            break
        time.sleep(1.0)
    else:
        raise SystemExit("the daemons never became ready")
    time.sleep(5.0)
    before = [cpu_seconds(p.pid) for p, _ in processes]
    time.sleep(window)
    after = [cpu_seconds(p.pid) for p, _ in processes]
    return [(b - a) / window for a, b in zip(before, after, strict=True)]


def stop(processes: list[tuple[subprocess.Popen[str], str]]) -> None:
    for process, _ in processes:
        process.terminate()
    for process, _ in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=90)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--window", default="60s")
    args = parser.parse_args()
    window = parse_duration(args.window)
    workdir = Path(tempfile.mkdtemp(prefix="elasticd-shard-cpu-"))

    single = [start(config(workdir / "single", "single", args.targets, args.interval, None))]
    try:
        (alone,) = measure(single, args.targets, window, sharded=False)
    finally:
        stop(single)
    print(f"one instance, {args.targets} targets every {args.interval}: {alone:.1%} of a core")

    fake = FakeKubeProcess.spawn()
    members = []
    try:
        for index in range(args.members):
            name = f"m{index}"
            kubeconfig = write_kubeconfig(workdir / f"{name}.kubeconfig", fake.url, token=name)
            sharding = {
                "enabled": True,
                "namespace": "bench",
                "identity": name,
                "lease_duration": "15s",
                "renew_deadline": "10s",
                "retry_period": "2s",
            }
            path = config(workdir / "sharded", name, args.targets, args.interval, sharding)
            text = yaml.safe_load(path.read_text())
            text["kubernetes"] = {"kubeconfig": str(kubeconfig), "in_cluster": False}
            path.write_text(yaml.safe_dump(text), encoding="utf-8")
            members.append(start(path))
        shares = measure(members, args.targets, window, sharded=True)
        owned = [owned_targets(url) for _, url in members]
    finally:
        stop(members)
        fake.stop()
    goal = alone / args.members
    for index, share in enumerate(shares):
        verdict = "ok" if share <= goal * 1.15 else "ABOVE"
        fair = owned[index] / args.targets
        print(
            f"member m{index}: {owned[index]} targets, {share:.1%} of a core = "
            f"{share / alone:.3f} of one instance (1/N = {1 / args.members:.3f}; its share of "
            f"targets {fair:.3f}; within 15 % of 1/N: {verdict})"
        )
    mean = sum(shares) / len(shares)
    print(f"mean member: {mean / alone:.3f} of one instance; all members: {sum(shares):.1%}")
    return 0 if all(share <= goal * 1.15 for share in shares) else 1


if __name__ == "__main__":
    sys.exit(main())
