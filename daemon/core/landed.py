"""The capacity the plan's own decisions would have ready now, had every one of them landed.

Calibration must learn from the plan's mistakes only. A step is the plan's fault when demand
exceeds what the plan asked for *and had its lead time to land*; when the target is short only
because a write failed (409, 429, 403, a 500), a GitOps controller reset the replicas, or the
cloud was slow to boot, the plan was right and its forecast must not be inflated for it. So
the tick keeps its own ledger of its decisions under exactly the replay rules of
``docs/SCORING.md`` (an increase is ready a lead time after it was asked for, a decrease takes
effect at once, pending units first, newest first; the first decision is ready at once) and
measures shortfall against that ledger. In ``elasticd backtest`` every decision lands, so the
ledger equals the replay's ready units step for step; in the daemon it is what the plan is
accountable for, and the difference from the target's real ready count is "not applied".
"""

from __future__ import annotations

from dataclasses import dataclass

Pending = tuple[tuple[float, int], ...]


@dataclass(frozen=True, slots=True)
class LandedCapacity:
    """The plan's ledger: units ready now and units still booting, by ready time."""

    ready: int = 0
    pending: Pending = ()
    """``(ready_at, count)`` of the plan's increases still booting, oldest request first."""
    started: bool = False
    """False until the first decision, which is ready at once (the service starts sized)."""

    @property
    def total(self) -> int:
        return self.ready + sum(count for _, count in self.pending)


def advance(ledger: LandedCapacity, now: float) -> LandedCapacity:
    """Units whose ready time is ``<= now`` become ready (replay rule 1)."""
    if not ledger.pending or ledger.pending[0][0] > now:
        return ledger
    ready = ledger.ready
    pending = list(ledger.pending)
    while pending and pending[0][0] <= now:
        ready += pending.pop(0)[1]
    return LandedCapacity(ready=ready, pending=tuple(pending), started=ledger.started)


def apply_decision(
    ledger: LandedCapacity, now: float, desired: int, lead_s: float
) -> LandedCapacity:
    """The ledger after the plan decided ``desired`` at ``now`` (replay rule 3)."""
    desired = max(0, desired)
    if not ledger.started:
        return LandedCapacity(ready=desired, pending=(), started=True)
    total = ledger.total
    if desired > total:
        pending = (*ledger.pending, (now + lead_s, desired - total))
        return LandedCapacity(ready=ledger.ready, pending=pending, started=True)
    if desired == total:
        return ledger
    surplus = total - desired
    kept = list(ledger.pending)
    while surplus and kept:
        ready_at, count = kept[-1]
        take = min(surplus, count)
        surplus -= take
        if take == count:
            kept.pop()
        else:
            kept[-1] = (ready_at, count - take)
    return LandedCapacity(ready=ledger.ready - surplus, pending=tuple(kept), started=True)
