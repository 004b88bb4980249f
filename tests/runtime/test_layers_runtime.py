"""Pods and nodes, one plan, through the real composition root.

A Deployment (fake Kubernetes API, in-process) linked to an EKS managed node group (moto) with
a known pod request and node size: two pods fit on a node. ``TargetFactory`` builds both
targets (actuators, the pod target's node-lead forecaster and its companion training, the
shared layer board); the test then gives both the same scripted source (the daily trace with
two weeks of history, which a simulator world cannot offer) and a clock it steps a minute at a
time, so the timings below are exact, not a matter of luck on a busy machine. The node group's
own unit capacity is set so high that its own forecast alone keeps one node: every node it
gains comes from the pod layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest

from daemon.core.binpack import NodeShape, Resources, nodes_for
from daemon.sources.base import MetricQuery, Sample, Series
from tests.runtime.test_app import (
    DAY_7,
    RISE_S,
    FactoryHarness,
    crossing,
    daily_demand,
    factory_harness,  # noqa: F401  (a fixture)
    kube,  # noqa: F401  (a fixture)
    web_deployment,
    web_target,
)
from tests.support.fake_kube import FakeKube

REGION = "us-east-1"
POD_LEAD_S, NODE_LEAD_S = 120.0, 600.0
# 4 cores per node, 0.4 taken by daemonsets, 1.5 per pod: two pods per node.
SHAPE = NodeShape(Resources(cpu=1.5), Resources(cpu=4.0), Resources(cpu=0.4))
WEB_SCALE_PATH = "/apis/apps/v1/namespaces/shop/deployments/web/scale"
DAY_14 = DAY_7 + 7 * 86_400.0
# When demand first exceeds what the 2 replicas at the start serve, on the day under test.
CROSSING = crossing(2) + (DAY_14 - DAY_7)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class DailySource:
    """The daily trace as a metrics system serves it, at any time: the ``MetricSource``
    Protocol in a few lines, with two weeks of history behind the test's clock."""

    async def latest(self, query: MetricQuery[Any], now: float) -> Sample | None:
        at = math.floor(now / 60) * 60
        return Sample(at, daily_demand(at))

    async def history(
        self, query: MetricQuery[Any], start: float, end: float, step: float
    ) -> Series:
        times = np.arange(math.ceil(start / step) * step, end + 1e-6, step)
        return Series(times, np.array([daily_demand(t) for t in times]))

    async def close(self) -> None:
        return None


@pytest.fixture
def nodegroup(moto_endpoint: str) -> Iterator[Any]:
    eks = boto3.client("eks", region_name=REGION, endpoint_url=moto_endpoint)
    eks.create_cluster(
        name="prod",
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": ["subnet-1"]},
    )
    eks.create_nodegroup(
        clusterName="prod",
        nodegroupName="workers",
        nodeRole="arn:aws:iam::123456789012:role/nodes",
        subnets=["subnet-1"],
        scalingConfig={"minSize": 1, "maxSize": 10, "desiredSize": 1},
    )
    yield eks
    eks.close()


def targets() -> list[dict[str, Any]]:
    link = {
        "target": "workers",
        "pod_requests": {"cpu": "1500m"},
        "node_allocatable": {"cpu": 4},
        "node_overhead": {"cpu": "400m"},
    }
    web = web_target(lead_time=f"{POD_LEAD_S:g}s", max_units=12, node_group=link)
    # A scale-down stabilisation keeps the plan steady through the ramp, where a model
    # trained on one week still wavers; it applies to both layers.
    web["scale_down_stabilisation"] = "20m"
    workers = {
        "name": "workers",
        "kind": "eks-nodegroup",
        "cluster": "prod",
        "nodegroup": "workers",
        "source": "sim",
        "unit_capacity": 100_000,
        "lead_time": f"{NODE_LEAD_S:g}s",
        "min_units": 1,
        "max_units": 10,
        "max_demand_age": "10m",
        "scale_down_stabilisation": "20m",
        "mode": "active",
    }
    return [web, workers]


