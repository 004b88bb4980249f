"""The reactive rule's utilisation arms are the HPA rules of SCORING.md, replayed in shadow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.backtest.baselines import hpa_replay
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.core.candidates import DEFAULT_UTILISATIONS, ReactiveTuner
from daemon.core.types import PlannerSettings


def test_every_arm_replays_the_hpa_baseline_exactly() -> None:
    trace = generate_trace(TraceShape(days=2, step_s=300.0, gap_share=0.02, seed=8))
    unit, lead = 40.0, 600.0
    planner = PlannerSettings(unit_capacity=unit, lead_s=lead, scale_down_stabilisation_s=0.0)
    tuner = ReactiveTuner()
    for now, value in zip(trace.times.tolist(), trace.values.tolist(), strict=True):
        tuner.step(now, value if math.isfinite(value) else None, planner, window_s=1e15)
    data = tuner.to_json()
    observed = np.isfinite(trace.values)
    for arm, u in enumerate(DEFAULT_UTILISATIONS):
        log = hpa_replay(trace, unit, lead, u)
        short = (trace.values > log.ready * unit)[observed].sum()
        assert data["short"][arm] == pytest.approx(short, rel=1e-6), u
        assert data["billed"][arm] == pytest.approx(log.billed[observed].sum(), rel=1e-6), u
    # Low utilisations buy fewer short steps: the arms span the trade-off.
    assert data["short"][0] < data["short"][-1]


def test_the_tuned_utilisation_is_the_highest_that_met_the_target() -> None:
    tuner = ReactiveTuner((0.5, 0.7, 0.9))
    tuner._steps = [1000.0, 1000.0, 1000.0]
    tuner._short = [2.0, 9.0, 40.0]
    assert tuner.choose(0.01, default=0.8) == 0.7
    assert tuner.choose(0.003, default=0.8) == 0.5
    tuner._short = [30.0, 40.0, 50.0]
    assert tuner.choose(0.01, default=0.8) == 0.5  # none met it: the safest
    tuner._short = [30.0, 30.0, 50.0]
    # ... or the highest as safe as the safest: more headroom bought no fewer short steps.
    assert tuner.choose(0.01, default=0.8) == 0.7
    assert ReactiveTuner().choose(0.01, default=0.8) == 0.8  # no evidence yet
