"""The Kubernetes kinds of issues 11 and 12 end to end: an Argo Rollout (``kind: scalable``), a
KEDA-scaled Deployment (``act_via: keda-floor``) and placeholder pods holding nodes for a
Deployment on a Karpenter cluster (``kind: placeholder-pods``), each raised at least its lead
time before a daily rise.

Real parts: ``elasticd run`` as a process and the fake Kubernetes API server as a process
(serving Rollouts with their scale subresource, ScaledObjects with KEDA's HPA, Deployments).
Demand comes from the simulator source, replaying 15 days of a daily pattern at 120x from the
seventh day on: a week of history to train on, then today's rise 30 minutes (15 s of wall
time) ahead. One daemon runs all four targets (one start-up and one fit per target instead of
three daemons); each kind has its own test on that run. The audit log's ``now`` is the
simulated time each decision was made at, so "raised a lead time before the rise" is checked
on the trace's own clock.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from daemon.backtest.synthetic import write_trace_csv
from daemon.backtest.trace import trace_from_arrays
from tests.e2e.daemon_process import DaemonProcess
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig

STEP = 60.0
DAY = 86_400.0
WEEK = 7 * DAY
SPEEDUP = 120.0
UNIT = 100.0
OLD_UNITS = 2
BASE, RISE, RAMP_S, HOLD_S = 150.0, 400.0, 600.0, 2 * 3600.0
# Today's rise, after the simulated start: far enough for start-up and the fits (at 120x,
# 30 minutes are 15 s of wall time), near enough to keep the test short. The speed is a
# trade: a raise is due within a tick (30 simulated seconds) of its deadline, so a stall of the
# loaded machine costs the margin 120 simulated seconds for each wall second.
RISE_AFTER_START = 30 * 60.0
POD_LEAD = 300.0
NODE_LEAD = 600.0
NAMESPACE = "shop"
# One node holds four pods (1 core each on 4.5 allocatable cores less 0.5 of daemonsets).
POD_CPU, NODE_CPU, OVERHEAD_CPU = "1", "4500m", "500m"
PODS_PER_NODE = 4


def demand_at(t: float, rise: float) -> float:
    """Every day at the time of ``rise``: a ramp up, three hours high, a ramp down."""
    value = BASE
    for day in range(-16, 2):
        start = rise + day * DAY
        up = min(max((t - start) / RAMP_S, 0.0), 1.0)
        down = min(max((t - start - HOLD_S) / RAMP_S, 0.0), 1.0)
        value += RISE * (up - down)
    return value


@dataclass(frozen=True)
class Run:
    """What one daemon run left behind: the audit log, the API server's writes, the rise."""

    decisions: list[dict[str, Any]]
    writes: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    crossing: float
    """Simulated time of the first sample above what the old 2 pods serve."""
    node_crossing: float
    """... and above what the old node serves (its four pods)."""

    def of(self, target: str) -> list[dict[str, Any]]:
        return [line for line in self.decisions if line["target"] == target]

    def first_raise(self, target: str, above: int) -> dict[str, Any]:
        raised = [line for line in self.of(target) if line["written"] and line["desired"] > above]
        assert raised, f"{target} was never raised above {above}: {self.of(target)[-3:]}"
        return raised[0]

    def stored(self, kind: str, name: str) -> dict[str, Any]:
        return next(o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name)

    def events_on(self, kind: str, name: str) -> list[dict[str, Any]]:
        """The involvedObject of every Event the daemon created on ``kind``/``name``."""
        found = [
            w["body"]["involvedObject"]
            for w in self.writes
            if w["verb"] == "POST" and w["path"].endswith("/events") and w["status"] == 201
        ]
        on = [o for o in found if o["kind"] == kind and o["name"] == name]
        assert on, f"no Event on {kind} {name}: {found}"
        return on


def seed_objects() -> list[dict[str, Any]]:
    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": NAMESPACE}

    selector = {"selector": {"matchLabels": {"app": "checkout"}}}
    return [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": meta("checkout"),
            "spec": {"replicas": OLD_UNITS} | selector,
        },
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("api"), "spec": {}},
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": meta("api"),
            "spec": {
                "scaleTargetRef": {"name": "api"},
                "minReplicaCount": OLD_UNITS,
                "maxReplicaCount": 20,
                "triggers": [{"type": "prometheus", "metadata": {"threshold": "100"}}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta("keda-hpa-api")
            | {
                "labels": {"scaledobject.keda.sh/name": "api"},
                "ownerReferences": [
                    {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "api"}
                    | {"uid": "1", "controller": True}
                ],
            },
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "minReplicas": OLD_UNITS,
                "maxReplicas": 20,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("web"),
            "spec": {"replicas": OLD_UNITS},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("elasticd-placeholder"),
            "spec": {"replicas": 0},
        },
    ]


