"""The bad-data policy, written down as pure functions.

Every value a source returns passes through here before the planner sees it. Each check says
which rule fired so the daemon can log and count it per metric. Missing data reaches the
planner as ``None`` (or NaN inside a series), and the planner never scales down on ``None``:
a broken exporter must not look like a quiet night.

Rules, in the order they are checked for a latest sample:

1. ``empty``: the query matched nothing.
2. ``stale``: the sample is older than ``max_age_s`` (a dead exporter keeps its last value).
3. ``non_finite``: NaN or +/-Inf (a division by zero in the query, an exporter bug).
4. ``negative_clamped`` / ``negative_missing``: demand cannot be negative; a counter reset
   seen through ``deriv()`` can make it so. Clamp to 0 or treat as missing, as configured.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from daemon.sources.base import Sample, Series


class Rule(enum.StrEnum):
    """Which rule decided the outcome; ``ok`` when the value passed untouched."""

    OK = "ok"
    EMPTY = "empty"
    STALE = "stale"
    NON_FINITE = "non_finite"
    NEGATIVE_CLAMPED = "negative_clamped"
    NEGATIVE_MISSING = "negative_missing"


class NegativePolicy(enum.StrEnum):
    """What a negative value becomes."""

    CLAMP = "clamp"
    """Use 0: right for gauges that dip just below zero through float error or resets."""
    MISSING = "missing"
    """Treat as missing: right when a negative value means the query itself is wrong."""


@dataclass(frozen=True)
class Checked:
    """A checked value: ``value`` is None when missing, and ``rule`` says why."""

    value: float | None
    rule: Rule

    @property
    def missing(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class CleanedSeries:
    """A series after the policy: missing points are NaN; ``counts`` says how many per rule."""

    series: Series
    counts: Mapping[Rule, int]


def check_value(value: float, *, negative: NegativePolicy) -> Checked:
    """Apply the value rules (non-finite, negative) to one number."""
    if not math.isfinite(value):
        return Checked(None, Rule.NON_FINITE)
    if value < 0:
        if negative is NegativePolicy.CLAMP:
            return Checked(0.0, Rule.NEGATIVE_CLAMPED)
        return Checked(None, Rule.NEGATIVE_MISSING)
    return Checked(value, Rule.OK)


def check_latest(
    sample: Sample | None, *, now: float, max_age_s: float, negative: NegativePolicy
) -> Checked:
    """Apply every rule to the newest sample of a metric, as read at ``now``.

    A sample stamped after ``now`` (clock skew between hosts) counts as fresh: refusing it
    would turn a few seconds of skew into an outage of data.
    """
    if sample is None:
        return Checked(None, Rule.EMPTY)
    if now - sample.timestamp > max_age_s:
        return Checked(None, Rule.STALE)
    return check_value(sample.value, negative=negative)


def clean_series(series: Series, *, negative: NegativePolicy) -> CleanedSeries:
    """Apply the value rules to every point; bad points become NaN so timestamps stay aligned.

    An empty series is reported under ``empty`` with a count of 1 (one empty result).
    """
    counts = dict.fromkeys(Rule, 0)
    if len(series) == 0:
        counts[Rule.EMPTY] = 1
        return CleanedSeries(series, counts)
    values = np.array(series.values, dtype=np.float64, copy=True)
    non_finite = ~np.isfinite(values)
    # Compare only finite values so NaN never reaches the ``<`` (it would warn and be False).
    negative_mask = np.zeros_like(non_finite)
    negative_mask[~non_finite] = values[~non_finite] < 0
    values[non_finite] = np.nan
    if negative is NegativePolicy.CLAMP:
        values[negative_mask] = 0.0
        counts[Rule.NEGATIVE_CLAMPED] = int(negative_mask.sum())
    else:
        values[negative_mask] = np.nan
        counts[Rule.NEGATIVE_MISSING] = int(negative_mask.sum())
    counts[Rule.NON_FINITE] = int(non_finite.sum())
    counts[Rule.OK] = len(series) - counts[Rule.NON_FINITE] - int(negative_mask.sum())
    return CleanedSeries(Series(series.timestamps, values), counts)
