"""Property tests of the decision core (issue 9): hypothesis drives samples, failed writes,
restarts and reloads against the invariants a user relies on, and shrinks any failure to the
shortest sequence.

- desired is always within the target's bounds;
- no scale-down inside the stabilisation window, across restarts and reloads (the state goes
  through the same JSON the daemon writes to its state directory);
- the calibration stays bounded and is not moved by steps the plan did not control (a write
  that did not land) nor by a repeated sample;
- the daemon's tick path (several ticks per sample) and the backtest's (one per sample) reach
  the same calibration on the same samples.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from daemon.core.landed import advance
from daemon.core.tick import TickInputs, TickResult, TickState, tick
from daemon.core.types import PlannerSettings
from daemon.runtime.decision_state import decode, encode
from models.calibration import CalibrationSettings

UNIT = 10.0
WINDOW = 300.0
BASE = PlannerSettings(
    unit_capacity=UNIT, min_units=2, max_units=40, lead_s=120.0, scale_down_stabilisation_s=WINDOW
)
CALIBRATION = CalibrationSettings(shortfall_target=0.02, scale=UNIT, gain=0.05)

demands = st.one_of(
    st.floats(0, 600, allow_nan=False),
    st.sampled_from([0.0, -5.0, math.nan, math.inf, None]),
)


class DecisionMachine(RuleBasedStateMachine):
    """A target whose writes may fail, whose daemon may restart and whose config may reload."""

    @initialize()
    def start(self) -> None:
        self.settings = BASE
        self.state = TickState()
        self.now = 1_000_000.0
        self.current = 5
        self.ready = 5
        # (time, recommendation) of every tick, to check the window against.
        self.recommendations: list[tuple[float, int]] = []
        self.last: TickResult | None = None

    def _tick(self, demand: float | None, *, lands: bool, sample_time: float | None) -> None:
        before = self.state.calibration
        result, self.state = tick(
            self.settings,
            CALIBRATION,
            self.state,
            TickInputs(
                now=self.now,
                current_units=self.current,
                ready_units=self.ready,
                demand=demand,
                base_forecast=None if demand is None or not math.isfinite(demand) else demand,
                sample_time=sample_time,
            ),
        )
        desired = result.decision.desired
        # Bounds hold, whatever came in.
        assert self.settings.min_units <= desired <= self.settings.max_units
        # No scale-down below any recommendation made inside the window (the HPA's rule),
        # across restarts and reloads; the planner appends this tick's own as its last record.
        made_at, recommendation = self.state.planner.recommendations[-1]
        assert made_at == self.now
        self.recommendations.append((self.now, recommendation))
        window = self.settings.scale_down_stabilisation_s
        inside = [r for t, r in self.recommendations if t >= self.now - window]
        if desired < self.current:
            assert desired >= min(max(inside), self.settings.max_units)
        # Calibration: only a new sample measured against the plan's own capacity moves it.
        if result.plan_short is None:
            assert self.state.calibration.integral == before.integral
            assert self.state.calibration.observed_steps == before.observed_steps
        assert (
            CALIBRATION.min_integral <= self.state.calibration.integral <= CALIBRATION.max_integral
        )
        if lands:
            self.current = desired
            self.ready = min(self.ready, desired) if desired < self.ready else self.ready
        self.last = result

    @rule(demand=demands, seconds=st.sampled_from([10.0, 30.0, 60.0, 120.0]))
    def sample(self, demand: float | None, seconds: float) -> None:
        self.now += seconds
        self._tick(demand, lands=True, sample_time=self.now)

    @rule(demand=st.floats(0, 600, allow_nan=False))
    def failed_write(self, demand: float) -> None:
        """A new sample whose decision is not applied (the API refused it): ready and current
        stay; whatever was short must not be learnt as the plan's miss unless its own ledger
        was short too."""
        self.now += 60.0
        landed_ready = advance(self.state.landed, self.now).ready
        self._tick(demand, lands=False, sample_time=self.now)
        assert self.last is not None
        if self.last.plan_short is not None:
            assert self.last.plan_short == (demand > landed_ready * UNIT) or not (
                self.state.landed.started
            )

    @precondition(lambda self: self.last is not None)
    @rule()
    def repeat_sample(self) -> None:
        """The daemon ticks again before a new sample: the calibration must not move."""
        before = self.state.calibration
        self.now += 10.0
        self._tick(50.0, lands=True, sample_time=self.state.last_sample_time)
        assert self.state.calibration == before

    @rule(
        boots=st.integers(0, 10),
    )
    def capacity_boots(self, boots: int) -> None:
        self.ready = min(self.current, self.ready + boots)

    @rule()
    def restart(self) -> None:
        """kill -9 and start again: the state comes back from its JSON form."""
        self.state = decode(encode(self.state))

    @rule(max_units=st.integers(10, 60))
    def reload(self, max_units: int) -> None:
        """A reload that edits the target keeps its window (see decision_state)."""
        self.settings = replace(self.settings, max_units=max_units)
        self.state = TickState(planner=self.state.planner)

    @invariant()
    def ledger_is_sane(self) -> None:
        landed = self.state.landed
        assert landed.ready >= 0 and all(count > 0 for _, count in landed.pending)


DecisionMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestDecisions = DecisionMachine.TestCase


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0, 500, allow_nan=False), st.none()), min_size=1, max_size=80),
    st.integers(2, 6),
)
def test_daemon_ticks_and_backtest_steps_calibrate_alike(
    samples: list[float | None], ticks_per_sample: int
) -> None:
    """Each sample seen on several daemon ticks or once by the backtest: same calibration."""

    def run(repeat: int) -> TickState:
        state = TickState()
        for i, demand in enumerate(samples):
            sample_time = 1_000_000.0 + 60.0 * i
            for j in range(repeat):
                landed = state.landed
                ready = landed.ready if landed.started else 0
                _, state = tick(
                    BASE,
                    CALIBRATION,
                    state,
                    TickInputs(
                        now=sample_time + j * (60.0 / repeat),
                        current_units=landed.total,
                        ready_units=ready,
                        demand=demand,
                        base_forecast=demand,
                        sample_time=sample_time,
                    ),
                )
        return state

    once, many = run(1), run(ticks_per_sample)
    assert many.calibration == once.calibration
