"""The fake API server honours what the daemon relies on, checked with the real client."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.actuators.conftest import deployment, statefulset
from tests.support.fake_kube import FakeKube, FakeKubeProcess, write_kubeconfig

MERGE = "application/merge-patch+json"


async def api_error(call: Awaitable[Any]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the decoded Status body of a call expected to fail."""
    with pytest.raises(ApiException) as caught:
        await call
    return int(caught.value.status), json.loads(caught.value.body or b"null")


def is_status(body: dict[str, Any], code: int, reason: str) -> bool:
    return (
        body["kind"] == "Status"
        and body["apiVersion"] == "v1"
        and body["status"] == "Failure"
        and body["code"] == code
        and body["reason"] == reason
        and bool(body["message"])
    )


# The generated client's annotations leave out the options it accepts (``_content_type``,
# dict bodies), so API objects are typed Any in these tests.
@pytest.fixture
def apps(kube_client: client.ApiClient) -> Any:
    return client.AppsV1Api(kube_client)


async def test_create_get_and_list_whole_workloads(apps: Any, fake_kube: FakeKube) -> None:
    await apps.create_namespaced_deployment("default", deployment("web", 2))
    await apps.create_namespaced_stateful_set("default", statefulset("db", 1))

    # The client validates models: a Deployment without spec.template would raise here.
    web = await apps.read_namespaced_deployment("web", "default")
    assert web.spec.template.spec.containers[0].name == "app"
    assert web.status.ready_replicas == 2
    listed = await apps.list_namespaced_deployment("default")
    assert [d.metadata.name for d in listed.items] == ["web"]
    everywhere = await apps.list_stateful_set_for_all_namespaces()
    assert [s.metadata.name for s in everywhere.items] == ["db"]
    assert [w.verb for w in fake_kube.writes] == ["POST", "POST"]

    status, body = await api_error(
        apps.create_namespaced_deployment("default", deployment("web", 1))
    )
    assert status == 409 and is_status(body, 409, "AlreadyExists")


async def test_scale_subresource_get_patch_put(apps: Any, fake_kube: FakeKube) -> None:
    fake_kube.seed(deployment("web", 2))
    scale = await apps.read_namespaced_deployment_scale("web", "default")
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=web")
    first = int(scale.metadata.resource_version)

    merged = await apps.patch_namespaced_deployment_scale(
        "web", "default", {"spec": {"replicas": 4}}, _content_type=MERGE
    )
    # Without _content_type the client sends a dict as strategic-merge-patch.
    strategic = await apps.patch_namespaced_deployment_scale(
        "web", "default", {"spec": {"replicas": 5}}
    )
    scale.spec.replicas = 6
    scale.metadata.resource_version = strategic.metadata.resource_version
    replaced = await apps.replace_namespaced_deployment_scale("web", "default", scale)

    versions = [int(s.metadata.resource_version) for s in (merged, strategic, replaced)]
    assert versions == sorted(versions) and versions[0] > first and len(set(versions)) == 3
    assert replaced.spec.replicas == 6
    assert fake_kube.get("Deployment", "default", "web")["spec"]["replicas"] == 6
    assert [(w.verb, w.content_type) for w in fake_kube.writes] == [
        ("PATCH", MERGE),
        ("PATCH", "application/strategic-merge-patch+json"),
        ("PUT", "application/json"),
    ]


async def test_unchanged_write_keeps_the_resource_version(apps: Any, fake_kube: FakeKube) -> None:
    fake_kube.seed(deployment("web", 2))
    before = await apps.read_namespaced_deployment_scale("web", "default")
    after = await apps.patch_namespaced_deployment_scale(
        "web", "default", {"spec": {"replicas": 2}}, _content_type=MERGE
    )
    assert after.metadata.resource_version == before.metadata.resource_version


