"""Durations as users write them, including the compound form Go and Prometheus use."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from daemon.core.durations import DURATION_PATTERN, parse_duration
from daemon.settings.quantities import Duration


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        (300, 300.0),
        ("300", 300.0),
        ("300s", 300.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("2m30s", 150.0),
        ("1d12h", 129600.0),
        ("1w2d", 9 * 86400.0),
        ("1h0m5s", 3605.0),
        ("1.5h", 5400.0),
        ("1h 30m", 5400.0),
        ("1s500ms", 1.5),
    ],
)
def test_accepted_forms(written: str | int, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "written",
    ["5m1h", "1h1h", "30m1h", "", "h", "1h30", "1x", "-1s", "ms", "1.h", "1h-30m", True],
)
def test_refused_forms_name_the_compound_example(written: object) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*1h30m"):
        parse_duration(written)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "written", ["300", "5m", "1h30m", "2m30s", "500ms", "1d12h", "5m1h", "1h1h", "", "h", "1h30"]
)
def test_the_schema_pattern_accepts_exactly_what_the_parser_accepts(written: str) -> None:
    try:
        parse_duration(written)
        parsed = True
    except ValueError:
        parsed = False
    assert (re.match(DURATION_PATTERN, written) is not None) is parsed


class _Example(BaseModel):
    lead_time: Duration


def test_a_config_field_takes_the_compound_form_and_its_schema_says_so() -> None:
    assert _Example.model_validate({"lead_time": "1h30m"}).lead_time == 5400.0
    schema = _Example.model_json_schema()
    text = str(schema)
    assert "1h30m" in text
    string_form = schema["properties"]["lead_time"]["anyOf"][0]
    assert string_form["pattern"] == DURATION_PATTERN
