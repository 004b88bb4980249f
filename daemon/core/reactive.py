"""Capacity arithmetic: units needed for a demand, and the Kubernetes HPA replica rule."""

from __future__ import annotations

import math

# Quotients this close to an integer are float noise (1.1 / 0.1 == 11.000000000000002), and
# rounding them up would buy a whole unit for nothing.
_RELATIVE_NOISE = 1e-9
# Beyond this a unit count is meaningless (and ceil(inf) raises); bounds clamp it anyway.
_MOST_UNITS = 2**62


def units_to_serve(demand: float, capacity_per_unit: float) -> int:
    """Fewest whole units whose ``capacity_per_unit`` each adds up to ``demand`` (>= 0, finite)."""
    exact = demand / capacity_per_unit
    if exact >= _MOST_UNITS:
        return _MOST_UNITS
    nearest = round(exact)
    if abs(exact - nearest) <= _RELATIVE_NOISE * max(1.0, exact):
        return nearest
    return math.ceil(exact)


def hpa_recommendation(
    demand: float,
    current_units: int,
    unit_capacity: float,
    utilisation: float,
    tolerance: float,
) -> int:
    """The Kubernetes HPA rule: ``ceil(demand / (C * u))`` units, but keep ``current_units``
    while ``|demand / (current * C * u) - 1| <= tolerance``, so small wobbles cause no churn.
    """
    target_per_unit = unit_capacity * utilisation
    if current_units > 0:
        usage_ratio = demand / (current_units * target_per_unit)
        # Within tolerance the HPA does nothing: the target is close enough to its utilisation.
        if abs(usage_ratio - 1.0) <= tolerance:
            return current_units
    # From zero units there is no ratio to judge, so the rule sizes straight from demand.
    return units_to_serve(demand, target_per_unit)
