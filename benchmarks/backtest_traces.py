"""Backtest every trace of a folder and print the plan against both baselines.

Usage: python benchmarks/backtest_traces.py [TRACES_DIR] [--targets 0.003,0.01,0.03]
    [--only NAME]... [--json-out FILE] [--scale-down-stabilisation 0s]

TRACES_DIR defaults to ../shared/traces. Replay parameters come from its ``SOURCES.md``
(``--unit-capacity C --lead-time L --warmup W`` near each file's name) or a ``params.json``
(``{"file.csv": {"unit_capacity": C, "lead_time": "10m", "warmup": "7d"}}``). Without a folder,
a set of generated traces of different shapes stands in, and the output says so.

Goals (issue 10), at shortfall targets 0.003, 0.01 and 0.03: on no trace at any target are the
HPA rules' short steps at the plan's cost fewer than 0.95x the plan's; at 0.01 the median plan's
short steps are at most 1/3 of the HPA rules' and at most 1/1.5 of the EC2-predictive rules' at
equal cost; the realised short share is within 0.5x-2x of the target on at least 9 of 10 traces.
Columns ``hpa/plan`` and ``pred/plan`` are the baseline's short steps over the plan's (>= 1: the
plan is better), ``90% CI`` an interval for ``hpa/plan`` from the two short-step counts alone
(``ratio_interval``), ``active %`` each policy's share of the scored time the tournament acted
on. The plan's scale-down stabilisation is 0 s unless ``--scale-down-stabilisation`` says.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy.stats import beta

from daemon.backtest.report import build_report, run_backtest
from daemon.backtest.synthetic import TraceShape, generate_trace
from daemon.backtest.trace import Trace, load_trace
from daemon.backtest.walkforward import PlanConfig
from daemon.core.durations import parse_duration
from models.threads import capped_threads

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "traces"


@dataclass(frozen=True)
class Case:
    name: str
    trace: Trace
    unit_capacity: float
    lead_s: float
    warmup_s: float


_PARAMETER_PATTERNS = (
    ("unit_capacity", r"unit[-_ ]?capacity[`*:=| ]+\s*([\d.]+)"),
    ("lead_time", r"lead[-_ ]?time[`*:=| ]+\s*([\d.]+\s*[smhdw]?)\b"),
    ("warmup", r"warm[-_ ]?up[`*:=| ]+\s*([\d.]+\s*[smhdw]?)\b"),
)


def _from_table(text: str, names: list[str]) -> dict[str, dict[str, str]]:
    """Parameters from a markdown table whose header names capacity, lead and warm-up columns."""
    found: dict[str, dict[str, str]] = {}
    columns: dict[str, int] | None = None
    for line in text.splitlines():
        if not line.strip().startswith("|"):
            columns = None
            continue
        cells = [cell.strip(" `*") for cell in line.strip().strip("|").split("|")]
        lowered = [cell.lower() for cell in cells]
        if any("capacity" in cell for cell in lowered) and any("lead" in c for c in lowered):
            columns = {}
            for index, cell in enumerate(lowered):
                if "capacity" in cell:
                    columns["unit_capacity"] = index
                elif "lead" in cell:
                    columns["lead_time"] = index
                elif "warm" in cell:
                    columns["warmup"] = index
            continue
        if columns is None or len(columns) < 3:
            continue
        name = next((n for n in names if any(n in cell for cell in cells)), None)
        if name is not None:
            found[name] = {key: cells[index].replace(" ", "") for key, index in columns.items()}
    return found


def _from_sources_md(folder: Path) -> dict[str, dict[str, str]]:
    """Parameters per trace from SOURCES.md: a table, or flags/labels in each trace's section."""
    text = (folder / "SOURCES.md").read_text(encoding="utf-8")
    names = sorted(path.name for path in folder.glob("*.csv"))
    found = _from_table(text, names)
    starts = sorted((text.find(name), name) for name in names if text.find(name) >= 0)
    for (at, name), (following, _) in zip(starts, [*starts[1:], (len(text), "")], strict=True):
        if name in found:
            continue
        # A trace's section runs from its first mention to the first mention of the next trace.
        section = text[at:following]
        params = {}
        for key, pattern in _PARAMETER_PATTERNS:
            match = re.search(pattern, section, flags=re.IGNORECASE)
            if match:
                params[key] = match.group(1).replace(" ", "")
        if len(params) == 3:
            found[name] = params
    return found


