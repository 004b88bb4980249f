"""The daemon hands freed heap pages back after each fit (issue 10's memory budget).

A fit on a worker thread leaves its model's arrays among the freed scratch of that thread's
malloc arena; without ``malloc_trim`` those holes stay resident, about 40 KB a target at 1,000
targets (``benchmarks/daemon_scale.py``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import daemon.forecasting
from daemon.forecasting import TargetForecaster
from daemon.runtime import allocator
from tests.runtime.test_forecaster_buffers import (
    END,
    MINUTE_SETTINGS,
    flat_forecaster,
    minute_times,
)

# In a fresh process (this one's heap is whatever earlier tests left): on a worker thread,
# 64 KiB scratch arrays (under the daemon's 128 KiB mmap threshold, so from the thread's malloc
# arena) interleaved with small arrays that stay, like a fit's scratch around its model; the
# scratch is freed, then the heap trimmed. Prints the resident MB freed by the trim.
FRAGMENT_THEN_TRIM = """
import threading
import numpy as np
from daemon.runtime.allocator import fix_mmap_threshold, trim_heap

def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

kept = []
def fit_like():
    scratch = []
    for _ in range(600):
        scratch.append(np.ones(8192))  # 64 KiB, touched
        kept.append(np.ones(512))  # 4 KiB that outlive the "fit"
    del scratch

assert fix_mmap_threshold()
worker = threading.Thread(target=fit_like)
worker.start()
worker.join()
before = rss_kb()
assert trim_heap()
print((before - rss_kb()) / 1024)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_heap_returns_the_holes_a_worker_thread_left() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    result = subprocess.run(
        [sys.executable, "-c", FRAGMENT_THEN_TRIM],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    freed_mb = float(result.stdout.strip())
    # 600 holes of 64 KiB are 37.5 MiB; whole pages of nearly all of them go back.
    assert freed_mb > 25.0


def test_every_fit_trims_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    def counted_trim() -> bool:
        trims.append(1)
        return True

    monkeypatch.setattr(daemon.forecasting, "trim_heap", counted_trim)
    forecaster = TargetForecaster(MINUTE_SETTINGS)
    end = END
    times = minute_times(3)
    demand = 100.0 + 50.0 * np.sin(2 * np.pi * times / 86_400.0)

    forecaster.train_on(times, demand, end)
    assert forecaster.forecaster_name == "model" and trims == [1]
    forecaster.load_history(times, demand)
    forecaster.train(end)
    assert trims == [1, 1]


def test_ticks_trim_the_heap_at_most_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    def counted_trim() -> bool:
        trims.append(1)
        allocator._LAST_TRIM[0] = clock[0]
        return True

    clock = [1000.0]
    monkeypatch.setattr(allocator, "trim_heap", counted_trim)
    monkeypatch.setattr(allocator, "_clock", lambda: clock[0])
    monkeypatch.setattr(allocator, "_LAST_TRIM", [-float("inf")])
    forecaster = flat_forecaster(3)
    end = END

    for minute in range(1, 4):  # a new value each minute: features rebuilt, churn made
        forecaster.observe(end + 60.0 * minute, 100.0 + minute)
        assert forecaster.forecast(end + 60.0 * minute)[0] is not None
        clock[0] += 20.0
    assert trims == [1]  # 40 s after the first trim: not yet
    clock[0] += 20.0
    forecaster.observe(end + 240.0, 50.0)
    forecaster.forecast(end + 240.0)
    assert trims == [1, 1]
