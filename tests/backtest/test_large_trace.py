"""Large backtests (issue 9, defect 12): the streamed parse, the vectorised replays and the
progress bars.

The capacity replay and the baselines were rewritten to be linear and chunked; the reference
implementations below are the step-by-step code they replaced, and every replay must give the
very same numbers. Chunks are made tiny here so that a few thousand steps cross many chunk
boundaries.
"""

from __future__ import annotations

import csv
import math
import tracemalloc
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from daemon.backtest import baselines, replay
from daemon.backtest.baselines import (
    DEFAULT_UTILISATIONS,
    HpaRule,
    hpa_replay,
    predictive_replay,
    scheduled_forecast,
    sweep,
)
from daemon.backtest.replay import (
    CapacitySimulator,
    ReplayLog,
    oracle_decisions,
    replay_decisions,
    score,
    scored_mask,
)
from daemon.backtest.synthetic import TraceShape, generate_demand, generate_trace
from daemon.backtest.trace import (
    LabelStyle,
    Trace,
    format_label,
    format_labels,
    load_trace,
    parse_timestamp,
    trace_from_arrays,
)
from daemon.core.reactive import hpa_recommendation

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


# --- The step-by-step implementations the vectorised ones replaced (reference) -------------


class ReferenceCapacity:
    """The replay rules as first written: a list of pending requests summed at every step."""

    def __init__(self, lead_s: float) -> None:
        self.lead_s = lead_s
        self.ready = 0
        self._pending: list[list[float]] = []
        self.started = False

    @property
    def total(self) -> int:
        return self.ready + int(sum(count for _, count in self._pending))

    def advance(self, now: float) -> int:
        while self._pending and self._pending[0][0] <= now:
            self.ready += int(self._pending.pop(0)[1])
        return self.ready

    def decide(self, now: float, desired: int) -> int:
        if not self.started:
            self.started = True
            self.ready = max(0, desired)
            return self.ready
        total = self.total
        if desired > total:
            self._pending.append([now + self.lead_s, float(desired - total)])
        elif desired < total:
            surplus = total - desired
            while surplus and self._pending:
                newest = self._pending[-1]
                take = min(surplus, int(newest[1]))
                newest[1] -= take
                surplus -= take
                if newest[1] == 0:
                    self._pending.pop()
            self.ready -= surplus
        return self.total


def reference_replay(times: FloatArray, lead_s: float, policy: replay.Policy) -> ReplayLog:
    size = times.size
    desired = np.zeros(size, dtype=np.int64)
    ready = np.zeros(size, dtype=np.int64)
    billed = np.zeros(size, dtype=np.int64)
    capacity = ReferenceCapacity(lead_s)
    for i in range(size):
        now = float(times[i])
        ready[i] = capacity.advance(now)
        wanted = policy(i, now, int(ready[i]), capacity.total)
        desired[i] = wanted
        billed[i] = capacity.decide(now, wanted)
    return ReplayLog(desired=desired, ready=ready, billed=billed)


class ReferenceHpa:
    """HpaRule as first written (a deque of (time, units) pairs)."""

    def __init__(self, unit: float, utilisation: float) -> None:
        self.unit, self.utilisation = unit, utilisation
        self._window: deque[tuple[float, int]] = deque()

    def desired(self, now: float, demand: float, current: int) -> int:
        if not math.isfinite(demand):
            return current
        raw = hpa_recommendation(demand, current, self.unit, self.utilisation, 0.1)
        window = self._window
        while window and window[0][0] < now - 300.0:
            window.popleft()
        while window and window[-1][1] <= raw:
            window.pop()
        window.append((now, raw))
        if raw >= current:
            return raw
        return min(current, int(window[0][1]))


def reference_hpa(trace: Trace, unit: float, lead_s: float, u: float) -> ReplayLog:
    rule = ReferenceHpa(unit, u)
    return reference_replay(
        trace.times, lead_s, lambda i, now, _r, total: rule.desired(now, trace.values[i], total)
    )


def reference_predictive(
    trace: Trace, unit: float, lead_s: float, u: float, forecast: FloatArray
) -> ReplayLog:
    rule = ReferenceHpa(unit, u)
    scheduled = np.where(np.isfinite(forecast), np.ceil(forecast / (unit * u)), 0).astype(np.int64)

    def policy(i: int, now: float, _ready: int, total: int) -> int:
        return max(int(scheduled[i]), rule.desired(now, float(trace.values[i]), total))

    return reference_replay(trace.times, lead_s, policy)


