"""The status page at scale: memory of the chart rings, cost of a tick's record, render time
and page size, for 1,000 targets each with a full six-hour ring.

Not a test (timing on a shared machine is noise for pass/fail): run it by hand after changing
``daemon/status_page.py``, ``python benchmarks/status_page.py [targets]``.
"""

from __future__ import annotations

import math
import sys
import time
import tracemalloc

from daemon.status_page import POINTS, WINDOW_S, StatusBoard, TargetInfo, render_page

TICKS = 2 * POINTS  # enough 60 s ticks to fill every ring and roll it


def main(targets: int) -> None:
    board = StatusBoard()
    names = [f"target-{i:04d}" for i in range(targets)]
    board.targets = {
        name: TargetInfo("deployment", "active", 2, 80, 50.0, "prom") for name in names
    }
    tracemalloc.start()
    began = time.perf_counter()
    for tick in range(TICKS):
        at = 1_700_000_000.0 + tick * WINDOW_S / POINTS
        for name in names:
            board.record(
                name,
                at,
                demand=500.0 + 300.0 * math.sin(tick / 40.0),
                forecast=550.0,
                desired=12,
                current=12,
                ready=12,
                reason="forecast",
            )
    elapsed = time.perf_counter() - began
    memory, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{targets} targets, {TICKS} ticks each")
    print(f"record: {elapsed / (TICKS * targets) * 1e6:.1f} us per tick")
    print(f"memory: {memory / 2**20:.1f} MiB ({memory / targets / 1024:.1f} KiB a target)")
    health = {"ready": True, "reasons": [], "targets": {}}
    for chart in (None, names[-1]):
        began = time.perf_counter()
        page = render_page(board, health, chart=chart)
        took = time.perf_counter() - began
        label = "page (first 50 charts)" if chart is None else "page (?target=one)"
        print(f"{label}: {took * 1000:.0f} ms, {len(page) / 2**20:.2f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
