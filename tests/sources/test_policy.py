"""The bad-data policy as a table: input, setting, expected value and the rule that fired."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.sources.base import Sample, Series
from daemon.sources.policy import (
    Checked,
    NegativePolicy,
    Rule,
    check_latest,
    check_value,
    clean_series,
)

NOW = 1_700_000_000.0
CLAMP = NegativePolicy.CLAMP
MISSING = NegativePolicy.MISSING


@pytest.mark.parametrize(
    ("sample", "max_age_s", "negative", "value", "rule"),
    [
        (Sample(NOW - 10, 5.0), 120, CLAMP, 5.0, Rule.OK),
        (Sample(NOW, 0.0), 120, MISSING, 0.0, Rule.OK),
        (None, 120, CLAMP, None, Rule.EMPTY),
        (Sample(NOW - 121, 5.0), 120, CLAMP, None, Rule.STALE),
        (Sample(NOW - 120, 5.0), 120, CLAMP, 5.0, Rule.OK),  # exactly max_age is still fresh
        (Sample(NOW + 30, 5.0), 120, CLAMP, 5.0, Rule.OK),  # clock skew: from the future
        (Sample(NOW, math.nan), 120, CLAMP, None, Rule.NON_FINITE),
        (Sample(NOW, math.inf), 120, CLAMP, None, Rule.NON_FINITE),
        (Sample(NOW, -math.inf), 120, CLAMP, None, Rule.NON_FINITE),
        (Sample(NOW, -3.0), 120, CLAMP, 0.0, Rule.NEGATIVE_CLAMPED),
        (Sample(NOW, -3.0), 120, MISSING, None, Rule.NEGATIVE_MISSING),
        (Sample(NOW - 500, math.nan), 120, CLAMP, None, Rule.STALE),  # staleness checked first
    ],
)
def test_check_latest(
    sample: Sample | None,
    max_age_s: float,
    negative: NegativePolicy,
    value: float | None,
    rule: Rule,
) -> None:
    checked = check_latest(sample, now=NOW, max_age_s=max_age_s, negative=negative)
    assert checked.value == value
    assert checked.rule is rule
    assert checked.missing is (value is None)


@pytest.mark.parametrize(
    ("raw", "negative", "value", "rule"),
    [
        (2.5, CLAMP, 2.5, Rule.OK),
        (math.nan, MISSING, None, Rule.NON_FINITE),
        (-0.1, CLAMP, 0.0, Rule.NEGATIVE_CLAMPED),
        (-0.1, MISSING, None, Rule.NEGATIVE_MISSING),
    ],
)
def test_check_value(raw: float, negative: NegativePolicy, value: float | None, rule: Rule) -> None:
    assert check_value(raw, negative=negative) == Checked(value, rule)


@pytest.mark.parametrize(
    ("negative", "expected", "counts"),
    [
        (
            CLAMP,
            [1.0, np.nan, np.nan, np.nan, 0.0, 0.0],
            {Rule.OK: 2, Rule.NON_FINITE: 3, Rule.NEGATIVE_CLAMPED: 1},
        ),
        (
            MISSING,
            [1.0, np.nan, np.nan, np.nan, np.nan, 0.0],
            {Rule.OK: 2, Rule.NON_FINITE: 3, Rule.NEGATIVE_MISSING: 1},
        ),
    ],
)
def test_clean_series(
    negative: NegativePolicy, expected: list[float], counts: dict[Rule, int]
) -> None:
    raw = Series(
        np.arange(6, dtype=np.float64),
        np.array([1.0, np.nan, np.inf, -np.inf, -2.0, 0.0]),
    )
    cleaned = clean_series(raw, negative=negative)
    np.testing.assert_array_equal(cleaned.series.values, expected)
    np.testing.assert_array_equal(cleaned.series.timestamps, raw.timestamps)
    assert {rule: n for rule, n in cleaned.counts.items() if n} == counts
    # The input is untouched: the policy returns a new series.
    assert raw.values[4] == -2.0


def test_clean_empty_series_counts_one_empty_result() -> None:
    cleaned = clean_series(Series.empty(), negative=CLAMP)
    assert len(cleaned.series) == 0
    assert {rule: n for rule, n in cleaned.counts.items() if n} == {Rule.EMPTY: 1}
