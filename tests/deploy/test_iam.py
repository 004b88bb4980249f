"""The AWS IAM policy grants exactly the actions elasticd calls, and nothing broader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon.kinds.registry import SPECS

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "iam-policy.json"

# The CloudWatch source (and the idle release's checks) read metrics; every other action is
# one a target kind declares it needs (KindSpec.permissions, shown in the docs' table of kinds).
SOURCE_ACTIONS = {"cloudwatch:GetMetricData"}
EXPECTED_ACTIONS = SOURCE_ACTIONS | {
    permission.name
    for spec in SPECS
    for permission in spec.permissions
    if permission.system == "aws"
}


def _statements() -> list[dict[str, Any]]:
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    statements: list[dict[str, Any]] = policy["Statement"]
    return statements


def test_actions_are_exactly_the_expected_list() -> None:
    actions: list[str] = []
    for statement in _statements():
        value = statement["Action"]
        actions += [value] if isinstance(value, str) else value
    assert len(actions) == len(set(actions)), "an action is listed twice"
    assert set(actions) == EXPECTED_ACTIONS


def test_only_plain_allow_statements_without_wildcard_actions() -> None:
    for statement in _statements():
        assert statement["Effect"] == "Allow"
        # NotAction/NotResource grant everything *except* a list: far broader than they look.
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action and "?" not in action, action
