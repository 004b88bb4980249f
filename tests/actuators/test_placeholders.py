"""``kind: placeholder-pods``: nodes held by a Deployment of placeholder pods, against the
in-repo fake API server (the placeholder Deployment and the real workloads it stands beside)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from daemon.actuators.base import Actuator, Capacity
from daemon.errors import ConflictError, PermanentActuatorError
from daemon.kinds.registry import spec_of
from tests.actuators.conftest import deployment, statefulset
from tests.actuators.test_scalable import Context, settings_with
from tests.support.fake_kube import FakeKube

PLACEHOLDER_SCALE = "/apis/apps/v1/namespaces/shop/deployments/elasticd-placeholder/scale"


def placeholder_target(**extra: Any) -> Any:
    """Pods of 500m on nodes with 3.5 cores free: 7 a node."""
    return settings_with(
        {
            "kind": "placeholder-pods",
            "namespace": "shop",
            "workloads": [
                {"kind": "deployment", "name": "web"},
                {"kind": "statefulset", "name": "cache", "namespace": "data"},
            ],
            "pod_requests": {"cpu": "500m", "memory": "1Gi"},
            "node_allocatable": {"cpu": "4", "memory": "16Gi"},
            "node_overhead": {"cpu": "500m", "memory": "2Gi"},
        }
        | extra
    ).targets[0]


@pytest.fixture
async def nodes(fake_kube: FakeKube, kube_client: client.ApiClient) -> Actuator:
    fake_kube.seed(deployment("web", 8, namespace="shop"))
    fake_kube.seed(statefulset("cache", 2, namespace="data"))
    fake_kube.seed(deployment("elasticd-placeholder", 0, namespace="shop"))
    actuator, events = await spec_of("placeholder-pods").build(
        placeholder_target(), Context(kube_client)
    )
    assert events is None  # its numbers are nodes: an Event would call them replicas
    return actuator


async def test_reads_the_nodes_real_and_placeholder_pods_hold(
    nodes: Actuator, fake_kube: FakeKube
) -> None:
    assert nodes.describe() == "placeholder pods deployment shop/elasticd-placeholder"
    # 8 + 2 real pods at 7 a node: 2 nodes.
    assert await nodes.read() == Capacity(desired=2, ready=None, min_size=None, max_size=None)
    fake_kube.update("Deployment", "shop", "elasticd-placeholder", {"spec": {"replicas": 5}})
    assert (await nodes.read()).desired == 3


async def test_headroom_nodes_become_placeholders_and_only_they_are_written(
    nodes: Actuator, fake_kube: FakeKube
) -> None:
    result = await nodes.scale(4, expected=2)

    # Two nodes of headroom above the real pods' two: 14 placeholders.
    assert (result.written, result.previous, result.requested, result.applied) == (True, 2, 4, 4)
    [write] = fake_kube.writes
    assert (write.path, write.status) == (PLACEHOLDER_SCALE, 200)
    assert write.body["spec"] == {"replicas": 14}
    assert fake_kube.get("Deployment", "shop", "web")["spec"]["replicas"] == 8
    assert (await nodes.read()).desired == 4

    # Back to no headroom: no placeholders.
    down = await nodes.scale(2)
    assert (down.written, down.applied) == (True, 2)
    assert fake_kube.get("Deployment", "shop", "elasticd-placeholder")["spec"]["replicas"] == 0


async def test_real_pods_that_need_more_nodes_than_asked_keep_them(
    nodes: Actuator, fake_kube: FakeKube
) -> None:
    result = await nodes.scale(1)
    # The real pods' two nodes are theirs: nothing to write, and the nodes held say so.
    assert (result.written, result.requested, result.applied) == (False, 1, 2)
    assert fake_kube.writes == []


async def test_real_pods_growing_into_the_headroom_change_neither_the_size_nor_the_plan(
    nodes: Actuator, fake_kube: FakeKube
) -> None:
    """Real pods preempting placeholders is the pattern working, not another writer: the
    nodes read stay the ones asked for, so no external override is seen and the next write's
    precondition holds."""
    assert (await nodes.scale(4, expected=2)).applied == 4  # 14 placeholders
    fake_kube.update("Deployment", "shop", "web", {"spec": {"replicas": 13}})  # 15 real pods

    assert (await nodes.read()).desired == 4
    result = await nodes.scale(6, expected=4)

    # The real pods need 3 nodes now: 3 nodes of headroom above them.
    assert (result.written, result.previous, result.applied) == (True, 4, 6)
    assert fake_kube.get("Deployment", "shop", "elasticd-placeholder")["spec"]["replicas"] == 21


async def test_real_pods_that_outgrow_the_nodes_asked_for_are_read_as_theirs(
    nodes: Actuator, fake_kube: FakeKube
) -> None:
    assert (await nodes.read()).desired == 2
    fake_kube.update("Deployment", "shop", "web", {"spec": {"replicas": 20}})  # 22 real pods
    assert (await nodes.read()).desired == 4


async def test_placeholders_another_writer_changed_are_a_conflict(
    nodes: Actuator, fake_kube: FakeKube
) -> None:
    assert (await nodes.scale(4, expected=2)).written
    fake_kube.update("Deployment", "shop", "elasticd-placeholder", {"spec": {"replicas": 0}})
    writes = len(fake_kube.writes)

    with pytest.raises(ConflictError, match="expected 4, found 2"):
        await nodes.scale(5, expected=4)
    assert len(fake_kube.writes) == writes
    # Read afresh from then on: the nodes the real pods and the placeholders need.
    assert (await nodes.read()).desired == 2


async def test_a_missing_placeholder_deployment_is_permanent(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.seed(deployment("web", 8, namespace="shop"))
    fake_kube.seed(statefulset("cache", 2, namespace="data"))
    actuator, _ = await spec_of("placeholder-pods").build(
        placeholder_target(), Context(kube_client)
    )
    with pytest.raises(PermanentActuatorError, match="404"):
        await actuator.read()


def test_explain_names_what_is_written_and_read() -> None:
    lines = spec_of("placeholder-pods").details(placeholder_target())
    assert lines == [
        "  writes: Deployment shop/elasticd-placeholder replicas "
        "(placeholder pods, 7 a node of headroom)",
        "  reads: deployment shop/web, statefulset data/cache (their pods' nodes are not headroom)",
    ]


def test_a_pod_that_fits_no_node_is_refused() -> None:
    with pytest.raises(ValueError, match="pod_requests"):
        placeholder_target(pod_requests={"cpu": "8"})


def test_a_pod_target_may_link_its_nodes_to_placeholders() -> None:
    from daemon.settings import Settings

    link = {
        "target": "web-nodes",
        "pod_requests": {"cpu": "500m"},
        "node_allocatable": {"cpu": "4"},
    }
    common = {"source": "prom", "query": "sum(up)", "unit_capacity": 10, "lead_time": "1m"}
    settings = Settings.model_validate(
        {
            "sources": {"prom": {"type": "prometheus", "url": "http://127.0.0.1:9"}},
            "targets": [
                {"name": "web", "kind": "deployment", "namespace": "shop", "workload": "web"}
                | {"max_units": 50, "node_group": link}
                | common,
                {"name": "web-nodes", "kind": "placeholder-pods", "namespace": "shop"}
                | {"workloads": [{"kind": "deployment", "name": "web"}], "max_units": 10}
                | {"pod_requests": {"cpu": "500m"}, "node_allocatable": {"cpu": "4"}}
                | common,
            ],
        }
    )
    assert settings.target("web-nodes").kind == "placeholder-pods"


def linked_settings(link_cpu: str = "500m", workload: str = "web") -> Any:
    from daemon.settings import Settings

    link = {
        "target": "web-nodes",
        "pod_requests": {"cpu": link_cpu},
        "node_allocatable": {"cpu": "4"},
    }
    common = {"source": "prom", "query": "sum(up)", "unit_capacity": 10, "lead_time": "1m"}
    return Settings.model_validate(
        {
            "sources": {"prom": {"type": "prometheus", "url": "http://127.0.0.1:9"}},
            "targets": [
                {"name": "web", "kind": "deployment", "namespace": "shop", "workload": workload}
                | {"max_units": 50, "node_group": link}
                | common,
                {"name": "web-nodes", "kind": "placeholder-pods", "namespace": "shop"}
                | {"workloads": [{"kind": "deployment", "name": "web"}], "max_units": 10}
                | {"pod_requests": {"cpu": "500m"}, "node_allocatable": {"cpu": "4"}}
                | common,
            ],
        }
    )


def test_a_link_must_size_pods_as_the_placeholders_and_name_a_listed_workload() -> None:
    """The settings check a node_group link to placeholder pods: placeholders sized unlike
    the pods would hold the wrong nodes, and an unlisted workload's own nodes would be taken
    for headroom. Either is refused at load, naming the link's YAML path."""
    from pydantic import ValidationError

    good = linked_settings()
    assert good.target("web-nodes").kind == "placeholder-pods"
    for changes, expected in [
        ({"link_cpu": "1"}, "must equal those of placeholder-pods target"),
        ({"workload": "api"}, "deployment shop/api is not among the workloads"),
    ]:
        with pytest.raises(ValidationError, match=expected) as caught:
            linked_settings(**changes)
        assert "targets[0].node_group" in str(caught.value)