async def test_nodes_are_asked_for_a_node_lead_time_ahead_of_the_pods_they_host(
    factory_harness: FactoryHarness,  # noqa: F811
    kube: tuple[FakeKube, dict[str, Any]],  # noqa: F811
    nodegroup: Any,
    moto_endpoint: str,
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(2))
    settings = factory_harness.settings(
        targets(),
        # The test ticks once a simulated minute: one wall second at the simulator's speed.
        interval="1s",
        training={"history_window": "14d"},
        kubernetes=kube_settings,
        aws={"region": REGION, "endpoint_url": moto_endpoint},
    )
    runtimes = await factory_harness.build(settings)
    clock = Clock(DAY_14 + 11.5 * 3600)
    source = DailySource()
    for runtime in runtimes:
        # Two weeks of history, which a simulator world (a week at most) cannot offer.
        runtime.reconciler.source = runtime.trainer.source = source
        runtime.reconciler.clock = runtime.trainer.clock = clock
        await runtime.trainer.start()
    models = factory_harness.tmp_path / "state" / "models"
    # The node-lead model is its own, saved where `elasticd explain` looks for it.
    assert (models / "web+nodes.json").exists()

    nodes_at: list[tuple[float, int]] = []

    def record_nodes() -> None:
        scaling = nodegroup.describe_nodegroup(clusterName="prod", nodegroupName="workers")
        nodes_at.append((clock.now, scaling["nodegroup"]["scalingConfig"]["desiredSize"]))

    # The pod target ticks first each minute, so the node target sees this minute's plan.
    while clock.now < DAY_14 + RISE_S + 3600:
        for runtime in runtimes:
            await runtime.reconciler.tick()
        record_nodes()
        clock.now += 60

    web_lines = factory_harness.audit_lines("web")
    web = [line for line in web_lines if line["written"]]
    workers = [line for line in factory_harness.audit_lines("workers") if line["written"]]
    assert web and workers
    # Nodes ahead of the pods: each replica increase found the nodes it needs already asked
    # for at least a node lead time earlier, so they had time to boot.
    first_nodes: dict[int, float] = {}
    for at, nodes in nodes_at:
        for count in range(1, nodes + 1):
            first_nodes.setdefault(count, at)
    for line in web:
        needed = nodes_for(line["desired"], SHAPE)
        lead = line["inputs"]["now"] - first_nodes[needed]
        assert lead >= NODE_LEAD_S, f"{line['desired']} pods: nodes only {lead:.0f}s ahead"
    first_node_write, first_pod_write = workers[0]["inputs"]["now"], web[0]["inputs"]["now"]
    assert first_node_write <= CROSSING - NODE_LEAD_S
    assert first_pod_write - first_node_write >= NODE_LEAD_S
    # The node layer drove every node write, and its counts are the bin-pack of the pods.
    plans = {line["inputs"]["now"]: line["inputs"]["layers"] for line in web_lines}
    raised = [line for line in workers if line["desired"] > line["current"]]
    lowered = [line for line in workers if line["desired"] < line["current"]]
    assert raised and len(raised) + len(lowered) == len(workers)
    for line in raised:
        plan = plans[line["inputs"]["now"]]
        assert line["reason"] == "node_forecast" == plan["reasons"][0]
        assert line["desired"] == plan["nodes_desired"] == nodes_for(plan["pods_forecast"], SHAPE)
        assert line["inputs"]["layers"]["pods"]["web"]["nodes_desired"] == line["desired"]
    # Nodes asked for a forecast that did not come are given back, but never below the
    # running pods: what holds them then is the pods' layer.
    replicas = fake.get("Deployment", "shop", "web")["spec"]["replicas"]
    for line in lowered:
        assert line["reason"] == "pods_current" == plans[line["inputs"]["now"]]["reasons"][0]
        assert line["desired"] >= nodes_for(replicas, SHAPE)
    # At the peak the nodes hold exactly what the running replicas need, no more.
    final = nodegroup.describe_nodegroup(clusterName="prod", nodegroupName="workers")
    assert final["nodegroup"]["scalingConfig"]["desiredSize"] == nodes_for(replicas, SHAPE)
    print(
        f"\nnodes asked for {first_pod_write - first_node_write:.0f}s before the first replica "
        f"write ({CROSSING - first_node_write:.0f}s before demand crossed); "
        f"{replicas} pods on {nodes_for(replicas, SHAPE)} nodes"
    )
