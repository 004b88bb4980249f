"""``elasticd backtest`` and ``elasticd demo``: replay a trace and show what the plan would do.

The demand comes from a trace file, from a target's own source (``--config`` without a trace),
or from a Prometheus query (``--prometheus``); all three reach the one replay as a ``Trace``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.backtest.metric_traces import load_metric_traces
from daemon.backtest.report import build_report, run_backtest, summary_lines, write_decisions
from daemon.backtest.synthetic import TraceShape, generate_trace, write_trace_csv
from daemon.backtest.trace import Trace
from daemon.backtest.walkforward import MetricReplay, PlanConfig
from daemon.core.durations import parse_duration
from daemon.errors import (
    ConfigError,
    ElasticdError,
    InputError,
    PermanentSourceError,
    TransientSourceError,
)
from models.threads import capped_threads

if TYPE_CHECKING:
    from daemon.backtest.from_source import History
    from daemon.settings import Settings, TargetConfig

# Exit statuses (sysexits.h), so a script can tell a bad trace from a bad config from a crash.
EXIT_DATAERR = 65  # the trace, a flag's value or the query cannot be used
EXIT_UNAVAILABLE = 69  # the metrics source could not be read (unreachable, 5xx, throttled)
EXIT_CONFIG = 78  # the --config file is invalid, as for `elasticd run`
EXIT_FAILED = 1  # anything else, e.g. an output file that cannot be written

# Without --unit-capacity, a Prometheus query's backtest sizes units at its peak over this
# many, so the plan has room to move; the report is about timing more than unit size then.
UNITS_AT_PEAK = 20
# Without --lead-time, as the daemon's CloudWatch example: launch, boot and join.
DEFAULT_LEAD_S = 300.0
# The longest default warm-up: a week, so weekly lags have history (half a shorter read).
MAX_DEFAULT_WARMUP_S = 7 * 86_400.0

DESCRIPTION = """\
Replay demand walk-forward through the same models and planner as the daemon, and compare
with the HPA and EC2 predictive rules. The demand comes from one of three places:

  1. a trace file:  TRACE.csv --unit-capacity N --lead-time D --warmup D
                    or TRACE.csv --config FILE [--target NAME] for a target's settings
  2. a target:      --config FILE [--target NAME] [--since 14d] [--step S]
                    reads the target's own query from its Prometheus or CloudWatch source,
                    at the step the daemon forecasts it on, and replays it with its settings
  3. a Prometheus:  --prometheus URL --query PROMQL [--since 14d] [--step 1m]
                    [--unit-capacity N] [--lead-time D] (no config; default unit capacity:
                    the peak over 20; lead time 5m; PROMETHEUS_BEARER_TOKEN is sent if set)

