"""Gaps, zeros and level shifts: the plan keeps forecasting and keeps demand served."""

from __future__ import annotations

import numpy as np

from daemon.backtest.replay import score, scored_mask
from daemon.backtest.synthetic import TraceShape, generate_demand
from daemon.backtest.trace import trace_from_arrays
from daemon.backtest.walkforward import PlanConfig, replay_plan


def test_zero_nights_gaps_and_a_tripled_level_stay_served() -> None:
    times, values = generate_demand(
        TraceShape(days=8, step_s=600.0, level_shift_day=6.5, level_shift=3.0, seed=21)
    )
    hour = np.mod(times, 86_400.0) / 3600.0
    values = np.where((hour >= 1) & (hour < 4), 0.0, values)  # scale-to-zero nights
    values[200:230] = np.nan  # a five-hour metrics outage
    observed = np.isfinite(values)
    trace = trace_from_arrays(times[observed], values[observed])
    config = PlanConfig(unit_capacity=100.0, lead_s=1200.0, warmup_s=3 * 86_400.0)

    plan = replay_plan(trace, config, progress=False)

    scored = scored_mask(trace.times, trace.values, config.warmup_s)
    assert np.isfinite(plan.forecast[scored]).all()
    result = score(trace.values, plan.log.ready, plan.log.billed, scored, config.unit_capacity)
    assert result.short_fraction < 0.05
    after_shift = scored & (trace.times >= trace.start + 7.5 * 86_400.0)
    served = trace.values[after_shift] <= plan.log.ready[after_shift] * config.unit_capacity
    assert served.mean() > 0.9  # a day after the shift the plan has followed the new level
    quiet = scored & (trace.values == 0)
    assert plan.log.desired[quiet].min() == 0  # nights at zero are not paid for
