"""The RBAC Role and the IAM policy grant exactly what the code calls: no less, no more.

The code is scanned with ``ast`` (comments and docstrings do not count):

- Kubernetes: every attribute of ``daemon/`` that names a method of a kubernetes-asyncio API
  class (``read_namespaced_deployment_scale``...), mapped to (apiGroup, resource, verb) by
  ``KUBE_CALLS``; a method missing from that table fails the test until it is added.
- AWS: in each file that opens a client for a service (``AwsClient("eks", ...)``,
  ``session.client("cloudwatch", ...)``), every attribute or string naming one of that
  service's operations (``update_nodegroup_config``, ``.get_metric_data(``), mapped to its IAM
  action through botocore's own service model.

A grant nothing uses is a failure too: either the feature needing it is missing, or the grant
is excess and widens what a stolen token can do.
"""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import yaml
from kubernetes_asyncio import client

ROOT = Path(__file__).resolve().parents[2]
DAEMON = ROOT / "daemon"
RBAC = ROOT / "deploy" / "kubernetes" / "base" / "rbac.yaml"
# An overlay may add a Role for what only its mode calls (sharding's membership Leases).
OVERLAY_MANIFESTS = sorted((ROOT / "deploy" / "kubernetes" / "overlays").glob("*/*.yaml"))
IAM_POLICY = ROOT / "deploy" / "aws" / "iam-policy.json"

Permission = tuple[str, str, str]  # (apiGroup, resource, verb)

# kubernetes-asyncio method -> what the API server authorises it as.
KUBE_CALLS: dict[str, Permission] = {
    "read_namespaced_deployment_scale": ("apps", "deployments/scale", "get"),
    "patch_namespaced_deployment_scale": ("apps", "deployments/scale", "patch"),
    "replace_namespaced_deployment_scale": ("apps", "deployments/scale", "update"),
    "read_namespaced_stateful_set_scale": ("apps", "statefulsets/scale", "get"),
    "patch_namespaced_stateful_set_scale": ("apps", "statefulsets/scale", "patch"),
    "replace_namespaced_stateful_set_scale": ("apps", "statefulsets/scale", "update"),
    "read_namespaced_deployment": ("apps", "deployments", "get"),
    "list_namespaced_deployment": ("apps", "deployments", "list"),
    "read_namespaced_stateful_set": ("apps", "statefulsets", "get"),
    "list_namespaced_stateful_set": ("apps", "statefulsets", "list"),
    "read_namespaced_horizontal_pod_autoscaler": ("autoscaling", "horizontalpodautoscalers", "get"),
    "list_namespaced_horizontal_pod_autoscaler": (
        "autoscaling",
        "horizontalpodautoscalers",
        "list",
    ),
    "patch_namespaced_horizontal_pod_autoscaler": (
        "autoscaling",
        "horizontalpodautoscalers",
        "patch",
    ),
    "read_namespaced_lease": ("coordination.k8s.io", "leases", "get"),
    "list_namespaced_lease": ("coordination.k8s.io", "leases", "list"),
    "create_namespaced_lease": ("coordination.k8s.io", "leases", "create"),
    "replace_namespaced_lease": ("coordination.k8s.io", "leases", "update"),
    "patch_namespaced_lease": ("coordination.k8s.io", "leases", "patch"),
    "delete_namespaced_lease": ("coordination.k8s.io", "leases", "delete"),
    "create_namespaced_event": ("", "events", "create"),
    "patch_namespaced_event": ("", "events", "patch"),
    # Custom resources name their group and resource at run time; the Role ships the examples
    # the code's kinds use (users of other CRDs add theirs beside them, as deploy/ says):
    # kind: scalable on an Argo Rollout's scale subresource, act_via: keda-floor on a
    # KEDA ScaledObject.
    "get_namespaced_custom_object_scale": ("argoproj.io", "rollouts/scale", "get"),
    "patch_namespaced_custom_object_scale": ("argoproj.io", "rollouts/scale", "patch"),
    "get_namespaced_custom_object": ("keda.sh", "scaledobjects", "get"),
    "patch_namespaced_custom_object": ("keda.sh", "scaledobjects", "patch"),
}

# boto3 service name -> IAM action prefix (CloudWatch signs as "monitoring" but IAM says
# "cloudwatch", so botocore's metadata cannot be used for this).
IAM_PREFIX = {
    "autoscaling": "autoscaling",
    "eks": "eks",
    "cloudwatch": "cloudwatch",
    "ec2": "ec2",
    "emr": "elasticmapreduce",
    "ecs": "ecs",
    "lambda": "lambda",
    "rds": "rds",
}

# Calls the scan must find, so a broken scanner cannot pass by finding nothing.
KNOWN_KUBE = {"read_namespaced_deployment_scale", "patch_namespaced_deployment_scale"}
KNOWN_AWS = {"eks:UpdateNodegroupConfig", "cloudwatch:GetMetricData"}


