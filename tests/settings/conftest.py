"""A minimal valid configuration that each test bends in one place."""

from __future__ import annotations

from typing import Any

import pytest


def minimal_config() -> dict[str, Any]:
    """One Prometheus source and two targets (a Deployment and the node group it runs on)."""
    return {
        "sources": {"prom": {"type": "prometheus", "url": "http://prometheus:9090"}},
        "targets": [
            {
                "name": "web",
                "kind": "deployment",
                "namespace": "shop",
                "workload": "web",
                "source": "prom",
                "query": "sum(rate(http_requests_total[2m]))",
                "unit_capacity": 40,
                "lead_time": "90s",
                "max_units": 20,
            },
            {
                "name": "nodes",
                "kind": "eks-nodegroup",
                "cluster": "prod",
                "nodegroup": "web",
                "source": "prom",
                "query": "sum(rate(http_requests_total[2m]))",
                "unit_capacity": 240,
                "lead_time": "4m",
                "max_units": 10,
            },
        ],
    }


@pytest.fixture
def config() -> dict[str, Any]:
    return minimal_config()