def cases_from_folder(folder: Path) -> list[Case]:
    params: dict[str, dict[str, str]] = {}
    if (folder / "params.json").is_file():
        params = json.loads((folder / "params.json").read_text(encoding="utf-8"))
    elif (folder / "SOURCES.md").is_file():
        params = _from_sources_md(folder)
    for path in sorted(folder.glob("*.csv")):
        if path.name not in params:
            print(f"skipped {path.name}: no replay parameters found for it")
    cases = []
    for name, entry in sorted(params.items()):
        cases.append(
            Case(
                name=name,
                trace=load_trace(folder / name),
                unit_capacity=float(entry["unit_capacity"]),
                lead_s=parse_duration(str(entry["lead_time"])),
                warmup_s=parse_duration(str(entry["warmup"])),
            )
        )
    return cases


def generated_cases() -> list[Case]:
    shapes = {
        "gen-web-5m": (TraceShape(days=28, step_s=300.0, seed=1), 100.0, 600.0),
        "gen-noisy-1m": (TraceShape(days=21, step_s=60.0, noise=0.12, seed=2), 120.0, 600.0),
        "gen-bursty-5m": (
            TraceShape(days=28, step_s=300.0, bursts_per_day=4, burst_size=1.0, seed=3),
            100.0,
            900.0,
        ),
        "gen-hourly": (TraceShape(days=56, step_s=3600.0, seed=4), 90.0, 7200.0),
    }
    return [
        Case(name, generate_trace(shape), unit, lead, 7 * 86_400.0)
        for name, (shape, unit, lead) in shapes.items()
    ]


def _fmt(value: float | None, scale: float = 1.0, width: int = 7, digits: int = 2) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value * scale:>{width}.{digits}f}"


def run_case(
    case: Case, target: float, retrain_every_s: float, stabilisation_s: float = 0.0
) -> dict[str, Any]:
    config = PlanConfig(
        unit_capacity=case.unit_capacity,
        lead_s=case.lead_s,
        warmup_s=case.warmup_s,
        shortfall_target=target,
        retrain_every_s=retrain_every_s,
        scale_down_stabilisation_s=stabilisation_s,
    )
    with capped_threads():
        result = run_backtest(case.trace, config, progress=False)
    return build_report(result, case.name)


def _row(report: dict[str, Any]) -> str:
    hpa = report["baselines"]["hpa"]
    pred = report["baselines"]["ec2_predictive"]
    active = report["plan"].get("tournament", {}).get("active_share", {})
    top = ",".join(f"{name[:5]}{100 * share:.0f}" for name, share in active.items() if share)
    return (
        f"{report['trace'][:36]:36} {report['parameters']['shortfall_target']:>6.3f} "
        f"{report['cost_ratio']:>6.3f} {_fmt(report['short_fraction'], 100)} "
        f"{_fmt(hpa['at_equal_cost']['baseline_short_fraction'], 100)} "
        f"{_fmt(_inverse(hpa['at_equal_cost']['plan_short_over_baseline']), width=8)} "
        f"{_fmt(pred['at_equal_cost']['baseline_short_fraction'], 100)} "
        f"{_fmt(_inverse(pred['at_equal_cost']['plan_short_over_baseline']), width=9)} "
        f"{_interval_text(report):>11} "
        f"{report['plan']['replay_seconds']:>6.1f}  {top}"
    )


def ratio_interval(
    plan_short: int, baseline_short: float, confidence: float = 0.9
) -> tuple[float, float] | None:
    """A ``confidence`` interval for the ratio of the baseline's short-step rate to the plan's
    (``hpa/plan``), treating both counts as Poisson: given their sum, the plan's share of it is
    binomial, and the exact (Clopper-Pearson) interval for that share maps to one for the
    ratio. None without a short step on either side. It says how much of a cell's distance
    from 1 a handful of short steps can explain: at a 0.3 % target a replay of eight days
    holds about seven."""
    baseline = round(baseline_short)
    total = plan_short + baseline
    if total == 0:
        return None
    tail = (1.0 - confidence) / 2.0
    low_share = 0.0 if plan_short == 0 else float(beta.ppf(tail, plan_short, baseline + 1))
    high_share = 1.0 if baseline == 0 else float(beta.ppf(1 - tail, plan_short + 1, baseline))
    # ratio = (1 - share) / share, decreasing in the share.
    low = (1.0 - high_share) / high_share
    high = math.inf if low_share == 0.0 else (1.0 - low_share) / low_share
    return low, high


def _interval(report: dict[str, Any]) -> tuple[float, float] | None:
    baseline_share = report["baselines"]["hpa"]["at_equal_cost"]["baseline_short_fraction"]
    if baseline_share is None:
        return None
    steps = report["scored_steps"]
    return ratio_interval(round(report["short_fraction"] * steps), baseline_share * steps)


