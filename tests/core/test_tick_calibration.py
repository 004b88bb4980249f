"""The tick learns from the plan's own misses, once per new sample (issue 9, defect 1).

Before: every tick with demand above the target's *ready* capacity raised the calibration, so
failed writes or a GitOps controller resetting replicas inflated the forecast (10 replicas
wanted, 49 written once writes worked again), and a 10 s tick on a 60 s metric counted each
sample six times.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.backtest.replay import CapacitySimulator
from daemon.core.landed import LandedCapacity, advance, apply_decision
from daemon.core.tick import TickInputs, TickState, tick
from daemon.core.types import PlannerSettings
from models.calibration import CalibrationSettings

UNIT = 10.0
LEAD = 300.0
PLANNER = PlannerSettings(unit_capacity=UNIT, lead_s=LEAD, scale_down_stabilisation_s=300.0)
CALIBRATION = CalibrationSettings(shortfall_target=0.01, scale=UNIT)


def run(
    steps: int,
    *,
    demand: float,
    ready: int,
    current: int,
    tick_s: float = 60.0,
    sample_every_s: float = 60.0,
    state: TickState | None = None,
    start: float = 1_000_000.0,
) -> tuple[TickState, list[bool]]:
    """Tick ``steps`` times with a target stuck at ``ready``/``current`` units."""
    state = state or TickState()
    not_applied: list[bool] = []
    for i in range(steps):
        now = start + i * tick_s
        sample_time = now - (now - start) % sample_every_s
        result, state = tick(
            PLANNER,
            CALIBRATION,
            state,
            TickInputs(
                now=now,
                current_units=current,
                ready_units=ready,
                demand=demand,
                base_forecast=demand,
                sample_time=sample_time,
            ),
        )
        not_applied.append(result.not_applied)
    return state, not_applied


def test_writes_that_never_land_do_not_inflate_the_calibration() -> None:
    # Demand 100 needs 10 units; the target is stuck at 2 (every PATCH refused).
    state, not_applied = run(120, demand=100.0, ready=2, current=2)

    # Short on every step, yet never the plan's fault once its capacity had time to land:
    # the integral only ever goes down (served steps), never up.
    assert state.calibration.short_steps == 0
    assert state.calibration.integral <= 0.0
    assert sum(not_applied) >= 110
    # And so the plan asks for what a target whose writes land is asked for: no inflation.
    faithful, _ = run(120, demand=100.0, ready=13, current=13)
    assert state.landed.total == faithful.landed.total
    assert state.calibration == faithful.calibration


def test_the_plans_own_misses_still_train_it() -> None:
    # The target is applied faithfully (ready follows the ledger) but the forecast is too low:
    # rising demand forecast at half its level. Those short steps are the plan's and count.
    state = TickState()
    shorts = 0
    for i in range(30):
        now = 1_000_000.0 + 60.0 * i
        ready = state.landed.ready if state.landed.started else 0
        result, state = tick(
            PLANNER,
            CALIBRATION,
            state,
            TickInputs(
                now=now,
                current_units=state.landed.total,
                ready_units=ready,
                demand=100.0 + 20.0 * i,
                base_forecast=50.0 + 10.0 * i,
            ),
        )
        shorts += bool(result.plan_short)
    # The reactive floor's units land a lead time late, so the rise outruns them.
    assert shorts >= 5
    assert state.calibration.short_steps == shorts


def test_a_sample_seen_on_six_ticks_is_observed_once() -> None:
    once, _ = run(10, demand=100.0, ready=10, current=10, tick_s=60.0)
    six, _ = run(60, demand=100.0, ready=10, current=10, tick_s=10.0, sample_every_s=60.0)

    assert six.calibration.observed_steps == once.calibration.observed_steps == 9
    assert six.calibration == once.calibration


def test_a_gap_or_a_repeat_does_not_move_the_calibration() -> None:
    state, _ = run(5, demand=100.0, ready=10, current=10)
    before = state.calibration
    result, after = tick(
        PLANNER,
        CALIBRATION,
        state,
        TickInputs(
            now=1_000_000.0 + 600.0,
            current_units=10,
            ready_units=10,
            demand=None,
            base_forecast=100.0,
        ),
    )
    assert result.short is None and result.plan_short is None
    assert after.calibration == before


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 120), st.integers(0, 40)),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([0.0, 60.0, 300.0, 450.0]),
)
def test_the_ledger_is_the_replay_rules(decisions: list[tuple[int, int]], lead: float) -> None:
    """The ledger books decisions exactly as ``shared/SCORING.md``'s replay does."""
    simulator = CapacitySimulator(lead)
    ledger = LandedCapacity()
    now = 0.0
    for gap, desired in decisions:
        now += gap
        assert advance(ledger, now).ready == simulator.advance(now)
        ledger = advance(ledger, now)
        billed = simulator.decide(now, desired)
        ledger = apply_decision(ledger, now, desired, lead)
        assert ledger.total == billed
        assert ledger.ready == simulator.ready
