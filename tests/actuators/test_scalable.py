"""``kind: scalable``: an Argo Rollout resized through its ``/scale`` subresource, read and
written with ``CustomObjectsApi`` against the in-repo fake API server (which serves Rollouts
with the scale subresource their CRD declares)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes_asyncio import client

from daemon.actuators.base import Actuator, Capacity
from daemon.actuators.custom_objects import CustomObjectRef, ScalableActuator
from daemon.actuators.floors import HpaFloorActuator
from daemon.actuators.keda import KedaFloorActuator
from daemon.actuators.retry import RetryPolicy
from daemon.errors import ConfigError, ConflictError, PermanentActuatorError, ThrottledError
from daemon.kinds.base import AwsAccess
from daemon.kinds.registry import spec_of
from daemon.settings import Settings
from tests.support.fake_kube import FakeKube

SCALE = "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/web/scale"


def rollout(name: str, replicas: int, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
    }


@pytest.fixture
def web(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> ScalableActuator:
    fake_kube.seed(rollout("web", 3))
    ref = CustomObjectRef("argoproj.io", "v1alpha1", "rollouts", "default", "web")
    return ScalableActuator(kube_client, ref, retry=fast_retry)


async def test_reads_the_scale_subresource(web: ScalableActuator, fake_kube: FakeKube) -> None:
    assert isinstance(web, Actuator)
    assert web.describe() == "rollouts.argoproj.io default/web"
    assert await web.read() == Capacity(desired=3, ready=3, min_size=None, max_size=None)
    assert [(r.verb, r.path) for r in fake_kube.requests] == [("GET", SCALE)]


async def test_writes_one_conditional_merge_patch_and_nothing_when_unchanged(
    web: ScalableActuator, fake_kube: FakeKube
) -> None:
    version = fake_kube.get("Rollout", "default", "web")["metadata"]["resourceVersion"]

    result = await web.scale(7, expected=3)

    assert (result.written, result.previous, result.requested, result.applied) == (True, 3, 7, 7)
    [write] = fake_kube.writes
    assert (write.verb, write.path, write.status) == ("PATCH", SCALE, 200)
    assert write.content_type == "application/merge-patch+json"
    assert write.body == {"metadata": {"resourceVersion": version}, "spec": {"replicas": 7}}
    assert fake_kube.get("Rollout", "default", "web")["spec"]["replicas"] == 7

    again = await web.scale(7)
    assert not again.written and len(fake_kube.writes) == 1


async def test_a_size_changed_since_the_decision_is_not_overwritten(
    web: ScalableActuator, fake_kube: FakeKube
) -> None:
    fake_kube.update("Rollout", "default", "web", {"spec": {"replicas": 5}})

    with pytest.raises(ConflictError, match="expected 3, found 5"):
        await web.scale(8, expected=3)
    assert fake_kube.writes == []


async def test_a_racing_writer_wins_and_we_do_not_overwrite_it(
    web: ScalableActuator, fake_kube: FakeKube
) -> None:
    # Our PATCH is held at the server while Argo (or a person) changes the Rollout: its
    # resourceVersion is stale when checked, a real 409 rather than an injected one.
    held = fake_kube.inject_fault(SCALE, None, method="PATCH", delay=0.2)
    task = asyncio.create_task(web.scale(6))
    await held.wait()
    fake_kube.update("Rollout", "default", "web", {"spec": {"replicas": 9}})

    with pytest.raises(ConflictError, match="409"):
        await task
    assert [w.status for w in fake_kube.writes] == [409]
    assert fake_kube.get("Rollout", "default", "web")["spec"]["replicas"] == 9


async def test_errors_are_mapped_reads_retried_and_negative_sizes_refused(
    web: ScalableActuator, fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.inject_fault(SCALE, 500, method="GET")
    assert (await web.read()).desired == 3  # retried after one 500

    with pytest.raises(PermanentActuatorError, match="422"):
        await web.scale(-1)

    ghost = ScalableActuator(
        kube_client,
        CustomObjectRef("argoproj.io", "v1alpha1", "rollouts", "default", "ghost"),
        retry=RetryPolicy(attempts=1),
    )
    with pytest.raises(PermanentActuatorError, match=r'404 rollouts\.argoproj\.io "ghost"'):
        await ghost.read()


async def test_throttling_holds_the_writes(web: ScalableActuator, fake_kube: FakeKube) -> None:
    fake_kube.inject_fault(SCALE, 429, method="PATCH", retry_after=30)

    with pytest.raises(ThrottledError, match="429"):
        await web.scale(5)
    # The server said wait: nothing is sent until it may be.
    with pytest.raises(ThrottledError):
        await web.scale(5)
    assert [w.status for w in fake_kube.writes] == [429]


ROLLOUT_TARGET = {
    "kind": "scalable",
    "api_version": "argoproj.io/v1alpha1",
    "resource": "rollouts",
    "object_kind": "Rollout",
    "namespace": "shop",
    "object_name": "web",
}


@dataclass
class Context:
    """What the composition root lends a kind's build, over one client."""

    api: client.ApiClient
    where: str = "targets[0]"
    world: None = None

    async def kube_api(self) -> client.ApiClient:
        return self.api

    def aws(self) -> AwsAccess:
        raise AssertionError("no AWS here")


