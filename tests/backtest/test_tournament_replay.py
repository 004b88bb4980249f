"""The backtest's plan is the tournament stepped once per grid step through its public API,
exactly as the daemon's reconciler calls it (one implementation for both)."""

from __future__ import annotations

import math

import numpy as np

from daemon.backtest.replay import CapacitySimulator
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.walkforward import (
    PlanConfig,
    conformal_settings,
    replay_plan,
    retrain_cutoffs,
)
from daemon.core.tournament import (
    CHALLENGER,
    MODEL,
    SEASONAL,
    Tournament,
    TournamentInputs,
    TournamentSettings,
)
from models.features import FeatureSpec, build_features, lead_steps_for
from models.forecaster import PeakForecaster, SeasonalNaive, forecast_demand, train_forecaster


def test_the_backtest_decides_as_a_step_by_step_loop_over_the_public_api() -> None:
    trace = generate_trace(TraceShape(days=6, step_s=900.0, gap_share=0.02, seed=11))
    # Short canary and hold, so promotions and switches happen within six days.
    settings = TournamentSettings(canary_min_s=3 * 3600.0, switch_hold_s=3 * 3600.0)
    config = PlanConfig(unit_capacity=100.0, lead_s=1800.0, warmup_s=86_400.0, tournament=settings)
    replayed = replay_plan(trace, config, progress=False)
    assert any(event.kind == "promote" for event in replayed.switches)

    k = lead_steps_for(config.lead_s, trace.step_s)
    spec = FeatureSpec(step_s=trace.step_s, lead_steps=k, scale=config.unit_capacity)
    features = build_features(trace.times, trace.values, spec)
    tournament = Tournament(
        settings,
        config.planner_settings(),
        config.calibration_settings(),
        conformal_settings(trace, config),
    )
    cutoffs = set(retrain_cutoffs(trace, config.retrain_every_s))
    champion: PeakForecaster | None = None
    challenger: PeakForecaster | None = None
    capacity = CapacitySimulator(config.lead_s)
    desired, active = [], []

    def predict(model: PeakForecaster, i: int) -> tuple[float | None, str]:
        value = float(forecast_demand(model, features, spec, np.array([i]))[0])
        return (value if math.isfinite(value) else None), model.name

    for i, now in enumerate(trace.times.tolist()):
        if i in cutoffs:
            fit = train_forecaster(
                trace.times,
                trace.values,
                features,
                spec,
                i,
                shortfall_target=config.shortfall_target,
                fitted_at=now,
            )
            if champion is None or not tournament.needs_canary():
                tournament.install_model(fit.forecaster.name)
                champion, challenger = fit.forecaster, None
            else:
                tournament.new_model(now, fit.forecaster.name)
                challenger = fit.forecaster
        assert champion is not None
        forecasts = {MODEL: predict(champion, i), SEASONAL: predict(SeasonalNaive(), i)}
        if challenger is not None:
            forecasts[CHALLENGER] = predict(challenger, i)
        ready = capacity.advance(now)
        value = float(trace.values[i])
        result = tournament.step(
            TournamentInputs(
                now=now,
                current_units=capacity.total,
                ready_units=ready,
                demand=value if math.isfinite(value) else None,
                forecasts=forecasts,
            )
        )
        if result.promoted:
            champion, challenger = challenger, None
        elif result.dropped:
            challenger = None
        desired.append(result.tick.decision.desired)
        active.append(result.active)
        capacity.decide(now, result.tick.decision.desired)

    assert desired == replayed.log.desired.tolist()
    assert tuple(active) == replayed.active