def daemon_config(tmp_path: Path, trace: Path, kubeconfig: Path) -> Path:
    common = {
        "source": "sim",
        "unit_capacity": UNIT,
        "lead_time": f"{POD_LEAD:g}s",
        "min_units": 1,
        "max_units": 20,
        "mode": "active",
        # Yesterday's shape, scaled to today's level: the policy a week of history supports
        # best (the gradient-boosting model wants more rises than seven to trust one).
        "tournament": {"pin": "seasonal_naive"},
    }
    shape = {
        "pod_requests": {"cpu": POD_CPU},
        "node_allocatable": {"cpu": NODE_CPU},
        "node_overhead": {"cpu": OVERHEAD_CPU},
    }
    targets = [
        {
            "name": "checkout",
            "kind": "scalable",
            "api_version": "argoproj.io/v1alpha1",
            "resource": "rollouts",
            "object_kind": "Rollout",
            "namespace": NAMESPACE,
            "object_name": "checkout",
        }
        | common,
        {
            "name": "api",
            "kind": "deployment",
            "namespace": NAMESPACE,
            "workload": "api",
            "act_via": "keda-floor",
        }
        | common,
        {
            "name": "web",
            "kind": "deployment",
            "namespace": NAMESPACE,
            "workload": "web",
            "node_group": {"target": "web-headroom"} | shape,
        }
        | common,
        {
            "name": "web-headroom",
            "kind": "placeholder-pods",
            "namespace": NAMESPACE,
            "workloads": [{"kind": "deployment", "name": "web"}],
        }
        | shape
        | common
        | {"unit_capacity": UNIT * PODS_PER_NODE, "lead_time": f"{NODE_LEAD:g}s"}
        | {"max_units": 10},
    ]
    config = {
        "interval": "250ms",
        "state_dir": str(tmp_path / "state"),
        "log_format": "json",
        "size_read_max_age": 0,
        "telemetry": {"enabled": False},
        "training": {"cadence": "30d", "history_window": "7d"},
        "kubernetes": {"kubeconfig": str(kubeconfig), "in_cluster": False},
        "sources": {"sim": {"type": "simulator", "trace": str(trace), "speedup": SPEEDUP}},
        "targets": targets,
    }
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp_path = tmp_path_factory.mktemp("kube-kinds")
    # 15 days on the 5-minute grid; the simulator starts a week in.
    first = 1_790_000_000.0 - 1_790_000_000.0 % DAY
    times = first + STEP * np.arange(int(15 * DAY / STEP), dtype=np.float64)
    start = first + WEEK
    rise = start + RISE_AFTER_START
    values = np.array([demand_at(t, rise) for t in times])
    trace = tmp_path / "daily.csv"
    write_trace_csv(trace_from_arrays(times, values), str(trace))

    def first_above(capacity: float) -> float:
        today = zip(times, values, strict=True)
        return float(next(t for t, v in today if t >= start and v > capacity))

    crossing = first_above(OLD_UNITS * UNIT)
    node_crossing = first_above(UNIT * PODS_PER_NODE)

    seed = tmp_path / "objects.yaml"
    seed.write_text(yaml.safe_dump_all(seed_objects()), encoding="utf-8")
    fake = FakeKubeProcess.spawn(seed_file=seed)
    daemon: DaemonProcess | None = None
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
        daemon = DaemonProcess(daemon_config(tmp_path, trace, kubeconfig))
        audit = tmp_path / "state" / "decisions.jsonl"

        def decisions() -> list[dict[str, Any]]:
            if not audit.exists():
                return []
            return [json.loads(line) for line in audit.read_text().splitlines() if line]

        def past_the_deadlines() -> bool:
            # Every target has decided a minute after the last of their deadlines (the pods'
            # lead before the crossing; the nodes' comes earlier): whatever was due is written.
            after = crossing - POD_LEAD + 60.0
            seen = {line["target"] for line in decisions() if line["inputs"]["now"] > after}
            return seen >= {"checkout", "api", "web", "web-headroom"}

        wall = (crossing - start) / SPEEDUP
        daemon.wait_for(past_the_deadlines, timeout=wall + 30, what="decisions past the deadlines")
        code, _ = daemon.stop(timeout=10)
        assert code == 0, daemon.tail()
        with open(audit, encoding="utf-8") as handle:
            lines = [json.loads(line) for line in handle if line.strip()]
        with urllib.request.urlopen(f"{fake.url}/_fake/objects", timeout=10) as response:
            objects = json.load(response)
        yield Run(lines, fake.writes(), objects, crossing, node_crossing)
    finally:
        if daemon is not None:
            daemon.kill()
        fake.stop()


