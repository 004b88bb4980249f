"""The model trainer on a real simulator: history loads bounded across targets, retried
until they work; models that fail are quarantined and retrained at once."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.errors import TransientSourceError
from daemon.forecasting import TargetForecaster
from daemon.runtime.planning import forecast_settings
from daemon.runtime.trainer import ModelTrainer, retry_delay
from daemon.settings import SimulatorTarget, TrainingConfig
from daemon.simulation import SimulatedWorld
from daemon.sources.base import MetricQuery, Series
from daemon.sources.simulator import SimulatorSource
from daemon.telemetry import HealthState, Telemetry
from models.artifacts import quarantined
from models.forecaster import GradientBoostingPeak

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


# -- issue 9: history retried until it loads, models that fail retrained at once ----------------


class FlakySource(SimulatorSource[Any]):
    """The simulator's source, down (a transient error) for its first ``down`` history reads."""

    def __init__(self, world: SimulatedWorld, down: int) -> None:
        super().__init__(world)
        self.down = down
        self.calls = 0

    async def history(
        self, query: MetricQuery[Any], start: float, end: float, step: float
    ) -> Series:
        self.calls += 1
        if self.calls <= self.down:
            raise TransientSourceError("Prometheus query_range failed: connection refused")
        return await super().history(query, start, end, step)


