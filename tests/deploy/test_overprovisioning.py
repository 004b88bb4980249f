"""deploy/kubernetes/overprovisioning: the placeholder pods ``kind: placeholder-pods`` sizes,
rendered by ``kubectl kustomize`` as its users apply it, validated against the Kubernetes
schemas, and consistent with the example config that drives it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.kinds.placeholder_pods import PlaceholderPodsTarget
from daemon.settings.loader import load_settings
from daemon.settings.quantities import parse_bytes, parse_cpu

ROOT = Path(__file__).resolve().parents[2]
DIRECTORY = ROOT / "deploy" / "kubernetes" / "overprovisioning"
CONFIG = ROOT / "config" / "placeholder-pods.yaml"
KUBECTL = shutil.which("kubectl")
# Its own venv (tests/install-servers.sh): its pins fight the project's.
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
# The cluster autoscaler ignores pending pods below this priority (expendable pods).
CA_EXPENDABLE_CUTOFF = -10

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: the kustomization cannot be rendered"
)


@cache
def _rendered() -> str:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(DIRECTORY)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rendered(kind: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        doc for doc in yaml.safe_load_all(_rendered()) if doc and doc["kind"] == kind
    ]
    assert len(found) == 1, kind
    return found[0]


def placeholder_target() -> PlaceholderPodsTarget:
    [target] = [t for t in load_settings(CONFIG).targets if isinstance(t, PlaceholderPodsTarget)]
    return target


def test_the_priority_class_is_below_real_pods_and_never_preempts() -> None:
    priority = rendered("PriorityClass")
    # Below the default 0 (any real pod preempts a placeholder), yet not expendable to the
    # cluster autoscaler (which would then bring no node up for it).
    assert CA_EXPENDABLE_CUTOFF <= priority["value"] < 0
    assert priority["preemptionPolicy"] == "Never"
    assert priority["globalDefault"] is False


def test_the_kustomization_ships_the_priority_class_the_deployment_and_its_policy() -> None:
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(_rendered()) if doc)
    assert kinds == ["Deployment", "NetworkPolicy", "PriorityClass"]


def test_the_deployment_is_the_one_the_example_target_sizes() -> None:
    deployment = rendered("Deployment")
    target = placeholder_target()
    assert (deployment["metadata"]["namespace"], deployment["metadata"]["name"]) == (
        target.namespace,
        target.deployment,
    )
    # elasticd owns the count: a re-apply must not reset it.
    assert "replicas" not in deployment["spec"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == rendered("PriorityClass")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] == 0


def test_each_placeholder_requests_what_the_target_plans_for_one_pod() -> None:
    [container] = rendered("Deployment")["spec"]["template"]["spec"]["containers"]
    requests = container["resources"]["requests"]
    target = placeholder_target()
    assert parse_cpu(requests["cpu"]) == pytest.approx(target.pod_requests.cpu)
    assert parse_bytes(requests["memory"]) == target.pod_requests.memory
    assert container["image"].startswith("registry.k8s.io/pause:")


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_every_object_is_valid_for_the_kubernetes_releases_we_target(version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is missing: pip install -e '.[dev]'"
    )
    for obj in yaml.safe_load_all(_rendered()):
        if obj:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov is not installed: run tests/install-servers.sh"
)
def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    manifest = tmp_path / "overprovisioning.yaml"
    manifest.write_text(_rendered())
    result = subprocess.run(
        [
            *(str(CHECKOV), "--framework", "kubernetes", "--skip-download", "--compact"),
            *("--quiet", "--output", "json", "--file", str(manifest)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # Nothing leaves the host: no Prisma Cloud guidelines or mappings are fetched.
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    assert report["summary"]["passed"] > 20, result.stderr[-2000:]  # it really scanned
    failed = [check["check_id"] for check in report["results"]["failed_checks"]]
    assert not failed, f"fix, or skip inline with a reason: {failed}"
    # Each skip is an annotation on the Deployment that says why (--quiet leaves them out of
    # the results, so they are read from the manifest).
    annotations = rendered("Deployment")["metadata"]["annotations"]
    skips = [value for key, value in annotations.items() if key.startswith("checkov.io/skip")]
    assert report["summary"]["skipped"] == len(skips) == 4
    for skip in skips:
        check, _, reason = skip.partition("=")
        assert check.startswith("CKV") and len(reason) > 20, skip
    for check in report["results"].get("skipped_checks", []):
        assert check["check_result"].get("suppress_comment"), check["check_id"]
