"""A bad trace gets a one-line error and exit status 65 (EX_DATAERR); a good one lands on a grid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon.backtest.trace import load_trace

GOOD = (
    "timestamp,value\n2026-01-01T00:00:00Z,1\n2026-01-01T00:05:00Z,2\n"
    "2026-01-01T00:10:00Z,3\n2026-01-01T00:20:00Z,5\n"
)


def test_gaps_become_missing_steps_and_labels_keep_the_trace_format(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(GOOD)
    trace = load_trace(path)
    assert trace.step_s == 300.0
    np.testing.assert_array_equal(trace.values, [1.0, 2.0, 3.0, np.nan, 5.0])
    assert trace.labels[3] == "2026-01-01T00:15:00Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,value\n", "no rows"),
        ("", "header"),
        ("timestamp,value\n2026-01-01T00:00:00Z,abc\n2026-01-01T00:05:00Z,1\n", "not a number"),
        ("timestamp,value\n2026-01-01T00:05:00Z,1\n2026-01-01T00:00:00Z,1\n", "not ascending"),
        ("timestamp,value\n2026-01-01T00:00:00Z,1\n2026-01-01T00:00:00Z,2\n", "duplicate"),
        ("timestamp,value\nyesterday,1\n2026-01-01T00:00:00Z,2\n", "ISO-8601"),
        ("timestamp,value\n2026-01-01T00:00:00Z,nan\n2026-01-01T00:05:00Z,1\n", "finite"),
        ("timestamp,value\n2026-01-01T00:00:00Z,-1\n2026-01-01T00:05:00Z,1\n", "negative"),
    ],
)
def test_bad_traces_exit_non_zero_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    result = _backtest(path, tmp_path, "1d")
    assert result.returncode == 65  # EX_DATAERR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_a_warmup_longer_than_the_trace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(GOOD)
    result = _backtest(path, tmp_path, "7d")
    assert result.returncode == 65  # EX_DATAERR
    assert "warm-up (7d) is not shorter than the trace (20m)" in result.stderr


def _backtest(path: Path, tmp_path: Path, warmup: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "backtest",
            str(path),
            "--unit-capacity",
            "1",
            "--lead-time",
            "5m",
            "--warmup",
            warmup,
            "--decisions-out",
            str(tmp_path / "d.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
