"""Score the plan and the baselines under ``shared/SCORING.md`` and assemble the report."""

from __future__ import annotations

import csv
import dataclasses
import math
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from daemon.backtest.baselines import (
    BaselinePoint,
    at_equal_cost,
    at_equal_shortfall,
    sweep,
)
from daemon.backtest.replay import (
    Score,
    oracle_decisions,
    replay_decisions,
    score,
    scored_mask,
)
from daemon.backtest.trace import Trace, label_chunks
from daemon.backtest.walkforward import MetricReplay, PlanConfig, PlanReplay, replay_plan
from daemon.core.durations import format_duration
from daemon.errors import InputError
from models.features import lead_steps_for as lead_steps

BASELINES = {"hpa": "hpa", "ec2_predictive": "predictive"}


@dataclass(frozen=True, slots=True)
class Backtest:
    trace: Trace
    config: PlanConfig
    plan: PlanReplay
    plan_score: Score
    oracle_billed: float
    baselines: dict[str, list[BaselinePoint]]

    @property
    def cost_ratio(self) -> float:
        return self.plan_score.cost_ratio(self.oracle_billed)


def check_inputs(trace: Trace, config: PlanConfig) -> None:
    """Refuse parameters that cannot give a meaningful replay, with a one-line reason."""
    span = float(trace.times[-1] - trace.times[0])
    if not (config.unit_capacity > 0 and math.isfinite(config.unit_capacity)):
        raise InputError(f"--unit-capacity must be a positive number, got {config.unit_capacity}")
    if config.lead_s <= 0:
        raise InputError("--lead-time must be longer than zero")
    if not 0 < config.shortfall_target < 0.5:
        raise InputError(f"--shortfall-target must be in (0, 0.5), got {config.shortfall_target}")
    if config.warmup_s >= span:
        raise InputError(
            f"the warm-up ({format_duration(config.warmup_s)}) is not shorter than the trace "
            f"({format_duration(span)})"
        )
    if not scored_mask(trace.times, trace.values, config.warmup_s).any():
        raise InputError("no observation after the warm-up: nothing to score")


def units_view(
    trace: Trace, config: PlanConfig, further: tuple[MetricReplay, ...]
) -> tuple[Trace, PlanConfig]:
    """Several metrics scored as one: each step's demand in units is the largest any metric
    needs (demand over its unit capacity), so a step is short when any metric is; scored with
    a unit capacity of one. The HPA baseline on it is the HPA's own rule over several metrics."""
    needs = [trace.values / config.unit_capacity]
    for metric in further:
        if len(metric.trace) != len(trace) or metric.trace.step_s != trace.step_s:
            raise InputError(f"metric {metric.name!r} is not on the trace's grid")
        needs.append(metric.trace.values / metric.config.unit_capacity)
    # fmax skips a metric missing at a step; a step no metric observed stays unobserved.
    units = np.fmax.reduce(np.vstack(needs), axis=0)
    planner = dataclasses.replace(config.planner_settings(), unit_capacity=1.0)
    return (
        Trace(trace.times, units, trace.step_s, trace.labels),
        dataclasses.replace(config, unit_capacity=1.0, planner=planner),
    )


def run_backtest(
    trace: Trace,
    config: PlanConfig,
    *,
    progress: bool | None = None,
    metric: str | None = None,
    further: tuple[MetricReplay, ...] = (),
) -> Backtest:
    """Replay and score ``trace``; with ``further`` metrics (the trace is ``metric``'s), the
    plan decides on all of them and is scored on the units they need (``units_view``)."""
    own_capacity = config.unit_capacity
    replayed_trace, replayed_config = trace, config
    if further:
        check_inputs(trace, config)
        trace, config = units_view(trace, config, further)
    check_inputs(trace, config)
    scored = scored_mask(trace.times, trace.values, config.warmup_s)
    k = lead_steps(config.lead_s, trace.step_s)
    oracle = replay_decisions(
        trace.times, config.lead_s, oracle_decisions(trace.values, config.unit_capacity, k)
    )
    oracle_billed = score(
        trace.values, oracle.ready, oracle.billed, scored, config.unit_capacity
    ).billed_units
    del oracle  # two arrays of the trace's length, not needed during the plan and the sweeps
    plan = replay_plan(
        replayed_trace, replayed_config, progress=progress, metric=metric, further=further
    )
    if further:
        # Shown beside demand in units: the target's own metric's forecast, in units too.
        plan = dataclasses.replace(
            plan,
            forecast=plan.forecast / own_capacity,
            base_forecast=plan.base_forecast / own_capacity,
        )
    plan_score = score(trace.values, plan.log.ready, plan.log.billed, scored, config.unit_capacity)
    baselines = {
        name: sweep(
            trace,
            config.unit_capacity,
            config.lead_s,
            scored,
            oracle_billed,
            kind,
            progress=progress,
            reach_cost=plan_score.cost_ratio(oracle_billed),
        )
        for name, kind in BASELINES.items()
    }
    return Backtest(trace, config, plan, plan_score, oracle_billed, baselines)


