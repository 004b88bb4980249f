"""The replay rules of SCORING.md, the oracle and the baselines, on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.backtest.baselines import (
    BaselinePoint,
    HpaRule,
    at_equal_cost,
    at_equal_shortfall,
    scheduled_forecast,
    sweep,
)
from daemon.backtest.replay import (
    CapacitySimulator,
    Score,
    oracle_decisions,
    replay_decisions,
    score,
    scored_mask,
)
from daemon.backtest.trace import trace_from_arrays


def test_first_decision_is_ready_at_once_and_later_ones_boot_for_the_lead_time() -> None:
    capacity = CapacitySimulator(lead_s=120.0)
    assert capacity.decide(0.0, 3) == 3 and capacity.ready == 3
    assert capacity.advance(60.0) == 3
    assert capacity.decide(60.0, 5) == 5  # booting units are billed
    assert capacity.advance(120.0) == 3  # requested at 60, ready at 180
    assert capacity.advance(180.0) == 5


def test_scale_down_removes_pending_newest_first_then_ready() -> None:
    capacity = CapacitySimulator(lead_s=600.0)
    capacity.decide(0.0, 2)
    capacity.decide(60.0, 4)  # +2 ready at 660
    capacity.decide(120.0, 7)  # +3 ready at 720
    assert capacity.decide(180.0, 5) == 5  # removes 2 of the newest request
    capacity.advance(660.0)
    assert capacity.ready == 4
    assert capacity.decide(700.0, 1) == 1  # the last pending unit goes, then 3 ready ones
    assert capacity.advance(10_000.0) == 1


def test_oracle_is_never_short_after_its_first_k_steps_and_cheaper_than_any_other() -> None:
    rng = np.random.default_rng(0)
    times = 60.0 * np.arange(500)
    values = rng.gamma(3.0, 30.0, 500)
    values[rng.random(500) < 0.05] = np.nan
    k = 3
    decisions = oracle_decisions(values, 10.0, k)
    log = replay_decisions(times, k * 60.0, decisions.tolist())
    late = np.arange(500) > k
    observed = np.isfinite(values)
    assert not np.any(values[late & observed] > log.ready[late & observed] * 10.0)
    generous = replay_decisions(times, k * 60.0, (decisions + 1).tolist())
    assert generous.billed.sum() > log.billed.sum()


def test_score_counts_short_steps_and_unserved_demand_over_scored_steps_only() -> None:
    values = np.array([100.0, 50.0, 30.0, np.nan, 10.0])
    ready = np.array([0, 4, 2, 2, 2])
    billed = np.array([9, 4, 2, 2, 2])
    scored = scored_mask(np.arange(5.0), values, warmup_s=1.0)
    result = score(values, ready, billed, scored, unit=10.0)
    assert result == Score(
        short_fraction=pytest.approx(2 / 3),
        unserved_fraction=pytest.approx((10.0 + 10.0) / 90.0),
        billed_units=8.0,
        scored_steps=3,
    )


def test_hpa_rule_tolerance_scale_up_and_five_minute_stabilisation() -> None:
    rule = HpaRule(unit=10.0, utilisation=1.0)
    assert rule.desired(0.0, 104.0, 10) == 10  # within 10 %: no change
    assert rule.desired(60.0, 200.0, 10) == 20  # scale-up is immediate
    assert rule.desired(120.0, 50.0, 20) == 20  # the window still holds 20
    assert rule.desired(361.0, 50.0, 20) == 5  # 20 left the window at 360
    assert rule.desired(400.0, float("nan"), 5) == 5  # no observation: hold


def test_scheduled_forecast_averages_the_same_hour_of_past_days() -> None:
    hours = 10 * 24
    times = 3600.0 * np.arange(hours)
    values = np.where(np.arange(hours) % 24 == 9, 100.0, 10.0)
    trace = trace_from_arrays(times, values)
    forecast = scheduled_forecast(trace, lead_s=3600.0)
    # At 08:00 on day 3 the next hour is 09:00, which was 100 on every past day.
    assert forecast[3 * 24 + 8] == pytest.approx(100.0)
    assert forecast[3 * 24 + 12] == pytest.approx(10.0)
    assert np.isnan(forecast[5])  # nothing a day ago yet


def _points(pairs: list[tuple[float, float]]) -> list[BaselinePoint]:
    return [BaselinePoint(0.5, Score(short, 0.0, 0.0, 1), cost) for cost, short in pairs]


def test_equal_cost_and_equal_shortfall_interpolate_within_the_sweep() -> None:
    points = _points([(2.0, 0.0), (1.5, 0.01), (1.0, 0.1)])
    assert at_equal_cost(points, 1.25) == pytest.approx(0.055)
    assert at_equal_cost(points, 3.0) is None
    assert at_equal_shortfall(points, 0.005) == pytest.approx(1.75)
    assert at_equal_shortfall(points, 0.5) is None


def test_the_sweep_reaches_down_to_a_plan_that_costs_more_than_u_0_2() -> None:
    """A spiky trace at a small target: a plan may spend more than the HPA at ``u = 0.2``.
    Without the wider ladder the comparison at equal cost is missing (None) exactly there."""
    rng = np.random.default_rng(7)
    steps = 2_000
    values = np.full(steps, 2.0) + rng.uniform(0.0, 0.5, steps)
    values[rng.choice(steps, 40, replace=False)] = 100.0  # rare spikes, 40x the base
    times = np.arange(steps) * 300.0
    trace = trace_from_arrays(times, values)
    scored = scored_mask(trace.times, trace.values, 86_400.0)
    oracle = replay_decisions(trace.times, 600.0, oracle_decisions(trace.values, 2.0, 2))
    oracle_billed = score(trace.values, oracle.ready, oracle.billed, scored, 2.0).billed_units
    plain = sweep(trace, 2.0, 600.0, scored, oracle_billed, "hpa")
    most = max(p.cost_ratio for p in plain)
    plan_cost = 2.5 * most
    assert at_equal_cost(plain, plan_cost) is None
    wider = sweep(trace, 2.0, 600.0, scored, oracle_billed, "hpa", reach_cost=plan_cost)
    assert at_equal_cost(wider, plan_cost) is not None
    assert min(p.utilisation for p in wider) < 0.2
    # Ordered by utilisation, and the standard points are unchanged.
    assert [p.utilisation for p in wider] == sorted(p.utilisation for p in wider)
    assert [p.cost_ratio for p in wider if p.utilisation >= 0.2] == [p.cost_ratio for p in plain]
    # Only as far down as needed: the next-to-lowest point still costs less than the plan.
    assert sorted(p.cost_ratio for p in wider)[-2] < plan_cost
