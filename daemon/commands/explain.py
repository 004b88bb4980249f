"""``elasticd explain --config FILE --target NAME [--at TIME]``: why a target gets its size.

Prints, for one target at one instant, the schedule window or override in force and the next
change, the effective bounds, the forecast, each layer's desired capacity and the chain of
reasons, using the same pure functions the daemon decides with.

Read-only by design: it never writes a file, never reads or writes the target (the current
size is ``--current`` or assumed), and reads the metric source only when a trained model is
saved under ``state_dir/models``, since the forecast is the only thing the source is needed
for. Without a model, or when the source cannot be reached, it says so and explains with the
bounds only.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from daemon.conventions import CONFIG_ENV, DEFAULT_CONFIG, resolve_config
from daemon.core.durations import format_duration
from daemon.core.layers import LayerPlan, plan_layers
from daemon.core.schedules import ScheduleDecision
from daemon.core.tick import TickInputs, TickResult, TickState, tick
from daemon.core.tournament import Tournament
from daemon.errors import ConfigError
from daemon.forecasting import TargetForecaster
from daemon.kinds.registry import spec_of
from daemon.runtime.app import (
    aws_region,
    decision_state_dir,
    history_step,
    query_spec,
    simulator_trace,
)
from daemon.runtime.decision_state import decode, encode
from daemon.runtime.layers import NODE_MODEL_SUFFIX, node_shape
from daemon.runtime.planning import (
    conformal_settings,
    forecast_settings,
    next_schedule_change,
    node_layer_lead,
    planner_settings,
    schedule_at,
    tick_delay,
    tournament_settings,
)
from daemon.settings import (
    CloudWatchSourceConfig,
    KubernetesWorkloadTarget,
    PrometheusSourceConfig,
    Settings,
    SimulatorSourceConfig,
    TargetConfig,
    load_settings,
)
from daemon.sharding.explain import ownership_lines
from daemon.simulation import WEEK_S
from daemon.sources.base import MetricQuery

if TYPE_CHECKING:
    from daemon.commands import SubParsers

__all__ = ["Forecast", "explain", "read_forecast", "register", "run"]

# Features look back a week plus a day and a lead time: fetch nine days, as the daemon keeps.
HISTORY_S = 9 * 86_400.0
# A slow metrics system must not hang an interactive command.
SOURCE_TIMEOUT_S = 30.0

History = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
HistoryReader = Callable[[Settings, TargetConfig, float, float, float], History]
"""(settings, target, start, end, step) -> (times, values); raises when unreachable."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """What the forecasting side could say at the instant."""

    value: float | None
    """Base peak demand over the lead time; None = no forecast."""
    source: str
    """The rung that made it (``model``, a fallback's name) or ``none``."""
    note: str
    """Why there is (no) forecast, for the reader."""
    demand: float | None = None
    """The latest observation at or before the instant, when history was read."""
    demand_age_s: float = math.inf


def register(subparsers: SubParsers) -> None:
    """Add the ``explain`` sub-command."""
    parser = subparsers.add_parser(
        "explain",
        help="explain a target's bounds, forecast and decision at a time",
        description="Show which schedule window or override applies to a target at a time, "
        "the next change, the effective bounds, the forecast (from a saved model, if any) and "
        "the reasons for the planned size. Writes nothing and never touches the target.",
    )
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help=f"YAML file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})",
    )
    parser.add_argument("--target", "-t", required=True, metavar="NAME", help="target name")
    parser.add_argument(
        "--at",
        metavar="TIME",
        help="ISO 8601 time with offset, e.g. 2024-03-09T12:00-05:00 (default: now; for a "
        "simulator source, where its replay starts, a week into its trace)",
    )
    parser.add_argument(
        "--current",
        type=int,
        metavar="UNITS",
        help="the target's current units (default: the effective minimum; explain never reads "
        "the target)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    location = resolve_config(args.config)
    try:
        settings = load_settings(location.path)
    except ConfigError as error:
        hint = "" if location.path.exists() else location.missing_hint()
        print(f"elasticd explain: {location.path}: {error}{hint}", file=sys.stderr)
        return 2
    target = next((t for t in settings.targets if t.name == args.target), None)
    if target is None:
        names = ", ".join(t.name for t in settings.targets)
        print(f"elasticd explain: no target {args.target!r} (targets: {names})", file=sys.stderr)
        return 2
    try:
        at = _parse_time(args.at) if args.at is not None else default_time(settings, target)
    except ValueError as error:
        print(f"elasticd explain: --at: {error}", file=sys.stderr)
        return 2
    if args.current is not None and args.current < 0:
        print("elasticd explain: --current must be >= 0", file=sys.stderr)
        return 2
    for line in explain(settings, target, at, current=args.current):
        print(line)
    # Which member writes it, when sharded: a read of the coordination store, nothing more.
    for line in ownership_lines(settings, target):
        print(line)
    return 0


def explain(
    settings: Settings,
    target: TargetConfig,
    at: datetime,
    *,
    current: int | None = None,
    reader: HistoryReader | None = None,
) -> list[str]:
    """The explanation as lines; ``reader`` fetches history (default: the target's source)."""
    read = reader or read_history
    now = at.timestamp()
    zone = _display_zone(target, at)
    schedule = schedule_at(target, now)
    lines = [
        f"target {target.name} ({target.kind}, {target.mode}) at {_when(now, zone)}",
        f"  own bounds: min {target.min_units}, max {target.max_units}; lead time "
        f"{format_duration(target.lead_time)}; above max: {_above_max(target)}",
        *spec_of(target.kind).details(target),
        *_metric_lines(target),
        *_schedule_lines(target, schedule, now, zone),
    ]
    forecast = read_forecast(settings, target, now, target.name, target.lead_time, read)
    lines.append(f"forecast: {_forecast_text(forecast, target.unit_capacity)}")
    lines.append(f"demand: {_demand_text(forecast)}")
    decision = _decide(settings, target, schedule, forecast, now, current).decision
    spec = spec_of(target.kind)
    layer = spec.unit_name
    assumed = " (assumed: explain never reads the target)" if current is None else ""
    lines.append(
        f"{layer}: desired {decision.desired}, current {decision.current}{assumed}; "
        f"reasons: {' -> '.join(decision.reasons)}"
    )
    if isinstance(target, KubernetesWorkloadTarget) and target.node_group is not None:
        lines.extend(_node_lines(settings, target, decision.current, decision.desired, now, read))
    lines.extend(scoreboard_lines(settings, target))
    return lines


def _metric_lines(target: TargetConfig) -> list[str]:
    """For a target with several metrics: which is its own and which companion decides the
    others (the largest need wins; explain each with ``--target <companion>``)."""
    if target.metric_of is not None:
        return [f"  metric of target {target.metric_of}: it takes this decision as a floor"]
    if len(target.metrics) < 2:
        return []
    others = ", ".join(f"{m.name} (target {target.name}.{m.name})" for m in target.metrics[1:])
    return [
        f"  metrics: {target.metrics[0].name} (this target's own), {others}; "
        "the largest need decides, an invalid one blocks scale-down"
    ]


def scoreboard_lines(settings: Settings, target: TargetConfig) -> list[str]:
    """The policy tournament's scoreboard as the daemon last saved it (every ten minutes and
    on stop), read-only: explain never changes what the daemon will resume from."""
    pinned = f" (pinned: {target.tournament.pin})" if target.tournament.pin else ""
    path = decision_state_dir(settings) / f"{target.name}.tournament.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        data = document["tournament"]
        planner = planner_settings(target)
        step = _step(settings, target)
        forecast = forecast_settings(
            target, settings.training, step, interval_s=tick_delay(settings, target)
        )
        tournament = Tournament.from_json(
            tournament_settings(target),
            planner,
            TargetForecaster(forecast).calibration_settings(),
            conformal_settings(forecast),
            (encode, decode),
            data,
        )
    except FileNotFoundError:
        return [f"policies{pinned}: no scoreboard saved yet ({path})"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as error:
        return [f"policies{pinned}: scoreboard unreadable ({path}: {error})"]
    lines = [f"policies{pinned}: acting on {tournament.active} (saved scoreboard, {path.name})"]
    for row in tournament.scoreboard():
        mark = "*" if row.active else " "
        label = f" [{row.label}]" if row.label else ""
        lines.append(
            f"  {mark} {row.name:<15} score {row.score:8.3f}  billed {row.mean_billed:8.2f}/step"
            f"  short {100 * row.short_share:6.2f}%  over {row.steps:7.0f} steps{label}"
        )
    return lines


# -- schedule -----------------------------------------------------------------------------------


def _schedule_lines(
    target: TargetConfig, decision: ScheduleDecision, now: float, zone: Any
) -> list[str]:
    lines = [
        f"schedule: {decision.reason}",
        f"  effective: {_bounds_text(decision)}",
    ]
    change = next_schedule_change(target, now)
    if change is None:
        lines.append("  next change: none within 8 days")
    else:
        lines.append(
            f"  next change: {_when(change.at, zone)} (in {_span(change.at - now)}): "
            f"{change.decision.reason} ({_bounds_text(change.decision)})"
        )
    return lines


def _bounds_text(decision: ScheduleDecision) -> str:
    desired = "-" if decision.desired_units is None else str(decision.desired_units)
    return f"min {decision.min_units}, max {decision.max_units}, desired {desired}"


def _above_max(target: TargetConfig) -> str:
    policy = target.above_max
    if policy.policy == "increase":
        return f"increase by up to {policy.buffer_percent:g}%"
    return "honor"


# -- forecast -----------------------------------------------------------------------------------


def read_forecast(
    settings: Settings,
    target: TargetConfig,
    now: float,
    model_name: str,
    lead_s: float,
    reader: HistoryReader,
) -> Forecast:
    """The forecast the saved model ``model_name`` makes at ``now`` over ``lead_s``.

    Mirrors the runtime: the model is ``state_dir/models/<name>.{json,pkl}`` (as the trainer
    saves it), the forecaster is built with the runtime's ``forecast_settings`` and grid step.
    """
    directory = settings.state_dir / "models"
    if not (directory / f"{model_name}.json").exists():
        return Forecast(
            None,
            "none",
            f"no trained model at {directory / model_name}.json; explaining with the bounds only",
        )
    try:
        step = _step(settings, target)
    except (ConfigError, OSError, ValueError) as error:
        return Forecast(
            None, "none", f"source not usable ({error}); explaining with the bounds only"
        )
    lead_target = target.model_copy(update={"lead_time": lead_s})
    # The daemon's forecast window (and so its saved model) covers the tick interval too.
    forecaster = TargetForecaster(
        forecast_settings(
            lead_target,
            settings.training,
            step,
            interval_s=tick_delay(settings, target),
        )
    )
    refused = forecaster.load(directory, model_name)
    if refused is not None:
        return Forecast(
            None, "none", f"saved model refused: {refused}; explaining with the bounds only"
        )
    start = math.floor((now - HISTORY_S) / step) * step
    try:
        times, values = reader(settings, target, start, now, step)
    except Exception as error:  # any failure to reach the source: explain without it
        return Forecast(
            None,
            "none",
            f"source {target.source!r} not reachable ({error or type(error).__name__}); "
            "explaining with the bounds only",
        )
    keep = times <= now
    times, values = times[keep], values[keep]
    forecaster.load_history(times, values)
    value, source = forecaster.forecast(now)
    demand, age = None, math.inf
    observed = np.flatnonzero(np.isfinite(values))
    if observed.size:
        demand, age = float(values[observed[-1]]), now - float(times[observed[-1]])
    note = f"{len(times)} points of history from {target.source!r}"
    if value is None:
        return Forecast(None, source, f"model loaded but no forecast ({note})", demand, age)
    return Forecast(value, source, note, demand, age)


def read_history(
    settings: Settings, target: TargetConfig, start: float, end: float, step: float
) -> History:
    """History from the target's source (the simulator's trace file, or a metrics system)."""
    config = settings.sources[target.source]
    if isinstance(config, SimulatorSourceConfig):
        trace = simulator_trace(config)
        inside = (trace.times >= start) & (trace.times <= end)
        return trace.times[inside], trace.values[inside]
    return asyncio.run(_fetch(settings, target, config, start, end, step))


async def _fetch(
    settings: Settings, target: TargetConfig, config: Any, start: float, end: float, step: float
) -> History:
    # Lazy imports: only a configured metrics system needs its client library loaded.
    source: Any
    if isinstance(config, PrometheusSourceConfig):
        from daemon.sources.prometheus import PrometheusSource

        source = PrometheusSource.from_config(config)
    elif isinstance(config, CloudWatchSourceConfig):
        from daemon.sources.cloudwatch import CloudWatchSource

        source = CloudWatchSource(
            aws_region(config.region or settings.aws.region, "source.region"),
            endpoint_url=config.endpoint_url or settings.aws.endpoint_url,
            profile=config.profile or settings.aws.profile,
        )
    else:
        raise ConfigError("source", f"unsupported source {config!r}")
    try:
        query: MetricQuery[Any] = MetricQuery(target.name, query_spec(target))
        series = await asyncio.wait_for(
            source.history(query, start, end, step), timeout=SOURCE_TIMEOUT_S
        )
    finally:
        await source.close()
    return np.asarray(series.timestamps, dtype=np.float64), np.asarray(
        series.values, dtype=np.float64
    )


def _step(settings: Settings, target: TargetConfig) -> float:
    """The forecaster's grid step, as the runtime chooses it (a model is tied to its step)."""
    config = settings.sources[target.source]
    if isinstance(config, SimulatorSourceConfig):
        return simulator_trace(config).step_s
    return history_step(settings, target, None)


def _forecast_text(forecast: Forecast, unit_capacity: float) -> str:
    if forecast.value is None:
        return f"none: {forecast.note}"
    units = math.ceil(forecast.value / unit_capacity - 1e-9)
    return (
        f"peak {forecast.value:.4g} over the lead time (~{units} units before calibration) "
        f"from {forecast.source}; {forecast.note}"
    )


def _demand_text(forecast: Forecast) -> str:
    if forecast.demand is None:
        # The planner then holds: no scale-down on unknown demand (hold_missing_metrics).
        return "not read (the source is read only to forecast with a saved model)"
    return f"{forecast.demand:.4g}, {format_duration(round(forecast.demand_age_s))} old"


# -- decision -----------------------------------------------------------------------------------


def _decide(
    settings: Settings,
    target: TargetConfig,
    schedule: ScheduleDecision,
    forecast: Forecast,
    now: float,
    current: int | None,
) -> TickResult:
    """The daemon's first tick at ``now``: a fresh state, the schedule's bounds for this tick."""
    low, high = schedule.plan_bounds
    planner = dataclasses.replace(
        planner_settings(target),
        max_units=target.max_units,
        above_max_policy=target.above_max.policy,
        above_max_buffer_percent=target.above_max.buffer_percent,
    )
    # Without --current: as if the target sat at its floor, so the forecast's rise shows.
    units = low if current is None else current
    # The grid step does not enter the calibration settings; any step will do.
    forecaster = TargetForecaster(forecast_settings(target, settings.training, 60.0))
    result, _ = tick(
        planner,
        forecaster.calibration_settings(),
        TickState(),
        TickInputs(
            now=now,
            current_units=units,
            ready_units=units,
            demand=forecast.demand,
            base_forecast=forecast.value,
            # No forecast at all is "missing", not a fallback model's forecast.
            forecast_source=forecast.source if forecast.value is not None else "model",
            demand_age_s=forecast.demand_age_s,
            min_units=low,
            max_units=high,
        ),
    )
    return result


def _node_lines(
    settings: Settings,
    target: KubernetesWorkloadTarget,
    current_pods: int,
    desired_pods: int,
    now: float,
    reader: HistoryReader,
) -> list[str]:
    link = target.node_group
    assert link is not None
    nodes = next((t for t in settings.targets if t.name == link.target), None)
    if nodes is None:
        return [f"nodes: target {link.target!r} not found"]
    shape = node_shape(link)
    forecast = read_forecast(
        settings,
        target,
        now,
        target.name + NODE_MODEL_SUFFIX,
        node_layer_lead(target, nodes),
        reader,
    )
    node_schedule = schedule_at(nodes, now)
    plan = plan_layers(
        node_lead_forecast=forecast.value,
        unit_capacity=target.unit_capacity,
        current_replicas=current_pods,
        pods_desired=desired_pods,
        shape=shape,
        max_pods=target.max_units,
        node_min_units=node_schedule.plan_bounds[0],
        node_max_units=node_schedule.plan_bounds[1],
    )
    lead = format_duration(nodes.lead_time)
    return [
        f"nodes ({nodes.name}, lead time {lead}): desired {plan.nodes_desired}; "
        f"reasons: {' -> '.join(plan.reasons)}",
        # The node layer looks a pod lead further ahead than the nodes' own lead time.
        f"  node_forecast: "
        f"{_layer_term(plan, forecast, format_duration(node_layer_lead(target, nodes)))}",
        f"  pods_current: {current_pods} pods -> {plan.nodes_for_current} nodes",
        f"  pods_desired: {desired_pods} pods -> {plan.nodes_for_desired} nodes",
        f"  node schedule: {node_schedule.reason} ({_bounds_text(node_schedule)})",
    ]


def _layer_term(plan: LayerPlan, forecast: Forecast, lead: str) -> str:
    if plan.pods_forecast is None:
        return f"none: {forecast.note}"
    return f"{plan.pods_forecast} pods over {lead} -> {plan.nodes_for_forecast} nodes"


# -- time ---------------------------------------------------------------------------------------


def default_time(settings: Settings, target: TargetConfig) -> datetime:
    """Without ``--at``: now, or for a simulator source the instant its replay starts.

    A simulator plays its trace's own time, which the wall clock may be far from (a fixed
    ``start``) or at the very first point of (a generated trace starts now): explained at the
    wall clock, the forecast had one point of history or none. The daemon's simulated world
    starts where the history to train on ends, as ``runtime.app.TargetFactory._world`` does.
    """
    config = settings.sources.get(target.source)
    if not isinstance(config, SimulatorSourceConfig):
        return datetime.now(UTC)
    trace = simulator_trace(config)
    span = float(trace.times[-1] - trace.times[0])
    return datetime.fromtimestamp(trace.start + min(WEEK_S, span / 2), UTC)


def _parse_time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        # A bare local time is ambiguous around DST, which is what explain is often asked about.
        raise ValueError(f"{text!r} has no UTC offset: add one, e.g. {text}+00:00 or {text}Z")
    return moment


def _display_zone(target: TargetConfig, at: datetime) -> Any:
    """The schedules' own zone when they share one (that is the clock they are written in),
    else the offset ``--at`` was given in."""
    zones = {window.timezone for window in target.schedules}
    if len(zones) == 1:
        return ZoneInfo(zones.pop())
    return at.tzinfo or UTC


def _when(moment: float, zone: Any) -> str:
    return datetime.fromtimestamp(moment, zone).isoformat(timespec="minutes")


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m"]
    return " ".join(p for p in parts if p and p != "0m") or "0m"
