"""The kustomize base and every overlay, rendered and checked by the tools their users run.

- ``kubectl kustomize`` renders every directory under ``deploy/kubernetes/overlays/`` (a new
  overlay is checked without a test change) and the base;
- ``kubernetes-validate`` checks every rendered object against the Kubernetes OpenAPI schemas
  (strict: an unknown or misspelt field fails), for the oldest and newest release we target;
  the Prometheus Operator's kinds (ServiceMonitor, PrometheusRule) are CRDs it has no schema
  for, so they are checked against a small schema here and cross-checked against the Service;
- ``checkov`` scans the rendered manifests and the Dockerfile: no failed check; a skip must be
  written inline (an annotation or a ``# checkov:skip=`` line) with its reason.

The render helpers are shared with test_kubernetes.py, which checks the same output's content.
"""

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

from daemon.settings.loader import load_settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES_DIR / "base"
OVERLAYS = sorted(p for p in (KUBERNETES_DIR / "overlays").iterdir() if p.is_dir())
CONFIG = ROOT / "config" / "kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"
KUBECTL = shutil.which("kubectl")
# Its own venv (tests/install-servers.sh): checkov pins boto3/botocore versions that fight the
# project's aiobotocore.
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
# The oldest Kubernetes release still under (EKS extended) support, and the newest schema set.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: the kustomize overlays cannot be rendered"
)

Obj = dict[str, Any]


