"""Kubernetes manifests: pods are hardened and probed, RBAC is exactly what is needed.

No API server runs here, so these are structural checks on what `kubectl apply -k` would send:
the output of `kubectl kustomize` for every overlay (test_kustomize.py renders it and checks
it against the Kubernetes schemas and checkov). The embedded elasticd configuration is
validated with the daemon's own settings loader, as `elasticd validate` would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.settings.loader import load_settings
from tests.deploy.test_kustomize import (
    BASE,
    OVERLAYS,
    needs_kubectl,
    of_kind,
    overlay,
    pod_templates,
    render,
)

ELASTICD_UID = 10001

pytestmark = needs_kubectl

# Exactly what the daemon needs; a new rule must come with a reason (and a test change).
# Workloads are read and resized through /scale only (no get/list on the workloads, no PUT);
# HPAs are listed to find an owner and patched in hpa-floor mode; Argo Rollouts are resized
# through /scale and KEDA ScaledObjects' floors patched; a Lease is released with an
# update (empty holder), never deleted; every write gets its own Event, never patched.
EXPECTED_RULES = {
    ("apps", "deployments/scale"): {"get", "patch"},
    ("apps", "statefulsets/scale"): {"get", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "patch"},
    # kind: scalable (Argo Rollouts through their /scale) and act_via: keda-floor.
    ("argoproj.io", "rollouts/scale"): {"get", "patch"},
    ("keda.sh", "scaledobjects"): {"get", "patch"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
    ("", "events"): {"create"},
}


def _all_documents() -> list[dict[str, Any]]:
    return [doc for directory in OVERLAYS for doc in render(directory)]


def _of_kind(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of ``kind`` in overlay ``name``, or in every overlay."""
    return of_kind(overlay(name) if name else _all_documents(), kind)


def _containers(
    kinds: frozenset[str] | None = None,
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) for every container of every workload (of
    ``kinds``) in every overlay: Deployments, CronJobs..."""
    for workload, template in pod_templates(_all_documents()):
        if kinds is not None and workload["kind"] not in kinds:
            continue
        pod = template["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield workload["metadata"]["name"], pod, container


def _elasticd_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The long-running ones: a daemon serves its probes and metrics (a CronJob's pass does
    not)."""
    daemons = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
    return [c for c in _containers(daemons) if c[2]["name"] == "elasticd"]


@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_every_document_is_namespaced(directory: Path) -> None:
    docs = render(directory)
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()
        assert doc["metadata"]["namespace"], doc["metadata"]["name"]


def test_every_container_is_non_root_with_a_read_only_root() -> None:
    containers = list(_containers())
    assert len(containers) >= 3  # web + elasticd sidecar, standalone elasticd
    for name, pod, container in containers:
        where = f"{name}/{container['name']}"
        pod_ctx = pod.get("securityContext", {})
        ctx = container["securityContext"]
        assert pod_ctx.get("runAsNonRoot") is True, where
        assert ctx["runAsNonRoot"] is True, where
        assert ctx["runAsUser"] > 0, where
        assert ctx["readOnlyRootFilesystem"] is True, where
        assert ctx["allowPrivilegeEscalation"] is False, where
        assert ctx.get("privileged", False) is False, where
        assert ctx["capabilities"] == {"drop": ["ALL"]}, where
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod.get("hostNetwork", False) is False, where
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), where
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), where


def test_elasticd_containers_match_the_image_and_are_probed() -> None:
    containers = _elasticd_containers()
    assert {name for name, _, _ in containers} >= {"web", "elasticd"}
    for name, pod, container in containers:
        assert pod["serviceAccountName"] == "elasticd"
        assert container["securityContext"]["runAsUser"] == ELASTICD_UID  # the Dockerfile's UID
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        assert container["args"] == ["run", "--config", "/etc/elasticd/elasticd.yaml"]
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
        assert port == 9464
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] in {"/healthz", "/readyz"}, name
        # With a read-only root, every path the daemon writes must be a mount.
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert {"/etc/elasticd", "/var/lib/elasticd", "/tmp"} <= mounts.keys(), name
        assert mounts["/etc/elasticd"]["readOnly"] is True


def test_standalone_runs_two_replicas_with_leader_election_and_readyz() -> None:
    (deployment,) = _of_kind("Deployment", "standalone")
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (service,) = _of_kind("Service", "standalone")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    (config_map,) = _of_kind("ConfigMap", "standalone")
    assert yaml.safe_load(config_map["data"]["elasticd.yaml"])["leader_election"]["enabled"]


def test_sidecar_shares_the_workload_pod_and_elects_a_leader() -> None:
    (deployment,) = _of_kind("Deployment", "sidecar")
    names = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "elasticd"]
    (config_map,) = _of_kind("ConfigMap", "sidecar")
    config = yaml.safe_load(config_map["data"]["elasticd.yaml"])
    # One copy per replica: without a Lease every copy would act.
    assert config["leader_election"]["enabled"] is True
    assert [t["workload"] for t in config["targets"]] == [deployment["metadata"]["name"]]
    # Metrics are scraped from the web pods, where elasticd runs here.
    (service,) = _of_kind("Service", "sidecar")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_mounted_config_map_exists_and_its_config_validates(
    directory: Path, tmp_path: Path
) -> None:
    objects = render(directory)
    config_maps = {c["metadata"]["name"]: c for c in of_kind(objects, "ConfigMap")}
    for _, template in pod_templates(objects):
        volumes = template["spec"]["volumes"]
        mounted = {v["configMap"]["name"] for v in volumes if "configMap" in v}
        assert mounted and mounted <= config_maps.keys(), "a mounted ConfigMap is missing"
        for name in mounted:
            config_file = tmp_path / f"{name}.yaml"
            config_file.write_text(config_maps[name]["data"]["elasticd.yaml"])
            settings = load_settings(config_file)  # raises ConfigError with the offending key
            assert settings.telemetry.port == 9464
            assert all(t.mode == "forecast-only" for t in settings.targets)


def test_role_grants_exactly_the_needed_rules() -> None:
    base = render(BASE)
    (role,) = of_kind(base, "Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_RULES
    assert not _of_kind("ClusterRole") and not _of_kind("ClusterRoleBinding")


def test_role_binding_ties_the_role_to_the_service_account() -> None:
    base = render(BASE)
    (account,) = of_kind(base, "ServiceAccount")
    (role,) = of_kind(base, "Role")
    (binding,) = of_kind(base, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
