"""A one-page picture of a backtest: demand against the plan's and the baselines' capacity."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on servers and in CI

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from numpy.typing import NDArray

from daemon.backtest.baselines import (
    BaselinePoint,
    hpa_replay,
    predictive_replay,
    scheduled_forecast,
)
from daemon.backtest.report import Backtest

ZOOM_S = 2 * 86_400.0
# The figure is ~1,500 pixels wide: more points than this only cost memory (6.75M-step lines
# and steps took about a gigabyte in Agg).
MAX_POINTS = 20_000


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


def write_plot(result: Backtest, path: Path, title: str) -> None:
    trace, config = result.trace, result.config
    unit = config.unit_capacity
    hpa = _closest(result.baselines["hpa"], result.cost_ratio)
    predictive = _closest(result.baselines["ec2_predictive"], result.cost_ratio)
    hpa_ready = hpa_replay(trace, unit, config.lead_s, hpa.utilisation).ready * unit
    forecast = scheduled_forecast(trace, config.lead_s)
    predictive_ready = (
        predictive_replay(trace, unit, config.lead_s, predictive.utilisation, forecast).ready * unit
    )
    plan_ready = result.plan.log.ready * unit
    scored = trace.times >= trace.start + config.warmup_s

    figure = plt.figure(figsize=(14, 9), layout="constrained")
    grid = figure.add_gridspec(2, 3)
    whole = figure.add_subplot(grid[0, :])
    zoom = figure.add_subplot(grid[1, :2])
    tradeoff = figure.add_subplot(grid[1, 2])
    figure.suptitle(
        f"{title}: plan cost {result.cost_ratio:.2f}x oracle, "
        f"short on {100 * result.plan_score.short_fraction:.2f}% of steps "
        f"(HPA at u={hpa.utilisation:.2f}: {100 * hpa.score.short_fraction:.2f}%)"
    )

    dates = _dates(trace.times)
    whole.plot(*_thin(dates, trace.values, np.fmax), color="0.55", lw=0.6, label="demand")
    whole.step(
        *_thin(dates, plan_ready.astype(np.float64), np.fmin),
        where="post",
        color="tab:blue",
        lw=0.9,
        label="plan (ready)",
    )
    whole.axvspan(
        dates[0],
        _dates(np.array([trace.start + config.warmup_s]))[0],
        color="0.92",
        label="warm-up (not scored)",
    )
    _mark_switches(result, whole)
    whole.set_ylabel("demand / capacity")
    whole.legend(loc="upper left", ncols=3, fontsize=8)

    window = trace.times >= trace.times[-1] - ZOOM_S
    zd = dates[window]
    zoom.plot(zd, trace.values[window], color="0.3", lw=1.0, label="demand")
    zoom.step(zd, plan_ready[window], where="post", color="tab:blue", lw=1.4, label="plan")
    zoom.step(
        zd,
        hpa_ready[window],
        where="post",
        color="tab:red",
        lw=1.0,
        alpha=0.8,
        label=f"HPA rules, u={hpa.utilisation:.2f}",
    )
    zoom.step(
        zd,
        predictive_ready[window],
        where="post",
        color="tab:orange",
        lw=1.0,
        alpha=0.8,
        label=f"EC2 predictive rules, u={predictive.utilisation:.2f}",
    )
    short = window & scored & (trace.values > plan_ready)
    zoom.scatter(
        _dates(trace.times[short]),
        trace.values[short],
        color="tab:blue",
        marker="x",
        s=18,
        zorder=5,
        label="plan short",
    )
    _mark_switches(result, zoom, since=float(trace.times[-1] - ZOOM_S))
    zoom.set_title("last two days, baselines at about the plan's cost", fontsize=10)
    zoom.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M"))  # type: ignore[no-untyped-call]
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
        color="tab:blue",
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
    figure.savefig(path, dpi=110)
    plt.close(figure)