--decisions-out is required in every mode. Reading from a source, the warm-up defaults to
half of what was read, at most 7d, and --trace-out saves the history as a trace file."""

EPILOG = """\
examples:
  elasticd backtest demand.csv --unit-capacity 120 --lead-time 10m --warmup 7d \\
      --decisions-out decisions.csv
  elasticd backtest --config /etc/elasticd/elasticd.yaml --target web --since 14d \\
      --decisions-out decisions.csv --report-out report.json --plot-out plot.png
  elasticd backtest --prometheus http://prometheus:9090 \\
      --query 'sum(rate(http_requests_total{job="web"}[2m]))' \\
      --unit-capacity 50 --lead-time 90s --decisions-out decisions.csv
  elasticd backtest --config config/local.yaml --target checkout --since 28d \\
      --unit requests/s --decisions-out decisions.csv --plot-out plot.png
      (in a clone: the demo's simulator, as `make demo` replays it)

Prometheus ranges are read in requests of at most 10,000 points. CloudWatch keeps one-minute
points for 15 days; for a longer --since give --step 5m (63 days) or 1h.

exit status: 0 done, 65 unusable trace, flag or query, 69 source unreachable,
78 invalid --config, 1 anything else"""


def _report(error: Exception, args: argparse.Namespace) -> int:
    """Print ``error`` as one line and return the exit status for its kind."""
    if isinstance(error, ConfigError):
        from daemon.settings import ConfigFileError

        # A file error's path already names the file; a field error's path does not.
        where = "" if isinstance(error, ConfigFileError) else f"{getattr(args, 'config', '')}: "
        print(f"elasticd: {where}{error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"elasticd: {error}", file=sys.stderr)
    if isinstance(error, InputError | PermanentSourceError):
        return EXIT_DATAERR
    if isinstance(error, TransientSourceError):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


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
        "--unit",
        default=None if not demo else "requests/s",
        help="the demand's unit, for the plot's y axis (e.g. requests/s)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )


def register(subparsers: Any) -> None:
    backtest = subparsers.add_parser(
        "backtest",
        help="replay demand (a trace, a target's source, a Prometheus query) and score it",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backtest.add_argument(
        "trace", type=Path, nargs="?", help="CSV with header timestamp,value (mode 1)"
    )
    _add_plan_options(backtest, demo=False)
    backtest.add_argument(
        "--decisions-out", type=Path, required=True, help="CSV of every step's decision"
    )
    backtest.add_argument("--report-out", type=Path, help="JSON report")
    backtest.add_argument("--plot-out", type=Path, help="PNG plot")
    backtest.add_argument(
        "--config",
        type=Path,
        help="a target's settings from this config; without TRACE, its history too (mode 2)",
    )
    backtest.add_argument("--target", help="the target of --config to replay (default: first)")
    backtest.add_argument(
        "--metric",
        action="append",
        metavar="NAME=UNIT_CAPACITY",
        help="a trace with several value columns (timestamp,cpu,rps): the unit capacity of "
        "each further column, e.g. --metric rps=50; the first column uses --unit-capacity",
    )
    source = backtest.add_argument_group("reading the history from a source (modes 2 and 3)")
    source.add_argument(
        "--prometheus", metavar="URL", help="Prometheus base URL, with --query (mode 3)"
    )
    source.add_argument("--query", metavar="PROMQL", help="one-series PromQL (mode 3)")
    source.add_argument(
        "--since",
        type=_duration,
        default=None,
        help="how much history to read, up to now (default 14d)",
    )
    source.add_argument(
        "--step",
        type=_duration,
        default=None,
        help="grid step (default: the target's, as the daemon reads it; 1m in mode 3)",
    )
    source.add_argument(
        "--trace-out", type=Path, help="also save the history read as a trace CSV (for mode 1)"
    )
    backtest.set_defaults(handler=backtest_command, parser=backtest)

    demo = subparsers.add_parser(
        "demo",
        help="backtest a demand trace elasticd generates itself (no cluster, no cloud)",
    )
    demo.add_argument("--out-dir", type=Path, default=Path("demo-out"))
    demo.add_argument("--days", type=float, default=28.0)
    _add_plan_options(demo, demo=True)
    demo.set_defaults(handler=demo_command)


def plan_config(
    args: argparse.Namespace, loaded: tuple[Settings, TargetConfig] | None = None
) -> PlanConfig:
    """Replay parameters from the flags, or from a target of ``--config`` where flags are unset
    (``loaded``: that config's settings and target, when already loaded)."""
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

    _, target = loaded if loaded is not None else config_target(args)
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


def config_target(args: argparse.Namespace) -> tuple[Settings, TargetConfig]:
    """The settings of ``--config`` and its target named by ``--target`` (default: first)."""
    from daemon.settings import load_settings

    settings = load_settings(args.config)
    try:
        target = settings.target(args.target) if args.target else settings.targets[0]
    except KeyError:
        names = ", ".join(t.name for t in settings.targets)
        raise InputError(f"--target {args.target!r} is not in {args.config} ({names})") from None
    return settings, target


def run_and_write(
    trace: Trace,
    name: str,
    config: PlanConfig,
    args: argparse.Namespace,
    decisions: Path,
    report_path: Path | None,
    plot_path: Path | None,
    *,
    metric: str | None = None,
    further: tuple[MetricReplay, ...] = (),
) -> dict[str, Any]:
    with capped_threads():
        result = run_backtest(trace, config, progress=args.progress, metric=metric, further=further)
    report = build_report(result, name)
    write_decisions(result, decisions, progress=args.progress)
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if plot_path is not None:
        # Imported here: matplotlib is slow to import, and an optional extra.
        from daemon.backtest.plot import PlotUnavailable, write_plot

        try:
            write_plot(result, plot_path, name, report=report, unit=args.unit)
        except PlotUnavailable as note:
            print(f"elasticd: {note}", file=sys.stderr)
    for line in summary_lines(report):
        print(line)
    return report


def backtest_command(args: argparse.Namespace) -> int:
    _check_mode(args)
    try:
        if args.trace is None:
            return _backtest_from_source(args)
        loaded = config_target(args) if args.config is not None else None
        config = plan_config(args, loaded)
        traces = load_metric_traces(args.trace, progress=args.progress)
        metric, trace, further = metric_replays(args, traces, config, loaded)
        run_and_write(
            trace,
            args.trace.name,
            config,
            args,
            args.decisions_out,
            args.report_out,
            args.plot_out,
            metric=metric,
            further=further,
        )
    except (ElasticdError, OSError) as error:
        return _report(error, args)
    return 0


def metric_replays(
    args: argparse.Namespace,
    traces: list[tuple[str, Trace]],
    config: PlanConfig,
    loaded: tuple[Settings, TargetConfig] | None,
) -> tuple[str | None, Trace, tuple[MetricReplay, ...]]:
    """The target's own metric, its trace, and its further metrics for a several-column trace:
    unit capacities from ``--metric NAME=UNIT_CAPACITY`` flags, or from the ``metrics:`` of
    the ``--config`` target (its companion targets' own settings, as the daemon runs them)."""
    if len(traces) == 1:
        return None, traces[0][1], ()
    names = [name for name, _ in traces]
    capacities: dict[str, float] = {}
    for flag in args.metric or []:
        name, _, value = flag.partition("=")
        try:
            capacities[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--metric {flag!r}: expected NAME=UNIT_CAPACITY") from None
    companions: dict[str, TargetConfig] = {}
    if loaded is not None:
        settings, target = loaded
        listed = [metric.name for metric in target.metrics]
        if listed:
            if listed != names:
                raise InputError(
                    f"the trace's columns {names} are not target {target.name}'s metrics {listed}"
                )
            companions = {name: settings.target(f"{target.name}.{name}") for name in listed[1:]}
    unknown = [name for name in names[1:] if name not in capacities and name not in companions]
    if unknown:
        raise InputError(
            f"no unit capacity for {unknown}: give --metric NAME=UNIT_CAPACITY for each "
            "further column, or --config with a target listing these metrics"
        )
    further: list[MetricReplay] = []
    for name, trace in traces[1:]:
        if loaded is not None and name in companions:
            own = plan_config(args, (loaded[0], companions[name]))
        else:
            planner = dataclasses.replace(config.planner_settings(), unit_capacity=capacities[name])
            own = dataclasses.replace(config, unit_capacity=capacities[name], planner=planner)
        further.append(MetricReplay(name, trace, own))
    first, trace = traces[0]
    if first in capacities and loaded is None:
        planner = dataclasses.replace(config.planner_settings(), unit_capacity=capacities[first])
        config = dataclasses.replace(config, unit_capacity=capacities[first], planner=planner)
    return first, trace, tuple(further)


def _check_mode(args: argparse.Namespace) -> None:
    """Exactly one of the three modes' arguments, or a usage error (exit 2) saying which."""
    parser: argparse.ArgumentParser = args.parser
    if args.trace is not None and args.prometheus is not None:
        parser.error("give TRACE or --prometheus, not both")
    if (args.prometheus is None) != (args.query is None):
        parser.error("--prometheus and --query go together (mode 3)")
    if args.prometheus is not None and args.config is not None:
        parser.error("--prometheus reads without a config; for a target's source use --config")
    if args.trace is None and args.prometheus is None and args.config is None:
        parser.error(
            "give the demand: TRACE (mode 1), --config FILE [--target NAME] (mode 2) "
            "or --prometheus URL --query PROMQL (mode 3)"
        )
    if args.trace is not None:
        for flag, value in (
            ("--since", args.since),
            ("--step", args.step),
            ("--trace-out", args.trace_out),
        ):
            if value is not None:
                parser.error(f"{flag} is for reading from a source (modes 2 and 3), not TRACE")


def _backtest_from_source(args: argparse.Namespace) -> int:
    """Modes 2 and 3: read the history, then replay it exactly as a trace file would be."""
    from daemon.backtest.from_source import (
        DEFAULT_SINCE_S,
        DEFAULT_STEP_S,
        read_metric_histories,
        read_prometheus_history,
        window,
        write_history_csv,
    )

    since = DEFAULT_SINCE_S if args.since is None else args.since
    now = time.time()
    loaded: tuple[Settings, TargetConfig] | None = None
    if args.config is not None:
        loaded = config_target(args)
        settings, chosen = loaded
        # One history per metric of a target with several (metrics:), on one grid, as a
        # several-column trace file holds them.
        histories = read_metric_histories(
            settings, chosen, since_s=since, step_s=args.step, now=now, progress=args.progress
        )
        name = f"{chosen.name} ({chosen.source})"
    else:
        from daemon.settings import PrometheusSourceConfig

        step = DEFAULT_STEP_S if args.step is None else args.step
        start, end = window(now, since, step)
        try:
            source = PrometheusSourceConfig(type="prometheus", url=args.prometheus)
        except ValueError as error:  # pydantic's ValidationError: the URL
            raise InputError(f"--prometheus: {_first_error(error)}") from None
        history = read_prometheus_history(
            source, args.query, start=start, end=end, step=step, progress=args.progress
        )
        histories = [("value", history)]
        name = "prometheus query"
    for _, history in histories:
        for line in history.summary_lines():
            print(line)
    traces = [(metric, history.trace) for metric, history in histories]
    if args.trace_out is not None:
        write_history_csv(traces, args.trace_out)
        print(f"wrote {args.trace_out}")
    replay_args = _source_defaults(args, histories[0][1], with_config=loaded is not None)
    config = plan_config(replay_args, loaded)
    metric, trace, further = metric_replays(replay_args, traces, config, loaded)
    run_and_write(
        trace,
        name,
        config,
        replay_args,
        args.decisions_out,
        args.report_out,
        args.plot_out,
        metric=metric,
        further=further,
    )
    return 0


def _source_defaults(
    args: argparse.Namespace, history: History, *, with_config: bool
) -> argparse.Namespace:
    """The flags with the source modes' defaults filled in where they were not given."""
    filled = argparse.Namespace(**vars(args))
    trace = history.trace
    span = float(trace.times[-1] - trace.times[0]) + trace.step_s
    if filled.warmup is None:
        filled.warmup = min(MAX_DEFAULT_WARMUP_S, span / 2)
    if not with_config:
        if filled.lead_time is None:
            filled.lead_time = DEFAULT_LEAD_S
        if filled.unit_capacity is None:
            peak = float(np.nanmax(trace.values))
            filled.unit_capacity = peak / UNITS_AT_PEAK if peak > 0 else 1.0
            print(
                f"unit capacity {filled.unit_capacity:.4g} (the peak over {UNITS_AT_PEAK}; "
                "give --unit-capacity for what one replica serves)"
            )
    return filled


def _first_error(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", error)).removeprefix("Value error, ")
    return str(error)


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
    from daemon.backtest.plot import plotting_available

    plot = f" and {out / 'plot.png'}" if plotting_available() else ""
    print(f"wrote {out / 'decisions.csv'}, {out / 'report.json'}{plot}")
    return 0
