"""The backtest plot: capacity behind demand, the unit on the y axis, the summary's figures in
its title; and without matplotlib (the optional ``plot`` extra) a note instead of a crash."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D

from daemon.backtest.plot import draw
from daemon.backtest.report import Backtest, build_report, run_backtest, summary_lines
from daemon.backtest.synthetic import TraceShape, generate_trace, write_trace_csv
from daemon.backtest.walkforward import PlanConfig
from daemon.cli import main

SHAPE = TraceShape(days=4, step_s=900.0, seed=4)
CONFIG = PlanConfig(unit_capacity=100.0, lead_s=1800.0, warmup_s=86_400.0)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def result() -> Backtest:
    return run_backtest(generate_trace(SHAPE), CONFIG, progress=False)


def test_the_title_shows_the_summarys_plan_and_hpa_figures(result: Backtest) -> None:
    report = build_report(result, "gen")
    title = draw(result, "gen", report=report).get_suptitle().splitlines()
    summary = summary_lines(report)
    (hpa,) = [line for line in summary if line.startswith("hpa: ")]
    assert hpa in title
    (plan,) = [line for line in summary if line.startswith("plan: ")]
    (plan_title,) = [line for line in title if line.startswith("plan: ")]
    # The summary adds only the replay's run time and fit count.
    assert plan.startswith(plan_title + "  (")


def _artist(axes: object, label: str) -> object:
    (found,) = [
        a
        for a in (*axes.collections, *axes.lines)  # type: ignore[attr-defined]
        if a.get_label() == label or a.get_label().startswith(label + " (")
    ]
    return found


def test_capacity_is_a_filled_area_behind_the_demand_line(result: Backtest) -> None:
    figure = draw(result, "gen", unit="requests/s")
    whole, zoom = figure.axes[0], figure.axes[1]
    for axes, capacity_label in ((whole, "plan capacity"), (zoom, "plan capacity")):
        capacity = _artist(axes, capacity_label)
        demand = _artist(axes, "demand")
        assert isinstance(capacity, PolyCollection) and isinstance(demand, Line2D)
        assert demand.get_zorder() > capacity.get_zorder()
        # In front of every other line too (the baselines' capacity in the zoom).
        others = [line for line in axes.lines if line is not demand]
        assert all(demand.get_zorder() > line.get_zorder() for line in others)
        assert axes.get_ylabel() == "demand and capacity (requests/s)"


def test_without_the_unit_the_axis_says_it_is_the_traces(result: Backtest) -> None:
    assert draw(result, "gen").axes[0].get_ylabel() == "demand and capacity (the trace's unit)"


def test_without_matplotlib_backtest_writes_all_but_the_plot_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.csv"
    write_trace_csv(generate_trace(SHAPE), str(trace))
    # As if the extra were not installed: ``import matplotlib`` fails.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = {name: tmp_path / name for name in ("decisions.csv", "report.json", "plot.png")}
    code = main(
        [
            "backtest",
            str(trace),
            "--unit-capacity=100",
            "--lead-time=30m",
            "--warmup=1d",
            "--no-progress",
            f"--decisions-out={out['decisions.csv']}",
            f"--report-out={out['report.json']}",
            f"--plot-out={out['plot.png']}",
        ]
    )
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stderr.strip().splitlines() == [
        "elasticd: no plot written: plotting needs matplotlib, the optional extra "
        "(pip install 'elasticd[plot]')"
    ]
    assert "plan: cost_ratio" in stdout
    assert out["decisions.csv"].stat().st_size > 0 and out["report.json"].stat().st_size > 0
    assert not out["plot.png"].exists()
