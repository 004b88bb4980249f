"""KEDA beside a Deployment target: the ScaledObject's minReplicaCount as the floor
(``act_via: keda-floor``), and refusing an HPA floor KEDA would undo. Against the in-repo fake
API server, which serves keda.sh/v1alpha1 ScaledObjects and plays KEDA's part (the HPA a
ScaledObject owns follows its bounds, and an edit to that HPA is undone)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client

from daemon.actuators.base import Actuator, Capacity
from daemon.actuators.floors import HpaFloorActuator
from daemon.actuators.keda import KedaFloorActuator, keda_scaled_object, scaled_object_ref
from daemon.actuators.retry import RetryPolicy
from daemon.errors import ConfigError, ConflictError
from daemon.kinds.registry import spec_of
from tests.actuators.conftest import deployment
from tests.actuators.test_floors import hpa
from tests.actuators.test_scalable import Context, settings_with
from tests.support.fake_kube import FakeKube

SO_PATH = "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/web"


def scaled_object(
    name: str, target: str, *, minimum: int | None = 2, maximum: int | None = 20
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": target},
        "triggers": [{"type": "prometheus", "metadata": {"threshold": "50"}}],
    }
    if minimum is not None:
        spec["minReplicaCount"] = minimum
    if maximum is not None:
        spec["maxReplicaCount"] = maximum
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def keda_hpa(scaled: str, target: str, *, owner: bool = True) -> dict[str, Any]:
    """The HPA KEDA creates for a ScaledObject: ``keda-hpa-<name>``, owned and labelled."""
    manifest = hpa(f"keda-hpa-{scaled}", "Deployment", target, minimum=2, maximum=20)
    meta = manifest["metadata"]
    meta["labels"] = {"scaledobject.keda.sh/name": scaled}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "name": scaled,
                "uid": "0f6c",
                "controller": True,
            }
        ]
    return manifest


@pytest.fixture
def keda(fake_kube: FakeKube) -> FakeKube:
    fake_kube.seed(deployment("web", 3))
    fake_kube.seed(scaled_object("web", "web"))
    fake_kube.seed(keda_hpa("web", "web"))
    return fake_kube


@pytest.fixture
def floor(keda: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy) -> Actuator:
    return KedaFloorActuator(kube_client, scaled_object_ref("default", "web"), retry=fast_retry)


async def test_reads_min_as_desired_and_max_as_the_bound(
    floor: KedaFloorActuator, keda: FakeKube, kube_client: client.ApiClient
) -> None:
    assert floor.describe() == "scaledobject default/web floor"
    assert await floor.read() == Capacity(desired=2, ready=None, min_size=None, max_size=20)
    # KEDA's own defaults when the ScaledObject leaves them out: 0 and 100.
    keda.seed(scaled_object("bare", "web", minimum=None, maximum=None))
    bare = KedaFloorActuator(kube_client, scaled_object_ref("default", "bare"))
    assert await bare.read() == Capacity(desired=0, ready=None, min_size=None, max_size=100)


async def test_raises_min_replica_count_and_the_keda_hpa_follows(
    floor: KedaFloorActuator, keda: FakeKube
) -> None:
    version = keda.get("ScaledObject", "default", "web")["metadata"]["resourceVersion"]

    result = await floor.scale(6, expected=2)

    assert (result.written, result.previous, result.requested, result.applied) == (True, 2, 6, 6)
    [write] = keda.writes
    assert (write.verb, write.path, write.status) == ("PATCH", SO_PATH, 200)
    assert write.content_type == "application/merge-patch+json"
    assert write.body == {"metadata": {"resourceVersion": version}, "spec": {"minReplicaCount": 6}}
    assert keda.get("ScaledObject", "default", "web")["spec"]["minReplicaCount"] == 6
    # KEDA carries it into its HPA: the floor holds.
    assert (
        keda.get("HorizontalPodAutoscaler", "default", "keda-hpa-web")["spec"]["minReplicas"] == 6
    )
    assert not (await floor.scale(6)).written and len(keda.writes) == 1


async def test_the_floor_is_clamped_to_max_replica_count(
    floor: KedaFloorActuator, keda: FakeKube
) -> None:
    result = await floor.scale(50)
    assert (result.requested, result.applied) == (50, 20)
    assert keda.get("ScaledObject", "default", "web")["spec"]["minReplicaCount"] == 20


async def test_a_racing_writer_wins(floor: KedaFloorActuator, keda: FakeKube) -> None:
    held = keda.inject_fault(SO_PATH, None, method="PATCH", delay=0.2)
    task = asyncio.create_task(floor.scale(6))
    await held.wait()
    keda.update("ScaledObject", "default", "web", {"spec": {"minReplicaCount": 4}})

    with pytest.raises(ConflictError, match="409"):
        await task
    assert keda.get("ScaledObject", "default", "web")["spec"]["minReplicaCount"] == 4


async def test_an_hpa_floor_under_keda_does_not_hold(
    keda: FakeKube, kube_client: client.ApiClient
) -> None:
    """Why keda-floor exists: the HPA's minReplicas, written, is KEDA's again at once."""
    hpa_floor = HpaFloorActuator(kube_client, "default", "keda-hpa-web")
    assert (await hpa_floor.scale(6)).written
    assert (await hpa_floor.read()).desired == 2


async def test_the_scaled_object_is_found_by_owner_or_label(
    keda: FakeKube, kube_client: client.ApiClient
) -> None:
    assert await keda_scaled_object(kube_client, "default", "keda-hpa-web") == "web"
    keda.seed(keda_hpa("restored", "api", owner=False))  # owner references stripped
    assert await keda_scaled_object(kube_client, "default", "keda-hpa-restored") == "restored"
    keda.seed(hpa("plain", "Deployment", "batch"))
    assert await keda_scaled_object(kube_client, "default", "plain") is None


# -- the Deployment kind with KEDA beside it --------------------------------------------------


def web_target(act_via: str) -> Any:
    return settings_with(
        {
            "kind": "deployment",
            "namespace": "default",
            "workload": "web",
            "act_via": act_via,
        }
    ).targets[0]


async def test_keda_floor_builds_on_the_scaled_object(
    keda: FakeKube, kube_client: client.ApiClient
) -> None:
    spec = spec_of("deployment")
    target = web_target("keda-floor")

    actuator, events = await spec.build(target, Context(kube_client))

    assert isinstance(actuator, KedaFloorActuator) and actuator.ref.name == "web"
    assert events is not None and (events.kind, events.name, events.floor) == (
        "ScaledObject",
        "web",
        True,
    )
    assert "minReplicaCount of the KEDA ScaledObject" in spec.details(target)[0]


@pytest.mark.parametrize("act_via", ["hpa-floor", "replicas"])
async def test_other_modes_on_a_keda_workload_are_refused_naming_the_scaled_object(
    keda: FakeKube, kube_client: client.ApiClient, act_via: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        await spec_of("deployment").build(web_target(act_via), Context(kube_client))
    assert refused.value.path == "targets[0].act_via"
    message = str(refused.value)
    assert "KEDA ScaledObject default/web" in message
    assert "keda-hpa-web" in message and "act_via: keda-floor" in message


async def test_keda_floor_without_keda_is_refused(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.seed(deployment("web", 3))
    context = Context(kube_client)
    with pytest.raises(ConfigError, match="no KEDA ScaledObject scales Deployment default/web"):
        await spec_of("deployment").build(web_target("keda-floor"), context)
    fake_kube.seed(hpa("web", "Deployment", "web"))
    with pytest.raises(ConfigError, match="its HPA web is not KEDA's"):
        await spec_of("deployment").build(web_target("keda-floor"), context)


async def test_a_plain_hpa_still_gets_its_hpa_floor(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.seed(deployment("web", 3))
    fake_kube.seed(hpa("web", "Deployment", "web"))
    actuator, _ = await spec_of("deployment").build(web_target("hpa-floor"), Context(kube_client))
    assert isinstance(actuator, HpaFloorActuator)