# -- the code -----------------------------------------------------------------------------------


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(DAEMON.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@cache
def _kube_api_methods() -> frozenset[str]:
    """Every public method of every generated API class of kubernetes-asyncio."""
    names: set[str] = set()
    for attribute in dir(client):
        api = getattr(client, attribute)
        if inspect.isclass(api) and attribute.endswith("Api") and attribute != "ApiClient":
            names |= {
                name
                for name, _ in inspect.getmembers(api, inspect.isfunction)
                if not name.startswith("_") and not name.endswith("_with_http_info")
            }
    return frozenset(names)


@cache
def kube_calls_in_code() -> dict[str, set[str]]:
    """API method -> the files naming it."""
    methods = _kube_api_methods()
    found: dict[str, set[str]] = {}
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in methods:
                found.setdefault(node.attr, set()).add(str(path.relative_to(ROOT)))
    return found


def _own_service(node: ast.ClassDef) -> str | None:
    """The ``service`` class attribute a class body assigns itself, if any."""
    for item in node.body:
        if isinstance(item, ast.AnnAssign | ast.Assign):
            targets = [item.target] if isinstance(item, ast.AnnAssign) else item.targets
            value = item.value
            if (
                any(isinstance(t, ast.Name) and t.id == "service" for t in targets)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                return value.value
    return None


@cache
def _classes() -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Every class of ``daemon/`` by name: its own ``service`` and its base classes' names."""
    classes: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    for _path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = tuple(b.id for b in node.bases if isinstance(b, ast.Name))
                classes[node.name] = (_own_service(node), bases)
    return classes


def _inherited_service(name: str) -> str | None:
    """A class's ``service``: its own, else the nearest base class's (the floor actuators
    reuse their group's actuator and its service)."""
    own, bases = _classes().get(name, (None, ()))
    if own is not None:
        return own
    for base in bases:
        found = _inherited_service(base)
        if found is not None:
            return found
    return None


def _services_opened(tree: ast.Module) -> set[str]:
    """Services named as the first argument of ``AwsClient(...)`` or ``<x>.client(...)``, or
    as the ``service`` class attribute of an ``AwsSizeActuator`` subclass, its own or
    inherited."""
    services: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            inherited = _inherited_service(node.name)
            if inherited is not None:
                services.add(inherited)
            continue
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            named = any(isinstance(t, ast.Name) and t.id == "service" for t in targets)
            value = node.value
            if named and isinstance(value, ast.Constant) and isinstance(value.value, str):
                services.add(value.value)
            continue
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        opener = (isinstance(func, ast.Name) and func.id == "AwsClient") or (
            isinstance(func, ast.Attribute) and func.attr == "client"
        )
        first = node.args[0]
        if opener and isinstance(first, ast.Constant) and isinstance(first.value, str):
            services.add(first.value)
    return services


@cache
def _operations(service: str) -> dict[str, str]:
    """snake_case name -> API operation name, from botocore's bundled service model."""
    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(name): name for name in model.operation_names}


@cache
def aws_actions_in_code() -> dict[str, set[str]]:
    """IAM action -> the files calling it."""
    found: dict[str, set[str]] = {}
    for path, tree in _sources():
        services = _services_opened(tree)
        assert services <= set(IAM_PREFIX), (
            f"{path}: add {services - set(IAM_PREFIX)} to IAM_PREFIX"
        )
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} | {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        for service in services:
            for snake, operation in _operations(service).items():
                if snake in names:
                    action = f"{IAM_PREFIX[service]}:{operation}"
                    found.setdefault(action, set()).add(str(path.relative_to(ROOT)))
    return found


# -- the grants ---------------------------------------------------------------------------------


def rbac_grants() -> set[Permission]:
    documents = [
        doc for path in [RBAC, *OVERLAY_MANIFESTS] for doc in yaml.safe_load_all(path.read_text())
    ]
    grants: set[Permission] = set()
    for role in (doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "Role"):
        for rule in role["rules"]:
            grants |= {
                (group, resource, verb)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return grants


def iam_actions() -> set[str]:
    policy: dict[str, Any] = json.loads(IAM_POLICY.read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


def _listing(items: dict[Any, set[str]]) -> str:
    return "\n".join(f"  {item}  ({', '.join(sorted(files))})" for item, files in items.items())


# -- Kubernetes ---------------------------------------------------------------------------------


def test_the_scan_finds_the_calls_we_know_about() -> None:
    assert set(kube_calls_in_code()) >= KNOWN_KUBE
    assert set(aws_actions_in_code()) >= KNOWN_AWS


def test_every_kubernetes_call_is_in_the_permission_table() -> None:
    unknown = {m: f for m, f in kube_calls_in_code().items() if m not in KUBE_CALLS}
    assert not unknown, (
        "the code calls Kubernetes API methods this test cannot map to RBAC; add them to "
        f"KUBE_CALLS:\n{_listing(unknown)}"
    )


def test_rbac_grants_every_kubernetes_call() -> None:
    granted = rbac_grants()
    missing = {
        KUBE_CALLS[m]: files
        for m, files in kube_calls_in_code().items()
        if m in KUBE_CALLS and KUBE_CALLS[m] not in granted
    }
    assert not missing, (
        "deploy/kubernetes/base/rbac.yaml (and the overlays' Roles) do not grant what the code "
        "calls (it would get 403):\n"
        f"{_listing(missing)}"
    )


def test_every_rbac_grant_is_used() -> None:
    used = {KUBE_CALLS[m] for m in kube_calls_in_code() if m in KUBE_CALLS}
    unused = sorted(rbac_grants() - used)
    assert not unused, (
        "deploy/kubernetes/base/rbac.yaml grants what no code calls: remove the grant, or "
        f"implement the feature that needs it: {unused}"
    )


# -- AWS ----------------------------------------------------------------------------------------


def test_iam_policy_grants_every_aws_call() -> None:
    missing = {a: f for a, f in aws_actions_in_code().items() if a not in iam_actions()}
    assert not missing, (
        "deploy/aws/iam-policy.json does not grant what the code calls (AccessDenied):\n"
        f"{_listing(missing)}"
    )


def test_every_iam_action_is_used() -> None:
    unused = sorted(iam_actions() - set(aws_actions_in_code()))
    assert not unused, (
        "deploy/aws/iam-policy.json grants what no code calls: remove the action, or implement "
        f"the feature that needs it: {unused}"
    )
