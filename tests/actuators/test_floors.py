"""Floor actuators: the HPA's minReplicas against the fake API server, the Auto Scaling group's
MinSize and the EKS node group's minSize against moto in server mode."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from kubernetes_asyncio import client

from daemon.actuators.aws_floors import AsgFloorActuator, NodegroupFloorActuator
from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.floors import HpaFloorActuator, find_owning_hpa
from daemon.actuators.retry import RetryPolicy
from daemon.errors import ConflictError, FencedError, PermanentActuatorError
from tests.actuators.conftest import CallLog, deployment, statefulset
from tests.actuators.test_autoscaling_group import create_group
from tests.actuators.test_eks import create_nodegroup
from tests.support.fake_kube import FakeKube

REGION = "us-east-1"
HPA_PATH = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web"
CPU_METRIC = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
}


def hpa(
    name: str,
    target_kind: str,
    target_name: str,
    *,
    minimum: int | None = 2,
    maximum: int = 10,
    current: int | None = 3,
    namespace: str = "default",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target_name},
        "maxReplicas": maximum,
        "metrics": [CPU_METRIC],
    }
    if minimum is not None:
        spec["minReplicas"] = minimum
    manifest: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    if current is not None:
        manifest["status"] = {"currentReplicas": current, "desiredReplicas": current}
    return manifest


@pytest.fixture
def web_floor(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> HpaFloorActuator:
    fake_kube.seed(deployment("web", 3))
    fake_kube.seed(hpa("web", "Deployment", "web"))
    return HpaFloorActuator(kube_client, "default", "web", retry=fast_retry)


# -- HPA floor ------------------------------------------------------------------------------


async def test_hpa_floor_reads_min_as_desired(web_floor: HpaFloorActuator) -> None:
    assert isinstance(web_floor, Actuator)
    assert web_floor.describe() == "hpa default/web floor"
    assert await web_floor.read() == Capacity(desired=2, ready=3, min_size=None, max_size=10)


async def test_hpa_floor_raised_ahead_of_a_rise_and_lowered_after(
    fake_kube: FakeKube, web_floor: HpaFloorActuator
) -> None:
    version = fake_kube.get("HorizontalPodAutoscaler", "default", "web")["metadata"][
        "resourceVersion"
    ]

    assert await web_floor.scale(7) == ScaleResult(True, previous=2, requested=7, applied=7)
    stored = fake_kube.get("HorizontalPodAutoscaler", "default", "web")
    assert stored["spec"]["minReplicas"] == 7
    # The rest of the HPA (its metrics, its maximum) is the HPA's, untouched.
    assert stored["spec"]["metrics"] == [CPU_METRIC] and stored["spec"]["maxReplicas"] == 10
    [write] = fake_kube.writes
    assert (write.verb, write.path, write.status) == ("PATCH", HPA_PATH, 200)
    assert write.content_type == "application/merge-patch+json"
    assert write.body == {"metadata": {"resourceVersion": version}, "spec": {"minReplicas": 7}}

    # After the rise the floor comes back down; the HPA keeps whatever the load needs.
    assert await web_floor.scale(2) == ScaleResult(True, 7, 2, 2)
    assert fake_kube.get("HorizontalPodAutoscaler", "default", "web")["spec"]["minReplicas"] == 2

    # The Deployment itself is the HPA's to size: its scale subresource is never written.
    assert {w.path for w in fake_kube.writes} == {HPA_PATH}
    assert fake_kube.get("Deployment", "default", "web")["spec"]["replicas"] == 3


async def test_hpa_floor_unchanged_writes_nothing(
    fake_kube: FakeKube, web_floor: HpaFloorActuator
) -> None:
    assert await web_floor.scale(2) == ScaleResult(False, 2, 2, 2)
    assert fake_kube.writes == []


@pytest.mark.parametrize(("requested", "applied"), [(50, 10), (0, 1), (-3, 1)])
async def test_hpa_floor_clamped_to_one_and_max_replicas(
    fake_kube: FakeKube, web_floor: HpaFloorActuator, requested: int, applied: int
) -> None:
    result = await web_floor.scale(requested)
    assert (result.requested, result.applied) == (requested, applied)
    assert fake_kube.get("HorizontalPodAutoscaler", "default", "web")["spec"]["minReplicas"] == (
        applied
    )


async def test_hpa_floor_conflict_is_raised_after_one_patch(
    fake_kube: FakeKube, web_floor: HpaFloorActuator
) -> None:
    # The HPA controller wrote status between our read and our patch: the caller re-plans
    # on the next tick rather than this call re-reading and patching again.
    fake_kube.inject_fault(HPA_PATH, 409, count=3, method="PATCH")

    with pytest.raises(ConflictError, match="409"):
        await web_floor.scale(5)
    assert [w.status for w in fake_kube.writes] == [409]
    assert fake_kube.get("HorizontalPodAutoscaler", "default", "web")["spec"]["minReplicas"] == 2


async def test_hpa_floor_changed_since_the_decision_is_not_written(
    fake_kube: FakeKube, web_floor: HpaFloorActuator
) -> None:
    fake_kube.update("HorizontalPodAutoscaler", "default", "web", {"spec": {"minReplicas": 4}})

    with pytest.raises(ConflictError, match="expected 2, found 4"):
        await web_floor.scale(6, expected=2)
    assert fake_kube.writes == []

    assert await web_floor.scale(6, expected=4) == ScaleResult(True, 4, 6, 6)


async def test_hpa_floor_past_its_deadline_sends_nothing(
    fake_kube: FakeKube, web_floor: HpaFloorActuator
) -> None:
    with pytest.raises(FencedError):
        await web_floor.scale(6, deadline=time.monotonic() - 0.1)
    assert fake_kube.requests == []


async def test_hpa_defaults_and_missing(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(hpa("bare", "Deployment", "web", minimum=None, current=None))
    bare = HpaFloorActuator(kube_client, "default", "bare", retry=fast_retry)
    assert await bare.read() == Capacity(desired=1, ready=None, min_size=None, max_size=10)

    missing = HpaFloorActuator(kube_client, "default", "nope", retry=fast_retry)
    with pytest.raises(PermanentActuatorError, match="404"):
        await missing.read()


async def test_find_owning_hpa(fake_kube: FakeKube, kube_client: client.ApiClient) -> None:
    fake_kube.seed(deployment("web", 3))
    fake_kube.seed(deployment("api", 2))
    fake_kube.seed(statefulset("db", 1))
    fake_kube.seed(hpa("web-hpa", "Deployment", "web"))
    fake_kube.seed(hpa("db-hpa", "StatefulSet", "db"))
    fake_kube.seed(hpa("web-hpa", "Deployment", "web", namespace="other"))

    assert await find_owning_hpa(kube_client, "default", "Deployment", "web") == "web-hpa"
    assert await find_owning_hpa(kube_client, "default", "StatefulSet", "db") == "db-hpa"
    # Same name, other kind; and a workload no HPA points at.
    assert await find_owning_hpa(kube_client, "default", "StatefulSet", "web") is None
    assert await find_owning_hpa(kube_client, "default", "Deployment", "api") is None
    assert await find_owning_hpa(kube_client, "empty", "Deployment", "web") is None
    assert fake_kube.writes == []


async def test_find_owning_hpa_maps_errors(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.inject_fault("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers", 403)
    with pytest.raises(PermanentActuatorError, match="403"):
        await find_owning_hpa(kube_client, "default", "Deployment", "web")


# -- Auto Scaling group floor -----------------------------------------------------------------


async def group(session: aioboto3.Session, endpoint: str) -> dict[str, Any]:
    async with session.client("autoscaling", region_name=REGION, endpoint_url=endpoint) as asg:
        answer = await asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web-asg"])
    found: dict[str, Any] = answer["AutoScalingGroups"][0]
    return found


@pytest.fixture
async def asg_floor(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[AsgFloorActuator]:
    session, calls = aws_session
    await create_group(session, moto_endpoint, minimum=2, maximum=6, desired=3)
    calls.operations.clear()
    actuator = AsgFloorActuator(
        "web-asg",
        region=REGION,
        endpoint_url=moto_endpoint,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    yield actuator
    await actuator.close()


async def test_asg_floor_read(asg_floor: AsgFloorActuator) -> None:
    assert isinstance(asg_floor, Actuator)
    assert await asg_floor.read() == Capacity(desired=2, ready=3, min_size=None, max_size=6)


async def test_asg_floor_writes_min_size_only(
    asg_floor: AsgFloorActuator, moto_endpoint: str, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    session, calls = aws_session
    # Raising the floor to the current size: DesiredCapacity stays the autoscaler's.
    assert await asg_floor.scale(3) == ScaleResult(True, 2, 3, 3)
    assert calls.operations == ["DescribeAutoScalingGroups", "UpdateAutoScalingGroup"]
    after = await group(session, moto_endpoint)
    assert (after["MinSize"], after["DesiredCapacity"], after["MaxSize"]) == (3, 3, 6)

    # Lowering it leaves DesiredCapacity for Cluster Autoscaler/Karpenter to bring down.
    assert await asg_floor.scale(1) == ScaleResult(True, 3, 1, 1)
    after = await group(session, moto_endpoint)
    assert (after["MinSize"], after["DesiredCapacity"]) == (1, 3)


async def test_asg_floor_above_the_size_raises_desired_through_the_service(
    asg_floor: AsgFloorActuator, moto_endpoint: str, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    session, _ = aws_session
    # Clamped to MaxSize; the group (AWS, and moto likewise) raises its own desired to it.
    assert await asg_floor.scale(9) == ScaleResult(True, 2, 9, 6)
    after = await group(session, moto_endpoint)
    assert (after["MinSize"], after["DesiredCapacity"]) == (6, 6)


async def test_asg_floor_unchanged_and_missing(
    asg_floor: AsgFloorActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> None:
    session, calls = aws_session
    assert await asg_floor.scale(2) == ScaleResult(False, 2, 2, 2)
    assert calls.operations == ["DescribeAutoScalingGroups"]

    missing = AsgFloorActuator(
        "nope",
        region=REGION,
        endpoint_url=moto_endpoint,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    with pytest.raises(PermanentActuatorError, match="not found"):
        await missing.read()
    await missing.close()


# -- EKS node group floor ---------------------------------------------------------------------


async def scaling(session: aioboto3.Session, endpoint: str) -> dict[str, int]:
    async with session.client("eks", region_name=REGION, endpoint_url=endpoint) as eks:
        answer = await eks.describe_nodegroup(clusterName="prod", nodegroupName="workers")
    found: dict[str, int] = answer["nodegroup"]["scalingConfig"]
    return found


@pytest.fixture
async def nodegroup_floor(
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
    aws_config: Config,
    fast_retry: RetryPolicy,
) -> AsyncIterator[NodegroupFloorActuator]:
    session, calls = aws_session
    await create_nodegroup(session, moto_endpoint, minimum=1, maximum=8, desired=4)
    calls.operations.clear()
    actuator = NodegroupFloorActuator(
        "prod",
        "workers",
        region=REGION,
        endpoint_url=moto_endpoint,
        session=session,
        client_config=aws_config,
        retry=fast_retry,
    )
    yield actuator
    await actuator.close()


async def test_nodegroup_floor_read(nodegroup_floor: NodegroupFloorActuator) -> None:
    assert isinstance(nodegroup_floor, Actuator)
    assert await nodegroup_floor.read() == Capacity(1, None, None, 8)


async def test_nodegroup_floor_below_desired_leaves_desired(
    nodegroup_floor: NodegroupFloorActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, calls = aws_session
    assert await nodegroup_floor.scale(3) == ScaleResult(True, 1, 3, 3)
    assert calls.operations == ["DescribeNodegroup", "UpdateNodegroupConfig"]
    assert await scaling(session, moto_endpoint) == {"minSize": 3, "maxSize": 8, "desiredSize": 4}


async def test_nodegroup_floor_above_desired_raises_desired_too(
    nodegroup_floor: NodegroupFloorActuator,
    moto_endpoint: str,
    aws_session: tuple[aioboto3.Session, CallLog],
) -> None:
    session, _ = aws_session
    # EKS refuses minSize > desiredSize, so desired comes up with the floor (clamped to max).
    assert await nodegroup_floor.scale(12) == ScaleResult(True, 1, 12, 8)
    assert await scaling(session, moto_endpoint) == {"minSize": 8, "maxSize": 8, "desiredSize": 8}

    # Lowering the floor again leaves desired to the node autoscaler.
    assert await nodegroup_floor.scale(0) == ScaleResult(True, 8, 0, 0)
    assert await scaling(session, moto_endpoint) == {"minSize": 0, "maxSize": 8, "desiredSize": 8}


async def test_nodegroup_floor_unchanged_writes_nothing(
    nodegroup_floor: NodegroupFloorActuator, aws_session: tuple[aioboto3.Session, CallLog]
) -> None:
    _, calls = aws_session
    assert await nodegroup_floor.scale(1) == ScaleResult(False, 1, 1, 1)
    assert calls.operations == ["DescribeNodegroup"]
