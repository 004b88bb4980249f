"""The model trainer's start-up: history loads bounded across targets, on a real simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.forecasting import TargetForecaster
from daemon.runtime.planning import forecast_settings
from daemon.runtime.trainer import ModelTrainer
from daemon.settings import SimulatorTarget, TrainingConfig
from daemon.simulation import SimulatedWorld
from daemon.sources.base import MetricQuery, Series
from daemon.sources.simulator import SimulatorSource
from daemon.telemetry import HealthState, Telemetry

TARGETS = 12
SLOTS = 3


class WatchedSource(SimulatorSource[Any]):
    """The simulator's source, counting how many history loads are in flight at once."""

    def __init__(self, world: SimulatedWorld) -> None:
        super().__init__(world)
        self.in_flight = 0
        self.most = 0
        self.loads = 0

    async def history(
        self, query: MetricQuery[Any], start: float, end: float, step: float
    ) -> Series:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            # Yield so that unbounded loads would all be in flight together.
            await asyncio.sleep(0.02)
            return await super().history(query, start, end, step)
        finally:
            self.in_flight -= 1
            self.loads += 1


async def test_history_loads_share_a_bounded_slot_and_every_target_gets_its_history(
    tmp_path: Path,
) -> None:
    trace = generate_trace(TraceShape(days=3, step_s=300.0, seed=1))
    world = SimulatedWorld(trace, unit_capacity=100.0, lead_s=600.0, start_offset_s=2 * 86_400)
    source = WatchedSource(world)
    target = SimulatorTarget.model_validate(
        {
            "name": "sim",
            "kind": "simulator",
            "source": "sim",
            "unit_capacity": 100,
            "lead_time": "10m",
            "max_units": 20,
        }
    )
    training = TrainingConfig.model_validate({"history_window": "1d"})
    slot = asyncio.Semaphore(SLOTS)
    health = HealthState()
    trainers = [
        ModelTrainer(
            f"t{i}",
            source=source,
            query=MetricQuery(f"t{i}", None),
            forecaster=TargetForecaster(forecast_settings(target, training, trace.step_s)),
            training=training,
            model_dir=tmp_path / "models",
            telemetry=Telemetry(CollectorRegistry()),
            health=health,
            fit_slot=asyncio.Semaphore(1),
            history_slot=slot,
            clock=world.now,
        )
        for i in range(TARGETS)
    ]

    await asyncio.gather(*(trainer.load_history() for trainer in trainers))

    assert source.loads == TARGETS
    assert source.most == SLOTS
    for trainer in trainers:
        assert trainer.forecaster.history_end is not None
        assert trainer.forecaster.history_end >= world.now() - 2 * trace.step_s
