"""Scale-down damping: the HPA stabilisation window and a relative tolerance band.

Scale-ups are never damped here: being short costs more than a few minutes of spare capacity.
"""

from __future__ import annotations

Recommendations = tuple[tuple[float, int], ...]


def stabilise_scale_down(
    recommendations: Recommendations,
    now: float,
    window_s: float,
    recommendation: int,
) -> tuple[int, Recommendations]:
    """Return ``(stabilised, kept)``: the highest recommendation recorded within
    ``[now - window_s, now]`` including this one, and the record trimmed to the window with
    ``(now, recommendation)`` appended and the records it makes irrelevant dropped.

    Like the HPA, this takes the maximum, so a scale-down happens only once every recommendation
    in the window agrees, while a scale-up passes at once. Records stamped after ``now`` (the clock
    stepped back) are kept and counted: erring towards capacity is the safe side.
    """
    cutoff = now - window_s
    kept = [record for record in recommendations if record[0] >= cutoff]
    stabilised = max(recommendation, max((past for _, past in kept), default=recommendation))
    # A record no higher than this one can never be the maximum again (this one outlives it), so
    # it is dropped: the record stays a few entries long even with 1 s ticks and a 300 s window.
    while kept and kept[-1][1] <= recommendation and kept[-1][0] <= now:
        kept.pop()
    kept.append((now, recommendation))
    return stabilised, tuple(kept)


def hold_small_scale_down(desired: int, current: int, tolerance: float) -> int:
    """Keep ``current`` when ``desired`` is a scale-down of at most ``tolerance * current`` units.

    A band of a few percent stops the target shedding one unit and booting it again minutes later.
    Scale-ups are returned unchanged.
    """
    if desired < current and current - desired <= tolerance * current:
        return current
    return desired
