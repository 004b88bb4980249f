"""KubernetesScaleActuator with the real kubernetes-asyncio client against the fake API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.kubernetes import KubernetesScaleActuator, kube_api_client
from daemon.actuators.retry import RetryPolicy
from daemon.errors import (
    ConflictError,
    PermanentActuatorError,
    TransientActuatorError,
)
from tests.actuators.conftest import deployment, statefulset
from tests.support.fake_kube import FakeKube, write_kubeconfig

WEB_SCALE = "/apis/apps/v1/namespaces/default/deployments/web/scale"
DB_SCALE = "/apis/apps/v1/namespaces/shop/statefulsets/db/scale"


@pytest.fixture
def web(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> KubernetesScaleActuator:
    fake_kube.seed(deployment("web", 3))
    return KubernetesScaleActuator(kube_client, "Deployment", "default", "web", retry=fast_retry)


def test_is_an_actuator(web: KubernetesScaleActuator) -> None:
    assert isinstance(web, Actuator)
    assert web.describe() == "deployment default/web"


async def test_read_deployment(web: KubernetesScaleActuator) -> None:
    assert await web.read() == Capacity(desired=3, ready=3, min_size=None, max_size=None)


async def test_read_reports_pods_not_yet_created(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    fake_kube.update("Deployment", "default", "web", {"status": {"replicas": 1}})
    assert (await web.read()).ready == 1


async def test_scale_deployment_writes_merge_patch_with_resource_version(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    version = fake_kube.get("Deployment", "default", "web")["metadata"]["resourceVersion"]

    result = await web.scale(7)

    assert result == ScaleResult(written=True, previous=3, requested=7, applied=7)
    stored = fake_kube.get("Deployment", "default", "web")
    assert stored["spec"]["replicas"] == 7
    assert int(stored["metadata"]["resourceVersion"]) > int(version)
    [write] = fake_kube.writes
    assert (write.verb, write.path, write.status) == ("PATCH", WEB_SCALE, 200)
    assert write.content_type == "application/merge-patch+json"
    assert write.body == {"metadata": {"resourceVersion": version}, "spec": {"replicas": 7}}


async def test_scale_statefulset(
    fake_kube: FakeKube, kube_client: client.ApiClient, fast_retry: RetryPolicy
) -> None:
    fake_kube.seed(statefulset("db", 2, namespace="shop"))
    actuator = KubernetesScaleActuator(kube_client, "StatefulSet", "shop", "db", retry=fast_retry)

    assert (await actuator.read()).desired == 2
    assert await actuator.scale(0) == ScaleResult(True, 2, 0, 0)
    assert fake_kube.get("StatefulSet", "shop", "db")["spec"]["replicas"] == 0
    # The API omits a zero replicas field; it must still read back as 0, not fail.
    assert await actuator.read() == Capacity(0, 0, None, None)
    assert [w.path for w in fake_kube.writes] == [DB_SCALE]


async def test_no_write_when_unchanged(fake_kube: FakeKube, web: KubernetesScaleActuator) -> None:
    assert await web.scale(3) == ScaleResult(written=False, previous=3, requested=3, applied=3)
    assert fake_kube.writes == []


async def test_a_conflict_is_raised_after_one_patch_not_retried(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    # Re-reading and patching again on a 409 is how a leader resuming from a freeze wrote
    # over its successor: the conflict goes to the caller, which re-plans next tick.
    fake_kube.inject_fault(WEB_SCALE, 409, method="PATCH", count=10)

    with pytest.raises(ConflictError, match="409"):
        await web.scale(5)
    assert [(w.verb, w.status) for w in fake_kube.writes] == [("PATCH", 409)]
    assert fake_kube.get("Deployment", "default", "web")["spec"]["replicas"] == 3
    # Nor is a conflict a reason to defer the next tick's write.
    fake_kube.clear_faults()
    assert (await web.scale(5)).written


async def test_a_racing_writer_wins_and_we_do_not_overwrite_it(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    # Hold our PATCH at the server while another writer changes the object, so our
    # resourceVersion is stale by the time it is checked: a real race, not an injected 409.
    held = fake_kube.inject_fault(WEB_SCALE, None, method="PATCH", delay=0.2)
    task = asyncio.create_task(web.scale(6))
    await held.wait()
    fake_kube.update("Deployment", "default", "web", {"spec": {"replicas": 9}})

    with pytest.raises(ConflictError, match="409"):
        await task

    assert [w.status for w in fake_kube.writes] == [409]
    assert fake_kube.get("Deployment", "default", "web")["spec"]["replicas"] == 9


async def test_missing_workload_is_permanent(
    kube_client: client.ApiClient, fake_kube: FakeKube, fast_retry: RetryPolicy
) -> None:
    actuator = KubernetesScaleActuator(
        kube_client, "Deployment", "default", "ghost", retry=fast_retry
    )

    with pytest.raises(PermanentActuatorError, match=r'404 deployments\.apps "ghost" not found'):
        await actuator.read()
    with pytest.raises(PermanentActuatorError):
        await actuator.scale(2)
    assert fake_kube.writes == []


async def test_negative_replicas_are_refused_by_the_server(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    with pytest.raises(PermanentActuatorError, match="422"):
        await web.scale(-1)
    assert [w.status for w in fake_kube.writes] == [422]
    assert fake_kube.get("Deployment", "default", "web")["spec"]["replicas"] == 3


async def test_forbidden_is_permanent_and_not_retried(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    fake_kube.inject_fault(WEB_SCALE, 403, method="PATCH", count=5)

    with pytest.raises(PermanentActuatorError, match="403"):
        await web.scale(4)
    assert len(fake_kube.writes) == 1


async def test_a_failed_write_is_sent_once_not_retried(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    fake_kube.inject_fault(WEB_SCALE, 503, method="PATCH", count=2)

    with pytest.raises(TransientActuatorError, match="503"):
        await web.scale(4)
    assert [w.status for w in fake_kube.writes] == [503]


async def test_persistent_server_errors_surface_as_transient(
    fake_kube: FakeKube, web: KubernetesScaleActuator
) -> None:
    fake_kube.inject_fault(WEB_SCALE, 500, method="GET", count=10)

    with pytest.raises(TransientActuatorError, match="500") as caught:
        await web.read()
    assert not isinstance(caught.value, ConflictError)
    assert fake_kube.pending_faults(WEB_SCALE) == 7  # 3 attempts used


async def test_timeout_is_transient(fake_kube: FakeKube, kube_client: client.ApiClient) -> None:
    fake_kube.seed(deployment("slow", 1))
    actuator = KubernetesScaleActuator(
        kube_client,
        "Deployment",
        "default",
        "slow",
        retry=RetryPolicy(attempts=1),
        request_timeout=0.1,
    )
    fake_kube.inject_fault(
        "/apis/apps/v1/namespaces/default/deployments/slow/scale", None, delay=0.5
    )

    with pytest.raises(TransientActuatorError, match=r"timed out after 0\.1s"):
        await actuator.read()


async def test_unreachable_server_is_transient(tmp_path: Path) -> None:
    fake = FakeKube()
    url = await fake.start()
    await fake.stop()  # nothing listens on that port any more
    api = await kube_api_client(str(write_kubeconfig(tmp_path / "kc", url)), in_cluster=False)
    actuator = KubernetesScaleActuator(
        api,
        "Deployment",
        "default",
        "web",
        retry=RetryPolicy(attempts=2, base_delay=0.001),
        close_client=True,
    )
    try:
        with pytest.raises(TransientActuatorError):
            await actuator.read()
    finally:
        await actuator.close()


async def test_missing_kubeconfig_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentActuatorError, match="cannot load Kubernetes config"):
        await kube_api_client(str(tmp_path / "absent"), in_cluster=False)


async def test_in_cluster_outside_a_pod_is_permanent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PermanentActuatorError, match="in-cluster"):
        await kube_api_client(None, in_cluster=True)


def test_unknown_kind_is_refused(kube_client: client.ApiClient) -> None:
    with pytest.raises(ValueError, match="unsupported workload kind"):
        KubernetesScaleActuator(kube_client, "DaemonSet", "default", "x")  # type: ignore[arg-type]
