"""The plan may not see the future: changing the trace after a cut changes no earlier decision."""

from __future__ import annotations

import numpy as np

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.trace import Trace
from daemon.backtest.walkforward import PlanConfig, replay_plan


def test_decisions_up_to_a_cut_ignore_everything_after_it() -> None:
    trace = generate_trace(TraceShape(days=4.5, step_s=600.0, seed=11))
    config = PlanConfig(unit_capacity=150.0, lead_s=1800.0, warmup_s=86_400.0)
    cut = int(len(trace) * 0.8)  # after the model took over from the fallbacks
    changed_values = trace.values.copy()
    changed_values[cut + 1 :] = changed_values[cut + 1 :] * 5.0 + 1000.0
    changed_values[cut + 3 :: 7] = np.nan
    changed = Trace(trace.times, changed_values, trace.step_s, trace.labels)

    original = replay_plan(trace, config, progress=False)
    altered = replay_plan(changed, config, progress=False)

    before_cut = [fit for fit in original.fits if fit.at <= trace.times[cut]]
    assert any(fit.reason.startswith("model") for fit in before_cut)
    np.testing.assert_array_equal(original.log.desired[: cut + 1], altered.log.desired[: cut + 1])
    np.testing.assert_array_equal(original.forecast[: cut + 1], altered.forecast[: cut + 1])
    # The test can fail: the changed future does change the decisions after the cut.
    assert not np.array_equal(original.log.desired[cut + 1 :], altered.log.desired[cut + 1 :])
