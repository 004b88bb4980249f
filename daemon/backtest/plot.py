"""A one-page picture of a backtest: demand in front of the plan's capacity, and the baselines.

matplotlib is the optional ``plot`` extra (``pip install 'elasticd[plot]'``): the daemon and
its image do not carry it. Without it ``write_plot`` raises ``PlotUnavailable``, whose text
says how to get it; the CLI prints that as a note and still writes everything else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from daemon.backtest.baselines import (
    BaselinePoint,
    hpa_replay,
    predictive_replay,
    scheduled_forecast,
)
from daemon.backtest.report import Backtest, baseline_figures, build_report, plan_figures
from daemon.errors import ElasticdError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_EXTRA = "elasticd[plot]"
ZOOM_S = 2 * 86_400.0
# The figure is ~1,500 pixels wide: more points than this only cost memory (6.75M-step lines
# and steps took about a gigabyte in Agg).
MAX_POINTS = 20_000
DEMAND = "0.1"  # near black, drawn last: the line the eye follows
PLAN = "tab:blue"  # the plan's ready capacity, a filled area behind the demand


class PlotUnavailable(ElasticdError):
    """matplotlib is not installed: no plot, everything else is written."""


def plotting_available() -> bool:
    """Whether ``write_plot`` can draw (matplotlib importable), without importing it."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise PlotUnavailable(
            f"no plot written: plotting needs matplotlib, the optional extra "
            f"(pip install '{PLOT_EXTRA}')"
        ) from None
    matplotlib.use("Agg")  # no screen on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _dates(times: NDArray[np.float64]) -> NDArray[np.float64]:
    """Epoch seconds as matplotlib date numbers (days since its 1970-01-01 epoch)."""
    return times / 86_400.0


