"""A backtest's demand read straight from a metrics source, as a ``Trace``.

``elasticd backtest --config FILE --target NAME`` reads the target's own query from its own
source (Prometheus, CloudWatch, or a simulator's trace) at the step the daemon forecasts on,
and for a target with several metrics each metric's query, on one grid; ``elasticd backtest
--prometheus URL --query Q`` reads any PromQL without a config. Either way the result is
ordinary traces handed to the one replay (``run_backtest``): there is no second decision
path, only a second way to get the demand.

The points are cleaned as the daemon cleans the history it trains on (NaN and infinities
become missing, negative values 0: ``clean_series`` with ``NegativePolicy.CLAMP``), placed on
the step grid (an absent point is a missing step), and the unobserved steps before the first
and after the last point are dropped: a metric that did not yet exist is not a gap.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from daemon.backtest.prometheus_range import PrometheusRangeReader
from daemon.backtest.trace import LabelStyle, Trace, TraceLabels, label_chunks
from daemon.core.durations import format_duration
from daemon.errors import ConfigError, InputError
from daemon.sources.base import FloatArray, MetricQuery, Series
from daemon.sources.policy import NegativePolicy, Rule, clean_series
from daemon.sources.prometheus import MAX_POINTS_PER_REQUEST, plan_chunks

if TYPE_CHECKING:
    from daemon.settings import PrometheusSourceConfig, Settings, TargetConfig
    from daemon.sources.cloudwatch import CloudWatchSource

# How far back a backtest reads by default: two weeks, the daemon's own training window.
DEFAULT_SINCE_S = 14 * 86_400.0
# The grid step without a config: a minute, as the daemon reads Prometheus.
DEFAULT_STEP_S = 60.0


@dataclass(frozen=True)
class History:
    """Demand read from a source: the trace, and a line saying what was read from where."""

    trace: Trace
    description: str
    cleaned: Mapping[Rule, int] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [self.description]
        fixed = {
            rule: count
            for rule, count in self.cleaned.items()
            if rule in (Rule.NON_FINITE, Rule.NEGATIVE_CLAMPED) and count
        }
        if fixed:
            parts = ", ".join(
                f"{count} {rule.value.replace('_', ' ')}" for rule, count in fixed.items()
            )
            lines.append(f"cleaned as the daemon cleans its history: {parts}")
        return lines


def read_metric_histories(
    settings: Settings,
    target: TargetConfig,
    *,
    since_s: float,
    step_s: float | None,
    now: float,
    progress: bool | None,
) -> list[tuple[str, History]]:
    """The target's demand over the last ``since_s`` seconds before ``now`` from its source,
    at ``step_s`` (default: the step the daemon forecasts this target on), as
    ``[("value", history)]``; for a target with several metrics (``metrics:``) one
    ``(metric name, history)`` each, its own query then each companion target's, on one grid
    as a several-column trace file holds them."""
    # Imported here: the runtime's composition root pulls in every adapter, which the plain
    # trace replays do not need.
    from daemon.kinds.registry import spec_of
    from daemon.runtime.app import history_step, simulator_trace
    from daemon.settings import SimulatorSourceConfig

    if spec_of(target.kind).demand_free:
        raise InputError(
            f"target {target.name!r} ({target.kind}) reads no demand: nothing to backtest"
        )
    config = settings.sources[target.source]
    if isinstance(config, SimulatorSourceConfig):
        # The simulator replays a trace file or a generated trace: that is its history, and
        # "up to now" is up to the trace's end.
        trace = _last(simulator_trace(config), since_s)
        where = f"simulator source {target.source!r}"
        return [("value", History(trace, f"read {_span(trace)} of {target.name!r} from {where}"))]
    step = step_s if step_s is not None else history_step(settings, target, None)
    start, end = window(now, since_s, step)
    metrics = [metric.name for metric in target.metrics]
    if len(metrics) < 2:
        series, what = _read(settings, target, start, end, step, progress)
        return [("value", _history(series, start, end, step, what))]
    # Each further metric is a companion target (web.rps) with its own query and source.
    members = [target] + [settings.target(f"{target.name}.{name}") for name in metrics[1:]]
    read = [_read(settings, member, start, end, step, progress) for member in members]
    cleaned = [clean_series(series, negative=NegativePolicy.CLAMP) for series, _ in read]
    grids = [_on_grid(item.series, start, end, step) for item in cleaned]
    # One span for all: from the first point any metric has to the last.
    observed = np.flatnonzero(np.any([np.isfinite(values) for values in grids], axis=0))
    if observed.size < 2:
        raise InputError(f"no history: none of {target.name!r}'s metrics has two points")
    first, last = int(observed[0]), int(observed[-1]) + 1
    times = start + step * np.arange(first, last, dtype=np.float64)
    histories = []
    for name, values, item, (_, what) in zip(metrics, grids, cleaned, read, strict=True):
        trace = Trace(times, values[first:last], step, TraceLabels(times, LabelStyle()))
        histories.append((name, History(trace, _description(trace, what), item.counts)))
    return histories


def _read(
    settings: Settings,
    target: TargetConfig,
    start: float,
    end: float,
    step: float,
    progress: bool | None,
) -> tuple[Series, str]:
    """The raw points of the target's query from its Prometheus or CloudWatch source, and
    what they are, for messages."""
    from daemon.runtime.app import aws_region, query_spec
    from daemon.settings import CloudWatchSourceConfig, PrometheusSourceConfig

    config = settings.sources[target.source]
    where = f"source {target.source!r}"
    if isinstance(config, PrometheusSourceConfig):
        assert isinstance(target.query, str)  # settings check: PromQL for a prometheus source
        series = _read_prometheus(config, target.query, start, end, step, progress)
        return series, f"{target.query!r} from {where}"
    if isinstance(config, CloudWatchSourceConfig):
        from daemon.sources.cloudwatch import CloudWatchSource

        region = aws_region(config.region or settings.aws.region, f"sources.{target.source}")
        source = CloudWatchSource(
            region,
            endpoint_url=config.endpoint_url or settings.aws.endpoint_url,
            profile=config.profile or settings.aws.profile,
        )
        query: MetricQuery[Any] = MetricQuery(target.name, query_spec(target))
        series = asyncio.run(_read_cloudwatch(source, query, start, end, step, progress))
        return series, f"{target.name!r} from CloudWatch {where}"
    raise ConfigError(f"sources.{target.source}", f"unsupported source {config!r}")


def read_prometheus_history(
    config: PrometheusSourceConfig,
    query: str,
    *,
    start: float,
    end: float,
    step: float,
    progress: bool | None,
    what: str | None = None,
) -> History:
    """One PromQL query's points from ``start`` to ``end`` every ``step`` s, in chunks."""
    from daemon.redact import redact_url

    series = _read_prometheus(config, query, start, end, step, progress)
    source = what or f"Prometheus {redact_url(config.url)}"
    return _history(series, start, end, step, f"{query!r} from {source}")


