"""The targets' clock does not move with a wall-clock step (issue 14's clock row): with
``time.time`` a five-minute step forward emptied the 300 s scale-down window at once."""

from __future__ import annotations

from typing import Any

from daemon.core.stabilisation import stabilise_scale_down
from daemon.runtime.clock import StepFreeClock
from tests.runtime.test_app import (
    FactoryHarness,
    factory_harness,  # noqa: F401  (a fixture)
    kube,  # noqa: F401  (a fixture)
    web_target,
)
from tests.support.fake_kube import FakeKube


class Dial:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_wall_clock_step_does_not_move_it_and_the_window_holds() -> None:
    wall, monotonic = Dial(1_800_000_000.0), Dial(50.0)
    clock = StepFreeClock(wall, monotonic)
    start = clock()
    assert start == wall.now
    window: tuple[tuple[float, int], ...] = ()
    _, window = stabilise_scale_down(window, clock(), 300.0, 9)  # 9 replicas recommended
    monotonic.now += 60.0
    wall.now += 60.0 + 300.0  # a minute passes, and someone steps the clock five minutes on
    assert clock() == start + 60.0
    # One minute into the window, a recommendation of 2 still gets the window's 9 ...
    held, _ = stabilise_scale_down(window, clock(), 300.0, 2)
    assert held == 9
    # ... which the stepped wall clock would have let fall at once.
    fallen, _ = stabilise_scale_down(window, wall.now, 300.0, 2)
    assert fallen == 2


async def test_targets_tick_on_the_process_step_free_clock(
    factory_harness: FactoryHarness,  # noqa: F811
    kube: tuple[FakeKube, dict[str, Any]],  # noqa: F811
) -> None:
    _, kube_settings = kube
    settings = factory_harness.settings(
        [web_target(source="prom", query="sum(rps)")],
        kubernetes=kube_settings,
        sources={"prom": {"type": "prometheus", "url": "http://127.0.0.1:9"}},
    )
    [runtime] = await factory_harness.build(settings)
    assert isinstance(factory_harness.shared.clock, StepFreeClock)
    assert runtime.reconciler.clock is factory_harness.shared.clock
    assert runtime.trainer.clock is factory_harness.shared.clock
