"""Issue 3 end to end: the daemon scales a Deployment and an EKS node group *before* the rise.

Real parts only: Prometheus (backfilled with two weeks of a daily pattern at 60 s), the fake
Kubernetes API server as a process, moto in server mode, and ``elasticd run`` as a process.

Prometheus serves history up to "now", so the pattern is placed around the test's own clock:
every day for 14 days, demand ramps from 150 to 550 over ten minutes at the same time of day,
and today's ramp is due a few minutes from now (its samples, backfilled ahead, only become
visible as the wall clock reaches them). The daemon must forecast today's rise from the past
days and write ``lead_time`` before demand exceeds what the old 2 units (2 x 100) serve.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.e2e.daemon_process import DaemonProcess
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig
from tests.support.prometheus_server import PROMETHEUS, backfilled_prometheus

pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(), reason="needs the prometheus binary (apt install prometheus)"
)

STEP = 60.0
LEAD = 300.0
UNIT = 100.0
OLD_UNITS = 2
BASE, RISE, RAMP_S, HOLD_S = 150.0, 400.0, 600.0, 2 * 3600.0
METRIC = "shop_requests_per_second"
# The control: the same daily pattern, but today's rise is hours away; nothing may change.
CONTROL_METRIC = "batch_requests_per_second"
CONTROL_DELAY_S = 3 * 3600.0
REGION = "us-east-1"
# How far after the daemon's start (roughly) ``lead`` before the crossing falls: enough for
# start-up on a busy machine, short enough to keep the test under a minute.
SLACK_S = 45.0


def demand_at(t: float, rise: float) -> float:
    """Every day at the time of ``rise``: a ten-minute ramp up, two hours high, a ramp down."""
    value = BASE
    for day in range(-15, 2):
        start = rise + day * 86_400
        up = min(max((t - start) / RAMP_S, 0.0), 1.0)
        down = min(max((t - start - HOLD_S) / RAMP_S, 0.0), 1.0)
        value += RISE * (up - down)
    return value


def pattern(
    now: float,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]], float]:
    """(points, control points, crossing): 14 days back to an hour ahead, on the 60 s grid.

    The crossing is the first sample above the old capacity, placed so that ``crossing -
    LEAD`` is at least ``SLACK_S`` after ``now``.
    """
    # Grid steps from the start of the ramp to the first sample above the old capacity.
    steps_to_cross = math.floor((OLD_UNITS * UNIT - BASE) / (RISE / RAMP_S * STEP)) + 1
    rise = math.ceil((now + SLACK_S + LEAD) / STEP) * STEP - steps_to_cross * STEP
    start = math.floor((now - 14 * 86_400) / STEP) * STEP
    times = [start + i * STEP for i in range(int((rise + 3600 - start) / STEP))]
    points = [(t, demand_at(t, rise)) for t in times]
    control = [(t, demand_at(t, rise + CONTROL_DELAY_S)) for t in times]
    crossing = next(t for t, v in points if t >= rise - 3600 and v > OLD_UNITS * UNIT)
    return points, control, crossing


@pytest.fixture
def eks_nodegroup(moto_endpoint: str) -> Iterator[Any]:
    eks = boto3.client("eks", region_name=REGION, endpoint_url=moto_endpoint)
    eks.create_cluster(
        name="prod",
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]},
    )
    eks.create_nodegroup(
        clusterName="prod",
        nodegroupName="workers",
        nodeRole="arn:aws:iam::123456789012:role/nodes",
        subnets=["subnet-1", "subnet-2"],
        scalingConfig={"minSize": 1, "maxSize": 10, "desiredSize": OLD_UNITS},
    )
    yield eks
    eks.close()


@pytest.fixture
def emr_cluster(moto_endpoint: str) -> Iterator[tuple[Any, str]]:
    """An EMR cluster whose task group (the ``etl`` target) starts at the old size."""
    emr = boto3.client("emr", region_name=REGION, endpoint_url=moto_endpoint)
    answer = emr.run_job_flow(
        Name="etl",
        ReleaseLabel="emr-7.0.0",
        Instances={
            "InstanceGroups": [
                {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1},
                {"InstanceRole": "CORE", "InstanceType": "m5.xlarge", "InstanceCount": 1},
                {"InstanceRole": "TASK", "InstanceType": "m5.xlarge", "InstanceCount": OLD_UNITS},
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )
    yield emr, str(answer["JobFlowId"])
    emr.close()


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[FakeKubeProcess]:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        yaml.safe_dump_all(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"replicas": OLD_UNITS},
            }
            for name in ("web", "batch")
        ),
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    yield fake
    fake.stop()


def daemon_config(
    tmp_path: Path, prometheus_url: str, kubeconfig: Path, moto: str, emr_cluster: str
) -> Path:
    common = {
        "source": "prom",
        "unit_capacity": UNIT,
        "lead_time": f"{LEAD:g}s",
        "min_units": 1,
        "max_units": 10,
        "mode": "active",
    }
    config = {
        "interval": "1s",
        "state_dir": str(tmp_path / "state"),
        "log_format": "json",
        "telemetry": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "training": {"cadence": "1h", "history_window": "14d"},
        "kubernetes": {"kubeconfig": str(kubeconfig), "in_cluster": False},
        "aws": {"region": REGION, "endpoint_url": moto},
        "sources": {"prom": {"type": "prometheus", "url": prometheus_url, "timeout": "5s"}},
        "targets": [
            {"name": "web", "kind": "deployment", "namespace": "shop", "workload": "web"}
            | {"query": f"sum({METRIC})"}
            | common,
            {"name": "workers", "kind": "eks-nodegroup", "cluster": "prod", "nodegroup": "workers"}
            | {"query": f"sum({METRIC})"}
            | common,
            {"name": "etl", "kind": "emr-instance-group", "cluster_id": emr_cluster}
            | {"instance_group": "TASK", "query": f"sum({METRIC})"}
            | common,
            {"name": "control", "kind": "deployment", "namespace": "shop", "workload": "batch"}
            | {"query": f"sum({CONTROL_METRIC})"}
            | common,
        ],
    }
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def decisions(state_dir: Path, target: str) -> list[dict[str, Any]]:
    path = state_dir / "decisions.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["target"] == target]


def written(state_dir: Path, target: str) -> list[dict[str, Any]]:
    return [line for line in decisions(state_dir, target) if line["written"]]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_daemon_scales_up_a_lead_time_before_the_daily_rise(
    tmp_path: Path,
    fake_kube: FakeKubeProcess,
    eks_nodegroup: Any,
    emr_cluster: tuple[Any, str],
    moto_endpoint: str,
) -> None:
    emr, cluster_id = emr_cluster
    began = time.time()
    points, control, crossing = pattern(began)
    assert crossing - LEAD - began >= SLACK_S
    with backfilled_prometheus({METRIC: points, CONTROL_METRIC: control}) as prometheus:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)
        config = daemon_config(tmp_path, prometheus.url, kubeconfig, moto_endpoint, cluster_id)
        state = tmp_path / "state"
        daemon = DaemonProcess(config, env={"AWS_EC2_METADATA_DISABLED": "true"})
        try:
            ready = daemon.wait_event("ready", timeout=crossing - LEAD - time.time())
            assert ready["targets"] == ["control", "etl", "web", "workers"]
            trained = {line["target"]: line["forecaster"] for line in daemon.events("trained")}
            assert trained == {
                "control": "model",
                "etl": "model",
                "web": "model",
                "workers": "model",
            }
            # Both targets written, with time to spare: wait no longer than the deadline.
            daemon.wait_for(
                lambda: (
                    written(state, "web")
                    and written(state, "workers")
                    and written(state, "etl")
                    and len(decisions(state, "control")) >= 5
                ),
                timeout=max(1.0, crossing - LEAD - time.time()),
                what="scale-ups of both targets before the deadline",
            )
            code, seconds = daemon.stop(timeout=10)
        finally:
            daemon.kill()
    assert code == 0, daemon.tail()
    assert seconds < 10

    deadline = crossing - LEAD
    patches = [w for w in fake_kube.writes() if w["verb"] == "PATCH" and w["status"] == 200]
    assert not [w for w in patches if "/batch/" in w["path"]], "the control was scaled"
    assert patches, "no accepted write to the Deployment"
    first_patch = patches[0]
    assert first_patch["path"] == "/apis/apps/v1/namespaces/shop/deployments/web/scale"
    assert first_patch["body"]["spec"]["replicas"] > OLD_UNITS
    assert first_patch["time"] <= deadline, (
        f"Deployment written {first_patch['time'] - deadline:.1f}s too late"
    )

    nodegroup = eks_nodegroup.describe_nodegroup(clusterName="prod", nodegroupName="workers")
    assert nodegroup["nodegroup"]["scalingConfig"]["desiredSize"] > OLD_UNITS
    groups = emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]
    task = next(group for group in groups if group["InstanceGroupType"] == "TASK")
    assert task["RequestedInstanceCount"] > OLD_UNITS
    for target in ("web", "workers", "etl"):
        decision = written(state, target)[0]
        # The audit line is appended after the write returned, so it bounds the write time.
        assert epoch(decision["time"]) <= deadline
        assert decision["current"] == OLD_UNITS and decision["desired"] > OLD_UNITS
        # Demand was still within the old capacity: the forecast, not the observed load,
        # asked for the capacity.
        assert decision["inputs"]["demand"] <= OLD_UNITS * UNIT
        assert decision["reason"] == "forecast"
        assert decision["inputs"]["forecast_source"] == "model"
    # The control's rise is hours away: the same model keeps it where it is.
    control_decisions = decisions(state, "control")
    assert {line["desired"] for line in control_decisions} == {OLD_UNITS}
    print(
        f"\nwrites {deadline - first_patch['time']:.0f}s ahead of the deadline "
        f"(crossing at +{crossing - began:.0f}s, lead {LEAD:.0f}s); "
        f"SIGTERM to exit {seconds:.2f}s; test took {time.time() - began:.1f}s"
    )
