"""The planner: forecast + observed demand + current state -> desired units, with reasons.

One call per daemon tick and per backtest grid step, so it stays cheap: no copies beyond the
trimmed windows, no I/O, ``now`` passed in. The stages run in a fixed order and each one that
changes the number appends its ``Reason``:

1. recommend: the forecast peak, floored by the HPA rule on observed demand; without a forecast
   or without demand, never below the current units;
2. stabilise scale-downs over the window, then ignore scale-downs inside the tolerance band;
3. rate-limit the change for its direction;
4. clamp to the bounds, last, so they always hold. When the forecast needs more than the
   maximum, reason ``forecast_above_max`` follows the source reason; the ``increase`` above-max
   policy raises the maximum for this tick, and a number above the configured one then ends
   with reason ``above_max_increase``.
"""

from __future__ import annotations

import math
from typing import TypeGuard

from daemon.core.above_max import raised_max
from daemon.core.ratelimit import limit_rate, longest_period, record_scale_event
from daemon.core.reactive import hpa_recommendation, units_to_serve
from daemon.core.stabilisation import hold_small_scale_down, stabilise_scale_down
from daemon.core.types import Decision, PlanInputs, PlannerSettings, PlannerState, Reason

_TRAINED_MODEL = "model"


def plan(
    settings: PlannerSettings, state: PlannerState, inputs: PlanInputs
) -> tuple[Decision, PlannerState]:
    """Decide the desired units for one tick and return the decision and the next state."""
    current = inputs.current_units
    forecast, demand = inputs.forecast, inputs.demand
    forecast_units = (
        units_to_serve(forecast, settings.unit_capacity) if _is_usable(forecast) else None
    )
    reactive_units = (
        hpa_recommendation(
            demand,
            current,
            settings.unit_capacity,
            settings.reactive_utilisation,
            settings.reactive_tolerance,
        )
        if _is_usable(demand) and inputs.demand_age_s <= settings.max_demand_age_s
        else None
    )

    recommendation, reason = _recommend(current, forecast_units, reactive_units)
    reasons = [reason]
    if inputs.forecast_source != _TRAINED_MODEL:
        reasons.append(Reason.FALLBACK_MODEL)
        # The number came from the fallback model's forecast: say so, not just "forecast".
        if reason is Reason.FORECAST:
            reason = Reason.FALLBACK_MODEL
    lowest, highest = effective_bounds(settings, inputs)
    if forecast_units is not None and forecast_units > highest:
        # Noted here, next to the signal: later stages may still change the number.
        reasons.append(Reason.FORECAST_ABOVE_MAX)
    allowed = raised_max(
        highest, forecast_units, settings.above_max_policy, settings.above_max_buffer_percent
    )

    desired, recommendations = stabilise_scale_down(
        state.recommendations, inputs.now, settings.scale_down_stabilisation_s, recommendation
    )
    if desired != recommendation:
        reason = Reason.STABILISED
        reasons.append(reason)

    held = hold_small_scale_down(desired, current, settings.scale_down_tolerance)
    if held != desired:
        desired, reason = held, Reason.TOLERANCE_HOLD
        reasons.append(reason)

    limited = limit_rate(
        desired,
        current,
        state.scale_events,
        inputs.now,
        settings.scale_up_limit,
        settings.scale_down_limit,
    )
    if limited != desired:
        reason = Reason.RATE_LIMITED_UP if limited < desired else Reason.RATE_LIMITED_DOWN
        desired = limited
        reasons.append(reason)

    if desired > allowed:
        desired, reason = allowed, Reason.CLAMPED_MAX
        reasons.append(reason)
    elif desired > highest:
        # Only the increase policy gets here: above the configured max, within the buffer.
        reason = Reason.ABOVE_MAX_INCREASE
        reasons.append(reason)
    elif desired < lowest:
        desired, reason = lowest, Reason.CLAMPED_MIN
        reasons.append(reason)

    scale_events = record_scale_event(
        state.scale_events,
        inputs.now,
        desired - current,
        longest_period(settings.scale_up_limit, settings.scale_down_limit),
    )
    decision = Decision(
        desired=desired,
        current=current,
        reason=reason,
        reasons=tuple(reasons),
        forecast_units=forecast_units,
        reactive_units=reactive_units,
    )
    return decision, PlannerState(recommendations=recommendations, scale_events=scale_events)


def effective_bounds(settings: PlannerSettings, inputs: PlanInputs) -> tuple[int, int]:
    """The ``(min, max)`` units that hold this tick: a per-tick override replaces the settings'
    bound. If the minimum ends up above the maximum, the maximum wins: it is usually a quota or a
    budget that cannot be exceeded, while a minimum is a wish for headroom.
    """
    highest = settings.max_units if inputs.max_units is None else inputs.max_units
    lowest = settings.min_units if inputs.min_units is None else inputs.min_units
    return min(lowest, highest), highest


def _recommend(
    current: int, forecast_units: int | None, reactive_units: int | None
) -> tuple[int, Reason]:
    """The pre-damping recommendation and the signal it came from."""
    if forecast_units is not None and reactive_units is not None:
        # Both signals: serve the forecast peak, but never less than demand needs right now.
        if reactive_units > forecast_units:
            return reactive_units, Reason.REACTIVE_FLOOR
        return forecast_units, Reason.FORECAST
    if reactive_units is not None:
        # The model failed: react to demand, but a failed model must never cause a scale-down.
        return max(reactive_units, current), Reason.FALLBACK
    # No trustworthy demand: a scale-up the forecast asks for is safe, a scale-down is a guess.
    if forecast_units is not None and forecast_units > current:
        return forecast_units, Reason.HOLD_MISSING_METRICS
    return current, Reason.HOLD_MISSING_METRICS


def _is_usable(value: float | None) -> TypeGuard[float]:
    """A demand or forecast is usable when present, finite and not negative."""
    return value is not None and math.isfinite(value) and value >= 0
