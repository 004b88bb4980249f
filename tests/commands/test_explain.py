"""``elasticd explain`` on temporary configurations, asserting on what it prints."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from daemon.cli import main
from daemon.commands.explain import explain as explain_lines
from daemon.commands.explain import read_history
from daemon.core.tournament import Tournament, TournamentInputs
from daemon.forecasting import TargetForecaster
from daemon.runtime.app import decision_state_dir
from daemon.runtime.decision_state import DecisionStateStore, StateKey, decode, encode
from daemon.runtime.planning import (
    conformal_settings,
    forecast_settings,
    planner_settings,
    tick_delay,
    tournament_settings,
)
from daemon.settings import Settings, TargetConfig, load_settings

CONFIG_DIR = Path(__file__).parents[2] / "config"


def aws_config(state_dir: Path, **target: Any) -> dict[str, Any]:
    """config/aws.yaml with a private state_dir, a business-hours floor and a launch override."""
    config: dict[str, Any] = yaml.safe_load((CONFIG_DIR / "aws.yaml").read_text(encoding="utf-8"))
    config["state_dir"] = str(state_dir)
    config["audit"]["path"] = str(state_dir / "decisions.jsonl")
    workers = config["targets"][0]
    workers["schedules"].append(
        {
            "name": "month-end",
            "cron": "0 9 28 * *",
            "duration": "8h",
            "timezone": "America/New_York",
            "min_units": 12,
        }
    )
    workers["overrides"] = [
        {
            "name": "launch",
            "start": "2024-11-04T10:00:00-05:00",
            "end": "2024-11-04T12:00:00-05:00",
            "desired_units": 25,
        }
    ]
    workers.update(target)
    return config


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def explain(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> tuple[int, str, str]:
    code = main(["explain", "--config", str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # A weekday night: the weeknights-off window holds at zero until 06:55 (lead 5m).
        (
            "2024-05-01T23:00-04:00",
            [
                "schedule: schedule 'weeknights-off'",
                "  effective: min 0, max 0, desired -",
                "  next change: 2024-05-02T06:55-04:00 (in 7h 55m): no schedule or override",
                "units: desired 0, current 0 (assumed",
            ],
        ),
        # Weekday daytime: the target's own bounds until the evening.
        (
            "2024-05-01T12:00-04:00",
            [
                "schedule: no schedule or override: the target's own bounds",
                "  effective: min 2, max 30, desired -",
                "  next change: 2024-05-01T19:00-04:00 (in 7h): schedule 'weeknights-off' "
                "(min 0, max 0, desired -)",
            ],
        ),
        # DST starts on Sunday 2024-03-10: the weekend window still ends at 07:00 New York
        # time (06:55 with the lead time), 41 h 55 min after Saturday noon, not 42 h 55 min.
        (
            "2024-03-09T12:00-05:00",
            [
                "schedule: schedule 'weekends-off'",
                "  next change: 2024-03-11T06:55-04:00 (in 1d 17h 55m): no schedule or override",
            ],
        ),
        # DST ends on Sunday 2024-11-03: 43 h 55 min later.
        (
            "2024-11-02T12:00-04:00",
            ["  next change: 2024-11-04T06:55-05:00 (in 1d 19h 55m): no schedule or override"],
        ),
        # A raising window is in force a lead time before it starts (09:00 - 5m).
        (
            "2024-05-28T08:55-04:00",
            [
                "schedule: schedule 'month-end'",
                "  effective: min 12, max 30, desired -",
                "units: desired 12, current 12 (assumed",
            ],
        ),
        (
            "2024-05-28T08:54-04:00",
            ["  next change: 2024-05-28T08:55-04:00 (in 1m): schedule 'month-end'"],
        ),
        # The one-off override beats the schedules (a Monday morning) and pins 25 units.
        (
            "2024-11-04T11:00-05:00",
            [
                "schedule: override 'launch'",
                "  effective: min 2, max 30, desired 25",
                "units: desired 25, current 25 (assumed",
            ],
        ),
    ],
)
def test_schedule_in_force_and_next_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], at: str, expected: list[str]
) -> None:
    code, out, _ = explain(
        capsys, write(tmp_path, aws_config(tmp_path)), "-t", "workers", "--at", at
    )
    assert code == 0
    assert out.startswith("target workers (asg, forecast-only) at ")
    for line in expected:
        assert any(printed.startswith(line) for printed in out.splitlines()), (line, out)


def test_without_a_model_it_explains_with_the_bounds_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, aws_config(tmp_path))
    _, out, _ = explain(
        capsys, path, "-t", "workers", "--at", "2024-05-01T12:00Z", "--current", "40"
    )
    models = tmp_path / "models" / "workers.json"
    assert f"forecast: none: no trained model at {models}; explaining with the bounds only" in out
    assert "demand: not read" in out
    # 40 is above the max: the missing metrics hold it, then the bound cuts it.
    assert "units: desired 30, current 40; reasons: hold_missing_metrics -> clamped_max" in out
    assert "above max: honor" in out
    # Nothing was written: not the state directory, not an audit log.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elasticd.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "nope"], "no target 'nope' (targets: workers)"),
        (["-t", "workers", "--at", "2024-05-01T12:00"], "has no UTC offset"),
        (["-t", "workers", "--at", "soon"], "--at:"),
        (["-t", "workers", "--current", "-1"], "--current must be >= 0"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = explain(capsys, write(tmp_path, aws_config(tmp_path)), *args)
    assert code == 2
    assert message in err


def test_default_time_is_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, write(tmp_path, aws_config(tmp_path)), "-t", "workers")
    assert code == 0 and "next change: " in out


# -- pods and nodes -----------------------------------------------------------------------------


def kubernetes_config(state_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        (CONFIG_DIR / "kubernetes.yaml").read_text(encoding="utf-8")
    )
    config["state_dir"] = str(state_dir)
    config.pop("audit", None)
    return config


def test_layers_for_a_deployment_and_its_node_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, kubernetes_config(tmp_path))
    # Inside the black-friday override: 60 pods; 6 pods per node (3.62 cores / 0.5 -> 7,
    # 13.4 Gi / 0.5 Gi -> 26, so 7), 60 / 7 -> 9 nodes.
    _, out, _ = explain(
        capsys, path, "-t", "web", "--at", "2025-11-28T12:00-05:00", "--current", "20"
    )
    lines = out.splitlines()
    assert "schedule: override 'black-friday'" in lines
    assert "pods: desired 60, current 20; reasons: hold_missing_metrics -> clamped_min" in lines
    assert "nodes (web-nodes, lead time 4m): desired 9; reasons: pods_desired" in lines
    assert "  pods_current: 20 pods -> 3 nodes" in lines
    assert "  pods_desired: 60 pods -> 9 nodes" in lines
    models = tmp_path / "models" / "web+nodes.json"
    assert any(
        line.startswith(f"  node_forecast: none: no trained model at {models}") for line in lines
    )


# -- with a saved model -------------------------------------------------------------------------

AT = "2024-05-08T10:00:00+00:00"


def simulator_config(state_dir: Path) -> dict[str, Any]:
    return {
        "state_dir": str(state_dir),
        "training": {"history_window": "5d"},
        "sources": {
            "sim": {
                "type": "simulator",
                "generate": {"days": 9, "step": "5m", "seed": 3},
                "start": "2024-05-01T00:00:00+00:00",
            }
        },
        "targets": [
            {
                "name": "checkout",
                "kind": "simulator",
                "source": "sim",
                "unit_capacity": 50,
                "lead_time": "10m",
                "min_units": 2,
                "max_units": 30,
                "max_demand_age": "30m",
                "schedules": [
                    {
                        "name": "night-cap",
                        "cron": "0 22 * * *",
                        "duration": "8h",
                        "timezone": "Europe/Berlin",
                        "max_units": 10,
                    }
                ],
            }
        ],
    }


def train_and_save(settings: Settings, target: TargetConfig, at: float) -> None:
    """Fit the model as the runtime's trainer would, on history up to ``at``, and save it."""
    step = 300.0
    forecaster = TargetForecaster(
        forecast_settings(target, settings.training, step, interval_s=tick_delay(settings, target))
    )
    times, values = read_history(settings, target, at - 6 * 86_400, at, step)
    forecaster.load_history(times, values)
    forecaster.train_on(times, values, at)
    forecaster.save(settings.state_dir / "models", target.name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("explain")
    path = write(directory, simulator_config(directory / "state"))
    settings = load_settings(path)
    train_and_save(settings, settings.targets[0], datetime.fromisoformat(AT).timestamp())
    assert (directory / "state" / "models" / "checkout.json").exists()
    return path


def test_with_a_saved_model_the_forecast_drives_the_decision(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(capsys, trained, "-t", "checkout", "--at", AT)
    assert code == 0
    forecast = next(line for line in out.splitlines() if line.startswith("forecast: "))
    assert forecast.startswith("forecast: peak ")
    assert "from model; " in forecast and "points of history from 'sim'" in forecast
    demand = next(line for line in out.splitlines() if line.startswith("demand: "))
    assert demand.endswith(", 0s old")
    units = next(line for line in out.splitlines() if line.startswith("units: "))
    assert "reasons: forecast" in units or "reasons: reactive_floor" in units
    # Times print on the schedules' own clock: Berlin, +02:00 in May.
    assert out.startswith("target checkout (simulator, forecast-only) at 2024-05-08T12:00+02:00")


def test_a_source_that_cannot_be_reached_is_said_and_the_bounds_explain(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(*_: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        raise ConnectionRefusedError("connection refused")

    settings = load_settings(trained)
    lines = explain_lines(
        settings, settings.targets[0], datetime.fromisoformat(AT), reader=unreachable
    )
    assert (
        "forecast: none: source 'sim' not reachable (connection refused); "
        "explaining with the bounds only"
    ) in lines


def test_a_model_for_another_lead_time_is_refused(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load(trained.read_text(encoding="utf-8"))
    config["targets"][0]["lead_time"] = "30m"
    _, out, _ = explain(capsys, write(tmp_path, config), "-t", "checkout", "--at", AT)
    assert "forecast: none: saved model refused: " in out
    assert "lead_steps" in out


def test_the_saved_scoreboard_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, simulator_config(tmp_path / "state"))
    settings = load_settings(path)
    target = settings.targets[0]
    code, out, _ = explain(capsys, path, "-t", target.name, "--at", AT)
    assert code == 0
    assert "policies: no scoreboard saved yet" in out

    # What the daemon's reconciler saves: its tournament after some steps.
    forecast = forecast_settings(
        target, settings.training, 300.0, interval_s=tick_delay(settings, target)
    )
    tournament = Tournament(
        tournament_settings(target),
        planner_settings(target),
        TargetForecaster(forecast).calibration_settings(),
        conformal_settings(forecast),
    )
    start = datetime.fromisoformat(AT).timestamp()
    for i in range(50):
        tournament.step(
            TournamentInputs(
                now=start + 300.0 * i,
                current_units=3,
                ready_units=3,
                demand=200.0,
                forecasts={"model": (220.0, "model"), "seasonal_naive": (240.0, "seasonal_naive")},
            )
        )
    key = StateKey(target.unit_capacity, target.lead_time, target.shortfall_target)
    DecisionStateStore(decision_state_dir(settings)).save_tournament(
        target.name, key, tournament.to_json((encode, decode))
    )

    code, out, _ = explain(capsys, path, "-t", target.name, "--at", AT)

    assert code == 0
    board = out[out.index("policies:") :].splitlines()
    assert board[0].startswith("policies: acting on model")
    names = {line.replace("*", " ").split()[0] for line in board[1:4]}
    assert names == {"model", "reactive", "seasonal_naive"}
    assert board[1].lstrip().startswith("* model")
