"""`elasticd backtest` end to end: files written, report recomputable from the decisions file."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon.backtest.replay import oracle_decisions, replay_decisions, score, scored_mask
from daemon.backtest.synthetic import TraceShape, generate_trace, write_trace_csv
from daemon.backtest.trace import load_trace
from models.features import lead_steps_for


@pytest.fixture(scope="module")
def backtest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("backtest")
    write_trace_csv(generate_trace(TraceShape(days=10, step_s=600.0, seed=5)), str(out / "t.csv"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "backtest",
            str(out / "t.csv"),
            "--unit-capacity",
            "150",
            "--lead-time",
            "30m",
            "--warmup",
            "3d",
            "--shortfall-target",
            "0.01",
            "--decisions-out",
            str(out / "d.csv"),
            "--report-out",
            str(out / "r.json"),
            "--plot-out",
            str(out / "p.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "plan: cost_ratio" in result.stdout
    return out, json.loads((out / "r.json").read_text())


def test_report_numbers_recompute_from_the_decisions_file(
    backtest_run: tuple[Path, dict[str, object]],
) -> None:
    out, report = backtest_run
    trace = load_trace(out / "t.csv")
    with (out / "d.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:2] == ["timestamp", "desired"]
    assert [row["timestamp"] for row in rows] == list(trace.labels)
    desired = [int(row["desired"]) for row in rows]
    lead_s, unit, warmup = 1800.0, 150.0, 3 * 86_400.0
    log = replay_decisions(trace.times, lead_s, desired)
    scored = scored_mask(trace.times, trace.values, warmup)
    plan = score(trace.values, log.ready, log.billed, scored, unit)
    k = lead_steps_for(lead_s, trace.step_s)
    oracle = replay_decisions(trace.times, lead_s, oracle_decisions(trace.values, unit, k).tolist())
    oracle_billed = score(trace.values, oracle.ready, oracle.billed, scored, unit).billed_units
    assert plan.short_fraction == pytest.approx(report["short_fraction"])
    assert plan.unserved_fraction == pytest.approx(report["unserved_fraction"])
    assert plan.cost_ratio(oracle_billed) == pytest.approx(report["cost_ratio"])


def test_report_compares_both_baselines_and_the_plot_is_a_png(
    backtest_run: tuple[Path, dict[str, object]],
) -> None:
    out, report = backtest_run
    baselines = report["baselines"]
    assert isinstance(baselines, dict) and set(baselines) == {"hpa", "ec2_predictive"}
    for baseline in baselines.values():
        assert {"at_equal_cost", "at_equal_shortfall", "sweep"} <= set(baseline)
        costs = [point["cost_ratio"] for point in baseline["sweep"]]
        assert costs == sorted(costs, reverse=True)  # higher utilisation, cheaper
    assert float(report["cost_ratio"]) >= 1.0 or float(report["short_fraction"]) > 0
    assert (out / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(float(report["cost_ratio"]))


def test_config_supplies_the_targets_planner_settings(
    backtest_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    out, _ = backtest_run
    config = tmp_path / "elasticd.yaml"
    config.write_text(
        "sources:\n  prom: {type: prometheus, url: 'http://127.0.0.1:9090'}\n"
        "targets:\n  - name: web\n    kind: deployment\n    namespace: shop\n"
        "    workload: web\n    source: prom\n    query: sum(rate(x[1m]))\n"
        "    unit_capacity: 150\n    lead_time: 20m\n    min_units: 2\n    max_units: 40\n"
        "    reactive_utilisation: 0.7\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "backtest",
            str(out / "t.csv"),
            "--config",
            str(config),
            "--target",
            "web",
            "--warmup",
            "3d",
            "--decisions-out",
            str(tmp_path / "d.csv"),
            "--report-out",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parameters = json.loads((tmp_path / "r.json").read_text())["parameters"]
    assert parameters["lead_time_s"] == 1200.0
    assert parameters["reactive_utilisation"] == 0.7
    assert (parameters["min_units"], parameters["max_units"]) == (2, 40)
    with (tmp_path / "d.csv").open() as handle:
        desired = [int(row["desired"]) for row in csv.DictReader(handle)]
    assert min(desired) >= 2 and max(desired) <= 40
