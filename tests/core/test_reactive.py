"""The capacity arithmetic and the Kubernetes HPA replica rule."""

from __future__ import annotations

import pytest

from daemon.core.reactive import hpa_recommendation, units_to_serve


@pytest.mark.parametrize(
    ("demand", "capacity", "expected"),
    [
        (0.0, 100.0, 0),
        (300.0, 100.0, 3),
        (300.5, 100.0, 4),
        # Float noise around an exact multiple must not buy a whole extra unit.
        (1.1, 0.1, 11),
        (0.7, 0.1, 7),
        (0.3, 0.1, 3),
        # Absurd quotients are capped instead of raising; the bounds clamp them later.
        (1e300, 1e-10, 2**62),
    ],
)
def test_units_to_serve(demand: float, capacity: float, expected: int) -> None:
    assert units_to_serve(demand, capacity) == expected


@pytest.mark.parametrize(
    ("demand", "current", "tolerance", "expected"),
    [
        # C * u = 100 per unit in this table, so demand / 100 is the raw replica count.
        (400.0, 4, 0.0, 4),
        (401.0, 4, 0.0, 5),
        # Tolerance edges: a ratio of exactly 1 +/- tolerance keeps the current count.
        (500.0, 4, 0.25, 4),
        (501.0, 4, 0.25, 6),
        (300.0, 4, 0.25, 4),
        (299.0, 4, 0.25, 3),
        # Outside the band the rule sizes from demand, not from the current count.
        (1_000.0, 4, 0.25, 10),
        (0.0, 4, 0.25, 0),
        # From zero units there is no ratio: size straight from demand.
        (0.0, 0, 0.25, 0),
        (1.0, 0, 0.25, 1),
    ],
)
def test_hpa_rule_and_its_tolerance(
    demand: float, current: int, tolerance: float, expected: int
) -> None:
    assert hpa_recommendation(demand, current, 125.0, 0.8, tolerance) == expected


def test_hpa_sizes_at_the_target_utilisation_not_at_full_capacity() -> None:
    # 900 demand at 100 per unit is 9 units at 100 %, but 12 units (ceil 11.25) at 80 %.
    assert hpa_recommendation(900.0, 10, 100.0, 0.8, 0.1) == 12
