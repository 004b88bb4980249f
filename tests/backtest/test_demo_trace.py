"""`make demo` backtests the demand the demo daemon then plays, so the numbers match."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.runtime.app import simulator_trace
from daemon.settings import SimulatorSourceConfig, load_settings

REPO = Path(__file__).parents[2]
LOCAL = REPO / "config" / "local.yaml"


def _local_source() -> SimulatorSourceConfig:
    settings = load_settings(LOCAL)
    source = settings.sources[settings.targets[0].source]
    assert isinstance(source, SimulatorSourceConfig)
    return source


def test_the_local_simulator_replays_the_same_demand_whenever_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = _local_source()
    first = simulator_trace(source)
    # A generated trace without a fixed start begins at the wall clock: the backtest and the
    # daemon, started minutes apart, would replay different demand.
    monkeypatch.setattr("time.time", lambda: 1_900_000_000.0)
    later = simulator_trace(source)
    assert np.array_equal(first.times, later.times)
    assert np.array_equal(first.values, later.values, equal_nan=True)


def test_elasticd_demo_generates_that_very_trace() -> None:
    local = simulator_trace(_local_source())
    demo = generate_trace(TraceShape(days=28.0, seed=7))  # `elasticd demo`'s defaults
    assert np.array_equal(local.times, demo.times)
    assert np.array_equal(local.values, demo.values, equal_nan=True)


def _recipe(target: str) -> list[list[str]]:
    """The commands of a Makefile target, continuation lines joined."""
    text = (REPO / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    block = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert block is not None, target
    return [shlex.split(line.strip().lstrip("@")) for line in block.group(1).splitlines()]


def test_make_demo_backtests_the_daemons_config_over_the_whole_trace() -> None:
    commands = _recipe("demo")
    (backtest,) = [c for c in commands if c[1:2] == ["backtest"]]
    (run,) = [c for c in commands if c[1:2] == ["run"]]
    config = backtest[backtest.index("--config") + 1]
    assert config == run[run.index("--config") + 1] == "config/local.yaml"
    settings = load_settings(REPO / config)
    assert backtest[backtest.index("--target") + 1] == settings.targets[0].name
    trace = simulator_trace(_local_source())
    span_days = (trace.times[-1] - trace.times[0] + trace.step_s) / 86_400
    since = backtest[backtest.index("--since") + 1]
    assert since == f"{span_days:g}d"