def _thin(
    dates: NDArray[np.float64], values: NDArray[np.float64], reduce: np.ufunc
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """At most ``MAX_POINTS`` points, each bin's extreme (``np.fmax``: peaks, ``np.fmin``:
    troughs), so that what the eye looks for survives the thinning."""
    stride = -(-values.size // MAX_POINTS)
    if stride <= 1:
        return dates, values
    starts = np.arange(0, values.size, stride)
    return dates[starts], reduce.reduceat(values, starts)


def _closest(points: list[BaselinePoint], cost_ratio: float) -> BaselinePoint:
    return min(points, key=lambda p: abs(p.cost_ratio - cost_ratio))


def _mark_switches(result: Backtest, axes: Axes, since: float = -np.inf) -> None:
    """A vertical line at each change of the acting policy, labelled with the new one."""
    first = True
    for event in result.plan.switches:
        if event.kind not in ("switch", "demote") or event.at < since:
            continue
        at = _dates(np.array([event.at]))[0]
        axes.axvline(
            at,
            color="tab:purple",
            lw=0.8,
            ls="--",
            label="policy switch" if first else None,
        )
        axes.annotate(
            event.to_policy,
            (at, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color="tab:purple",
        )
        first = False


def _mark_deciding_metric(result: Backtest, axes: Axes, window: NDArray[np.bool_]) -> None:
    """With several metrics: a strip along the bottom, coloured by the metric that decided
    each step (the one needing the most units)."""
    decided = result.plan.decided_by
    if not decided:
        return
    names = np.asarray(decided, dtype=object)
    colours = ("tab:green", "tab:blue", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
    for index, name in enumerate(sorted(set(decided) - {""})):
        steps = window & (names == name)
        axes.scatter(
            _dates(result.trace.times[steps]),
            np.full(int(steps.sum()), 0.015),
            transform=axes.get_xaxis_transform(),
            marker="|",
            s=40,
            color=colours[index % len(colours)],
            zorder=5,
            label=f"decided by {name}",
        )


def _capacity_label(unit: str | None) -> str:
    return f"demand and capacity ({unit})" if unit else "demand and capacity (the trace's unit)"


def write_plot(
    result: Backtest,
    path: Path,
    title: str,
    *,
    report: dict[str, Any] | None = None,
    unit: str | None = None,
) -> None:
    """Draw the backtest to ``path`` (PNG); ``report``: ``build_report``'s, when already built;
    ``unit``: the demand's unit for the y axis (e.g. ``requests/s``)."""
    plt = _pyplot()
    figure = draw(result, title, report=report, unit=unit)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw(
    result: Backtest,
    title: str,
    *,
    report: dict[str, Any] | None = None,
    unit: str | None = None,
) -> Figure:
    """The figure: the whole trace, the last two days against the baselines, the trade-off."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    report = build_report(result, title) if report is None else report
    if result.plan.decided_by:
        # Several metrics are scored together in units: the largest need of any of them.
        unit = "units: the largest any metric needs"
    trace, config = result.trace, result.config
    unit_capacity = config.unit_capacity
    hpa = _closest(result.baselines["hpa"], result.cost_ratio)
    predictive = _closest(result.baselines["ec2_predictive"], result.cost_ratio)
    hpa_ready = hpa_replay(trace, unit_capacity, config.lead_s, hpa.utilisation).ready
    forecast = scheduled_forecast(trace, config.lead_s)
    predictive_ready = predictive_replay(
        trace, unit_capacity, config.lead_s, predictive.utilisation, forecast
    ).ready
    plan_ready = result.plan.log.ready * unit_capacity
    scored = trace.times >= trace.start + config.warmup_s

    figure: Figure = plt.figure(figsize=(14, 9), layout="constrained")
    grid = figure.add_gridspec(2, 3)
    whole = figure.add_subplot(grid[0, :])
    zoom = figure.add_subplot(grid[1, :2])
    tradeoff = figure.add_subplot(grid[1, 2])
    # The summary's own lines (report.plan_figures, report.baseline_figures): the title and the
    # terminal show the same numbers.
    figure.suptitle(
        f"{title}\nplan: {plan_figures(report)}\n"
        f"hpa: {baseline_figures(report['baselines']['hpa'])}",
        fontsize=10,
    )

    dates = _dates(trace.times)
    whole.axvspan(
        dates[0],
        _dates(np.array([trace.start + config.warmup_s]))[0],
        color="0.93",
        zorder=0,
        label="warm-up (not scored)",
    )
    whole.fill_between(
        *_thin(dates, plan_ready.astype(np.float64), np.fmin),
        step="post",
        color=PLAN,
        alpha=0.3,
        lw=0,
        zorder=1,
        label="plan capacity (ready units x unit capacity)",
    )
    whole.plot(*_thin(dates, trace.values, np.fmax), color=DEMAND, lw=0.6, zorder=3, label="demand")
    _mark_switches(result, whole)
    whole.set_ylabel(_capacity_label(unit))
    whole.set_ylim(bottom=0)
    whole.legend(loc="upper left", ncols=3, fontsize=8)

    window = trace.times >= trace.times[-1] - ZOOM_S
    zd = dates[window]
    zoom.fill_between(
        zd,
        plan_ready[window].astype(np.float64),
        step="post",
        color=PLAN,
        alpha=0.3,
        lw=0,
        zorder=1,
        label="plan capacity",
    )
    zoom.step(
        zd,
        hpa_ready[window] * unit_capacity,
        where="post",
        color="tab:red",
        lw=1.0,
        alpha=0.8,
        zorder=2,
        label=f"HPA rules' capacity, u={hpa.utilisation:.2f}",
    )
    zoom.step(
        zd,
        predictive_ready[window] * unit_capacity,
        where="post",
        color="tab:orange",
        lw=1.0,
        alpha=0.8,
        zorder=2,
        label=f"EC2 predictive rules' capacity, u={predictive.utilisation:.2f}",
    )
    zoom.plot(zd, trace.values[window], color=DEMAND, lw=1.1, zorder=4, label="demand")
    short = window & scored & (trace.values > plan_ready)
    zoom.scatter(
        _dates(trace.times[short]),
        trace.values[short],
        color="tab:red",
        marker="x",
        s=18,
        zorder=5,
        label="plan short",
    )
    _mark_switches(result, zoom, since=float(trace.times[-1] - ZOOM_S))
    _mark_deciding_metric(result, zoom, window)
    zoom.set_title("last two days, baselines at about the plan's cost", fontsize=10)
    zoom.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M"))  # type: ignore[no-untyped-call]
    zoom.set_ylabel(_capacity_label(unit))
    zoom.set_ylim(bottom=0)
    whole.xaxis_date()
    zoom.xaxis_date()
    zoom.legend(loc="upper left", fontsize=8)

    for name, colour in (("hpa", "tab:red"), ("ec2_predictive", "tab:orange")):
        points = result.baselines[name]
        tradeoff.plot(
            [p.cost_ratio for p in points],
            [100 * p.score.short_fraction for p in points],
            marker=".",
            color=colour,
            label=name,
        )
    tradeoff.scatter(
        [result.cost_ratio],
        [100 * result.plan_score.short_fraction],
        s=80,
        color=PLAN,
        zorder=5,
        label="plan",
    )
    tradeoff.set_xlabel("cost ratio (1 = oracle)")
    tradeoff.set_ylabel("short steps (%)")
    tradeoff.set_yscale("symlog", linthresh=0.1)
    tradeoff.set_xlim(0.9, max(2.5, result.cost_ratio * 1.2))
    tradeoff.set_title("cost against shortfall (lower left is better)", fontsize=10)
    tradeoff.grid(alpha=0.3)
    tradeoff.legend(fontsize=8)
    return figure
