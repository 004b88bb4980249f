"""`elasticd backtest` on a trace with several value columns replays the several-metrics rule
(the largest need decides; ``daemon.core.metric_floor``) and scores on the units all metrics
need: a step is short when any metric is."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from daemon.backtest.metric_traces import load_metric_traces
from daemon.backtest.replay import score, scored_mask
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.errors import InputError

STEP = 600.0
CPU_CAPACITY, RPS_CAPACITY = 0.8, 150.0


def write_two_metric_trace(path: Path) -> None:
    """rps: a synthetic daily trace; cpu: flat most of the day, but a nightly batch job makes
    it the larger need for two hours a night, so each metric decides part of the time."""
    rps = generate_trace(TraceShape(days=10, step_s=STEP, seed=5, gap_share=0.0))
    with path.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,cpu,rps\n")
        for label, t, value in zip(
            rps.labels, rps.times.tolist(), rps.values.tolist(), strict=True
        ):
            hour = (t % 86_400) / 3600
            cores = 0.5 + (14.0 if 1 <= hour < 3 else 0.0)
            handle.write(f"{label},{cores:g},{value:g}\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("several")
    write_two_metric_trace(out / "t.csv")
    command = [
        sys.executable,
        "-m",
        "daemon",
        "backtest",
        str(out / "t.csv"),
        "--unit-capacity",
        f"{CPU_CAPACITY:g}",
        "--metric",
        f"rps={RPS_CAPACITY:g}",
        "--lead-time",
        "30m",
        "--warmup",
        "3d",
        "--decisions-out",
        str(out / "d.csv"),
        "--report-out",
        str(out / "r.json"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "decided by metric: cpu" in result.stdout and "rps" in result.stdout
    return out, json.loads((out / "r.json").read_text())


def test_both_metrics_decide_and_the_decisions_say_which(
    run: tuple[Path, dict[str, object]],
) -> None:
    out, report = run
    shares = report["plan"]["metrics"]["decided_share"]  # type: ignore[index]
    assert set(shares) == {"cpu", "rps"} and all(share > 0.05 for share in shares.values())
    with (out / "d.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-1] == "metric"
    by_hour: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    traces = dict(load_metric_traces(out / "t.csv"))
    times = traces["cpu"].times
    for t, row in zip(times.tolist()[-len(rows) :], rows, strict=True):
        hour = (t % 86_400) / 3600
        if 1 <= hour < 3 or 8 <= hour < 20:
            by_hour[hour < 3][row["metric"]] += 1
    # The nightly batch is cpu's: it decides then; rps decides the daytime.
    assert by_hour[True]["cpu"] > by_hour[True]["rps"]
    assert by_hour[False]["rps"] > by_hour[False]["cpu"]


def test_it_is_scored_on_the_units_every_metric_needs(
    run: tuple[Path, dict[str, object]],
) -> None:
    out, report = run
    traces = dict(load_metric_traces(out / "t.csv"))
    units = np.fmax(traces["cpu"].values / CPU_CAPACITY, traces["rps"].values / RPS_CAPACITY)
    with (out / "d.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    ready = np.zeros(units.size)
    ready[-len(rows) :] = [float(row["ready"]) for row in rows]
    short = (units > ready) & scored_mask(traces["cpu"].times, units, 3 * 86_400.0)
    mask = scored_mask(traces["cpu"].times, units, 3 * 86_400.0)
    assert math.isclose(report["short_fraction"], short.sum() / mask.sum(), abs_tol=1e-9)  # type: ignore[arg-type]
    # A plan that ignored cpu would be short through every nightly batch: it is not.
    cpu_only_short = (traces["cpu"].values / CPU_CAPACITY > ready) & mask
    assert cpu_only_short.sum() / mask.sum() < 0.05
    assert score  # the scoring rules are the replay's own (imported, not re-implemented)


def test_a_column_without_a_unit_capacity_is_refused(tmp_path: Path) -> None:
    write_two_metric_trace(tmp_path / "t.csv")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "daemon", "backtest", str(tmp_path / "t.csv")),
            *("--unit-capacity", "1", "--lead-time", "30m", "--warmup", "3d"),
            *("--decisions-out", str(tmp_path / "d.csv")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "no unit capacity for ['rps']" in result.stderr


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp,a,a\n2026-01-01T00:00:00Z,1,2\n2026-01-01T00:10:00Z,1,2\n")
    with pytest.raises(InputError, match="distinct names"):
        load_metric_traces(path)


def test_the_plot_marks_which_metric_decided(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from daemon.backtest.plot import draw
    from daemon.backtest.report import run_backtest
    from daemon.backtest.walkforward import MetricReplay, PlanConfig

    write_two_metric_trace(tmp_path / "t.csv")
    (_, cpu), (_, rps) = load_metric_traces(tmp_path / "t.csv")
    config = PlanConfig(unit_capacity=CPU_CAPACITY, lead_s=1800.0, warmup_s=3 * 86_400.0)
    further = (MetricReplay("rps", rps, PlanConfig(RPS_CAPACITY, 1800.0, 3 * 86_400.0)),)
    result = run_backtest(cpu, config, progress=False, metric="cpu", further=further)
    figure = draw(result, "two metrics")
    labels = {text for axes in figure.axes for text in axes.get_legend_handles_labels()[1]}
    assert {"decided by cpu", "decided by rps"} <= labels
    assert any("largest any metric needs" in axes.get_ylabel() for axes in figure.axes)