def _trainer(
    tmp_path: Path,
    source: SimulatorSource[Any],
    world: SimulatedWorld,
    *,
    health: HealthState | None = None,
    training: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ModelTrainer:
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
    config = TrainingConfig.model_validate({"history_window": "2d"} | (training or {}))
    return ModelTrainer(
        "sim",
        source=source,
        query=MetricQuery("sim", None),
        forecaster=TargetForecaster(forecast_settings(target, config, world.trace.step_s)),
        training=config,
        model_dir=tmp_path / "models",
        telemetry=Telemetry(CollectorRegistry()),
        health=health or HealthState(),
        fit_slot=asyncio.Semaphore(1),
        clock=world.now,
        **kwargs,
    )


def _world() -> SimulatedWorld:
    trace = generate_trace(TraceShape(days=4, step_s=300.0, seed=3))
    return SimulatedWorld(trace, unit_capacity=100.0, lead_s=600.0, start_offset_s=3 * 86_400)


async def _until(condition: Any, what: str) -> None:
    """Wait for ``condition()`` on the loop; generous, since fits run in a thread."""
    for _ in range(3_000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within 30 s")


def test_history_retries_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    delays = [retry_delay(attempt, 2.0, 300.0, rng) for attempt in range(1, 13)]
    ceilings = [min(300.0, 2.0 * 2 ** (attempt - 1)) for attempt in range(1, 13)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert ceilings[-1] == 300.0 and max(delays) <= 300.0
    # Jittered: two targets failing together do not retry in step.
    assert len({round(d, 6) for d in delays[-4:]}) == 4


async def test_history_down_at_start_is_retried_until_it_loads_and_trained_at_once(
    tmp_path: Path,
) -> None:
    """Issue 9 defect 10: three failed history reads used to leave the target on recent_peak
    until the 6 h cadence, whenever the source came back."""
    world = _world()
    source = FlakySource(world, down=6)
    health = HealthState()
    health.set_targets(["sim"])
    trainer = _trainer(
        tmp_path, source, world, health=health, history_retry_s=0.01, history_retry_max_s=0.04
    )

    await trainer.start()

    # Started on the fallback: the target decides meanwhile.
    assert trainer.started.is_set()
    assert trainer.forecaster.forecaster_name == "recent_peak"
    assert not trainer.history_loaded
    assert health.target_report("sim")["source"]["error"].startswith("history: Prometheus")
    assert trainer.history_pending
    await _until(lambda: not trainer.history_pending, "history, then a fit")
    assert trainer.history_loaded
    assert trainer.forecaster.forecaster_name == "model"
    # Three at start, three retries that failed, one that loaded, one read by the fit.
    assert source.calls == 8
    assert trainer.forecaster.history_end is not None
    assert (tmp_path / "models" / "sim.json").exists()
    report = health.target_report("sim")
    assert report["source"]["ok"] is True
    assert report["model"]["name"] == "model" and report["model"]["error"] is None
    await trainer.stop()


async def test_the_history_retry_ends_with_the_task_that_started_it(tmp_path: Path) -> None:
    world = _world()
    source = FlakySource(world, down=10**9)
    trainer = _trainer(tmp_path, source, world, history_retry_s=0.01, history_retry_max_s=0.02)
    stopping = asyncio.Event()

    async def agent() -> None:
        # As a target's agent does: start the trainer, then tick until stopped.
        await trainer.start()
        await stopping.wait()

    task = asyncio.create_task(agent())
    await _until(lambda: source.calls > 5, "retries")
    retry = trainer._history_task
    assert retry is not None and not retry.done()
    stopping.set()
    await task
    await _until(retry.done, "the retry to end with the agent")
    assert retry.cancelled()


async def test_a_model_that_fails_to_forecast_is_retrained_at_once(tmp_path: Path) -> None:
    """Issue 9 defect 5: a loaded model that fails at forecast time used to fail every tick;
    now the tick gets the fallback and the model is retrained without waiting the cadence."""
    world = _world()
    health = HealthState()
    health.set_targets(["sim"])
    trainer = _trainer(tmp_path, SimulatorSource(world), world, health=health)
    await trainer.start()
    forecaster = trainer.forecaster
    assert forecaster.forecaster_name == "model"
    model = forecaster._forecaster
    assert isinstance(model, GradientBoostingPeak)
    model.regressor.trees_ = None  # type: ignore[assignment]

    forecast, rung = forecaster.forecast(world.now())

    assert rung == "seasonal_naive" and forecast is not None
    await _until(
        lambda: forecaster.forecaster_name == "model" and not trainer.retrain_pending,
        "a retrained model",
    )
    assert forecaster._forecaster is not model
    assert forecaster.retrain_requested is None
    [moved] = quarantined(tmp_path / "models", "sim")
    assert {path.name for path in moved.iterdir()} == {"sim.json", "sim.pkl"}
    assert (tmp_path / "models" / "sim.pkl").exists()  # the new model, saved
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in trainer.telemetry.registry.collect()
        for s in family.samples
    }
    assert (
        samples[("elasticd_model_failures_total", (("stage", "forecast"), ("target", "sim")))] == 1
    )
    assert health.target_report("sim")["model"]["error"] is None
    await trainer.stop()


async def test_asked_for_retrains_are_spaced(tmp_path: Path) -> None:
    world = _world()
    trainer = _trainer(tmp_path, SimulatorSource(world), world, retrain_gap_s=3600.0)
    await trainer.start()
    forecaster = trainer.forecaster

    ticks: list[float] = []

    def break_model() -> None:
        model = forecaster._forecaster
        assert isinstance(model, GradientBoostingPeak)
        model.regressor.trees_ = None  # type: ignore[assignment]
        # A later grid step each time, so the forecast is not the cached one.
        ticks.append(world.now() + 300.0 * len(ticks))
        forecaster.forecast(ticks[-1])

    break_model()
    await _until(lambda: trainer.retrain_pending, "the first retrain")
    await _until(lambda: not trainer.retrain_pending, "the first retrain to finish")
    assert forecaster.forecaster_name == "model"
    break_model()
    await _until(lambda: trainer.retrain_pending, "the second retrain")
    # The first retrain ran at once; the second waits out the gap on the fallback.
    for _ in range(10):
        await asyncio.sleep(0.01)
    assert forecaster.forecaster_name == "seasonal_naive"
    assert trainer.retrain_pending
    await trainer.stop()
    assert not trainer.retrain_pending


@pytest.mark.parametrize("artifact", ["[]", '{"format": 1, "sha256": "x", "provenance": null}'])
async def test_a_corrupt_saved_model_is_quarantined_and_replaced_at_start(
    tmp_path: Path, artifact: str
) -> None:
    world = _world()
    models = tmp_path / "models"
    models.mkdir()
    (models / "sim.json").write_text(artifact)
    (models / "sim.pkl").write_bytes(b"")
    trainer = _trainer(
        tmp_path, SimulatorSource(world), world, training={"retrain_on_start": False}
    )

    await trainer.start()

    assert trainer.forecaster.forecaster_name == "model"
    assert len(quarantined(models, "sim")) == 1
    # The fit's own artifact replaced it, and loads.
    assert trainer.forecaster.load(models, "sim") is None
    assert _sample(trainer, "elasticd_model_failures_total", stage="load", target="sim") == 1


async def test_a_missing_saved_model_is_trained_without_counting_a_failure(
    tmp_path: Path,
) -> None:
    world = _world()
    trainer = _trainer(
        tmp_path, SimulatorSource(world), world, training={"retrain_on_start": False}
    )
    await trainer.start()
    assert trainer.forecaster.forecaster_name == "model"
    assert _sample(trainer, "elasticd_model_failures_total", stage="load", target="sim") is None
    assert not quarantined(tmp_path / "models", "sim")


def _sample(trainer: ModelTrainer, name: str, **labels: str) -> float | None:
    for family in trainer.telemetry.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


class FailingFitSource(SimulatorSource[Any]):
    """History reads that return a value a fit cannot use (a wrong-length series)."""

    async def history(
        self, query: MetricQuery[Any], start: float, end: float, step: float
    ) -> Series:
        good = await super().history(query, start, end, step)
        return Series(good.timestamps, good.values[:-1])


async def test_a_failed_cadence_fit_is_reported_and_the_next_is_tried(tmp_path: Path) -> None:
    world = _world()
    health = HealthState()
    health.set_targets(["sim"])
    trainer = _trainer(
        tmp_path,
        FailingFitSource(world),
        world,
        health=health,
        training={"cadence": "0.01s"},
    )
    assert not trainer.started.is_set()
    task = asyncio.create_task(trainer.run_cadence())
    await _until(lambda: health.target_report("sim")["model"]["error"] is not None, "an error")
    assert not task.done()  # the loop goes on after a failed fit
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "training failed" in health.target_report("sim")["model"]["error"]