def reference_oracle(values: FloatArray, unit: float, k: int) -> IntArray:
    units = np.where(np.isfinite(values), np.ceil(values / unit), 0.0)
    result = np.zeros(values.size, dtype=np.int64)
    for offset in range(1, k + 1):
        shifted = np.zeros(values.size)
        if offset < values.size:
            shifted[: values.size - offset] = units[offset:]
        result = np.maximum(result, shifted.astype(np.int64))
    return result


def assert_same_log(expected: ReplayLog, actual: ReplayLog) -> None:
    np.testing.assert_array_equal(actual.desired, expected.desired)
    np.testing.assert_array_equal(actual.ready, expected.ready)
    np.testing.assert_array_equal(actual.billed, expected.billed)


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 97 steps, so a few thousand steps cross dozens of chunk boundaries."""
    monkeypatch.setattr(replay, "CHUNK_STEPS", 97)
    monkeypatch.setattr(baselines, "CHUNK_STEPS", 97)


# --- Equivalence ----------------------------------------------------------------------------


@pytest.mark.usefixtures("tiny_chunks")
@pytest.mark.parametrize("lead_factor", [1.0, 2.0, 0.5, 3.3, 12.0])
@pytest.mark.parametrize("pattern", ["random", "walk", "bursts", "negative first"])
def test_replaying_decisions_matches_the_step_by_step_replay(
    lead_factor: float, pattern: str
) -> None:
    rng = np.random.default_rng(len(pattern) + int(10 * lead_factor))
    size, step = 3_000, 60.0
    times = 1_767_571_200.0 + step * np.arange(size, dtype=np.float64)
    if pattern == "random":
        decisions = rng.integers(0, 20, size)
    elif pattern == "walk":
        decisions = np.cumsum(rng.integers(-3, 4, size)).clip(0)
    else:
        decisions = np.where(rng.random(size) < 0.05, rng.integers(0, 50, size), 5)
    if pattern == "negative first":
        decisions[0] = -4
    lead_s = lead_factor * step
    expected = reference_replay(times, lead_s, lambda i, *_: int(decisions[i]))
    assert_same_log(expected, replay_decisions(times, lead_s, decisions))
    assert_same_log(expected, replay_decisions(times, lead_s, decisions.tolist()))
    # The general replay (the plan's) with the faster simulator.
    assert_same_log(expected, replay.replay(times, lead_s, lambda i, *_: int(decisions[i])))


def test_negative_decisions_after_the_first_still_replay_exactly() -> None:
    times = 10.0 * np.arange(50, dtype=np.float64)
    decisions = np.array([3, 5, -2, 4, 7, -1, 0] * 7 + [2])
    expected = reference_replay(times, 25.0, lambda i, *_: int(decisions[i]))
    assert_same_log(expected, replay_decisions(times, 25.0, decisions))


def _traces() -> list[Trace]:
    synthetic = [
        generate_trace(TraceShape(days=4, step_s=60.0, seed=3, noise=0.15)),
        generate_trace(TraceShape(days=20, step_s=600.0, seed=4, level_shift_day=12.0)),
    ]
    elb = (
        Path(__file__).resolve().parents[3]
        / "shared"
        / "traces"
        / "nab_aws_elb_request_count_8c0756.csv"
    )
    return synthetic + ([load_trace(elb, progress=False)] if elb.exists() else [])


@pytest.mark.usefixtures("tiny_chunks")
@pytest.mark.parametrize("trace", _traces(), ids=lambda t: f"{len(t)}x{t.step_s:g}s")
def test_baselines_and_oracle_match_the_step_by_step_replay(trace: Trace) -> None:
    scale = float(np.nanpercentile(trace.values, 90))
    for unit, lead_s in ((scale / 7, 600.0), (scale / 30, 3 * trace.step_s), (scale, 3600.0)):
        forecast = scheduled_forecast(trace, lead_s)
        for u in (0.2, 0.65, 1.0):
            assert_same_log(
                reference_hpa(trace, unit, lead_s, u), hpa_replay(trace, unit, lead_s, u)
            )
            assert_same_log(
                reference_predictive(trace, unit, lead_s, u, forecast),
                predictive_replay(trace, unit, lead_s, u, forecast),
            )
        k = max(1, math.ceil(lead_s / trace.step_s - 1e-9))
        np.testing.assert_array_equal(
            oracle_decisions(trace.values, unit, k), reference_oracle(trace.values, unit, k)
        )


def test_the_kept_hpa_rule_class_agrees_with_the_loop() -> None:
    trace = generate_trace(TraceShape(days=2, step_s=60.0, seed=9, noise=0.2))
    rule = HpaRule(50.0, 0.7)
    expected = reference_replay(
        trace.times, 300.0, lambda i, now, _r, total: rule.desired(now, trace.values[i], total)
    )
    assert_same_log(expected, hpa_replay(trace, 50.0, 300.0, 0.7))


@pytest.mark.usefixtures("tiny_chunks")
def test_scheduled_forecast_in_chunks_is_the_same_forecast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace = generate_trace(TraceShape(days=16, step_s=600.0, seed=2))
    whole = scheduled_forecast(trace, 1800.0)
    monkeypatch.setattr(baselines, "CHUNK_STEPS", 10**9)
    np.testing.assert_array_equal(whole, scheduled_forecast(trace, 1800.0))


def test_score_is_unchanged_by_the_in_place_arithmetic() -> None:
    rng = np.random.default_rng(1)
    values = np.where(rng.random(5_000) < 0.1, np.nan, rng.uniform(0, 900, 5_000))
    ready = rng.integers(0, 10, 5_000)
    billed = ready + rng.integers(0, 3, 5_000)
    scored = scored_mask(np.arange(5_000.0), values, 100.0)
    result = score(values, ready, billed, scored, 100.0)
    demand, capacity = values[scored], ready[scored] * 100.0
    assert result.short_fraction == float((demand > capacity).sum() / scored.sum())
    assert result.unserved_fraction == float(
        np.maximum(demand - capacity, 0.0).sum() / demand.sum()
    )
    assert result.billed_units == float(billed[scored].sum())


def test_the_simulator_keeps_its_running_count_through_cancellations() -> None:
    capacity = CapacitySimulator(lead_s=100.0)
    reference = ReferenceCapacity(lead_s=100.0)
    rng = np.random.default_rng(5)
    for step in range(2_000):
        now = 7.0 * step
        assert capacity.advance(now) == reference.advance(now)
        wanted = int(rng.integers(0, 30))
        assert capacity.decide(now, wanted) == reference.decide(now, wanted)
        assert capacity.total == reference.total
        assert capacity.pending == reference.total - reference.ready


# --- The streamed parse ---------------------------------------------------------------------


def reference_labels(path: Path) -> list[str]:
    """The grid's labels as first computed: every step formatted, observed rows as written."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle)][1:]
    texts = [row[0].strip() for row in rows if row]
    times = np.array([parse_timestamp(text).timestamp() for text in texts])
    step = float(np.median(np.diff(times)))
    index = np.rint((times - times[0]) / step).astype(np.int64)
    grid = times[0] + step * np.arange(int(index[-1]) + 1, dtype=np.float64)
    style = LabelStyle.of(texts[0])
    labels = [format_label(t, style.separator, style.suffix) for t in grid]
    for position, text in zip(index.tolist(), texts, strict=True):
        labels[position] = text
    return labels


