"""Issue 11 end to end: the real daemon raises an ECS service, a Spot Fleet and a Lambda alias's
provisioned concurrency a lead time *before* a daily rise.

Real parts: ``elasticd run`` as a process; ECS and EC2 on moto in server mode; Lambda on the
in-repo fake (tests/support/fake_lambda.py: moto lacks provisioned concurrency), which also
forwards every other request to moto, so the one ``aws.endpoint_url`` serves all three.
Demand comes from the simulator source replaying, at ``SPEEDUP`` times real time, 14 days of a
daily pattern whose rise comes ``RISE_AFTER_S`` (simulated) after the replay starts; the past
week is history to train on. Each kind must be written ``LEAD`` (simulated) before demand
exceeds what the old 2 units serve, on the forecast (the seasonal policy, pinned: see
``daemon_config``), while observed demand is still low.

One daemon serves all three kinds (one start-up and training instead of three); each kind has
its own test reading what it did. A fourth target names an ECS service that does not exist:
it is reported as a permanent error on that target, every tick, and the others carry on.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import yaml

from daemon.backtest.synthetic import write_trace_csv
from daemon.backtest.trace import trace_from_arrays
from tests.e2e.daemon_process import DaemonProcess
from tests.support.fake_lambda import FakeLambda
from tests.support.moto_server import MotoServer

REGION = "us-east-1"
STEP = 300.0
SPEEDUP = 300.0  # five simulated minutes a wall second: one tick a step
LEAD = 900.0
UNIT = 100.0
OLD_UNITS = 2
BASE, RISE, RAMP_S, HOLD_S = 150.0, 400.0, 600.0, 2 * 3600.0
WEEK = 7 * 86_400.0
# Simulated seconds from the replay's start to today's rise: enough for the daemon to start,
# train and tick on a busy machine before ``crossing - LEAD``, short for a quick test.
RISE_AFTER_S = 50 * 60.0
KINDS = ("ecs", "fleet", "lambda")


def demand_at(t: float, rise: float) -> float:
    """Every day at the time of ``rise``: a ten-minute ramp up, two hours high, a ramp down."""
    value = BASE
    for day in range(-8, 8):
        start = rise + day * 86_400
        up = min(max((t - start) / RAMP_S, 0.0), 1.0)
        down = min(max((t - start - HOLD_S) / RAMP_S, 0.0), 1.0)
        value += RISE * (up - down)
    return value


def write_trace(path: Path) -> tuple[float, float]:
    """14 days at 5 min, the replay starting a week in (the daemon's rule for a 14-day trace);
    returns (start of the replay, crossing: the first sample above the old capacity)."""
    first = math.floor(time.time() / STEP) * STEP - WEEK
    times = first + STEP * np.arange(int(2 * WEEK / STEP) + 1, dtype=np.float64)
    start = first + WEEK
    rise = start + RISE_AFTER_S
    values = np.array([demand_at(t, rise) for t in times])
    write_trace_csv(trace_from_arrays(times, values), str(path))
    crossing = next(t for t, v in zip(times, values, strict=True) if t >= start and v > 200)
    return start, float(crossing)


@dataclass
class Run:
    state: Path
    start: float
    crossing: float
    ecs: Any
    ec2: Any
    fleet_id: str
    fake: FakeLambda
    daemon: DaemonProcess
    exit_code: int
    wall_s: float


def decisions(state: Path, target: str) -> list[dict[str, Any]]:
    path = state / "decisions.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["target"] == target]


def written(state: Path, target: str) -> list[dict[str, Any]]:
    return [line for line in decisions(state, target) if line.get("written")]


def all_written(state: Path) -> bool:
    path = state / "decisions.jsonl"
    return path.exists() and all(written(state, kind) for kind in KINDS)


def lambda_statuses(daemon: DaemonProcess) -> list[str]:
    """The provisioned-concurrency statuses the daemon logged, in order."""
    return [line["status"] for line in daemon.events("provisioned_concurrency_status")]


def allocation_seen(daemon: DaemonProcess) -> bool:
    """The daemon logged its first allocation IN_PROGRESS, then READY."""
    statuses = lambda_statuses(daemon)
    return "IN_PROGRESS" in statuses and "READY" in statuses[statuses.index("IN_PROGRESS") :]


def summary(state: Path, daemon: DaemonProcess, start: float, crossing: float) -> str:
    """What each target decided (simulated minutes from the replay's start) and the log lines
    that are not the missing service's, for a failure's message."""
    lines = [f"crossing at +{(crossing - start) / 60:.0f} min"]
    if (state / "decisions.jsonl").exists():
        for kind in KINDS:
            steps = [
                f"+{(d['inputs']['now'] - start) / 60:.0f}:{d.get('current')}->{d.get('desired')}"
                f"{'*' if d.get('written') else ''}"
                for d in decisions(state, kind)
            ]
            lines.append(f"{kind}: {' '.join(steps)}")
    lines += [line.rstrip() for line in daemon.raw if '"target":"ghost"' not in line][-20:]
    return "\n".join(lines)


def create_resources(moto: str) -> tuple[Any, Any, str]:
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=moto)
    ecs.create_cluster(clusterName="prod")
    ecs.register_task_definition(
        family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}]
    )
    ecs.create_service(
        cluster="prod", serviceName="web", taskDefinition="web", desiredCount=OLD_UNITS
    )
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto)
    fleet = ec2.request_spot_fleet(
        SpotFleetRequestConfig={
            "IamFleetRole": "arn:aws:iam::123456789012:role/fleet",
            "TargetCapacity": OLD_UNITS,
            "Type": "maintain",
            "AllocationStrategy": "lowestPrice",
            # Capacity units are vCPUs: a c5.large counts 2, a c5.xlarge 4.
            "LaunchSpecifications": [
                {"ImageId": "ami-12c6146b", "InstanceType": "c5.large", "WeightedCapacity": 2.0},
                {"ImageId": "ami-12c6146b", "InstanceType": "c5.xlarge", "WeightedCapacity": 4.0},
            ],
        }
    )
    return ecs, ec2, str(fleet["SpotFleetRequestId"])


def daemon_config(tmp: Path, trace: Path, endpoint: str, fleet_id: str) -> Path:
    common = {
        "source": "sim",
        "unit_capacity": UNIT,
        "lead_time": f"{LEAD:g}s",
        "max_demand_age": "15m",
        "min_units": 1,
        "max_units": 20,
        "mode": "active",
        # A simulator replay starts a week into its trace, so the daemon has a week of history
        # and a fresh tournament. On so little, the learned model is not yet the policy the
        # tournament would pick (a backtest of this trace switches to the seasonal one, which
        # forecasts the rise from the days before): act on that forecast from the start.
        "tournament": {"pin": "seasonal_naive"},
    }
    config = {
        "interval": "1s",
        "state_dir": str(tmp / "state"),
        "log_format": "json",
        "size_read_max_age": 0,
        "training": {"cadence": "1h", "history_window": "7d"},
        "aws": {"region": REGION, "endpoint_url": endpoint},
        "sources": {"sim": {"type": "simulator", "trace": str(trace), "speedup": SPEEDUP}},
        "targets": [
            {"name": "ecs", "kind": "ecs-service", "cluster": "prod", "service": "web"} | common,
            {"name": "fleet", "kind": "spot-fleet", "spot_fleet_request_id": fleet_id} | common,
            {
                "name": "lambda",
                "kind": "lambda-provisioned-concurrency",
                "function_name": "checkout",
                "qualifier": "live",
            }
            | common,
            {"name": "ghost", "kind": "ecs-service", "cluster": "prod", "service": "ghost"}
            | common,
        ],
    }
    path = tmp / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The daemon, run until all three kinds are written (or the deadline passes)."""
    began = time.monotonic()
    moto_server.reset()
    tmp = tmp_path_factory.mktemp("aws-kinds")
    ecs, ec2, fleet_id = create_resources(moto_server.url)
    # AWS takes minutes to make provisioned concurrency READY; the fake half a wall second
    # (two and a half simulated minutes at this speed-up).
    fake = FakeLambda(ready_after=0.5, upstream=moto_server.url).start()
    fake.add_function("checkout", ("live",))
    fake.set_config("checkout", "live", OLD_UNITS)
    trace = tmp / "trace.csv"
    start, crossing = write_trace(trace)
    config = daemon_config(tmp, trace, fake.url, fleet_id)
    state = tmp / "state"
    daemon = DaemonProcess(config, env={"AWS_EC2_METADATA_DISABLED": "true"})
    try:
        # The replay starts when the targets are built, a little after the process: wait for
        # the simulated deadline plus a margin, in wall seconds.
        deadline_wall = (crossing - LEAD - start) / SPEEDUP + 15.0
        try:
            daemon.wait_for(lambda: all_written(state), timeout=deadline_wall, what="writes")
            daemon.wait_for(lambda: allocation_seen(daemon), timeout=10, what="READY")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{summary(state, daemon, start, crossing)}") from None
        code, _ = daemon.stop(timeout=10)
        yield Run(
            state, start, crossing, ecs, ec2, fleet_id, fake, daemon, code, time.monotonic() - began
        )
    finally:
        daemon.kill()
        fake.stop()
        ecs.close()
        ec2.close()


def check_raised_ahead(run: Run, target: str) -> dict[str, Any]:
    """The target's first write: from the old size, up, on the forecast, ``LEAD`` ahead."""
    assert run.exit_code == 0, run.daemon.tail()
    first = written(run.state, target)[0]
    assert first["current"] == OLD_UNITS and first["desired"] > OLD_UNITS, first
    # The audit line follows the write; its simulated "now" bounds the write's time.
    ahead = run.crossing - first["inputs"]["now"]
    assert ahead >= LEAD, f"{target} raised {ahead:.0f}s before the rise, lead {LEAD:.0f}s"
    # Demand was still within the old capacity: the forecast asked for the capacity.
    assert first["inputs"]["demand"] <= OLD_UNITS * UNIT
    assert first["reason"] == "forecast", first
    print(
        f"\n{target}: raised {ahead / 60:.0f} simulated min before the rise; run {run.wall_s:.1f}s"
    )
    return first


def test_ecs_service_is_raised_a_lead_time_before_the_rise(run: Run) -> None:
    first = check_raised_ahead(run, "ecs")
    service = run.ecs.describe_services(cluster="prod", services=["web"])["services"][0]
    assert service["desiredCount"] >= first["desired"] > OLD_UNITS


def test_spot_fleet_is_raised_in_capacity_units_before_the_rise(run: Run) -> None:
    first = check_raised_ahead(run, "fleet")
    answer = run.ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[run.fleet_id])
    config = answer["SpotFleetRequestConfigs"][0]["SpotFleetRequestConfig"]
    assert config["TargetCapacity"] >= first["desired"] > OLD_UNITS


def test_lambda_provisioned_concurrency_is_ready_before_the_rise(run: Run) -> None:
    first = check_raised_ahead(run, "lambda")
    puts = [r for r in run.fake.requests("PutProvisionedConcurrencyConfig") if r.status == 202]
    assert puts, "no accepted PutProvisionedConcurrencyConfig"
    assert puts[0].body == {"ProvisionedConcurrentExecutions": first["desired"]}
    config = run.fake.config("checkout", "live")
    assert config is not None
    assert config["RequestedProvisionedConcurrentExecutions"] > OLD_UNITS
    # The first raise was allocated in full; a later put may still be IN_PROGRESS when the
    # daemon is stopped (the fake takes half a second to allocate, a simulated 150 s).
    assert config["AllocatedProvisionedConcurrentExecutions"] >= first["desired"]
    assert config["Status"] in ("READY", "IN_PROGRESS")
    # The daemon logged the allocations: READY at the old size, IN_PROGRESS at each put, and
    # READY once AWS (the fake) had allocated the first (a later put may still be running
    # when the daemon was stopped).
    statuses = lambda_statuses(run.daemon)
    assert statuses[0] == "READY"
    assert statuses.count("IN_PROGRESS") == len(puts)
    assert "READY" in statuses[statuses.index("IN_PROGRESS") :]


def test_a_missing_service_is_reported_on_its_target_and_not_fatal(run: Run) -> None:
    unreadable = [line for line in decisions(run.state, "ghost")]
    assert unreadable and {line["reason"] for line in unreadable} == {"target_unreadable"}
    assert "(permanent)" in unreadable[0]["error"]
    assert "ecs service prod/ghost not found" in unreadable[0]["error"]
    assert not written(run.state, "ghost")
    # The others were written all the same (asserted in detail above).
    assert all(written(run.state, kind) for kind in KINDS)
