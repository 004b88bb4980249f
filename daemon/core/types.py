"""The planner's value objects: settings, one tick's inputs, the state it carries, its decision.

All are frozen dataclasses with slots: the backtest builds one ``PlanInputs``, ``PlannerState``
and ``Decision`` per grid step, so they must be cheap to create and impossible to share-and-mutate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from daemon.core.above_max import check_policy


class Reason(StrEnum):
    """Why the planner chose a number; a ``Decision`` lists them in the order they applied."""

    FORECAST = "forecast"
    """Capacity for the forecast peak over the lead time."""
    REACTIVE_FLOOR = "reactive_floor"
    """The HPA rule on observed demand asked for more than the forecast."""
    STABILISED = "stabilised"
    """A scale-down was held back to the highest recommendation in the stabilisation window."""
    TOLERANCE_HOLD = "tolerance_hold"
    """A scale-down smaller than the tolerance band was not made."""
    RATE_LIMITED_UP = "rate_limited_up"
    """A scale-up was cut to what the scale-up rate limit allows."""
    RATE_LIMITED_DOWN = "rate_limited_down"
    """A scale-down was cut to what the scale-down rate limit allows."""
    CLAMPED_MIN = "clamped_min"
    """Raised to the minimum bound (settings or a schedule)."""
    CLAMPED_MAX = "clamped_max"
    """Lowered to the maximum bound (settings or a schedule)."""
    FALLBACK = "fallback"
    """No usable forecast: the reactive rule decided, never below the current units."""
    FALLBACK_MODEL = "fallback_model"
    """The forecast came from a fallback model, not the trained one."""
    HOLD_MISSING_METRICS = "hold_missing_metrics"
    """Demand was missing, invalid or stale: no scale-down on a guess."""
    FORECAST_ABOVE_MAX = "forecast_above_max"
    """The forecast needs more units than the maximum; noted whatever the above-max policy."""
    ABOVE_MAX_INCREASE = "above_max_increase"
    """Above the maximum, within the buffer the ``increase`` above-max policy allows."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """HPA-style policy: within any ``period_s``, change by at most
    ``max(max_units, ceil(max_percent / 100 * units at the period's start))``; a None part is
    ignored, and at least one part must be set.
    """

    period_s: float
    """Length of the sliding period in seconds, > 0."""
    max_units: int | None = None
    """Absolute change allowed per period, >= 0."""
    max_percent: float | None = None
    """Change allowed per period as a percentage of the units at the period's start, >= 0."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise ValueError(f"period_s must be a finite number > 0, got {self.period_s!r}")
        if self.max_units is None and self.max_percent is None:
            # A limit with neither part limits nothing: almost surely a configuration mistake.
            raise ValueError("max_units or max_percent must be set")
        if self.max_units is not None and (_not_int(self.max_units) or self.max_units < 0):
            raise ValueError(f"max_units must be an integer >= 0, got {self.max_units!r}")
        if self.max_percent is not None and not (
            math.isfinite(self.max_percent) and self.max_percent >= 0
        ):
            raise ValueError(f"max_percent must be a finite number >= 0, got {self.max_percent!r}")


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """How one target is planned; validated once, when built."""

    unit_capacity: float
    """Demand one unit serves at 100 % (the trace's unit), > 0."""
    min_units: int = 0
    """Never plan fewer units than this (a schedule may override it per tick)."""
    max_units: int = 1_000_000
    """Never plan more units than this (a schedule may override it per tick)."""
    reactive_utilisation: float = 0.8
    """Target utilisation u of the reactive floor (the HPA rule), in (0, 1]."""
    reactive_tolerance: float = 0.1
    """HPA tolerance: no reactive change while |demand / (current * C * u) - 1| <= this."""
    scale_down_stabilisation_s: float = 300.0
    """Seconds of past recommendations a scale-down may not go below (HPA default 300 s)."""
    scale_down_tolerance: float = 0.0
    """Share of current units, in [0, 1): a scale-down this small or smaller is not made."""
    scale_up_limit: RateLimit | None = None
    """Cap on scale-up speed; None = immediate."""
    scale_down_limit: RateLimit | None = None
    """Cap on scale-down speed; None = unlimited (stabilisation still applies)."""
    max_demand_age_s: float = float("inf")
    """Seconds after which an observation is stale and counts as missing."""
    above_max_policy: str = "honor"
    """When the forecast needs more than the maximum: ``"honor"`` caps at it, ``"increase"``
    raises it this tick by ``above_max_buffer_percent`` (see ``daemon.core.above_max``)."""
    above_max_buffer_percent: float = 0.0
    """With ``"increase"``: percent above the maximum allowed, >= 0."""
    lead_s: float = 0.0
    """Seconds from asking for a unit until it serves; the plan answers for its own capacity
    only once this has passed (``daemon.core.landed``). 0: ready at once."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.unit_capacity) and self.unit_capacity > 0):
            raise ValueError(
                f"unit_capacity must be a finite number > 0, got {self.unit_capacity!r}"
            )
        if _not_int(self.min_units) or self.min_units < 0:
            raise ValueError(f"min_units must be an integer >= 0, got {self.min_units!r}")
        if _not_int(self.max_units) or self.max_units < self.min_units:
            raise ValueError(
                f"max_units must be an integer >= min_units ({self.min_units}), "
                f"got {self.max_units!r}"
            )
        if not (0 < self.reactive_utilisation <= 1):
            raise ValueError(
                f"reactive_utilisation must be in (0, 1], got {self.reactive_utilisation!r}"
            )
        if not (math.isfinite(self.reactive_tolerance) and self.reactive_tolerance >= 0):
            raise ValueError(
                f"reactive_tolerance must be a finite number >= 0, got {self.reactive_tolerance!r}"
            )
        if not (
            math.isfinite(self.scale_down_stabilisation_s) and self.scale_down_stabilisation_s >= 0
        ):
            raise ValueError(
                "scale_down_stabilisation_s must be a finite number >= 0, "
                f"got {self.scale_down_stabilisation_s!r}"
            )
        if not (0 <= self.scale_down_tolerance < 1):
            raise ValueError(
                f"scale_down_tolerance must be in [0, 1), got {self.scale_down_tolerance!r}"
            )
        # inf is allowed (never stale); NaN fails this comparison and is rejected.
        if not (self.max_demand_age_s >= 0):
            raise ValueError(f"max_demand_age_s must be >= 0, got {self.max_demand_age_s!r}")
        check_policy(self.above_max_policy, self.above_max_buffer_percent)
        if not (math.isfinite(self.lead_s) and self.lead_s >= 0):
            raise ValueError(f"lead_s must be a finite number >= 0, got {self.lead_s!r}")


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What the planner knows at one tick. Bad demand and forecast values are allowed here:
    they count as missing, and the planner answers that safely instead of raising.
    """

    now: float
    """Epoch seconds of this tick."""
    current_units: int
    """Ready + pending units the target has now, >= 0."""
    demand: float | None
    """Latest observation; None, NaN, inf or negative = missing."""
    forecast: float | None
    """Calibrated forecast of PEAK demand over (now, now + lead]; None = the model failed."""
    demand_age_s: float = 0.0
    """Age of ``demand`` in seconds; older than the settings' limit = missing."""
    forecast_source: str = "model"
    """``"model"`` or a fallback model's name; a fallback adds reason ``fallback_model``."""
    min_units: int | None = None
    """Per-tick minimum (a schedule); None = the settings' minimum."""
    max_units: int | None = None
    """Per-tick maximum (a schedule); None = the settings' maximum."""

    def __post_init__(self) -> None:
        # Only the counts are checked: a negative count is a bug upstream, not missing data.
        if self.current_units < 0:
            raise ValueError(f"current_units must be >= 0, got {self.current_units!r}")
        if self.min_units is not None and self.min_units < 0:
            raise ValueError(f"min_units must be >= 0, got {self.min_units!r}")
        if self.max_units is not None and self.max_units < 0:
            raise ValueError(f"max_units must be >= 0, got {self.max_units!r}")


@dataclass(frozen=True, slots=True)
class PlannerState:
    """What the planner remembers between ticks; ``plan`` returns a new one each time."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, pre-stabilisation recommendation) inside the stabilisation window, oldest first;
    a record no higher than a later one is dropped, since it can never be the window's maximum."""
    scale_events: tuple[tuple[float, int], ...] = ()
    """(time, signed change) inside the longest rate-limit period, oldest first."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The planner's answer for one tick and the chain of reasons behind it."""

    desired: int
    """Units the target should have."""
    current: int
    """Units it had when the planner decided."""
    reason: str
    """The reason that determined ``desired`` (a ``Reason`` value)."""
    reasons: tuple[str, ...]
    """Every reason in the order applied, e.g. ("forecast", "stabilised", "clamped_max")."""
    forecast_units: int | None
    """Units for the forecast peak; None when the forecast was unusable."""
    reactive_units: int | None
    """The HPA rule's recommendation; None when demand was unusable."""

    @property
    def changed(self) -> bool:
        """Whether acting on this decision resizes the target."""
        return self.desired != self.current


def _not_int(value: object) -> bool:
    """True for anything but a real int (``True`` is an int to Python, not a count to us)."""
    return isinstance(value, bool) or not isinstance(value, int)