def assert_forecast_raise(
    decision: dict[str, Any], crossing: float, lead: float, old_capacity: float
) -> None:
    """Raised by the forecast, while demand was still within the old capacity, at least
    ``lead`` before the crossing."""
    made = decision["inputs"]["now"]
    assert made <= crossing - lead, f"raised {made - (crossing - lead):.0f}s too late"
    print(
        f"\n{decision['target']}: raised to {decision['desired']} {crossing - made:.0f}s "
        f"(simulated) before its crossing, lead {lead:.0f}s"
    )
    assert decision["inputs"]["demand"] <= old_capacity
    assert decision["inputs"]["forecast_source"] == "seasonal_naive"


def test_an_argo_rollout_is_raised_through_its_scale_subresource_ahead_of_the_rise(
    run: Run,
) -> None:
    decision = run.first_raise("checkout", OLD_UNITS)
    assert_forecast_raise(decision, run.crossing, POD_LEAD, OLD_UNITS * UNIT)
    scale = "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout/scale"
    patches = [w for w in run.writes if w["path"] == scale and w["status"] == 200]
    assert patches and patches[0]["body"]["spec"]["replicas"] == decision["desired"]
    assert "resourceVersion" in patches[0]["body"]["metadata"]
    assert run.stored("Rollout", "checkout")["spec"]["replicas"] > OLD_UNITS
    # The write's Event names the Rollout by its own group/version: `kubectl describe rollout`
    # finds Events by kind, name and apiVersion, and an empty apiVersion matched nothing.
    assert {e["apiVersion"] for e in run.events_on("Rollout", "checkout")} == {
        "argoproj.io/v1alpha1"
    }


def test_a_keda_scaled_deployment_gets_its_scaled_object_floor_raised_ahead_of_the_rise(
    run: Run,
) -> None:
    decision = run.first_raise("api", OLD_UNITS)
    assert_forecast_raise(decision, run.crossing, POD_LEAD, OLD_UNITS * UNIT)
    path = "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/api"
    patches = [w for w in run.writes if w["path"] == path and w["status"] == 200]
    assert patches and patches[0]["body"]["spec"] == {"minReplicaCount": decision["desired"]}
    # Neither the KEDA-owned HPA nor the Deployment was written: KEDA carried the floor.
    assert not [w for w in run.writes if "horizontalpodautoscalers" in w["path"]]
    assert not [w for w in run.writes if w["path"].endswith("/deployments/api/scale")]
    floor = run.stored("ScaledObject", "api")["spec"]["minReplicaCount"]
    assert run.stored("HorizontalPodAutoscaler", "keda-hpa-api")["spec"]["minReplicas"] == floor
    assert {e["apiVersion"] for e in run.events_on("ScaledObject", "api")} == {"keda.sh/v1alpha1"}


def test_placeholder_pods_hold_nodes_a_node_lead_before_the_rise(run: Run) -> None:
    """The node target raises nodes a node lead time before the pods need a second node, as
    placeholder pods: the real pods' node is theirs, each node above it is four placeholders;
    the pods themselves are raised later, a pod lead time before their own crossing."""
    decision = run.first_raise("web-headroom", 1)
    assert_forecast_raise(decision, run.node_crossing, NODE_LEAD, PODS_PER_NODE * UNIT)
    path = "/apis/apps/v1/namespaces/shop/deployments/elasticd-placeholder/scale"
    placeholders = [w for w in run.writes if w["path"] == path and w["status"] == 200]
    assert placeholders, "no placeholder write"
    first = placeholders[0]["body"]["spec"]["replicas"]
    assert first > 0 and first % PODS_PER_NODE == 0
    # The real pods were not raised yet when the nodes were: nodes ahead of pods.
    web = run.first_raise("web", OLD_UNITS)
    assert decision["inputs"]["now"] < web["inputs"]["now"]
    assert_forecast_raise(web, run.crossing, POD_LEAD, OLD_UNITS * UNIT)
    # At the rise, the nodes held cover the pods the peak needs.
    peak_pods = math.ceil((BASE + RISE) / UNIT)
    nodes_at_rise = max(
        line["desired"]
        for line in run.of("web-headroom")
        if line["inputs"]["now"] <= run.node_crossing
    )
    assert nodes_at_rise >= math.ceil(peak_pods / PODS_PER_NODE)
