"""Fixtures for actuator tests: the in-repo fake Kubernetes API and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from kubernetes_asyncio import client

from daemon.actuators.kubernetes import kube_api_client
from daemon.actuators.retry import RetryPolicy
from daemon.ratelimit_client import forget_throttles
from tests.support.fake_kube import FakeKube, write_kubeconfig


@pytest.fixture(autouse=True)
def fresh_throttles() -> Iterator[None]:
    """Throttles are shared per client and per AWS endpoint: none carries into the next test."""
    forget_throttles()
    yield
    forget_throttles()


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    fake = FakeKube()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def kube_client(fake_kube: FakeKube, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    """A real kubernetes-asyncio client, configured the way the daemon does it: a kubeconfig."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)
    api = await kube_api_client(str(kubeconfig), in_cluster=False)
    yield api
    await api.close()


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Real backoff arithmetic, tiny delays: a retried test still finishes in milliseconds."""
    return RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005)


def deployment(name: str, replicas: int, namespace: str = "default") -> dict[str, object]:
    """A minimal Deployment manifest; the fake fills what the real API server would default."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
    }


def statefulset(name: str, replicas: int, namespace: str = "default") -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
        },
    }


@pytest.fixture
def aws_config() -> Config:
    """One botocore attempt per call: a failure shows at once instead of after backoff."""
    return Config(retries={"total_max_attempts": 1, "mode": "standard"})


@dataclass
class CallLog:
    """AWS operations a session's clients actually sent, seen through botocore's own events."""

    operations: list[str] = field(default_factory=list)

    def record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


@pytest.fixture
def aws_session() -> tuple[aioboto3.Session, CallLog]:
    session = aioboto3.Session(region_name="us-east-1")
    calls = CallLog()
    session.events.register("before-call", calls.record)
    return session, calls