def _ratio(numerator: float, denominator: float | None) -> float | None:
    if denominator is None:
        return None
    if denominator == 0:
        return 0.0 if numerator == 0 else None
    return numerator / denominator


def baseline_report(points: list[BaselinePoint], plan_cost: float, plan_short: float) -> Any:
    short_at_cost = at_equal_cost(points, plan_cost)
    cost_at_short = at_equal_shortfall(points, plan_short)
    return {
        "at_equal_cost": {
            "cost_ratio": plan_cost,
            "baseline_short_fraction": short_at_cost,
            # < 1: the plan is short on fewer steps than the baseline for the same money.
            "plan_short_over_baseline": _ratio(plan_short, short_at_cost),
        },
        "at_equal_shortfall": {
            "short_fraction": plan_short,
            "baseline_cost_ratio": cost_at_short,
            # > 0: the share of the baseline's cost the plan saves for the same shortfall.
            "plan_saving": None if cost_at_short is None else 1.0 - plan_cost / cost_at_short,
        },
        "sweep": [
            {
                "utilisation": p.utilisation,
                "cost_ratio": p.cost_ratio,
                "short_fraction": p.score.short_fraction,
                "unserved_fraction": p.score.unserved_fraction,
            }
            for p in points
        ],
    }


def build_report(result: Backtest, trace_name: str) -> dict[str, Any]:
    config, plan, plan_score = result.config, result.plan, result.plan_score
    planner = config.planner_settings()
    scored = scored_mask(result.trace.times, result.trace.values, config.warmup_s)
    reasons = Counter(r for r, s in zip(plan.reasons, scored.tolist(), strict=True) if s)
    return {
        "trace": trace_name,
        "steps": len(result.trace),
        "step_s": result.trace.step_s,
        "scored_steps": plan_score.scored_steps,
        "parameters": {
            "unit_capacity": config.unit_capacity,
            "lead_time_s": config.lead_s,
            "warmup_s": config.warmup_s,
            "shortfall_target": config.shortfall_target,
            "retrain_every_s": config.retrain_every_s,
            "reactive_utilisation": planner.reactive_utilisation,
            "scale_down_stabilisation_s": planner.scale_down_stabilisation_s,
            "scale_down_tolerance": planner.scale_down_tolerance,
            "min_units": planner.min_units,
            "max_units": planner.max_units,
        },
        "cost_ratio": result.cost_ratio,
        "short_fraction": plan_score.short_fraction,
        "unserved_fraction": plan_score.unserved_fraction,
        "plan": {
            "billed_units": plan_score.billed_units,
            "replay_seconds": plan.seconds,
            "training_seconds": plan.training_seconds,
            "fits": len(plan.fits),
            "last_fit": plan.fits[-1].reason if plan.fits else None,
            "reasons": dict(sorted(reasons.items())),
            "tournament": tournament_report(plan, scored.tolist()),
            **({"metrics": metrics_report(plan, scored.tolist())} if plan.decided_by else {}),
        },
        "oracle": {"billed_units": result.oracle_billed},
        "baselines": {
            name: baseline_report(points, result.cost_ratio, plan_score.short_fraction)
            for name, points in result.baselines.items()
        },
    }


def metrics_report(plan: PlanReplay, scored: list[bool]) -> dict[str, Any]:
    """With several metrics: the share of scored steps each metric decided."""
    decided = Counter(name for name, s in zip(plan.decided_by, scored, strict=True) if s)
    total = sum(decided.values())
    return {
        "decided_share": {
            name: count / total if total else 0.0 for name, count in sorted(decided.items())
        }
    }


