"""The tournament's score: each candidate's log margins over the window, and its cost at
matched shortfall (``docs/tournament.md``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from daemon.core.candidates import MarginHistogram, log_margin, matched_cost

WEEK = 7 * 86_400.0


def _filled(margins: list[float], step_s: float = 300.0, start: float = 0.0) -> MarginHistogram:
    histogram = MarginHistogram()
    for i, margin in enumerate(margins):
        histogram.add(start + i * step_s, margin, WEEK)
    return histogram


def test_the_margin_is_the_log_of_ready_capacity_over_demand() -> None:
    assert log_margin(10.0, 12, 1.0) == pytest.approx(math.log(1.2))
    assert log_margin(12.0, 10, 1.0) < 0  # a short step
    assert log_margin(0.0, 0, 1.0) == math.inf  # no demand: ample room
    assert log_margin(5.0, 0, 1.0) == -math.inf  # no capacity: none


def test_quantiles_agree_with_the_exact_ones_within_a_bin() -> None:
    rng = np.random.default_rng(7)
    margins = rng.normal(0.3, 0.2, 5_000)
    # Ten steps a second: a week's decay is negligible over these 500 s.
    histogram = _filled(margins.tolist(), step_s=0.1)
    for level in (0.003, 0.01, 0.03, 0.5):
        exact = float(np.quantile(margins, level))
        assert histogram.quantile(level) == pytest.approx(exact, abs=MarginHistogram.WIDTH)


def test_old_steps_fade_with_the_window() -> None:
    # A day of short steps, then three weeks of ample room at 5-minute steps.
    day, weeks = 288, 3 * 2016
    histogram = _filled([-0.3] * day + [0.4] * weeks)
    # The short day is now 3 windows old: its weight is e^-3 of a day's, 0.2 % of the whole.
    assert histogram.quantile(0.01) == pytest.approx(0.4, abs=MarginHistogram.WIDTH)
    # A fresh day of short steps moves it at once.
    recent = _filled([0.4] * weeks + [-0.3] * day)
    assert recent.quantile(0.01) == pytest.approx(-0.3, abs=MarginHistogram.WIDTH)


def test_margins_beyond_the_range_are_counted_at_its_ends() -> None:
    histogram = _filled([-math.inf] * 10 + [math.inf] * 990, step_s=0.1)
    assert histogram.quantile(0.005) < MarginHistogram.LOW
    assert histogram.quantile(0.5) == pytest.approx(
        MarginHistogram.LOW + MarginHistogram.BINS * MarginHistogram.WIDTH
    )
    assert MarginHistogram().quantile(0.01) is None
    assert MarginHistogram().empty and not histogram.empty


def test_the_lazy_decay_rescales_without_changing_the_quantiles() -> None:
    # Steps spread over 100 windows: the weights pass the rescaling point (1e30) on the way.
    margins = [0.1 * (i % 7) for i in range(1_000)]
    histogram = _filled(margins, step_s=100 * WEEK / 1_000)
    assert histogram.quantile(0.5) == pytest.approx(0.3, abs=MarginHistogram.WIDTH)
    assert all(math.isfinite(weight) for weight in histogram._bins)


def test_a_restored_histogram_is_the_same() -> None:
    histogram = _filled([0.05 * (i % 11) - 0.1 for i in range(500)])
    saved = json.loads(json.dumps(histogram.to_json()))
    restored = MarginHistogram.from_json(saved)
    assert restored.to_json() == saved
    for level in (0.003, 0.01, 0.5):
        assert restored.quantile(level) == histogram.quantile(level)
    # A snapshot from before margins were kept (or of another size) starts empty.
    assert MarginHistogram.from_json(None).empty
    assert MarginHistogram.from_json({"reference": 0.0, "bins": ""}).empty


def test_matched_cost_is_the_cost_scaled_to_the_target_share() -> None:
    # Margins 0.0 .. 0.99 in equal numbers: the 1 % quantile is about 0.01.
    margins = [0.01 * (i % 100) for i in range(10_000)]
    histogram = _filled(margins, step_s=0.1)
    q = histogram.quantile(0.01)
    assert q is not None
    assert matched_cost(20.0, histogram, 0.01) == pytest.approx(20.0 * math.exp(-q))
    # The same plan with all capacity doubled: margins up by log 2, cost twice: the same score.
    doubled = _filled([m + math.log(2.0) for m in margins], step_s=0.1)
    assert matched_cost(40.0, doubled, 0.01) == pytest.approx(
        matched_cost(20.0, histogram, 0.01), rel=0.02
    )
    assert matched_cost(20.0, MarginHistogram(), 0.01) == math.inf
