"""The embedded simulator: an accelerated clock, a source with no future, capacity with a lead."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.actuators.base import Actuator, Capacity
from daemon.actuators.simulator import SimulatorActuator
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.trace import Trace, trace_from_arrays
from daemon.errors import PermanentActuatorError
from daemon.simulation import WEEK_S, SimulatedWorld, rebase_trace
from daemon.sources.base import MetricQuery, MetricSource
from daemon.sources.simulator import SimulatorSource

STEP = 300.0
START = 1_767_571_200.0
QUERY = MetricQuery("demand", "ignored")


class FakeWall:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ramp_trace(days: float = 8.0, gaps: tuple[int, ...] = ()) -> Trace:
    """Demand equal to its step index: any value tells which step it came from."""
    steps = int(days * 86_400 / STEP)
    values = np.arange(steps, dtype=np.float64)
    values[list(gaps)] = np.nan
    times = START + STEP * np.arange(steps, dtype=np.float64)
    observed = np.isfinite(values)
    return trace_from_arrays(times[observed], values[observed])


def world_for(
    trace: Trace, wall: FakeWall, *, lead_s: float = 900.0, initial_units: int | None = 10
) -> SimulatedWorld:
    return SimulatedWorld(
        trace,
        unit_capacity=100.0,
        lead_s=lead_s,
        speedup=600.0,
        initial_units=initial_units,
        wall_clock=wall,
    )


def test_clock_runs_at_the_speedup_from_a_week_in() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall)
    assert world.now() == START + WEEK_S
    wall.t += 2.5
    assert world.now() == START + WEEK_S + 1500.0
    assert world.wall_seconds(60.0) == pytest.approx(0.1)
    assert not world.finished
    wall.t += 86_400 / 600 + 1
    assert world.finished


def test_start_offset_is_configurable_and_checked() -> None:
    wall = FakeWall()
    world = SimulatedWorld(
        ramp_trace(), unit_capacity=1.0, lead_s=0.0, start_offset_s=3600.0, wall_clock=wall
    )
    assert world.now() == START + 3600.0
    with pytest.raises(ValueError, match="start_offset_s"):
        SimulatedWorld(ramp_trace(days=2), unit_capacity=1.0, lead_s=0.0, wall_clock=wall)
    with pytest.raises(ValueError, match="speedup"):
        SimulatedWorld(ramp_trace(), unit_capacity=1.0, lead_s=0.0, speedup=0.0)


async def test_latest_is_the_last_observation_at_or_before_simulated_now() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall)
    source = SimulatorSource[str](world)
    step_at_start = WEEK_S / STEP
    sample = await source.latest(QUERY, world.now())
    assert sample is not None
    assert (sample.timestamp, sample.value) == (START + WEEK_S, step_at_start)
    wall.t += 0.8  # 480 simulated seconds: one step further, not two
    sample = await source.latest(QUERY, world.now())
    assert sample is not None
    assert sample.value == step_at_start + 1


async def test_latest_never_returns_the_simulated_future() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall)
    source = SimulatorSource[str](world)
    for _ in range(50):
        wall.t += 0.37
        # A caller whose clock runs ahead must still get nothing past the simulated now.
        sample = await source.latest(QUERY, world.now() + 86_400.0)
        assert sample is not None
        assert sample.timestamp <= world.now()
        assert sample.value == math.floor((world.now() - START) / STEP)


async def test_latest_skips_gaps_and_is_none_before_the_trace() -> None:
    wall = FakeWall()
    gap = int(WEEK_S / STEP)
    world = world_for(ramp_trace(gaps=(gap, gap - 1)), wall)
    source = SimulatorSource[str](world)
    sample = await source.latest(QUERY, world.now())
    assert sample is not None
    assert sample.value == gap - 2  # the last observed point, with its own timestamp
    assert sample.timestamp == START + (gap - 2) * STEP
    assert await source.latest(QUERY, START - 1.0) is None


async def test_history_matches_the_trace_up_to_simulated_now() -> None:
    wall = FakeWall()
    trace = ramp_trace(gaps=(5, 100))
    world = world_for(trace, wall)
    source = SimulatorSource[str](world)
    wall.t += 1.0  # 600 simulated seconds past the start
    now = world.now()
    series = await source.history(QUERY, trace.start, now + 86_400.0, STEP)
    expected = trace.observed & (trace.times <= now)
    np.testing.assert_array_equal(series.timestamps, trace.times[expected])
    np.testing.assert_array_equal(series.values, trace.values[expected])
    assert series.timestamps[-1] <= now
    assert 5.0 not in series.values and 100.0 not in series.values


async def test_history_samples_off_grid_and_coarser_steps() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall)
    source = SimulatorSource[str](world)
    start = START + 3600.0 + 10.0  # off the grid: each point holds the step before it
    series = await source.history(QUERY, start, start + 3 * 900.0, 900.0)
    np.testing.assert_array_equal(series.timestamps, start + 900.0 * np.arange(4))
    np.testing.assert_array_equal(series.values, [12.0, 15.0, 18.0, 21.0])


async def test_history_entirely_in_the_future_or_before_the_trace_is_empty() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall)
    source = SimulatorSource[str](world)
    assert len(await source.history(QUERY, world.now() + 1.0, world.now() + 3600.0, STEP)) == 0
    assert len(await source.history(QUERY, START - 7200.0, START - 3600.0, STEP)) == 0
    with pytest.raises(ValueError, match="step"):
        await source.history(QUERY, START, START + 600.0, 0.0)


async def test_scale_up_becomes_ready_only_after_the_lead_time() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall, lead_s=900.0)
    actuator = SimulatorActuator(world, "web")
    assert await actuator.read() == Capacity(desired=10, ready=10, min_size=None, max_size=None)
    result = await actuator.scale(14)
    assert (result.written, result.previous, result.requested, result.applied) == (
        True,
        10,
        14,
        14,
    )
    assert await actuator.read() == Capacity(desired=14, ready=10, min_size=None, max_size=None)
    wall.t += 1.49  # 894 simulated seconds: still booting
    assert (await actuator.read()).ready == 10
    wall.t += 0.02  # 906 simulated seconds: past the lead time
    assert await actuator.read() == Capacity(desired=14, ready=14, min_size=None, max_size=None)


async def test_scale_down_removes_pending_first_then_ready() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall, lead_s=900.0)
    actuator = SimulatorActuator(world, "web")
    await actuator.scale(15)
    await actuator.scale(12)  # 3 of the 5 booting units go; all 10 ready ones stay
    assert await actuator.read() == Capacity(desired=12, ready=10, min_size=None, max_size=None)
    await actuator.scale(8)  # the other 2 booting go, then 2 ready ones
    assert await actuator.read() == Capacity(desired=8, ready=8, min_size=None, max_size=None)
    wall.t += 10.0
    assert (await actuator.read()).ready == 8  # nothing left booting to arrive later


async def test_unchanged_size_is_not_a_write_and_negative_is_refused() -> None:
    wall = FakeWall()
    actuator = SimulatorActuator(world_for(ramp_trace(), wall), "web")
    result = await actuator.scale(10)
    assert not result.written and result.previous == result.applied == 10
    with pytest.raises(PermanentActuatorError, match="web"):
        await actuator.scale(-1)
    assert actuator.describe() == "simulated web"
    assert isinstance(actuator, Actuator)
    await actuator.close()


def test_short_steps_count_grid_steps_short_of_ready_capacity() -> None:
    wall = FakeWall()
    # Demand at the start is about 2016 (the step index); 10 units of 100 serve 1000: short.
    world = world_for(ramp_trace(), wall, lead_s=900.0, initial_units=10)
    wall.t += 1.0  # two grid steps pass
    assert world.summary().short_steps == 2
    # Asked for at +600 s, ready at +1500 s: steps +900 and +1200 are still short, and the
    # step at +1500 is served, since units ready at a step's time serve it.
    world.scale(30)
    wall.t += 3.0  # 1800 simulated seconds: 6 more steps
    summary = world.summary()
    assert (summary.steps, summary.short_steps) == (8, 4)
    assert summary.short_fraction == pytest.approx(4 / 8)
    assert (summary.ready, summary.pending) == (30, 0)
    # Billed: 10 units at steps 1-2, then 30 (ready or booting) at steps 3-8.
    assert summary.unit_hours == pytest.approx((2 * 10 + 6 * 30) * STEP / 3600)


def test_default_initial_size_serves_the_demand_at_the_start() -> None:
    wall = FakeWall()
    world = world_for(ramp_trace(), wall, initial_units=None)
    assert world.capacity() == (math.ceil(2016 / 100.0), 0)


async def test_runs_on_a_generated_trace_and_rebased_trace() -> None:
    trace = rebase_trace(generate_trace(TraceShape(days=9, level_shift_day=None)), 2_000_000_000.0)
    assert trace.start == 2_000_000_000.0 and trace.labels[0] == "2033-05-18T03:33:20Z"
    wall = FakeWall()
    world = SimulatedWorld(trace, unit_capacity=100.0, lead_s=600.0, speedup=600.0, wall_clock=wall)
    source: MetricSource[str] = SimulatorSource[str](world)
    history = await source.history(QUERY, world.now() - WEEK_S, world.now(), trace.step_s)
    assert len(history) > 0.98 * WEEK_S / trace.step_s  # a week to train on, minus gaps
    assert history.timestamps[-1] <= world.now()