@pytest.mark.parametrize(
    "rows",
    [
        # Offsets other than UTC: every observed row keeps its text.
        [
            "2026-01-01T00:00:00+01:00,1",
            "2026-01-01T00:05:00+01:00,2",
            "2026-01-01T00:20:00+01:00,3",
        ],
        # Space separator, rows off the grid, a fractional second.
        [
            "2026-01-01 00:00:00,1",
            "2026-01-01 00:05:03,2",
            "2026-01-01 00:09:58.5,3",
            "2026-01-01 00:10:01,4",
            "2026-01-01 00:25:00,5",
        ],
        # Mixed suffixes; two rows on one step (the later one wins).
        [
            "2026-01-01T00:00:00Z,1",
            "2026-01-01T00:05:00.250Z,2",
            "2026-01-01T00:10:00z,3",
            "2026-01-01T00:14:00Z,4",
            "2026-01-01T00:16:00+00:00,4",
            "2026-01-01T00:25:00Z,5",
        ],
        [
            "2026-01-01T00:00:00+00:00,1",
            "2026-01-01T00:04:59.9999999+00:00,2",
            "2026-01-01T00:10:00Z,3",
            "2026-01-01T00:29:00+00:00,3",
            "2026-01-01T00:30:00+00:00,3",
            "2026-01-01T00:31:00+00:00,3",
        ],
    ],
)
def test_labels_are_the_trace_s_own_text_in_any_style(tmp_path: Path, rows: list[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    trace = load_trace(path, progress=False)
    expected = reference_labels(path)
    assert list(trace.labels) == expected
    assert [trace.labels[i] for i in range(len(trace))] == expected
    assert trace.labels[-1] == expected[-1] and trace.labels[1:3] == expected[1:3]


def test_vectorised_labels_format_as_datetime_does() -> None:
    edges = 1_767_571_200.0 + np.array(
        [0.0, -1e-7, -4.9e-7, -5e-7, -5.1e-7, 5e-7, 0.4999995, 0.9999995, 0.99999949, 59.9999996]
    )
    rng = np.random.default_rng(0)
    epochs = np.concatenate([edges, rng.uniform(-1e9, 4e9, 20_000), 1e9 + 0.3e-6 * np.arange(500)])
    for style in (LabelStyle(), LabelStyle(" ", ""), LabelStyle("T", "+00:00")):
        expected = [format_label(t, style.separator, style.suffix) for t in epochs.tolist()]
        assert format_labels(epochs, style) == expected


def _write_rows(path: Path, times: FloatArray, values: FloatArray) -> None:
    stamps = np.datetime_as_string(times.astype("datetime64[s]"), unit="s").tolist()
    with path.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,value\n")
        handle.writelines(f"{s}Z,{v:g}\n" for s, v in zip(stamps, values.tolist(), strict=True))


def _peak_loading(path: Path) -> tuple[Trace, int]:
    tracemalloc.start()
    try:
        trace = load_trace(path, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return trace, peak


def test_a_large_trace_streams_into_arrays_without_a_string_per_row(tmp_path: Path) -> None:
    times, values = generate_demand(TraceShape(days=11.6, step_s=10.0, seed=4))
    observed = np.isfinite(values)
    times, values = times[observed], values[observed]
    assert times.size > 99_000
    half = times.size // 2
    _write_rows(tmp_path / "half.csv", times[:half], values[:half])
    _write_rows(tmp_path / "large.csv", times, values)
    _, half_peak = _peak_loading(tmp_path / "half.csv")
    trace, peak = _peak_loading(tmp_path / "large.csv")
    # What each further row costs: arrays of the rows and of the grid, 8 bytes a number. A
    # list or tuple of one string per row alone would be over 80 bytes a row.
    per_row = (peak - half_peak) / (times.size - half)
    assert per_row < 60, f"{per_row:.0f} bytes a row"
    np.testing.assert_array_equal(trace.values[np.isfinite(trace.values)], values)
    assert len(trace) == round((times[-1] - times[0]) / 10.0) + 1
    labels = list(trace.labels)
    assert labels[0] == "2026-01-05T00:00:00Z" and labels[-1].endswith("Z")
    written = np.datetime_as_string(times.astype("datetime64[s]"), unit="s")
    on_grid = np.rint((times - times[0]) / 10.0).astype(np.int64)
    assert [labels[i] for i in on_grid[::997].tolist()] == [f"{s}Z" for s in written[::997]]


def test_synthetic_traces_round_trip_through_the_csv(tmp_path: Path) -> None:
    trace = trace_from_arrays(*_observed(TraceShape(days=3, step_s=60.0, seed=8)))
    from daemon.backtest.synthetic import write_trace_csv

    write_trace_csv(trace, str(tmp_path / "t.csv"))
    again = load_trace(tmp_path / "t.csv", progress=False)
    assert list(again.labels) == list(trace.labels)
    np.testing.assert_allclose(again.values, trace.values, rtol=1e-5)


def _observed(shape: TraceShape) -> tuple[FloatArray, FloatArray]:
    times, values = generate_demand(shape)
    keep = np.isfinite(values)
    return times[keep], values[keep]


# --- Progress -------------------------------------------------------------------------------


def test_progress_is_silent_off_a_terminal_and_shown_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = generate_trace(TraceShape(days=2, step_s=600.0, seed=1))
    path = tmp_path / "t.csv"
    from daemon.backtest.synthetic import write_trace_csv

    write_trace_csv(trace, str(path))
    scored = scored_mask(trace.times, trace.values, 86_400.0)
    utilisations = DEFAULT_UTILISATIONS[:2]
    # Not a terminal (pytest captures stderr) and no flag: nothing on stderr.
    load_trace(path)
    sweep(trace, 100.0, 600.0, scored, 1.0, "hpa", utilisations)
    assert capsys.readouterr().err == ""
    load_trace(path, progress=True)
    sweep(trace, 100.0, 600.0, scored, 1.0, "predictive", utilisations, progress=True)
    err = capsys.readouterr().err
    assert "read trace" in err and "baseline predictive" in err
