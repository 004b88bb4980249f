"""Backtest every trace of a folder and print the plan against both baselines.

Usage: python benchmarks/backtest_traces.py [TRACES_DIR] [--shortfall-target 0.01]

TRACES_DIR defaults to ../shared/traces. Replay parameters come from its ``SOURCES.md``
(``--unit-capacity C --lead-time L --warmup W`` near each file's name) or a ``params.json``
(``{"file.csv": {"unit_capacity": C, "lead_time": "10m", "warmup": "7d"}}``). Without a folder,
a set of generated traces of different shapes stands in, and the output says so.

Goals (issue 2): at equal cost the plan's short steps are at most 1/3 of the HPA rules' and at
most 2/3 of the EC2-predictive rules' (median over the traces); on no trace worse than the HPA
rules at equal cost by more than 10 %; realised short fraction within 0.5 %..2 % on most traces.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--shortfall-target", type=float, default=0.01)
    parser.add_argument("--retrain-every", default="1d")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if args.folder.is_dir():
        cases = cases_from_folder(args.folder)
        print(f"traces from {args.folder}: {len(cases)}")
    else:
        cases = generated_cases()
        print(f"{args.folder} not found: using {len(cases)} generated traces instead")
    header = (
        f"{'trace':28} {'steps':>7} {'cost':>6} {'short%':>7} {'hpa%':>7} {'plan/hpa':>8} "
        f"{'pred%':>7} {'plan/pred':>9} {'save_hpa':>8} {'secs':>6}"
    )
    print(header)
    hpa_ratios: list[float] = []
    pred_ratios: list[float] = []
    shorts: list[float] = []
    reports = []
    for case in cases:
        config = PlanConfig(
            unit_capacity=case.unit_capacity,
            lead_s=case.lead_s,
            warmup_s=case.warmup_s,
            shortfall_target=args.shortfall_target,
            retrain_every_s=parse_duration(args.retrain_every),
            scale_down_stabilisation_s=0.0,
        )
        with capped_threads():
            result = run_backtest(case.trace, config, progress=False)
        report = build_report(result, case.name)
        reports.append(report)
        hpa = report["baselines"]["hpa"]
        pred = report["baselines"]["ec2_predictive"]
        hpa_ratio = hpa["at_equal_cost"]["plan_short_over_baseline"]
        pred_ratio = pred["at_equal_cost"]["plan_short_over_baseline"]
        saving = hpa["at_equal_shortfall"]["plan_saving"]
        if hpa_ratio is not None:
            hpa_ratios.append(hpa_ratio)
        if pred_ratio is not None:
            pred_ratios.append(pred_ratio)
        shorts.append(report["short_fraction"])

        def fmt(value: float | None, scale: float = 1.0, width: int = 7, digits: int = 2) -> str:
            return f"{'n/a':>{width}}" if value is None else f"{value * scale:>{width}.{digits}f}"

        print(
            f"{case.name[:28]:28} {report['steps']:>7} {report['cost_ratio']:>6.3f} "
            f"{fmt(report['short_fraction'], 100)} "
            f"{fmt(hpa['at_equal_cost']['baseline_short_fraction'], 100)} "
            f"{fmt(hpa_ratio, width=8)} "
            f"{fmt(pred['at_equal_cost']['baseline_short_fraction'], 100)} "
            f"{fmt(pred_ratio, width=9)} {fmt(saving, 100, 7, 1)}% "
            f"{report['plan']['replay_seconds']:>6.1f}",
            flush=True,
        )
    if not shorts:
        print("no traces")
        return 1
    in_band = sum(0.005 <= s <= 0.02 for s in shorts)
    median_hpa = statistics.median(hpa_ratios) if hpa_ratios else None
    median_pred = statistics.median(pred_ratios) if pred_ratios else None
    worst_hpa = max(hpa_ratios) if hpa_ratios else None
    print()
    print(f"median plan/hpa short at equal cost:  {median_hpa}  (goal <= 0.333)")
    print(f"median plan/pred short at equal cost: {median_pred}  (goal <= 0.667)")
    print(f"worst plan/hpa short at equal cost:   {worst_hpa}  (goal <= 1.10)")
    print(f"short fraction within 0.5-2 %: {in_band} of {len(shorts)} traces (goal: most)")
    if args.json_out:
        args.json_out.write_text(json.dumps(reports, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
