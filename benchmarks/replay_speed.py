"""Time a 130,000-step replay (90 days at 1 minute), walk-forward retraining included.

Goal (issues 2 and 10): at most 60 s on a 2-core machine for the plan's replay, now the policy
tournament's (every candidate in shadow, daemon.core.tournament). The baselines' sweeps and the
report are timed separately, since they are scoring, not planning.
"""

from __future__ import annotations

import time
from collections import Counter

from daemon.backtest.report import run_backtest
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.walkforward import PlanConfig
from models.threads import capped_threads


def main() -> None:
    trace = generate_trace(TraceShape(days=90, step_s=60.0, noise=0.08, seed=90))
    config = PlanConfig(unit_capacity=100.0, lead_s=600.0, warmup_s=7 * 86_400.0)
    began = time.perf_counter()
    with capped_threads():
        result = run_backtest(trace, config, progress=False)
    total = time.perf_counter() - began
    plan = result.plan
    print(f"steps: {len(trace)}  fits: {len(plan.fits)}")
    print(f"plan replay (retraining included): {plan.seconds:.1f} s  (goal <= 60 s)")
    print(f"  of which training: {plan.training_seconds:.1f} s")
    stepping = plan.seconds - plan.training_seconds
    print(f"  tournament steps: {1e6 * stepping / len(trace):.0f} us a step")
    acted = Counter(plan.active)
    shares = ", ".join(f"{name} {100 * n / len(trace):.0f}%" for name, n in acted.most_common())
    print(f"  acting: {shares}; {len(plan.switches)} switches, promotions and drops")
    print(f"whole backtest with both baseline sweeps: {total:.1f} s")
    print(
        f"cost_ratio {result.cost_ratio:.3f}  short {100 * result.plan_score.short_fraction:.2f}%"
    )


if __name__ == "__main__":
    main()