def _read_prometheus(
    config: PrometheusSourceConfig,
    query: str,
    start: float,
    end: float,
    step: float,
    progress: bool | None,
) -> Series:
    reader = PrometheusRangeReader(config)
    try:
        chunks = reader.chunks(start, end, step)
        with _bar(len(chunks), "read prometheus", progress) as bar:
            return reader.read(query, start, end, step, progress=lambda _: bar.update(1))
    finally:
        reader.close()


def window(now: float, since_s: float, step: float) -> tuple[float, float]:
    """``[start, end]`` on the step grid: the last ``since_s`` seconds before ``now``."""
    if not (math.isfinite(step) and step > 0 and step == round(step)):
        raise InputError(f"--step must be a whole number of seconds > 0, got {step:g}")
    if since_s < 2 * step:
        raise InputError(
            f"--since {format_duration(since_s)} holds fewer than two steps of "
            f"{format_duration(step)}"
        )
    end = math.floor(now / step) * step
    return end - math.floor(since_s / step) * step, end


async def _read_cloudwatch(
    source: CloudWatchSource,
    query: MetricQuery[Any],
    start: float,
    end: float,
    step: float,
    progress: bool | None,
) -> Series:
    """The range a chunk at a time (one GetMetricData call, with its pages, each), so a long
    read shows progress; CloudWatch's end is exclusive, hence ``last + step``."""
    chunks = plan_chunks(start, end, step, MAX_POINTS_PER_REQUEST)
    parts: list[Series] = []
    try:
        with _bar(len(chunks), "read cloudwatch", progress) as bar:
            for first, last in chunks:
                try:
                    parts.append(await source.history(query, first, last + step, step))
                except ValueError as error:  # a step CloudWatch cannot aggregate over
                    raise InputError(f"--step: {error}") from None
                bar.update(1)
    finally:
        await source.close()
    present = [part for part in parts if len(part)]
    if not present:
        return Series.empty()
    return Series(
        np.concatenate([part.timestamps for part in present]),
        np.concatenate([part.values for part in present]),
    )