@cache
def _render_text(directory: Path) -> str:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return result.stdout


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl apply -k directory`` would send (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_render_text(directory)) if doc is not None]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def overlay(name: str) -> list[Obj]:
    return render(KUBERNETES_DIR / "overlays" / name)


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def pod_templates(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(workload, pod template) for every object that runs pods, whatever its kind."""
    found = []
    for obj in objects:
        if obj["kind"] == "CronJob":
            found.append((obj, obj["spec"]["jobTemplate"]["spec"]["template"]))
        elif obj["kind"] in WORKLOAD_KINDS:
            found.append((obj, obj["spec"]["template"]))
    return found


def config_of(objects: list[Obj]) -> str:
    """The elasticd.yaml the pods mount, from the rendered ConfigMap."""
    (config_map,) = [c for c in of_kind(objects, "ConfigMap") if "elasticd.yaml" in c["data"]]
    text: str = config_map["data"]["elasticd.yaml"]
    return text


# -- rendering ----------------------------------------------------------------------------------


def test_the_overlays_we_ship_exist() -> None:
    assert {"sidecar", "standalone"} <= {p.name for p in OVERLAYS}


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_every_overlay_renders_on_the_base(directory: Path) -> None:
    objects = render(directory)
    kinds = {obj["kind"] for obj in objects}
    # Everything the base brings that any mode needs: identity, rights, configuration.
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap"} <= kinds
    assert pod_templates(objects), "an overlay runs elasticd somewhere"
    if "ServiceMonitor" in kinds:
        assert "Service" in kinds, "a ServiceMonitor with no Service to find"
    namespaces = {obj["metadata"].get("namespace") for obj in objects}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert len(names) == len(set(names)), "an object is defined twice"


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_every_overlays_config_is_valid(directory: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "elasticd.yaml"
    config_file.write_text(config_of(render(directory)))
    settings = load_settings(config_file)  # raises ConfigError naming the YAML path
    assert settings.telemetry.port == 9464  # the port the pods, Service and probes name
    # Safe defaults: nothing shipped writes capacity before someone has read its decisions.
    assert all(t.mode == "forecast-only" for t in settings.targets)


def test_the_base_config_is_config_kubernetes_yaml() -> None:
    """The base carries a copy (kustomize reads no file outside the base's directory): the
    same settings, except the Lease's namespace, left to the pod's own (the kustomization's,
    where the Role grants Leases)."""
    example = yaml.safe_load(CONFIG.read_text())
    base = yaml.safe_load((BASE / "elasticd.yaml").read_text())
    assert "namespace" not in base["leader_election"]
    example["leader_election"].pop("namespace", None)
    assert base == example, (
        "deploy/kubernetes/base/elasticd.yaml differs from config/kubernetes.yaml: edit both"
    )


# -- schemas ------------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_every_object_validates_against_the_kubernetes_schemas(
    directory: Path, version: str
) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is missing: pip install -e '.[dev]'"
    )
    import jsonschema  # kubernetes-validate's own dependency

    checked, errors = 0, []
    for obj in render(directory):
        if obj["kind"] in OPERATOR_KINDS:
            continue  # CRDs: no schema in kubernetes-validate; see the test below
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except jsonschema.ValidationError as error:
            where = "/".join(str(p) for p in error.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {error.message}")
        checked += 1
    assert not errors, "\n".join(errors)
    assert checked >= 7


# The fields of monitoring.coreos.com/v1 the base uses, as the operator's CRDs define them.
SERVICE_MONITOR_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object"}},
                    "additionalProperties": False,
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^([0-9]+(ms|s|m|h))+$",
                            },
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": {"type": "string"},
                                        "labels": {"type": "object"},
                                        "annotations": {"type": "object"},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_the_operator_objects_match_their_schema_and_the_service(directory: Path) -> None:
    jsonschema = pytest.importorskip(
        "jsonschema",
        reason="jsonschema (with kubernetes-validate) is missing: pip install -e '.[dev]'",
    )
    objects = render(directory)
    for rule in of_kind(objects, "PrometheusRule"):
        jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    monitors = of_kind(objects, "ServiceMonitor")
    if not monitors:
        # A mode with nothing to scrape (a CronJob's pass) drops the metrics objects whole.
        assert not of_kind(objects, "Service") and not of_kind(objects, "PrometheusRule")
        return
    (monitor,) = monitors
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    # The ServiceMonitor finds the metrics Service by its labels and scrapes a port it names.
    (service,) = of_kind(objects, "Service")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= service["metadata"]["labels"].items()
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    # ...and the Service selects pods that expose that port under that name.
    selector = service["spec"]["selector"].items()
    pods = [
        pod for _, pod in pod_templates(objects) if selector <= pod["metadata"]["labels"].items()
    ]
    assert pods, "the metrics Service selects no pod of this overlay"
    exposed = {
        port.get("name")
        for pod in pods
        for container in pod["spec"]["containers"]
        for port in container.get("ports", [])
    }
    targets = {port["targetPort"] for port in service["spec"]["ports"]}
    assert targets <= exposed


# -- checkov ------------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.skipif(
    not CHECKOV.exists(),
    reason=f"checkov is not installed at {CHECKOV.relative_to(ROOT)}: run tests/install-servers.sh",
)
def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    files = []
    for directory in OVERLAYS:
        path = tmp_path / f"{directory.name}.yaml"
        path.write_text(_render_text(directory))
        files += ["--file", str(path)]
    env = {
        **os.environ,
        # Nothing leaves the host: no Prisma Cloud guidelines or mappings are fetched.
        "BC_SKIP_MAPPING": "TRUE",
    }
    result = subprocess.run(
        [
            str(CHECKOV),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
            *files,
            "--file",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {report["check_type"]: report for report in reports}
    # --quiet drops passed checks from the results but not from the summary.
    assert set(by_type) == {"kubernetes", "dockerfile"}, result.stderr[-3000:]
    failed = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} ({check['file_path']})"
        for report in reports
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks (fix, or skip inline with a reason):\n" + "\n".join(
        failed
    )
    for report in reports:
        assert report["summary"]["passed"] > 20, report["check_type"]  # it really scanned
        for check in report["results"].get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment", "")
            assert len(reason) > 15, f"{check['check_id']} skipped without a reason"
    assert result.returncode == 0, result.stderr[-3000:]
