"""Properties of ``plan`` over random settings and tick sequences, bad inputs included."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.planner import effective_bounds, plan
from daemon.core.types import PlanInputs, PlannerSettings, PlannerState, RateLimit, Reason

SOURCES = {Reason.FORECAST, Reason.REACTIVE_FLOOR, Reason.FALLBACK, Reason.HOLD_MISSING_METRICS}

# Good values most of the time, and every kind of bad one.
signal = st.one_of(
    st.floats(0.0, 1e6),
    st.none(),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0]),
)
rate_limits = st.one_of(
    st.none(),
    st.builds(
        RateLimit,
        period_s=st.floats(1.0, 600.0),
        max_units=st.integers(0, 20),
        max_percent=st.one_of(st.none(), st.floats(0.0, 200.0)),
    ),
)


@st.composite
def planner_settings(draw: st.DrawFn) -> PlannerSettings:
    lowest = draw(st.integers(0, 50))
    return PlannerSettings(
        unit_capacity=draw(st.floats(0.5, 1_000.0)),
        min_units=lowest,
        max_units=draw(st.integers(lowest, 300)),
        reactive_utilisation=draw(st.floats(0.1, 1.0)),
        reactive_tolerance=draw(st.floats(0.0, 0.5)),
        scale_down_stabilisation_s=draw(st.floats(0.0, 600.0)),
        scale_down_tolerance=draw(st.floats(0.0, 0.5)),
        scale_up_limit=draw(rate_limits),
        scale_down_limit=draw(rate_limits),
        max_demand_age_s=draw(st.floats(0.0, 600.0)),
    )


ticks = st.lists(
    st.builds(
        lambda gap, current, demand, age, forecast, source, low, high: (
            gap,
            PlanInputs(0.0, current, demand, forecast, age, source, low, high),
        ),
        st.floats(0.0, 120.0),
        st.integers(0, 400),
        signal,
        st.floats(0.0, 900.0),
        signal,
        st.sampled_from(["model", "seasonal_naive"]),
        st.one_of(st.none(), st.integers(0, 100)),
        st.one_of(st.none(), st.integers(0, 400)),
    ),
    min_size=1,
    max_size=30,
)


def _at(time: float, tick: PlanInputs) -> PlanInputs:
    return PlanInputs(
        time,
        tick.current_units,
        tick.demand,
        tick.forecast,
        tick.demand_age_s,
        tick.forecast_source,
        tick.min_units,
        tick.max_units,
    )


def _is_valid(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


@settings(deadline=None)
@given(planner_settings(), ticks)
def test_desired_is_always_within_the_effective_bounds(
    config: PlannerSettings, sequence: list[tuple[float, PlanInputs]]
) -> None:
    state, now = PlannerState(), 1_700_000_000.0
    for gap, tick in sequence:
        now += gap
        inputs = _at(now, tick)
        decision, state = plan(config, state, inputs)
        lowest, highest = effective_bounds(config, inputs)
        assert lowest <= decision.desired <= highest
        assert decision.reasons[0] in SOURCES
        # The determining reason is the last stage that changed the number, else the source.
        stages = [r for r in decision.reasons if r not in SOURCES and r != Reason.FALLBACK_MODEL]
        if stages:
            assert decision.reason == stages[-1]
        else:
            assert decision.reason in (decision.reasons[0], Reason.FALLBACK_MODEL)


@settings(deadline=None)
@given(planner_settings(), ticks)
def test_bad_demand_or_forecast_never_scales_below_current_unless_a_bound_forces_it(
    config: PlannerSettings, sequence: list[tuple[float, PlanInputs]]
) -> None:
    state, now = PlannerState(), 1_700_000_000.0
    for gap, tick in sequence:
        now += gap
        inputs = _at(now, tick)
        decision, state = plan(config, state, inputs)
        demand_ok = _is_valid(inputs.demand) and inputs.demand_age_s <= config.max_demand_age_s
        if not (demand_ok and _is_valid(inputs.forecast)):
            highest = effective_bounds(config, inputs)[1]
            assert decision.desired >= min(inputs.current_units, highest)


@settings(deadline=None)
@given(
    st.integers(1, 10),
    st.floats(10.0, 300.0),
    st.lists(st.tuples(st.floats(1.0, 100.0), signal), min_size=1, max_size=40),
)
def test_scale_up_in_any_period_never_exceeds_the_unit_limit(
    max_units: int, period_s: float, sequence: list[tuple[float, float | None]]
) -> None:
    config = PlannerSettings(
        unit_capacity=10.0,
        scale_down_stabilisation_s=60.0,
        scale_up_limit=RateLimit(period_s=period_s, max_units=max_units),
    )
    state, now, current = PlannerState(), 0.0, 0
    added: list[tuple[float, int]] = []
    for gap, forecast in sequence:
        now += gap
        decision, state = plan(config, state, PlanInputs(now, current, 0.0, forecast))
        added.append((now, max(0, decision.desired - current)))
        current = decision.desired
        assert sum(units for stamp, units in added if stamp > now - period_s) <= max_units
