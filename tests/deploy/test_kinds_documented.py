"""Every registered target kind has a row in the table of kinds in docs/operations.md, with
what it writes and its lead time, and an example under config/ that uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from daemon.kinds.registry import KINDS, SPECS

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"


def _table_rows() -> dict[str, str]:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split("### Target kinds", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            for kind in re.findall(r"`([a-z0-9-]+)`", first):
                rows[kind] = line
    return rows


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_row_in_the_table(kind: str) -> None:
    rows = _table_rows()
    assert kind in rows, f"docs/operations.md '### Target kinds' has no row for `{kind}`"
    cells = [cell.strip() for cell in rows[kind].split("|")[1:-1]]
    assert len(cells) == 4 and all(cells), rows[kind]


def test_the_table_lists_no_kind_that_does_not_exist() -> None:
    assert set(_table_rows()) <= set(KINDS)


def test_every_kind_but_the_simulator_has_an_example_config() -> None:
    used: set[str] = set()
    for path in (ROOT / "config").glob("*.yaml"):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        used |= {str(target.get("kind")) for target in document.get("targets", [])}
    missing = [spec.kinds for spec in SPECS if not set(spec.kinds) & used]
    assert not missing, f"no example under config/ uses {missing}"
