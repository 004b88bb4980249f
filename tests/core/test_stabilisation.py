"""Scale-down stabilisation window and the scale-down tolerance band."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.core.stabilisation import hold_small_scale_down, stabilise_scale_down


@pytest.mark.parametrize(
    ("now", "recommendation", "expected"),
    [
        (100.0, 4, 10),  # well inside the window: the earlier 10 holds the scale-down
        (300.0, 4, 10),  # the window's start is inclusive
        (300.5, 4, 4),  # just past it the 10 has expired and the scale-down happens
        (100.0, 12, 12),  # a scale-up is immediate
    ],
)
def test_window_holds_scale_down_until_it_expires(
    now: float, recommendation: int, expected: int
) -> None:
    stabilised, _ = stabilise_scale_down(((0.0, 10),), now, 300.0, recommendation)
    assert stabilised == expected


def test_takes_the_highest_recommendation_in_the_window() -> None:
    records = ((0.0, 9), (60.0, 7), (120.0, 5))
    assert stabilise_scale_down(records, 180.0, 300.0, 3)[0] == 9
    assert stabilise_scale_down(records, 320.0, 300.0, 3)[0] == 7


def test_zero_window_means_no_stabilisation() -> None:
    assert stabilise_scale_down(((99.0, 10),), 100.0, 0.0, 2) == (2, ((100.0, 2),))


def test_record_drops_expired_and_dominated_entries() -> None:
    records = ((0.0, 10), (60.0, 8), (120.0, 5))
    _, kept = stabilise_scale_down(records, 310.0, 300.0, 6)
    # (0, 10) expired; (120, 5) can never be the maximum again, since (310, 6) outlives it.
    assert kept == ((60.0, 8), (310.0, 6))


@given(
    st.lists(
        st.tuples(st.floats(0.0, 120.0), st.integers(0, 50)),
        min_size=1,
        max_size=40,
    ),
    st.floats(0.0, 600.0),
)
def test_pruned_record_gives_the_same_answers_as_the_full_history(
    steps: list[tuple[float, int]], window_s: float
) -> None:
    records: tuple[tuple[float, int], ...] = ()
    history: list[tuple[float, int]] = []
    now = 0.0
    for gap, recommendation in steps:
        now += gap
        history.append((now, recommendation))
        stabilised, records = stabilise_scale_down(records, now, window_s, recommendation)
        assert stabilised == max(past for stamp, past in history if stamp >= now - window_s)


@pytest.mark.parametrize(
    ("desired", "current", "tolerance", "expected"),
    [
        (9, 10, 0.1, 10),  # a 1-unit drop is within 10 % of 10: held
        (8, 10, 0.1, 8),  # a 2-unit drop is not
        (9, 10, 0.0, 9),  # no band: every scale-down is made
        (0, 1, 0.5, 0),  # half a unit of band cannot hold a whole unit
        (15, 10, 0.9, 15),  # a scale-up is never held
        (10, 10, 0.1, 10),
    ],
)
def test_tolerance_band_holds_only_small_scale_downs(
    desired: int, current: int, tolerance: float, expected: int
) -> None:
    assert hold_small_scale_down(desired, current, tolerance) == expected
