"""The schema's default for ``audit.path`` is the file the daemon really writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.settings import Settings, parse_settings

CONFIG_DIR = Path(__file__).parents[2] / "config"


def _schema_default(schema: dict[str, Any], model: str | None, field: str) -> Any:
    properties = schema["properties"] if model is None else schema["$defs"][model]["properties"]
    return properties[field]["default"]


@pytest.mark.parametrize("name", ["local.yaml", "kubernetes.yaml", "aws.yaml"])
def test_the_schema_default_resolves_to_the_path_the_daemon_opens(name: str) -> None:
    schema = Settings.model_json_schema()  # what `elasticd config-schema` prints
    config = yaml.safe_load((CONFIG_DIR / name).read_text(encoding="utf-8"))
    config.get("audit", {}).pop("path", None)
    settings = parse_settings(config, name)
    state_dir = settings.state_dir
    assert Path(_schema_default(schema, None, "state_dir")) == Path("/var/lib/elasticd")
    # As the schema's description says: relative to state_dir.
    expected = state_dir / _schema_default(schema, "AuditConfig", "path")
    assert settings.audit.path == expected  # what the supervisor opens (AuditLog)
    assert expected == state_dir / "decisions.jsonl"


def test_a_relative_audit_path_is_under_state_dir_and_an_absolute_one_stands() -> None:
    base = yaml.safe_load((CONFIG_DIR / "local.yaml").read_text(encoding="utf-8"))
    relative = parse_settings({**base, "audit": {"path": "audit/log.jsonl"}}, "test")
    assert relative.audit.path == Path("state/audit/log.jsonl")
    absolute = parse_settings({**base, "audit": {"path": "/var/log/elasticd.jsonl"}}, "test")
    assert absolute.audit.path == Path("/var/log/elasticd.jsonl")