def _below_goal(report: dict[str, Any]) -> bool:
    ratio = _inverse(report["baselines"]["hpa"]["at_equal_cost"]["plan_short_over_baseline"])
    return ratio is not None and ratio < 0.95


def _interval_text(report: dict[str, Any]) -> str:
    interval = _interval(report)
    if interval is None:
        return "n/a"
    low, high = interval
    return f"{low:.2f}-{'inf' if math.isinf(high) else f'{high:.2f}'}"


def _inverse(ratio: float | None) -> float | None:
    """plan/baseline -> baseline/plan (how many times fewer short steps the plan has)."""
    if ratio is None:
        return None
    return math.inf if ratio == 0 else 1.0 / ratio


def summary(reports: list[dict[str, Any]], targets: list[float]) -> list[str]:
    """The goals of issue 10, per target."""
    lines = [
        "",
        "goals (issue 10): hpa/plan >= 0.95 on every trace and target; at 0.01 median",
        "plan/hpa <= 1/3 and plan/pred <= 1/1.5; short share in 0.5x-2x of the target on",
        ">= 9 of 10 traces",
    ]
    lines.append(
        f"{'target':>7} {'worst hpa/plan':>40} {'med plan/hpa':>13} {'med plan/pred':>14} "
        f"{'in 0.5-2x':>10}"
    )
    for target in targets:
        chosen = [r for r in reports if r["parameters"]["shortfall_target"] == target]
        hpa = [
            (r["baselines"]["hpa"]["at_equal_cost"]["plan_short_over_baseline"], r["trace"])
            for r in chosen
        ]
        pred = [
            r["baselines"]["ec2_predictive"]["at_equal_cost"]["plan_short_over_baseline"]
            for r in chosen
        ]
        known = [(ratio, name) for ratio, name in hpa if ratio is not None]
        worst = max(known, default=None)
        worst_text = "n/a" if worst is None else f"{_inverse(worst[0]):.2f} {worst[1][:14]}"
        below = [r for r in chosen if _below_goal(r)]
        if below:
            # How many of the cells under 0.95 could be at 0.95 or above, by the count of
            # short steps alone (their 90 % interval reaches it).
            noise = sum((_interval(r) or (0.0, math.inf))[1] >= 0.95 for r in below)
            worst_text += f" ({len(below)} < 0.95, {noise} within noise)"
        med_hpa = statistics.median([r for r, _ in known]) if known else None
        known_pred = [r for r in pred if r is not None]
        med_pred = statistics.median(known_pred) if known_pred else None
        in_band = sum(0.5 * target <= r["short_fraction"] <= 2 * target for r in chosen)
        lines.append(
            f"{target:>7.3f} {worst_text:>40} {_fmt(med_hpa, width=13)} "
            f"{_fmt(med_pred, width=14)} {in_band:>4} of {len(chosen)}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--shortfall-target", type=float, default=None)
    parser.add_argument(
        "--targets", default="0.003,0.01,0.03", help="comma-separated shortfall targets"
    )
    parser.add_argument("--only", action="append", default=[], help="trace names containing this")
    parser.add_argument("--retrain-every", default="1d")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--scale-down-stabilisation",
        default="0s",
        help="the plan's scale-down window (default 0s, as every published run of this "
        "benchmark; the product's default is 300s: see benchmarks/README.md)",
    )
    args = parser.parse_args()
    if args.shortfall_target is not None:
        targets = [args.shortfall_target]
    else:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
    if args.folder.is_dir():
        cases = cases_from_folder(args.folder)
        print(f"traces from {args.folder}: {len(cases)}")
    else:
        cases = generated_cases()
        print(f"{args.folder} not found: using {len(cases)} generated traces instead")
    if args.only:
        cases = [case for case in cases if any(part in case.name for part in args.only)]
    print(
        f"{'trace':36} {'target':>6} {'cost':>6} {'short%':>7} {'hpa%':>7} {'hpa/plan':>8} "
        f"{'pred%':>7} {'pred/plan':>9} {'90% CI':>11} {'secs':>6}  active %"
    )
    reports = []
    for case in cases:
        for target in targets:
            report = run_case(
                case,
                target,
                parse_duration(args.retrain_every),
                parse_duration(args.scale_down_stabilisation),
            )
            reports.append(report)
            print(_row(report), flush=True)
    if not reports:
        print("no traces")
        return 1
    for line in summary(reports, targets):
        print(line)
    if args.json_out:
        args.json_out.write_text(json.dumps(reports, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
