"""``elasticd validate`` and ``elasticd config-schema``, run as a user would: a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The lead wires these modules into daemon/cli.py; until then build the same parser here.
RUN = """
import argparse, sys
from daemon.commands import config_schema, validate
parser = argparse.ArgumentParser(prog="elasticd")
commands = parser.add_subparsers(dest="command")
validate.register(commands)
config_schema.register(commands)
args = parser.parse_args(sys.argv[1:])
sys.exit(args.handler(args))
"""


def elasticd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_reports_ok_per_file() -> None:
    result = elasticd("validate", "config/local.yaml", "config/kubernetes.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "config/local.yaml: ok (1 target)",
        "config/kubernetes.yaml: ok (2 targets)",
    ]
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "targets:\n  - name: web\n    kind: asg\n    min_unit: 2\n",
            "elasticd: {file}: targets[0].min_unit: unknown key; did you mean 'min_units'?",
        ),
        ("interval: 15s\n  bad: indent\n", "elasticd: {file}:2: "),
    ],
    ids=["invalid", "yaml-syntax"],
)
def test_validate_bad_file_is_one_line_on_stderr(tmp_path: Path, text: str, expected: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    result = elasticd("validate", str(bad))
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(expected.format(file=bad))
    assert "Traceback" not in result.stderr


def test_validate_missing_file_exits_1_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    result = elasticd("validate", "config/aws.yaml", str(missing))
    assert result.returncode == 1
    assert result.stdout == "config/aws.yaml: ok (1 target)\n"
    assert result.stderr == f"elasticd: {missing}: no such file\n"


def test_config_schema_is_json_describing_targets() -> None:
    result = elasticd("config-schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert "targets" in schema["properties"]
    assert schema["additionalProperties"] is False
    # Descriptions carry units, so the schema doubles as reference documentation.
    lead_time = schema["$defs"]["AsgTarget"]["properties"]["lead_time"]
    assert "Seconds" in lead_time["description"]
