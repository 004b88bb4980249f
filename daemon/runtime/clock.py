"""The daemon's clock: wall time, but free of steps.

Every window a decision depends on (scale-down stabilisation, rate limits, the plan's ledger)
is measured on the targets' clock. Read straight from ``time.time()``, a wall-clock step (an
operator's ``date -s``, a VM resumed with a stale clock, NTP stepping a bad clock) moves every
window at once: five minutes forward empties the 300 s stabilisation window, and a replica
count falls that the window was there to hold. The kubelet and client-go measure their leases
on a monotonic clock for the same reason.

So the clock is the wall time read once at start plus the monotonic time elapsed since. NTP's
frequency discipline applies to both alike, so it keeps pace with true time; a step is simply
not seen until the daemon restarts, which re-anchors it. Sample timestamps from a metrics
system keep their own (the server's) time: a sample read after a local step is judged on the
daemon's unstepped clock, which is what the server's clock also says.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["StepFreeClock"]


class StepFreeClock:
    """Epoch seconds that advance with the monotonic clock from one wall-clock anchor."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._anchor_wall = wall()
        self._anchor_monotonic = monotonic()

    def __call__(self) -> float:
        return self._anchor_wall + (self._monotonic() - self._anchor_monotonic)
