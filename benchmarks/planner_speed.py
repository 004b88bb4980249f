"""Time ``plan()`` over 130,000 steps, the size of a long ``elasticd backtest`` replay.

Not a test (timing on a shared machine is noise for pass/fail): run it by hand after changing
the core, ``python benchmarks/planner_speed.py [step_s]``, and compare the µs per call.
"""

from __future__ import annotations

import math
import sys
import time

from daemon.core.planner import plan
from daemon.core.types import PlanInputs, PlannerSettings, PlannerState, RateLimit

STEPS = 130_000


def build_inputs(steps: int, step_s: float) -> list[PlanInputs]:
    """A daily sine of demand with a forecast one step ahead; every 97th value missing, so
    the fallback and hold paths are exercised too. Built up front so only ``plan`` is timed.
    """
    inputs = []
    current = 10
    for index in range(steps):
        now = 1_700_000_000.0 + index * step_s
        demand = 1_000.0 + 800.0 * math.sin(2 * math.pi * now / 86_400)
        ahead = 1_000.0 + 800.0 * math.sin(2 * math.pi * (now + step_s) / 86_400)
        inputs.append(
            PlanInputs(
                now=now,
                current_units=current,
                demand=None if index % 97 == 0 else demand,
                forecast=None if index % 89 == 0 else ahead * 1.1,
            )
        )
    return inputs


def main(step_s: float) -> None:
    """Replay the plan, feeding each decision back as the next tick's current units."""
    settings = PlannerSettings(
        unit_capacity=100.0,
        min_units=2,
        max_units=50,
        scale_down_tolerance=0.05,
        scale_up_limit=RateLimit(period_s=60.0, max_units=4, max_percent=100.0),
        scale_down_limit=RateLimit(period_s=300.0, max_percent=10.0),
    )
    prepared = build_inputs(STEPS, step_s)
    state = PlannerState()
    current = 10
    started = time.perf_counter()
    for tick in prepared:
        if tick.current_units != current:
            # Feeding the decision back keeps the state realistic; a constant current would not.
            tick = PlanInputs(tick.now, current, tick.demand, tick.forecast)
        decision, state = plan(settings, state, tick)
        current = decision.desired
    elapsed = time.perf_counter() - started
    print(
        f"{STEPS} plan() calls at a {step_s:g} s step: {elapsed:.2f} s, "
        f"{elapsed / STEPS * 1e6:.1f} µs per call "
        f"(window holds {len(state.recommendations)} recommendations)"
    )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
