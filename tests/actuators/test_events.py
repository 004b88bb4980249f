"""KubernetesEventRecorder with the real kubernetes-asyncio client against the fake API server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes_asyncio import client

from daemon.actuators.events import KubernetesEventRecorder, scale_event
from daemon.ratelimit_client import throttle_for
from tests.support.fake_kube import FakeKube

EVENTS_PATH = "/api/v1/namespaces/shop/events"


@pytest.fixture
def recorder(kube_client: client.ApiClient) -> KubernetesEventRecorder:
    return KubernetesEventRecorder(kube_client, "shop", host="elasticd-0")


def stored_events(fake: FakeKube) -> list[dict[str, Any]]:
    return [obj for (rtype, _, _), obj in fake.objects.items() if rtype.kind == "Event"]


async def test_records_an_event_on_the_target(
    fake_kube: FakeKube, recorder: KubernetesEventRecorder
) -> None:
    reason, message = scale_event(3, 7, 412.5, "forecast")
    assert reason == "ScaledAhead"

    assert await recorder.record("Deployment", "web", reason, message) is True

    [event] = stored_events(fake_kube)
    assert event["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "shop",
    }
    assert event["reason"] == "ScaledAhead"
    assert event["message"] == "replicas 3 -> 7; forecast 412.5; reason forecast"
    assert event["type"] == "Normal"
    assert event["source"] == {"component": "elasticd", "host": "elasticd-0"}
    assert event["reportingComponent"] == "elasticd"
    assert event["count"] == 1
    assert str(event["metadata"]["name"]).startswith("web.")
    [write] = fake_kube.writes
    assert (write.verb, write.path, write.status) == ("POST", EVENTS_PATH, 201)


async def test_every_write_gets_its_own_event(
    fake_kube: FakeKube, recorder: KubernetesEventRecorder
) -> None:
    up = scale_event(2, 6, 80.0, "forecast", floor=True)
    down = scale_event(6, 2, None, "stabilised", floor=True)
    assert up[0] == "ScaledAheadFloor" and down[0] == "ScaledDownFloor"
    assert down[1] == "floor 6 -> 2; forecast none; reason stabilised"

    assert await recorder.record("HorizontalPodAutoscaler", "web", *up)
    assert await recorder.record("HorizontalPodAutoscaler", "web", *down, type="Warning")

    events = stored_events(fake_kube)
    assert [e["reason"] for e in events] == ["ScaledAheadFloor", "ScaledDownFloor"]
    assert [e["type"] for e in events] == ["Normal", "Warning"]
    assert {e["involvedObject"]["apiVersion"] for e in events} == {"autoscaling/v2"}


async def test_a_refused_event_is_logged_not_raised(
    fake_kube: FakeKube, recorder: KubernetesEventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    fake_kube.inject_fault(EVENTS_PATH, 403)

    assert await recorder.record("Deployment", "web", "ScaledAhead", "x") is False
    assert stored_events(fake_kube) == []
    assert "could not record event ScaledAhead on Deployment shop/web: HTTP 403" in caplog.text


async def test_a_slow_api_server_does_not_hold_up_scaling(
    fake_kube: FakeKube, kube_client: client.ApiClient
) -> None:
    recorder = KubernetesEventRecorder(kube_client, "shop", request_timeout=0.2)
    fake_kube.inject_fault(EVENTS_PATH, None, delay=2.0)

    began = time.monotonic()
    assert await recorder.record("Deployment", "web", "ScaledAhead", "x") is False
    assert time.monotonic() - began < 1.0


async def test_an_unreachable_api_server_is_logged_not_raised(
    kube_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    recorder = KubernetesEventRecorder(kube_client, "shop")
    await fake_kube.stop()

    assert await recorder.record("Deployment", "web", "ScaledAhead", "x") is False


async def test_long_messages_are_cut_to_the_api_limit(
    fake_kube: FakeKube, recorder: KubernetesEventRecorder
) -> None:
    assert await recorder.record("StatefulSet", "db", "ScaledAhead", "x" * 5000)
    [event] = stored_events(fake_kube)
    assert len(str(event["message"])) == 1024


async def test_events_honour_the_clients_retry_after(
    fake_kube: FakeKube, kube_client: client.ApiClient, recorder: KubernetesEventRecorder
) -> None:
    fake_kube.inject_fault(EVENTS_PATH, 429, method="POST", retry_after=30)

    assert await recorder.record("Deployment", "web", "ScaledAhead", "replicas 3 -> 7") is False
    # The server told the client to hold its writes: no more Events, and no scaling writes.
    assert await recorder.record("Deployment", "web", "ScaledAhead", "replicas 7 -> 9") is False
    assert [w.status for w in fake_kube.writes] == [429]
    assert 29 < throttle_for(kube_client).blocked_for("write") <= 30