def _history(series: Series, start: float, end: float, step: float, what: str) -> History:
    cleaned = clean_series(series, negative=NegativePolicy.CLAMP)
    trace = trace_on_grid(cleaned.series, start, end, step)
    if trace is None:
        raise InputError(
            f"no history: {what} has {len(series)} points between {_stamp(start)} and "
            f"{_stamp(end)} (at least two are needed); check the query, or a longer --since"
        )
    return History(trace, _description(trace, what), cleaned.counts)


def _description(trace: Trace, what: str) -> str:
    observed = int(np.count_nonzero(trace.observed))
    return (
        f"read {observed:,} points of {what}: {_span(trace)} at a "
        f"{format_duration(trace.step_s)} step, {_stamp(trace.start)} to "
        f"{_stamp(float(trace.times[-1]))}"
    )


def trace_on_grid(series: Series, start: float, end: float, step: float) -> Trace | None:
    """``series`` on the grid ``start + k * step`` (NaN where no point), trimmed to its first
    and last observation; None when fewer than two points are observed."""
    values = _on_grid(series, start, end, step)
    observed = np.flatnonzero(np.isfinite(values))
    if observed.size < 2:
        return None
    first, last = int(observed[0]), int(observed[-1])
    times = start + step * np.arange(first, last + 1, dtype=np.float64)
    return Trace(times, values[first : last + 1], step, TraceLabels(times, LabelStyle()))


def _on_grid(series: Series, start: float, end: float, step: float) -> FloatArray:
    """The values at ``start + k * step`` up to ``end``; NaN where the series has no point."""
    size = round((end - start) / step) + 1
    values = np.full(size, np.nan)
    index = np.rint((series.timestamps - start) / step).astype(np.int64)
    inside = (index >= 0) & (index < size)
    values[index[inside]] = series.values[inside]
    return values


def _last(trace: Trace, since_s: float) -> Trace:
    """The trace's last ``since_s`` seconds."""
    first = int(np.searchsorted(trace.times, trace.times[-1] - since_s, side="right"))
    if first == 0:
        return trace
    times = trace.times[first:]
    return Trace(times, trace.values[first:], trace.step_s, TraceLabels(times, LabelStyle()))


def write_history_csv(traces: Sequence[tuple[str, Trace]], path: Path) -> None:
    """The history as a trace CSV that ``elasticd backtest TRACE`` reads back to the same
    values (full float precision, unlike the demo's compact trace files): ``timestamp,value``
    for one metric, ``timestamp,cpu,rps`` (empty where a metric has no point) for several."""
    names = [name for name, _ in traces]
    several = len(traces) > 1
    columns = [trace.values for _, trace in traces]
    with path.open("w", encoding="utf-8") as handle:
        handle.write("timestamp," + (",".join(names) if several else "value") + "\n")
        offset = 0
        for labels in label_chunks(traces[0][1].labels):
            rows = range(offset, offset + len(labels))
            offset += len(labels)
            lines = []
            for label, row in zip(labels, rows, strict=True):
                values = [float(column[row]) for column in columns]
                if not any(math.isfinite(value) for value in values):
                    continue
                cells = ",".join(repr(value) if math.isfinite(value) else "" for value in values)
                lines.append(f"{label},{cells}\n")
            handle.write("".join(lines))


def _bar(total: int, what: str, progress: bool | None) -> Any:
    # Shown on a terminal for reads of more than one request, as the trace loader's bar is.
    show = (sys.stderr.isatty() and total > 1) if progress is None else progress
    return tqdm(total=total, desc=what, unit="request", disable=not show, leave=False)


def _span(trace: Trace) -> str:
    seconds = float(trace.times[-1] - trace.times[0]) + trace.step_s
    for unit, size in (("days", 86_400.0), ("hours", 3_600.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return format_duration(round(seconds))


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%MZ")
