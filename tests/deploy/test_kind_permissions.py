"""Each target kind's declared permissions (``KindSpec.permissions``, shown in the docs and by
``explain``) are granted by what ``deploy/`` ships, and the registry is consistent."""

from __future__ import annotations

from daemon.kinds.registry import KINDS, SPECS
from daemon.settings.targets import NODE_KINDS
from tests.deploy.test_permissions_match_code import iam_actions, rbac_grants


def test_every_declared_aws_permission_is_in_the_iam_policy() -> None:
    granted = iam_actions()
    missing = {
        (spec.kinds[0], permission.name)
        for spec in SPECS
        for permission in spec.permissions
        if permission.system == "aws" and permission.name not in granted
    }
    assert not missing, f"deploy/aws/iam-policy.json lacks {sorted(missing)}"


def test_every_declared_kubernetes_permission_is_in_the_role() -> None:
    granted = {f"{group}/{resource}:{verb}" for group, resource, verb in rbac_grants()}
    # The core group is written with an empty prefix ("/events:create").
    missing = {
        (spec.kinds[0], permission.name)
        for spec in SPECS
        for permission in spec.permissions
        if permission.system == "kubernetes" and permission.name not in granted
    }
    assert not missing, f"the RBAC Role lacks {sorted(missing)}"


def test_kinds_are_unique_and_each_model_serves_its_kinds() -> None:
    kinds = [kind for spec in SPECS for kind in spec.kinds]
    assert len(kinds) == len(set(kinds)) == len(KINDS)
    for spec in SPECS:
        literal = spec.config.model_fields["kind"].annotation
        assert set(getattr(literal, "__args__", ())) == set(spec.kinds), spec.kinds
        assert spec.writes, spec.kinds
        for permission in spec.permissions:
            assert permission.system in {"aws", "kubernetes"}, permission
    assert {"asg", "eks-nodegroup"} <= NODE_KINDS
