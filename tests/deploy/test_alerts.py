"""elasticd's alert rules, checked by the tool Prometheus users run them with.

- ``promtool check rules``: the file loads (syntax, PromQL, templates);
- ``promtool test rules`` (deploy/prometheus/elasticd-rules.test.yaml): every alert fires on
  the series it is meant for, with its labels and rendered annotations, and stays silent on a
  near miss; a test here fails when an alert lacks either case;
- the PrometheusRule in the kustomize base is the same rules, regenerated from the file;
- every alert has a severity, a summary, a description and a runbook section in
  docs/monitoring.md.

test_dashboard.py evaluates every alert's query on live data from a real elasticd.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "elasticd-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "elasticd-rules.test.yaml"
RENDER = ROOT / "deploy" / "prometheus" / "render_prometheusrule.py"
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed: run tests/install-servers.sh"
)

# `<query> <comparison> <number>`, the form every alert is written in (see the rules file).
_COMPARISON = re.compile(
    r"^(?P<query>.*?\S)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?:bool\s+)?(?P<threshold>-?[0-9.eE+]+)\s*$",
    re.DOTALL,
)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# `<query> <comparison> on (labels) <query>`: a per-target threshold (the target's own
# shortfall_target, say); both sides must return data, and for the same label sets.
_VECTOR_COMPARISON = re.compile(
    r"^(?P<query>.*?\S)\s*(?:==|!=|>=|<=|>|<)\s*on\s*\((?P<labels>[^)]*)\)\s*(?P<right>.*\S)\s*$",
    re.DOTALL,
)


def alert_query(expr: str) -> str:
    """The query an alert compares, without the comparison: what must return data while
    elasticd runs. ``absent(x)`` returns data only when ``x`` is missing, so it gives ``x``;
    a comparison with another query gives both, joined on the labels they are matched on."""
    vector = _VECTOR_COMPARISON.match(expr.strip())
    if vector and not _COMPARISON.match(expr.strip()):
        return f"({vector['query']}) and on ({vector['labels']}) ({vector['right']})"
    match = _COMPARISON.match(expr.strip())
    assert match, (
        f"not `<query> <comparison> <number>` or `<query> <comparison> on (...) <query>`: {expr}"
    )
    query = match["query"].strip()
    absent = re.fullmatch(r"absent\((?P<inner>.*)\)", query, re.DOTALL)
    return absent["inner"] if absent else query


def test_the_rules_cover_what_an_operator_must_hear_about() -> None:
    names = {rule["alert"] for rule in alerts()}
    assert {
        "ElasticdSourceFailing",
        "ElasticdDemandStale",
        "ElasticdActuatorFailing",
        "ElasticdShortShareAboveTarget",
        "ElasticdModelFallback",
        "ElasticdNoSuccessfulTick",
        "ElasticdNoLeader",
        "ElasticdLeaseContended",
        "ElasticdForecastErrorGrowing",
        "ElasticdHeldAtMaximum",
    } <= names


def test_every_alert_is_a_comparison_with_a_runbook() -> None:
    doc = MONITORING_DOC.read_text(encoding="utf-8")
    headings = {line[4:].strip() for line in doc.splitlines() if line.startswith("### ")}
    for rule in alerts():
        name = rule["alert"]
        assert alert_query(rule["expr"]), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= annotations.keys(), name
        assert annotations["runbook_url"].endswith(f"docs/monitoring.md#{name.lower()}"), name
        assert name in headings, f"docs/monitoring.md has no `### {name}` section"


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts with no case where they fire"
    assert names - silent == set(), "alerts with no case where they stay silent"
    assert (fires | silent) <= names, "cases for alerts that do not exist"


def test_the_prometheus_rule_is_generated_from_the_rules_file() -> None:
    result = subprocess.run(
        [sys.executable, str(RENDER), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
