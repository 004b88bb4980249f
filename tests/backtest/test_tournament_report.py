"""report.json shows each policy's share of active time and the switch log; the plot marks
switches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from daemon.backtest.plot import write_plot
from daemon.backtest.report import build_report, run_backtest, write_decisions
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.walkforward import PlanConfig
from daemon.core.tournament import REACTIVE, Switch, TournamentSettings


def test_the_report_gives_active_shares_and_the_switch_log(tmp_path: Path) -> None:
    trace = generate_trace(TraceShape(days=4, step_s=900.0, seed=4))
    config = PlanConfig(
        unit_capacity=100.0,
        lead_s=1800.0,
        warmup_s=86_400.0,
        tournament=TournamentSettings(pin=REACTIVE),
    )
    result = run_backtest(trace, config, progress=False)
    report = build_report(result, "gen")["plan"]["tournament"]
    assert report["active_share"][REACTIVE] == 1.0
    assert sum(report["active_share"].values()) == 1.0
    names = {row["name"] for row in report["scoreboard"]}
    assert {"model", "reactive", "seasonal_naive"} <= names
    # Every promotion of a new model is in the log, with its explanation.
    assert [s["kind"] for s in report["switches"]] == [e.kind for e in result.plan.switches]
    assert all(s["explanation"] for s in report["switches"])
    decisions = tmp_path / "decisions.csv"
    write_decisions(result, decisions)
    header, first = decisions.read_text().splitlines()[:2]
    assert header.endswith(",policy") and first.endswith(",reactive")

    switched = replace(
        result,
        plan=replace(
            result.plan,
            switches=(Switch(float(trace.times[-10]), "switch", "model", REACTIVE, "test"),),
        ),
    )
    plot = tmp_path / "plot.png"
    write_plot(switched, plot, "gen")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
