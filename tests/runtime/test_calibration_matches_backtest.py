"""The daemon's tick path and the backtest learn the same calibration from the same trace.

Issue 9, defect 1: the daemon observed the calibration once per *tick*, so with 10 s ticks on a
60 s metric it counted each sample six times and disagreed with ``elasticd backtest`` on the
same data. Here one trace is played both ways:

- the daemon: a ``Reconciler`` on a ``SimulatedWorld`` (its source and actuator), ticking every
  10 s of the world's clock, six ticks per 60 s sample, its forecaster streaming the samples;
- the backtest: the scoring replay (``daemon.backtest.replay.replay``: every decision lands a
  lead time later) calling ``daemon.core.tick.tick`` once per grid step, with the backtest's own
  vectorised forecasts (``build_features``) and conformal offsets (``conformal_offsets``).

Forecasts are kept the same on both sides so that the comparison is about the calibration
path: neither side trains (both forecast with the ``recent_peak`` fallback, over the daemon's
own horizon), and the trace has no gaps (the daemon plans on the last sample through a gap, the
replay on none). With and without the default scale-down window.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from daemon.actuators.simulator import SimulatorActuator
from daemon.audit import AuditLog
from daemon.backtest.replay import replay
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.trace import Trace
from daemon.backtest.walkforward import PlanConfig, conformal_offsets
from daemon.core.tick import TickInputs, TickState, tick
from daemon.forecasting import TargetForecaster
from daemon.runtime.planning import forecast_settings, planner_settings
from daemon.runtime.reconciler import Reconciler
from daemon.settings import SimulatorTarget, TrainingConfig
from daemon.simulation import SimulatedWorld
from daemon.sources.base import MetricQuery, Sample, Series
from daemon.sources.simulator import SimulatorSource
from daemon.telemetry import HealthState, Telemetry
from models.calibration import CalibrationState, with_conformal
from models.features import build_features
from models.forecaster import RecentPeak, forecast_demand

STEP_S = 60.0
TICK_S = 10.0
TICKS_PER_SAMPLE = round(STEP_S / TICK_S)
UNIT = 50.0


def bursty_trace() -> Trace:
    """Eight hours of a day with bursts and noise, one sample a minute, no gaps."""
    return generate_trace(
        TraceShape(
            days=8 / 24,
            step_s=STEP_S,
            base=400.0,
            peak=2000.0,
            noise=0.08,
            bursts_per_day=12.0,
            burst_size=0.6,
            level_shift_day=None,
            gap_share=0.0,
            seed=11,
            # 06:00 UTC: the morning rise is inside the eight hours.
            start=1_767_571_200.0 + 6 * 3600.0,
        )
    )


def simulator_target(**extra: object) -> SimulatorTarget:
    return SimulatorTarget.model_validate(
        {
            "name": "checkout",
            "kind": "simulator",
            "source": "sim",
            "unit_capacity": UNIT,
            "lead_time": "3m",
            "min_units": 1,
            "max_units": 200,
            "mode": "active",
        }
        | extra
    )


class EvaluationStamped:
    """The world's demand as Prometheus's instant query serves it: the newest sample's value,
    stamped with the evaluation time (``/api/v1/query`` returns ``[time, value]`` for the
    ``time`` asked, not the scrape's), so every tick looks like a new sample."""

    def __init__(self, world: SimulatedWorld) -> None:
        self._source: SimulatorSource[None] = SimulatorSource(world)

    async def latest(self, query: MetricQuery[None], now: float) -> Sample | None:
        found = await self._source.latest(query, now)
        return None if found is None else Sample(timestamp=now, value=found.value)

    async def history(
        self, query: MetricQuery[None], start: float, end: float, step: float
    ) -> Series:
        return await self._source.history(query, start, end, step)

    async def close(self) -> None:
        await self._source.close()


class WallClock:
    """The world's monotonic clock, moved by the test: one tick is exactly ``TICK_S``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def daemon_side(
    trace: Trace, target: SimulatorTarget, tmp_path: Path, *, prometheus: bool = False
) -> tuple[Reconciler, list[dict[str, float | int | None]]]:
    """Tick a reconciler six times per sample over the trace; returns it and, per sample,
    what its first tick on that sample saw and decided."""
    wall = WallClock()
    world = SimulatedWorld(
        trace,
        unit_capacity=UNIT,
        lead_s=target.lead_time,
        speedup=1.0,
        start_offset_s=0.0,
        initial_units=0,
        wall_clock=wall,
    )
    forecaster = TargetForecaster(
        forecast_settings(target, TrainingConfig(), STEP_S, interval_s=TICK_S)
    )
    audit = AuditLog(tmp_path / "decisions.jsonl")
    reconciler = Reconciler(
        target,
        source=EvaluationStamped(world) if prometheus else SimulatorSource(world),
        query=MetricQuery(target.name, None),
        actuator=SimulatorActuator(world, target.name),
        forecaster=forecaster,
        audit=audit,
        telemetry=Telemetry(CollectorRegistry()),
        health=HealthState(),
        clock=world.now,
        interval_s=TICK_S,
    )
    firsts: list[dict[str, float | int | None]] = []
    try:
        for i in range(len(trace)):
            for j in range(TICKS_PER_SAMPLE):
                wall.now = (i * TICKS_PER_SAMPLE + j) * TICK_S
                report = await reconciler.tick()
                assert report.result is not None and report.error is None, report
                if j == 0:
                    assert report.now == trace.times[i]
                    firsts.append(
                        {
                            "desired": report.result.decision.desired,
                            "forecast": report.result.forecast,
                        }
                    )
    finally:
        audit.close()
    return reconciler, firsts


def backtest_side(
    trace: Trace, target: SimulatorTarget, forecaster: TargetForecaster
) -> tuple[TickState, list[int], list[float | None], list[float]]:
    """The backtest's streaming loop: ``tick`` once per grid step through the replay rules."""
    spec = forecaster.spec  # the same horizon as the daemon's forecaster
    features = build_features(trace.times, trace.values, spec)
    base = forecast_demand(RecentPeak(), features, spec, np.arange(len(trace)))
    sources = [RecentPeak().name] * len(trace)
    config = PlanConfig(
        unit_capacity=UNIT,
        lead_s=target.lead_time,
        warmup_s=0.0,
        shortfall_target=target.shortfall_target,
    )
    offsets = conformal_offsets(trace, base, sources, config, spec.lead_steps).tolist()
    settings = planner_settings(target)
    calibration = forecaster.calibration_settings()
    values = trace.values.tolist()
    state = TickState()
    forecasts: list[float | None] = []

    def policy(i: int, now: float, ready: int, total: int) -> int:
        nonlocal state
        state = replace(state, calibration=with_conformal(state.calibration, offsets[i]))
        predicted = float(base[i])
        result, state = tick(
            settings,
            calibration,
            state,
            TickInputs(
                now=now,
                current_units=total,
                ready_units=ready,
                demand=values[i] if math.isfinite(values[i]) else None,
                base_forecast=predicted if math.isfinite(predicted) else None,
                forecast_source=sources[i],
            ),
        )
        forecasts.append(result.forecast)
        return result.decision.desired

    log = replay(trace.times, target.lead_time, policy)
    return state, log.desired.tolist(), forecasts, offsets


def numbers(state: CalibrationState) -> tuple[int, int, float]:
    return state.observed_steps, state.short_steps, state.integral


@pytest.mark.parametrize(
    ("window", "prometheus"),
    [(None, False), (0, False), (None, True)],
    ids=["default-scale-down-window", "no-scale-down-window", "evaluation-stamped-samples"],
)
async def test_daemon_ticks_and_the_backtest_learn_the_same_calibration(
    tmp_path: Path, window: int | None, prometheus: bool
) -> None:
    """``evaluation-stamped-samples``: a Prometheus source stamps each answer with the time
    asked, so telling a new sample from a repeat by its timestamp alone counts every tick."""
    trace = bursty_trace()
    target = simulator_target(**({} if window is None else {"scale_down_stabilisation": window}))
    reconciler, firsts = await daemon_side(trace, target, tmp_path, prometheus=prometheus)
    backtest, desired, forecasts, offsets = backtest_side(trace, target, reconciler.forecaster)

    # Not a vacuous match: the plan was short sometimes, and the integral moved.
    observed, short, integral = numbers(backtest.calibration)
    assert observed == len(trace) - 1  # every sample but the first (no plan to answer for yet)
    assert short >= 3 and integral != 0.0, numbers(backtest.calibration)
    assert any(offset != 0.0 for offset in offsets)  # the conformal term took part too

    # The same calibration state: six ticks a sample count each sample once.
    daemon = reconciler.state.calibration
    assert (daemon.observed_steps, daemon.short_steps) == (observed, short)
    assert daemon.integral == pytest.approx(integral, abs=1e-12)
    assert daemon.conformal == pytest.approx(backtest.calibration.conformal, abs=1e-6)
    assert reconciler.state.landed == backtest.landed

    # The same plan, sample for sample: forecasts and decisions at each sample's first tick.
    np.testing.assert_allclose(
        [np.nan if f["forecast"] is None else f["forecast"] for f in firsts],
        [np.nan if f is None else f for f in forecasts],
        rtol=1e-5,  # the daemon keeps its samples in float32
    )
    assert [f["desired"] for f in firsts] == desired
    print(
        f"\n{len(trace)} samples, {len(trace) * TICKS_PER_SAMPLE} daemon ticks: "
        f"observed {observed}, short {short}, integral {integral:+.4f} on both sides"
    )
