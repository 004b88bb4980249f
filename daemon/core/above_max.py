"""What to do when the forecast needs more units than the maximum allows.

As EC2 predictive scaling offers: ``honor`` keeps the maximum (the cost guard rail) and reports
the shortfall; ``increase`` lets this tick go above it by a buffer, for workloads where an
outage costs more than capacity. Either way the decision says the forecast was above the max.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["HONOR", "INCREASE", "POLICIES", "check_policy", "raised_max"]

HONOR: Final = "honor"
INCREASE: Final = "increase"
POLICIES: Final = frozenset({HONOR, INCREASE})


def check_policy(policy: str, buffer_percent: float) -> None:
    """Raise ``ValueError`` for an unknown policy or a buffer that is not a finite number >= 0."""
    if policy not in POLICIES:
        raise ValueError(f"above_max_policy must be one of {sorted(POLICIES)}, got {policy!r}")
    if not (math.isfinite(buffer_percent) and buffer_percent >= 0):
        raise ValueError(
            f"above_max_buffer_percent must be a finite number >= 0, got {buffer_percent!r}"
        )


def raised_max(
    max_units: int, forecast_units: int | None, policy: str, buffer_percent: float
) -> int:
    """The maximum that holds this tick: ``ceil(max * (1 + buffer / 100))`` when the policy is
    ``increase`` and the forecast needs more than ``max_units``, else ``max_units``.

    A maximum of zero stays zero whatever the buffer: a scale-to-zero window is not overridden.
    """
    if policy != INCREASE or forecast_units is None or forecast_units <= max_units:
        return max_units
    # Rounded up: a buffer is meant to add capacity, and 10 % of 5 units should still add one.
    return math.ceil(max_units * (1 + buffer_percent / 100) - 1e-9 * max_units)