async def test_stale_resource_version_conflicts(apps: Any, fake_kube: FakeKube) -> None:
    fake_kube.seed(statefulset("db", 1))
    scale = await apps.read_namespaced_stateful_set_scale("db", "default")
    fake_kube.update("StatefulSet", "default", "db", {"metadata": {"labels": {"x": "1"}}})
    stale = scale.metadata.resource_version

    status, body = await api_error(
        apps.patch_namespaced_stateful_set_scale(
            "db",
            "default",
            {"metadata": {"resourceVersion": stale}, "spec": {"replicas": 3}},
            _content_type=MERGE,
        )
    )
    assert status == 409 and is_status(body, 409, "Conflict")
    assert "the object has been modified" in body["message"]
    scale.spec.replicas = 3
    status, _ = await api_error(apps.replace_namespaced_stateful_set_scale("db", "default", scale))
    assert status == 409
    assert fake_kube.get("StatefulSet", "default", "db")["spec"]["replicas"] == 1


async def test_negative_replicas_are_invalid(apps: Any, fake_kube: FakeKube) -> None:
    fake_kube.seed(deployment("web", 2))
    status, body = await api_error(
        apps.patch_namespaced_deployment_scale(
            "web", "default", {"spec": {"replicas": -1}}, _content_type=MERGE
        )
    )
    assert status == 422 and is_status(body, 422, "Invalid")
    assert "spec.replicas" in body["message"]


async def test_unknown_objects_are_not_found(apps: Any) -> None:
    status, body = await api_error(apps.read_namespaced_deployment_scale("ghost", "default"))
    assert status == 404 and is_status(body, 404, "NotFound")
    assert body["message"] == 'deployments.apps "ghost" not found'
    status, body = await api_error(apps.read_namespaced_stateful_set("ghost", "other"))
    assert status == 404 and is_status(body, 404, "NotFound")


async def test_hpa_min_replicas_merge_patch(kube_client: client.ApiClient) -> None:
    hpas: Any = client.AutoscalingV2Api(kube_client)
    await hpas.create_namespaced_horizontal_pod_autoscaler(
        "default",
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
            },
        },
    )

    patched = await hpas.patch_namespaced_horizontal_pod_autoscaler(
        "web", "default", {"spec": {"minReplicas": 4}}, _content_type=MERGE
    )
    assert (patched.spec.min_replicas, patched.spec.max_replicas) == (4, 10)
    listed = await hpas.list_namespaced_horizontal_pod_autoscaler("default")
    assert [h.spec.min_replicas for h in listed.items] == [4]
    status, body = await api_error(
        hpas.patch_namespaced_horizontal_pod_autoscaler(
            "web", "default", {"spec": {"minReplicas": 11}}, _content_type=MERGE
        )
    )
    assert status == 422 and is_status(body, 422, "Invalid")


async def test_lease_create_replace_conflict_delete(kube_client: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(kube_client)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="elasticd"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    created = await leases.create_namespaced_lease("default", lease)
    status, body = await api_error(leases.create_namespaced_lease("default", lease))
    assert status == 409 and is_status(body, 409, "AlreadyExists")

    created.spec.holder_identity = "b"
    renewed = await leases.replace_namespaced_lease("elasticd", "default", created)
    assert renewed.spec.holder_identity == "b"
    created.spec.holder_identity = "c"  # still carries the version before "b" took over
    status, body = await api_error(leases.replace_namespaced_lease("elasticd", "default", created))
    assert status == 409 and is_status(body, 409, "Conflict")

    await leases.delete_namespaced_lease("elasticd", "default")
    status, _ = await api_error(leases.read_namespaced_lease("elasticd", "default"))
    assert status == 404


async def test_events_create_and_list(kube_client: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_client)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="web."),
        involved_object=client.V1ObjectReference(
            kind="Deployment", name="web", namespace="default"
        ),
        reason="Scaled",
        message="3 -> 5",
        type="Normal",
    )
    created = await core.create_namespaced_event("default", event)
    assert created.metadata.name.startswith("web.")
    listed = await core.list_namespaced_event("default")
    assert [(e.reason, e.involved_object.name) for e in listed.items] == [("Scaled", "web")]


