"""Is an instance idle? A pure verdict over its metric values and ``now``.

An instance is idle when, for *every* metric the rule names, every datapoint of the last
``window_s`` seconds is below that metric's threshold, and the window is covered: at least
``min_coverage`` of its ``period_s`` periods have a datapoint. Missing data is never idleness:
a metric that stopped reporting, a new instance, or one started within the window (a stopped
instance reports nothing) is kept running. One metric at or above its threshold in one period
keeps the instance: releasing what is in use is the costly mistake, keeping an idle machine a
little longer is the cheap one.

The verdict carries the numbers that decided it (the peak, how many periods had data, of how
many), for the log line and the audit record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["IdlePolicy", "IdleVerdict", "MetricRule", "MetricVerdict", "idle_verdict"]


@dataclass(frozen=True, slots=True)
class MetricRule:
    """One metric and the value it must stay below."""

    name: str
    below: float


@dataclass(frozen=True, slots=True)
class IdlePolicy:
    window_s: float
    period_s: float
    metrics: tuple[MetricRule, ...]
    min_coverage: float = 0.8

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("an idle policy needs at least one metric")
        if not 0 < self.period_s <= self.window_s:
            raise ValueError(f"need 0 < period_s <= window_s, got {self.period_s}, {self.window_s}")
        if not 0 < self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {self.min_coverage}")

    @property
    def periods(self) -> int:
        """Periods in the window: how many datapoints full coverage means."""
        return max(1, math.floor(self.window_s / self.period_s))


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    """What one metric said: its peak over the window and how well the window was covered."""

    name: str
    below: float
    peak: float | None
    points: int
    periods: int
    idle: bool

    def describe(self) -> str:
        if self.peak is None:
            return f"{self.name}: no data in the window"
        relation = "<" if self.peak < self.below else ">="
        return (
            f"{self.name} peak {self.peak:.4g} {relation} {self.below:g} "
            f"({self.points} of {self.periods} periods)"
        )


@dataclass(frozen=True, slots=True)
class IdleVerdict:
    idle: bool
    metrics: tuple[MetricVerdict, ...]

    @property
    def reason(self) -> str:
        """One line naming the numbers that decided it."""
        state = "idle" if self.idle else "in use"
        return f"{state}: " + "; ".join(m.describe() for m in self.metrics)


def idle_verdict(
    policy: IdlePolicy, series: Mapping[str, Sequence[tuple[float, float]]], now: float
) -> IdleVerdict:
    """The verdict for one instance: ``series`` maps each rule's metric name to its datapoints
    ``(period start, value)``; only those in ``[now - window, now)`` count, and a value that is
    not finite counts as missing."""
    start = now - policy.window_s
    verdicts = []
    for rule in policy.metrics:
        values = [
            value
            for at, value in series.get(rule.name, ())
            if start <= at < now and math.isfinite(value)
        ]
        peak = max(values) if values else None
        covered = len(values) >= math.ceil(policy.min_coverage * policy.periods)
        idle = peak is not None and covered and peak < rule.below
        verdicts.append(
            MetricVerdict(rule.name, rule.below, peak, len(values), policy.periods, idle)
        )
    return IdleVerdict(all(v.idle for v in verdicts), tuple(verdicts))
