"""``elasticd backtest`` and ``elasticd demo``: replay a trace and show what the plan would do."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from daemon.backtest.report import build_report, run_backtest, summary_lines, write_decisions
from daemon.backtest.synthetic import TraceShape, generate_trace, write_trace_csv
from daemon.backtest.trace import Trace, load_trace
from daemon.backtest.walkforward import PlanConfig
from daemon.core.durations import parse_duration
from daemon.errors import ConfigError, ElasticdError, InputError
from models.threads import capped_threads

# Exit statuses (sysexits.h), so a script can tell a bad trace from a bad config from a crash.
EXIT_DATAERR = 65  # the trace or a flag's value cannot be used
EXIT_CONFIG = 78  # the --config file is invalid, as for `elasticd run`
EXIT_FAILED = 1  # anything else, e.g. an output file that cannot be written


def _report(error: Exception, args: argparse.Namespace) -> int:
    """Print ``error`` as one line and return the exit status for its kind."""
    if isinstance(error, ConfigError):
        from daemon.settings import ConfigFileError

        # A file error's path already names the file; a field error's path does not.
        where = "" if isinstance(error, ConfigFileError) else f"{getattr(args, 'config', '')}: "
        print(f"elasticd: {where}{error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"elasticd: {error}", file=sys.stderr)
    return EXIT_DATAERR if isinstance(error, InputError) else EXIT_FAILED


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_plan_options(parser: argparse.ArgumentParser, *, demo: bool) -> None:
    # With --config the target supplies these; otherwise backtest_command insists on them.
    parser.add_argument(
        "--unit-capacity",
        type=float,
        default=None if not demo else 100.0,
        help="demand one unit (replica, node) serves at 100 %%",
    )
    parser.add_argument(
        "--lead-time",
        type=_duration,
        default=None if not demo else 600.0,
        help="time from requesting a unit until it serves (300, 5m, 1h)",
    )
    parser.add_argument(
        "--warmup",
        type=_duration,
        default=None if not demo else 7 * 86_400.0,
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
    backtest.add_argument(
        "--config", type=Path, help="take the planner settings of a target from this config"
    )
    backtest.add_argument("--target", help="the target of --config to replay (default: first)")
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
    """Replay parameters from the flags, or from a target of ``--config`` where flags are unset."""
    config_path: Path | None = getattr(args, "config", None)
    if config_path is None:
        missing = [
            flag
            for flag, value in (
                ("--unit-capacity", args.unit_capacity),
                ("--lead-time", args.lead_time),
                ("--warmup", args.warmup),
            )
            if value is None
        ]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (or give --config and --target)")
        return PlanConfig(
            unit_capacity=args.unit_capacity,
            lead_s=args.lead_time,
            warmup_s=args.warmup,
            shortfall_target=0.01 if args.shortfall_target is None else args.shortfall_target,
            retrain_every_s=args.retrain_every,
            min_units=args.min_units,
            max_units=args.max_units,
            scale_down_stabilisation_s=args.scale_down_stabilisation,
            seed=args.seed,
        )
    # Imported here: the runtime's mapping pulls in the settings models, which plain replays
    # from flags do not need.
    from daemon.runtime.planning import planner_settings, tournament_settings
    from daemon.settings import load_settings

    settings = load_settings(config_path)
    try:
        target = settings.target(args.target) if args.target else settings.targets[0]
    except KeyError:
        names = ", ".join(t.name for t in settings.targets)
        raise InputError(f"--target {args.target!r} is not in {config_path} ({names})") from None
    planner = planner_settings(target)
    if args.unit_capacity is not None:
        planner = dataclasses.replace(planner, unit_capacity=args.unit_capacity)
    return PlanConfig(
        unit_capacity=planner.unit_capacity,
        lead_s=target.lead_time if args.lead_time is None else args.lead_time,
        warmup_s=7 * 86_400.0 if args.warmup is None else args.warmup,
        shortfall_target=(
            target.shortfall_target if args.shortfall_target is None else args.shortfall_target
        ),
        retrain_every_s=args.retrain_every,
        seed=args.seed,
        planner=planner,
        # The target's own tournament (candidates, window, margins, pin), as the daemon runs it.
        tournament=tournament_settings(target),
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
    write_decisions(result, decisions, progress=args.progress)
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
        config = plan_config(args)
        trace = load_trace(args.trace, progress=args.progress)
        run_and_write(
            trace,
            args.trace.name,
            config,
            args,
            args.decisions_out,
            args.report_out,
            args.plot_out,
        )
    except (ElasticdError, OSError) as error:
        return _report(error, args)
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
        return _report(error, args)
    print(f"wrote {out / 'decisions.csv'}, {out / 'report.json'} and {out / 'plot.png'}")
    return 0
