"""The sharded overlay: the base's configuration with sharding instead of leader election, and
a Role that grants membership Leases only, only in its namespace."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_kustomize import render

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "sharded"
BASE_CONFIG = ROOT / "deploy" / "kubernetes" / "base" / "elasticd.yaml"


def test_the_overlays_config_is_the_bases_with_sharding_instead_of_leader_election() -> None:
    base = yaml.safe_load(BASE_CONFIG.read_text())
    sharded = yaml.safe_load((OVERLAY / "elasticd.yaml").read_text())
    assert sharded.pop("sharding")["enabled"] is True
    base.pop("leader_election")
    assert sharded == base, "overlays/sharded/elasticd.yaml drifted from the base's: edit both"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_overlay_runs_replicas_with_a_lease_only_role_in_its_namespace() -> None:
    objects = render(OVERLAY)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    sharding = roles["elasticd-sharding"]
    assert sharding["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert sharding["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "create", "update", "delete"],
        }
    ]
    (binding,) = [
        o
        for o in objects
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "elasticd-sharding"
    ]
    assert (
        binding["subjects"][0]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )
