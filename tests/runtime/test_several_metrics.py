"""Several metrics per target, through the real composition root: the units needed are the
largest any metric needs (the HPA's rule), the decision names the metric that decided, and a
metric that stops being valid blocks scale-down.

A Deployment (fake Kubernetes API, in-process) lists two metrics: ``cpu``, flat and served by
one pod, and ``rps``, the daily rise of ``tests/runtime/test_app.py`` (150 -> 550, 100 per
pod). ``cpu`` is the target's own; ``rps`` runs as the companion target ``web.rps``. Both get a
scripted source (two weeks of history) and a clock the test steps a minute at a time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from daemon.runtime.metric_board import MetricBoard, MetricPost
from daemon.sources.base import MetricQuery, Sample, Series
from tests.runtime.test_app import (
    DAY_7,
    RISE_S,
    FactoryHarness,
    crossing,
    daily_demand,
    factory_harness,  # noqa: F401  (a fixture)
    kube,  # noqa: F401  (a fixture)
    web_deployment,
)
from tests.support.fake_kube import FakeKube

DAY_14 = DAY_7 + 7 * 86_400.0
LEAD_S = 600.0
CPU_CORES = 0.3  # flat: one pod (0.8 cores each) serves it all day


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedSource:
    """Per query: ``cpu`` flat, ``rps`` the daily rise; ``rps`` can be cut off."""

    def __init__(self) -> None:
        self.rps_up = True

    def _value(self, query: MetricQuery[Any], t: float) -> float:
        return CPU_CORES if "cpu" in str(query) else daily_demand(t)

    async def latest(self, query: MetricQuery[Any], now: float) -> Sample | None:
        if "rps" in str(query) and not self.rps_up:
            return None
        at = math.floor(now / 60) * 60
        return Sample(at, self._value(query, at))

    async def history(
        self, query: MetricQuery[Any], start: float, end: float, step: float
    ) -> Series:
        times = np.arange(math.ceil(start / step) * step, end + 1e-6, step)
        return Series(times, np.array([self._value(query, t) for t in times]))

    async def close(self) -> None:
        return None


def web_with_two_metrics() -> dict[str, Any]:
    return {
        "name": "web",
        "kind": "deployment",
        "namespace": "shop",
        "workload": "web",
        "source": "prom",
        "metrics": [
            {"name": "cpu", "query": "sum(cpu)", "unit_capacity": 0.8},
            {"name": "rps", "query": "sum(rps)", "unit_capacity": 100},
        ],
        "lead_time": f"{LEAD_S:g}s",
        "min_units": 1,
        "max_units": 10,
        "max_demand_age": "10m",
        "mode": "active",
    }


async def test_the_largest_metric_decides_and_an_invalid_one_blocks_scale_down(
    factory_harness: FactoryHarness,  # noqa: F811
    kube: tuple[FakeKube, dict[str, Any]],  # noqa: F811
) -> None:
    fake, kube_settings = kube
    fake.seed(web_deployment(2))
    settings = factory_harness.settings(
        [web_with_two_metrics()],
        interval="1s",
        training={"history_window": "14d"},
        kubernetes=kube_settings,
        sources={"prom": {"type": "prometheus", "url": "http://127.0.0.1:9"}},
    )
    assert [t.name for t in settings.targets] == ["web", "web.rps"]
    runtimes = await factory_harness.build(settings)
    clock = Clock(DAY_14 + 11.5 * 3600)
    source = ScriptedSource()
    for runtime in runtimes:
        runtime.reconciler.source = runtime.trainer.source = source
        runtime.reconciler.clock = runtime.trainer.clock = clock
        await runtime.trainer.start()
    # The companion first each minute, so the target reads this minute's post.
    companion, web = runtimes[1], runtimes[0]

    def replicas() -> int:
        return int(fake.get("Deployment", "shop", "web")["spec"]["replicas"])

    peak_at = DAY_14 + RISE_S + 3600
    while clock.now < peak_at:
        await companion.reconciler.tick()
        await web.reconciler.tick()
        clock.now += 60
    written = [line for line in factory_harness.audit_lines("web") if line["written"]]
    assert written, "the target never wrote"
    first = written[0]
    # cpu alone needs one pod all day: every rise came from rps, and says so.
    assert first["desired"] > 2 and first["reason"] == "metric=rps"
    assert "metric=rps" in first["inputs"]["reasons"]
    crossed = crossing(2) + (DAY_14 - DAY_7)
    assert first["inputs"]["now"] <= crossed - LEAD_S, "raised too late for the rps rise"
    assert not [line for line in factory_harness.audit_lines("web.rps") if line["written"]]
    high = replicas()
    assert high >= math.ceil(550 / 100)

    # rps stops answering while demand falls: it is invalid, so nothing scales down.
    source.rps_up = False
    end = DAY_14 + RISE_S + 5 * 3600
    while clock.now < end:
        await companion.reconciler.tick()
        await web.reconciler.tick()
        assert replicas() >= high, "scaled down while a metric was invalid"
        clock.now += 60
    # rps answers again (demand back at its base): the target may now come down. The target
    # ticks first now, reading the post its companion made a (simulated) minute before: a
    # post's freshness is wall time, not the targets' clock, which may run far faster.
    source.rps_up = True
    for _ in range(40):
        await web.reconciler.tick()
        await companion.reconciler.tick()
        clock.now += 60
    assert replicas() < high


def test_the_board_takes_the_largest_fresh_valid_post_and_holds_for_a_missing_one() -> None:
    board = MetricBoard()
    board.publish("web", MetricPost("rps", 6, 0.0, 10.0, valid=True))
    board.publish("web", MetricPost("queue", 4, 0.0, 10.0, valid=True))
    floor = board.floor("web", ("rps", "queue"), now=5.0, current=3)
    assert (floor.units, floor.metric, floor.missing) == (6, "rps", ())
    # Expired: rps is missing, so the floor is at least the current size.
    floor = board.floor("web", ("rps", "queue"), now=11.0, current=8)
    assert (floor.units, floor.metric, floor.missing) == (8, "rps", ("rps", "queue"))
    # An invalid post (its demand was stale) counts as missing even while fresh.
    board.publish("web", MetricPost("rps", 9, 12.0, 20.0, valid=False))
    board.publish("web", MetricPost("queue", 2, 12.0, 20.0, valid=True))
    floor = board.floor("web", ("rps", "queue"), now=13.0, current=5)
    assert (floor.units, floor.metric, floor.missing) == (5, "rps", ("rps",))
