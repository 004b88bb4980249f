"""Writes deploy/kubernetes/base/prometheusrule.yaml from elasticd-rules.yaml.

The plain rules file is the single source of elasticd's alerts; the Prometheus Operator's
PrometheusRule carries the same groups. kustomize cannot read a file outside the base's
directory, so the PrometheusRule is a generated copy, committed, and
tests/deploy/test_alerts.py fails when it differs from what this script writes.

    python deploy/prometheus/render_prometheusrule.py          # rewrite it
    python deploy/prometheus/render_prometheusrule.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "elasticd-rules.yaml"
PROMETHEUS_RULE = HERE.parent / "kubernetes" / "base" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/elasticd-rules.yaml by
# deploy/prometheus/render_prometheusrule.py: edit that file, then run this script.
# The same alerts for the Prometheus Operator (docs/monitoring.md says what each one means).
"""


def prometheus_rule() -> dict[str, Any]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "elasticd",
            "labels": {"app.kubernetes.io/name": "elasticd"},
        },
        "spec": {"groups": groups},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks, readable as in the source."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    body = yaml.dump(
        prometheus_rule(), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = PROMETHEUS_RULE.read_text(encoding="utf-8") if PROMETHEUS_RULE.exists() else ""
        if current != text:
            print(f"{PROMETHEUS_RULE} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    PROMETHEUS_RULE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