def tournament_report(plan: PlanReplay, scored: list[bool]) -> dict[str, Any]:
    """Each policy's share of the scored steps it acted on, the switch log, the final board."""
    acted = Counter(name for name, s in zip(plan.active, scored, strict=True) if s)
    total = sum(acted.values())
    return {
        "active_share": {
            name: (acted.get(name, 0) / total if total else 0.0)
            for name in sorted({*acted, *(row.name for row in plan.scoreboard)})
        },
        "switches": [event.as_json() for event in plan.switches],
        "scoreboard": [
            {
                "name": row.name,
                "label": row.label,
                "score": row.score if math.isfinite(row.score) else None,
                "mean_billed": row.mean_billed if math.isfinite(row.mean_billed) else None,
                "short_share": row.short_share,
                "active": row.active,
            }
            for row in plan.scoreboard
        ],
    }


def write_decisions(result: Backtest, path: Path, *, progress: bool | None = None) -> None:
    """``timestamp,desired`` per grid step from the first decision on, plus explanations.

    Written a chunk of rows at a time, the timestamps formatted per chunk (``label_chunks``).
    """
    plan, trace = result.plan, result.trace
    show = sys.stderr.isatty() if progress is None else progress
    with (
        path.open("w", newline="", encoding="utf-8") as handle,
        tqdm(
            total=len(trace),
            desc="decisions",
            unit="row",
            unit_scale=True,
            disable=not show,
            mininterval=0.5,
            leave=False,
        ) as bar,
    ):
        writer = csv.writer(handle)
        several = bool(plan.decided_by)
        header = ["timestamp", "desired", "forecast", "ready", "reason", "policy"]
        writer.writerow([*header, "metric"] if several else header)
        start = 0
        for labels in label_chunks(trace.labels):
            rows = slice(start, start + len(labels))
            policies = plan.active[rows] if plan.active else [""] * len(labels)
            columns: Iterable[tuple[Any, ...]] = zip(
                labels,
                plan.log.desired[rows].tolist(),
                ["" if not math.isfinite(f) else f"{f:.6g}" for f in plan.forecast[rows].tolist()],
                plan.log.ready[rows].tolist(),
                plan.reasons[rows],
                policies,
                strict=True,
            )
            if several:
                metrics = plan.decided_by[rows]
                columns = ((*row, metric) for row, metric in zip(columns, metrics, strict=True))
            writer.writerows(columns)
            bar.update(len(labels))
            start += len(labels)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def plan_figures(report: dict[str, Any]) -> str:
    """The plan's cost and shortfall as the summary prints them (the plot's title reuses it)."""
    return (
        f"cost_ratio {report['cost_ratio']:.3f}  short {_pct(report['short_fraction'])}  "
        f"unserved {_pct(report['unserved_fraction'])}"
    )


def baseline_figures(base: dict[str, Any]) -> str:
    """A baseline against the plan at equal cost and at equal shortfall, as the summary prints
    it; the plot's title shows the HPA's with this very text, so the two cannot disagree."""
    equal_cost = base["at_equal_cost"]
    equal_short = base["at_equal_shortfall"]
    ratio = equal_cost["plan_short_over_baseline"]
    return (
        f"at equal cost short {_pct(equal_cost['baseline_short_fraction'])} "
        f"(plan/baseline {'n/a' if ratio is None else f'{ratio:.2f}'}); "
        f"at equal shortfall cost {equal_short['baseline_cost_ratio'] or float('nan'):.3f} "
        f"(plan saves {_pct(equal_short['plan_saving'])})"
    )


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines a person reads on the terminal."""
    lines = [
        f"trace {report['trace']}: {report['steps']} steps of {report['step_s']:g}s, "
        f"{report['scored_steps']} scored",
        f"plan: {plan_figures(report)}  "
        f"({report['plan']['replay_seconds']:.1f}s, {report['plan']['fits']} fits)",
    ]
    lines += [f"{name}: {baseline_figures(base)}" for name, base in report["baselines"].items()]
    decided = report["plan"].get("metrics", {}).get("decided_share")
    if decided:
        shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in decided.items())
        lines.append(f"decided by metric: {shares}")
    return lines
