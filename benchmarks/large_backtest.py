"""Time and measure the memory of ``elasticd backtest`` on a large generated trace.

Usage: python benchmarks/large_backtest.py [--rows N] [--step 10s] [--plot] [--keep DIR]
    [--progress] [--json-out FILE]

Generates ``N`` rows (default 6.75 million: about 200 MB of CSV, the size of the trace in
issue 9, defect 12) of synthetic demand (daemon.backtest.synthetic) at a fixed step into a
temporary directory, runs ``elasticd backtest`` on it as a subprocess with the demo's plan
(unit capacity 100, lead time 10 minutes, 7 days of warm-up), and prints the rows, the wall
time, the seconds per million rows and the peak resident memory of the backtest process
(``VmHWM`` polled from ``/proc``, and ``ru_maxrss`` after it exits).

Goals (defect 12): peak RSS under 1 GB at 6.75M rows, and seconds per million rows that do
not grow with the number of rows (run it at 200k, 1M and 6.75M and compare).

The machine is shared: run it under ``nice``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from daemon.backtest.synthetic import TraceShape, generate_demand
from daemon.core.durations import parse_duration

DEFAULT_ROWS = 6_750_000
CHUNK_ROWS = 500_000
ELASTICD = Path(sys.executable).with_name("elasticd")


def write_large_trace(path: Path, rows: int, step_s: float, seed: int = 12) -> int:
    """Write ``rows`` observed rows of synthetic demand (gaps included); returns the bytes."""
    # The generator drops about 0.5 % of steps as gaps: ask for a few more and keep ``rows``.
    steps = math.ceil(rows * 1.02) + 16
    shape = TraceShape(days=steps * step_s / 86_400.0, step_s=step_s, seed=seed)
    times, values = generate_demand(shape)
    observed = np.isfinite(values)
    times, values = times[observed][:rows], values[observed][:rows]
    if times.size < rows:
        raise SystemExit(f"generated only {times.size} rows, wanted {rows}")
    with path.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,value\n")
        # In chunks: the formatted strings of all rows at once would cost more memory than
        # the backtest is allowed.
        for start in range(0, rows, CHUNK_ROWS):
            stamps = np.datetime_as_string(
                times[start : start + CHUNK_ROWS].astype("datetime64[s]"), unit="s"
            )
            chunk = values[start : start + CHUNK_ROWS].tolist()
            handle.write(
                "".join(f"{s}Z,{v:g}\n" for s, v in zip(stamps.tolist(), chunk, strict=True))
            )
    return path.stat().st_size


def _vm_hwm_kib(pid: int) -> int:
    """The process's peak resident set so far (``VmHWM``), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_backtest(trace: Path, out: Path, *, plot: bool, progress: bool) -> dict[str, Any]:
    command = [
        str(ELASTICD),
        "backtest",
        str(trace),
        "--unit-capacity",
        "100",
        "--lead-time",
        "10m",
        "--warmup",
        "7d",
        "--decisions-out",
        str(out / "decisions.csv"),
        "--report-out",
        str(out / "report.json"),
        "--progress" if progress else "--no-progress",
    ]
    if plot:
        command += ["--plot-out", str(out / "plot.png")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    began = time.perf_counter()
    # stderr is inherited so a progress bar shows on the terminal that runs the benchmark.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    peak_kib = 0
    while child.poll() is None:
        peak_kib = max(peak_kib, _vm_hwm_kib(child.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - began
    stdout = child.stdout.read() if child.stdout else ""
    # ru_maxrss of the children waited for (only this one): the peak the kernel recorded.
    peak_kib = max(peak_kib, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {
        "exit": child.returncode,
        "seconds": seconds,
        "peak_rss_mib": peak_kib / 1024,
        "stdout": stdout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--step", default="10s", help="grid step of the trace (default 10s)")
    parser.add_argument("--plot", action="store_true", help="also write the plot")
    parser.add_argument("--progress", action="store_true", help="show the backtest's bars")
    parser.add_argument("--keep", type=Path, help="write the trace and outputs here, keep them")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="large-backtest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        trace = work / "trace.csv"
        began = time.perf_counter()
        size = write_large_trace(trace, args.rows, parse_duration(args.step))
        print(
            f"trace: {args.rows} rows, {size / 1e6:.0f} MB, "
            f"step {args.step} (written in {time.perf_counter() - began:.0f} s)",
            flush=True,
        )
        result = run_backtest(trace, work, plot=args.plot, progress=args.progress)
        if result["exit"] != 0:
            raise SystemExit(f"elasticd backtest exited {result['exit']}")
        decisions = sum(1 for _ in (work / "decisions.csv").open(encoding="utf-8")) - 1
        per_million = result["seconds"] / (args.rows / 1e6)
        print(result["stdout"], end="")
        print(
            f"rows {args.rows}  wall {result['seconds']:.1f} s  "
            f"{per_million:.1f} s per million rows  peak RSS {result['peak_rss_mib']:.0f} MiB  "
            f"decisions {decisions}"
        )
        if args.json_out:
            summary = {
                "rows": args.rows,
                "step": args.step,
                "trace_bytes": size,
                "seconds": result["seconds"],
                "seconds_per_million_rows": per_million,
                "peak_rss_mib": result["peak_rss_mib"],
                "plot": args.plot,
            }
            args.json_out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