async def test_faults_and_write_log(apps: Any, fake_kube: FakeKube) -> None:
    fake_kube.seed(deployment("web", 2))
    path = "/apis/apps/v1/namespaces/default/deployments/web/scale"
    fake_kube.inject_fault(path, 500, count=2, method="PATCH")
    started = time.time()

    for _ in range(2):
        status, body = await api_error(
            apps.patch_namespaced_deployment_scale(
                "web", "default", {"spec": {"replicas": 3}}, _content_type=MERGE
            )
        )
        assert status == 500 and is_status(body, 500, "InternalError")
    # Reads are not affected by a PATCH-only fault, and the third PATCH goes through.
    await apps.read_namespaced_deployment_scale("web", "default")
    await apps.patch_namespaced_deployment_scale(
        "web", "default", {"spec": {"replicas": 3}}, _content_type=MERGE
    )

    assert [w.status for w in fake_kube.writes_to(path)] == [500, 500, 200]
    assert all(started <= w.time <= time.time() for w in fake_kube.writes)
    assert fake_kube.writes[-1].body == {"spec": {"replicas": 3}}


async def test_retry_after_request_log_and_client_scoped_faults(
    apps: Any, fake_kube: FakeKube
) -> None:
    fake_kube.seed(deployment("web", 2))
    path = "/apis/apps/v1/namespaces/default/deployments/web/scale"
    # A fault for another client (bearer token) never fires for this one.
    fake_kube.inject_fault(path, 500, client="someone-else", count=5)
    # Only a request that closely follows this client's previous one on the path is held.
    held = fake_kube.inject_fault(path, None, method="GET", within=5.0, client="fake-token")
    await apps.read_namespaced_deployment_scale("web", "default")
    assert not held.is_set()
    await apps.read_namespaced_deployment_scale("web", "default")
    assert held.is_set() and fake_kube.fired_faults(path) == 1

    fake_kube.inject_fault(path, 429, method="PATCH", retry_after=7)
    with pytest.raises(ApiException) as caught:
        await apps.patch_namespaced_deployment_scale(
            "web", "default", {"spec": {"replicas": 3}}, _content_type=MERGE
        )
    assert caught.value.status == 429
    headers = caught.value.headers
    assert headers is not None and headers["Retry-After"] == "7"
    assert fake_kube.pending_faults(path) == 5

    assert [(r.verb, r.status, r.client) for r in fake_kube.requests_to(path)] == [
        ("GET", 200, "fake-token"),
        ("GET", 200, "fake-token"),
        ("PATCH", 429, "fake-token"),
    ]
    assert fake_kube.request_counts() == {("PATCH", path): 1, ("GET", path): 2}
    assert all(r.arrived <= r.time for r in fake_kube.requests)
    assert fake_kube.writes[0].client == "fake-token"


def test_standalone_process_with_seed_file(tmp_path: Path) -> None:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
        "spec: {replicas: 2}\n---\n"
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec: {replicas: 1}\n",
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    try:
        path = "/apis/apps/v1/namespaces/shop/deployments/web/scale"
        with urllib.request.urlopen(fake.url + path, timeout=10) as response:
            assert json.load(response)["spec"]["replicas"] == 2
        fake.inject_fault(path, 503, method="PATCH")
        request = urllib.request.Request(
            fake.url + path,
            data=b'{"spec": {"replicas": 4}}',
            method="PATCH",
            headers={"Content-Type": MERGE},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert is_status(json.load(caught.value), 503, "ServiceUnavailable")
        caught.value.close()
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["spec"]["replicas"] == 4
        assert [(w["verb"], w["path"], w["status"]) for w in fake.writes()] == [
            ("PATCH", path, 503),
            ("PATCH", path, 200),
        ]
        assert write_kubeconfig(tmp_path / "kc", fake.url).exists()
        # Control endpoints: another writer's change, the request log, fault state.
        updated = fake.update("Deployment", "shop", "web", {"spec": {"replicas": 9}})
        assert updated["spec"]["replicas"] == 9
        assert [(r["verb"], r["status"]) for r in fake.requests()] == [
            ("GET", 200),
            ("PATCH", 503),
            ("PATCH", 200),
        ]
        fake.inject_fault(path, 429, method="PATCH", retry_after=5, count=2)
        assert fake.faults()[path] == {"pending": 2, "fired": 1}
    finally:
        fake.stop()
    assert fake.process.returncode == 0
