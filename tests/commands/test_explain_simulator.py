"""``elasticd explain`` on the simulator config (config/local.yaml), as a new user runs it:
no ``--at``, a model the daemon saved. It must forecast from the simulator's history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.cli import main
from daemon.commands.explain import default_time, read_history
from daemon.forecasting import TargetForecaster
from daemon.runtime.planning import forecast_settings, tick_delay
from daemon.settings import load_settings

LOCAL = Path(__file__).parents[2] / "config" / "local.yaml"
WEEK_OF_5M_STEPS = 7 * 288


def test_explain_forecasts_from_a_week_of_the_simulators_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config: dict[str, Any] = yaml.safe_load(LOCAL.read_text(encoding="utf-8"))
    config["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(path)
    target = settings.targets[0]

    # The model as the daemon's start-up fit saves it: at the simulated start, on its history.
    at = default_time(settings, target).timestamp()
    step = 300.0
    forecaster = TargetForecaster(
        forecast_settings(target, settings.training, step, interval_s=tick_delay(settings, target))
    )
    times, values = read_history(settings, target, at - 7 * 86_400, at, step)
    forecaster.load_history(times, values)
    forecaster.train_on(times, values, at)
    forecaster.save(settings.state_dir / "models", target.name)

    assert main(["explain", "-c", str(path), "-t", target.name]) == 0
    out = capsys.readouterr().out
    # Where the daemon's replay starts: a week into the trace (2026-01-05 + 7d, in Berlin).
    assert out.startswith("target checkout (simulator, active) at 2026-01-12T01:00+01:00")
    forecast = next(line for line in out.splitlines() if line.startswith("forecast: "))
    assert forecast.startswith("forecast: peak ") and "from model" in forecast
    points = re.search(r"(\d+) points of history from 'sim'", forecast)
    assert points is not None, forecast
    assert int(points.group(1)) >= WEEK_OF_5M_STEPS
    demand = next(line for line in out.splitlines() if line.startswith("demand: "))
    assert demand.endswith(", 0s old")