def settings_with(target: dict[str, Any]) -> Settings:
    base = {
        "name": "web",
        "source": "prom",
        "query": "sum(up)",
        "unit_capacity": 10,
        "lead_time": "1m",
        "max_units": 20,
    }
    return Settings.model_validate(
        {
            "sources": {"prom": {"type": "prometheus", "url": "http://127.0.0.1:9"}},
            "targets": [base | target],
        }
    )


async def test_the_kind_builds_the_actuator_and_events_on_the_object(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.seed(rollout("web", 2, namespace="shop"))
    target = settings_with(ROLLOUT_TARGET).targets[0]
    spec = spec_of("scalable")

    actuator, events = await spec.build(target, Context(kube_client))

    assert (await actuator.read()).desired == 2
    assert events is not None and (events.kind, events.name) == ("Rollout", "web")
    assert spec.details(target)[0] == (
        "  writes: rollouts.argoproj.io shop/web replicas (scale subresource, argoproj.io/v1alpha1)"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("api_version", "v1"), ("api_version", "argoproj.io"), ("resource", "Rollouts")],
)
def test_an_object_outside_apis_or_a_kind_for_a_resource_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field) as refused:
        settings_with(ROLLOUT_TARGET | {field: value})
    assert f"targets.0.scalable.{field}\n" in str(refused.value)


def rollout_hpa(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout"}
            | {"name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
        },
    }


async def test_a_rollout_an_hpa_owns_is_sized_through_the_hpa_floor_not_its_replicas(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    """The Deployment kind's rule, for any object: writing the replicas under an HPA only
    flaps, so replicas is refused naming the HPA, and hpa-floor raises its minReplicas."""
    fake_kube.seed(rollout("web", 2, namespace="shop"))
    fake_kube.seed(rollout_hpa())
    spec = spec_of("scalable")

    with pytest.raises(ConfigError) as refused:
        await spec.build(settings_with(ROLLOUT_TARGET).targets[0], Context(kube_client))
    assert str(refused.value) == (
        "targets[0].act_via: Rollout shop/web is owned by HPA web; use act_via: hpa-floor"
    )

    floor_target = settings_with(ROLLOUT_TARGET | {"act_via": "hpa-floor"}).targets[0]
    floor, events = await spec.build(floor_target, Context(kube_client))
    assert isinstance(floor, HpaFloorActuator)
    assert (await floor.scale(4)).written
    assert fake_kube.get("HorizontalPodAutoscaler", "shop", "web")["spec"]["minReplicas"] == 4
    assert fake_kube.get("Rollout", "shop", "web")["spec"]["replicas"] == 2
    assert events is not None and events.kind == "HorizontalPodAutoscaler"
    assert spec.details(floor_target) == [
        "  writes: minReplicas of the HPA of Rollout rollouts.argoproj.io shop/web"
    ]


async def test_hpa_floor_without_an_hpa_is_refused(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.seed(rollout("web", 2, namespace="shop"))
    target = settings_with(ROLLOUT_TARGET | {"act_via": "hpa-floor"}).targets[0]
    with pytest.raises(ConfigError, match="no HPA targets Rollout shop/web"):
        await spec_of("scalable").build(target, Context(kube_client))


async def test_a_keda_scaled_rollout_gets_the_scaled_object_floor(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    fake_kube.seed(rollout("web", 2, namespace="shop"))
    hpa = rollout_hpa("keda-hpa-web")
    hpa["metadata"]["ownerReferences"] = [
        {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "web", "uid": "1"}
    ]
    fake_kube.seed(hpa)
    fake_kube.seed(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"scaleTargetRef": {"kind": "Rollout", "name": "web"}, "maxReplicaCount": 9},
        }
    )
    spec = spec_of("scalable")
    with pytest.raises(ConfigError, match="KEDA ScaledObject shop/web"):
        await spec.build(settings_with(ROLLOUT_TARGET).targets[0], Context(kube_client))

    target = settings_with(ROLLOUT_TARGET | {"act_via": "keda-floor"}).targets[0]
    floor, _ = await spec.build(target, Context(kube_client))
    assert isinstance(floor, KedaFloorActuator)
    assert (await floor.scale(5)).written
    assert (
        fake_kube.get("HorizontalPodAutoscaler", "shop", "keda-hpa-web")["spec"]["minReplicas"] == 5
    )
