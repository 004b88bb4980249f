"""``elasticd backtest`` and ``elasticd demo``: replay a trace and show what the plan would do."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from daemon.backtest.report import build_report, run_backtest, summary_lines, write_decisions
from daemon.backtest.synthetic import TraceShape, generate_trace, write_trace_csv
from daemon.backtest.trace import Trace, load_trace
from daemon.backtest.walkforward import PlanConfig
from daemon.core.durations import parse_duration
from daemon.errors import ElasticdError, InputError
from models.threads import capped_threads


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_plan_options(parser: argparse.ArgumentParser, *, demo: bool) -> None:
    required = not demo
    parser.add_argument(
        "--unit-capacity",
        type=float,
        required=required,
        default=None if required else 100.0,
        help="demand one unit (replica, node) serves at 100 %%",
    )
    parser.add_argument(
        "--lead-time",
        type=_duration,
        required=required,
        default=None if required else 600.0,
        help="time from requesting a unit until it serves (300, 5m, 1h)",
    )
    parser.add_argument(
        "--warmup",
        type=_duration,
        required=required,
        default=None if required else 7 * 86_400.0,
        help="history-only prefix of the trace, not scored (e.g. 7d)",
    )
    parser.add_argument(
        "--shortfall-target",
        type=float,
        default=0.01,
        help="share of steps the plan may be short (default 0.01)",
    )
    parser.add_argument(
        "--retrain-every",
        type=_duration,
        default=86_400.0,
        help="walk-forward retraining cadence (default 1d)",
    )
    parser.add_argument("--min-units", type=int, default=0)
    parser.add_argument("--max-units", type=int, default=1_000_000)
    parser.add_argument(
        "--scale-down-stabilisation",
        type=_duration,
        default=0.0,
        help="keep the highest recommendation of this window on scale-down "
        "(default 0: the forecast already covers the lead time's peak)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )


def register(subparsers: Any) -> None:
    backtest = subparsers.add_parser(
        "backtest",
        help="replay a demand trace through the planner and score it",
        description="Replay TRACE.csv (timestamp,value) walk-forward through the same models "
        "and planner as the daemon, and compare with the HPA and EC2 predictive rules.",
    )
    backtest.add_argument("trace", type=Path, help="CSV with header timestamp,value")
    _add_plan_options(backtest, demo=False)
    backtest.add_argument("--decisions-out", type=Path, required=True)
    backtest.add_argument("--report-out", type=Path)
    backtest.add_argument("--plot-out", type=Path)
    backtest.set_defaults(handler=backtest_command)

    demo = subparsers.add_parser(
        "demo",
        help="backtest a demand trace elasticd generates itself (no cluster, no cloud)",
    )
    demo.add_argument("--out-dir", type=Path, default=Path("demo-out"))
    demo.add_argument("--days", type=float, default=28.0)
    _add_plan_options(demo, demo=True)
    demo.set_defaults(handler=demo_command)


def plan_config(args: argparse.Namespace) -> PlanConfig:
    return PlanConfig(
        unit_capacity=args.unit_capacity,
        lead_s=args.lead_time,
        warmup_s=args.warmup,
        shortfall_target=args.shortfall_target,
        retrain_every_s=args.retrain_every,
        min_units=args.min_units,
        max_units=args.max_units,
        scale_down_stabilisation_s=args.scale_down_stabilisation,
        seed=args.seed,
    )


def run_and_write(
    trace: Trace,
    name: str,
    config: PlanConfig,
    args: argparse.Namespace,
    decisions: Path,
    report_path: Path | None,
    plot_path: Path | None,
) -> dict[str, Any]:
    with capped_threads():
        result = run_backtest(trace, config, progress=args.progress)
    report = build_report(result, name)
    write_decisions(result, decisions)
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if plot_path is not None:
        from daemon.backtest.plot import write_plot  # matplotlib is slow to import

        write_plot(result, plot_path, name)
    for line in summary_lines(report):
        print(line)
    return report


def backtest_command(args: argparse.Namespace) -> int:
    try:
        if not args.unit_capacity > 0:
            raise InputError(f"--unit-capacity must be > 0, got {args.unit_capacity}")
        trace = load_trace(args.trace)
        run_and_write(
            trace,
            args.trace.name,
            plan_config(args),
            args,
            args.decisions_out,
            args.report_out,
            args.plot_out,
        )
    except (ElasticdError, OSError) as error:
        print(f"elasticd: {error}", file=sys.stderr)
        return 1
    return 0


def demo_command(args: argparse.Namespace) -> int:
    out: Path = args.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        trace = generate_trace(TraceShape(days=args.days, seed=args.seed + 7))
        write_trace_csv(trace, str(out / "trace.csv"))
        print(f"generated {out / 'trace.csv'}: {args.days:g} days of synthetic demand")
        run_and_write(
            trace,
            "generated trace",
            plan_config(args),
            args,
            out / "decisions.csv",
            out / "report.json",
            out / "plot.png",
        )
    except (ElasticdError, OSError) as error:
        print(f"elasticd: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out / 'decisions.csv'}, {out / 'report.json'} and {out / 'plot.png'}")
    return 0
