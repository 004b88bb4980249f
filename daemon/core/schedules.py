"""Planned capacity: which schedule windows and one-off overrides hold at an instant.

Pure: ``now`` is passed in (epoch seconds or an aware datetime); nothing reads the clock.

**Recurring windows.** A window starts at each match of its 5-field cron, read on the wall
clock of its IANA time zone, and lasts ``duration`` seconds *of that wall clock*: a
``0 19 * * 1-5`` window of 12 h in America/New_York runs 19:00 to 07:00 local time on the
nights DST changes too (an elapsed-seconds duration would end at 06:00 or 08:00 there). A
wall time that does not exist (the spring gap) is read with the offset before the change, as
cron does: a 02:30 start becomes 03:30 and the window runs its duration from there. A wall
time that happens twice (autumn) starts the window once, at its first occurrence, and a window
running through the repeated hour covers both passes of it. A window may cross midnight or
span days.

**One-off overrides** hold from ``start`` (inclusive) to ``end`` (exclusive).

**Wake ahead.** Capacity that rises must be ready when the window says so, capacity that falls
need not go early. So a window (or override) that *raises* capacity — its min or desired above
the target's ``min_units`` — starts ``lead_s`` early, and one that *lowers* capacity — its max
or desired below the target's ``max_units``, or its min below ``min_units`` — ends ``lead_s``
early, since its end is a rise. A window that does both does both. A lowering window shorter
than the lead time is therefore never in force: capacity would have to be back before it fell.

**Overlap.** One-off overrides beat recurring windows: while any override is active, windows
are ignored (the operator's word for this moment). Among the active windows of one kind:
min = the highest min, max = the highest max, desired = the highest desired. The most generous
capacity wins, because cutting capacity is the costlier mistake. A bound no active window sets
stays the target's own.

**Bounds.** An active window's min and max *replace* the target's bounds, as AWS scheduled
actions do: a window may lower the floor (``min_units: 0`` for scale-to-zero off-hours) or raise
it, but never lift the ceiling above the target's ``max_units``, the hard cost guard rail. If
the windows' floor ends above their ceiling, the ceiling is raised to the floor (generous
again), then both are capped at ``max_units``; desired is clamped into the result. Hence always
``0 <= min_units <= max_units <= target max_units`` and ``min_units <= desired <= max_units``.
Scale-to-zero off-hours is a window with ``max_units: 0`` (or ``min_units: 0`` and
``desired_units: 0``).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from croniter import croniter

__all__ = [
    "NextChange",
    "OneOffOverride",
    "RecurringWindow",
    "ScheduleDecision",
    "effective_bounds",
    "next_change",
]

# Wall clock and instants differ by the zone's offset, and around a DST change by one more
# hour; probing this far past the instant never misses a fire that localises before it.
_DST_MARGIN = timedelta(hours=2)
# Fires whose (early) start is before now are checked newest first; ends grow with starts except
# inside a DST gap, so a few fires are enough.
_FIRES_CHECKED = 4
# Upper bound on cron matches walked per window and call, so a dense cron cannot stall a tick.
_SCAN_LIMIT = 1_000
DEFAULT_HORIZON_S = 8 * 86_400.0
"""How far ``next_change`` looks: a week and a day covers every weekly window."""


class _Capacity(Protocol):
    """What a window or override imposes; None leaves the target's own value."""

    @property
    def name(self) -> str: ...
    @property
    def min_units(self) -> int | None: ...
    @property
    def max_units(self) -> int | None: ...
    @property
    def desired_units(self) -> int | None: ...


class RecurringWindow(_Capacity, Protocol):
    """A cron-started window (``daemon.settings.ScheduleWindow`` satisfies it)."""

    @property
    def cron(self) -> str: ...
    @property
    def duration(self) -> float: ...
    @property
    def timezone(self) -> str: ...


class OneOffOverride(_Capacity, Protocol):
    """A window between two aware datetimes (``daemon.settings.Override`` satisfies it)."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class ScheduleDecision:
    """The bounds that hold at one instant and why."""

    min_units: int
    """Floor in units, after windows and the hard cap."""
    max_units: int
    """Ceiling in units, never above the target's ``max_units``."""
    desired_units: int | None
    """Exact units a window asks for, inside [min_units, max_units]; None = the forecast decides."""
    active: tuple[str, ...]
    """Names of the windows or overrides in force, in configuration order."""
    reason: str
    """One line for logs and ``elasticd explain``."""

    @property
    def plan_bounds(self) -> tuple[int, int]:
        """The ``(min_units, max_units)`` to hand the planner: a desired count pins both."""
        if self.desired_units is not None:
            return self.desired_units, self.desired_units
        return self.min_units, self.max_units

    def same_capacity(self, other: ScheduleDecision) -> bool:
        """Whether both impose the same bounds through the same windows (reason aside)."""
        return (self.min_units, self.max_units, self.desired_units, self.active) == (
            other.min_units,
            other.max_units,
            other.desired_units,
            other.active,
        )


@dataclass(frozen=True, slots=True)
class NextChange:
    """When the schedule's decision next changes, and the decision from then on."""

    at: float
    """Epoch seconds of the change (a lead time early for a rise)."""
    decision: ScheduleDecision


def effective_bounds(
    schedules: Sequence[RecurringWindow],
    overrides: Sequence[OneOffOverride],
    target_min: int,
    target_max: int,
    now: float | datetime,
    lead_s: float = 0.0,
) -> ScheduleDecision:
    """The bounds at ``now`` for a target whose own bounds are ``[target_min, target_max]``."""
    if not 0 <= target_min <= target_max:
        raise ValueError(f"need 0 <= target_min <= target_max, got {target_min}, {target_max}")
    if not lead_s >= 0:
        raise ValueError(f"lead_s must be >= 0, got {lead_s!r}")
    t = _instant(now)
    active_overrides = [
        o for o in overrides if _override_interval(o, target_min, target_max, lead_s, t)
    ]
    active_windows = [
        w for w in schedules if _window_interval(w, target_min, target_max, lead_s, t) is not None
    ]
    chosen: Sequence[_Capacity] = active_overrides or active_windows
    return _combine(chosen, active_overrides, active_windows, target_min, target_max)


def next_change(
    schedules: Sequence[RecurringWindow],
    overrides: Sequence[OneOffOverride],
    target_min: int,
    target_max: int,
    now: float | datetime,
    lead_s: float = 0.0,
    horizon_s: float = DEFAULT_HORIZON_S,
) -> NextChange | None:
    """The first instant after ``now`` (within ``horizon_s``) when ``effective_bounds`` changes.

    Only instants where a window or override starts or ends (lead time included) can change
    it, so those are the candidates, each evaluated by ``effective_bounds`` itself.
    """
    t = _instant(now)
    current = effective_bounds(schedules, overrides, target_min, target_max, t, lead_s)
    until = t + horizon_s
    candidates: set[float] = set()
    for override in overrides:
        shifts = _shifts(override, target_min, target_max, lead_s)
        candidates.add(override.start.timestamp() - shifts[0])
        candidates.add(override.end.timestamp() - shifts[1])
    for window in schedules:
        candidates.update(_window_boundaries(window, target_min, target_max, lead_s, t, until))
    for moment in sorted(c for c in candidates if t < c <= until):
        decision = effective_bounds(schedules, overrides, target_min, target_max, moment, lead_s)
        if not decision.same_capacity(current):
            return NextChange(at=moment, decision=decision)
    return None


# -- combining ----------------------------------------------------------------------------------


def _combine(
    chosen: Sequence[_Capacity],
    active_overrides: Sequence[_Capacity],
    active_windows: Sequence[_Capacity],
    target_min: int,
    target_max: int,
) -> ScheduleDecision:
    if not chosen:
        return ScheduleDecision(
            target_min, target_max, None, (), "no schedule or override: the target's own bounds"
        )
    lowest = _highest((c.min_units for c in chosen), target_min)
    highest = _highest((c.max_units for c in chosen), target_max)
    desireds = [c.desired_units for c in chosen if c.desired_units is not None]
    notes: list[str] = []
    # Windows disagreeing (one floor above another's ceiling): keep the capacity.
    highest = max(highest, lowest)
    if highest > target_max:
        notes.append(f"capped at the target's max_units {target_max}")
        highest = target_max
    lowest = min(lowest, highest)
    desired = None
    if desireds:
        desired = min(max(max(desireds), lowest), highest)
    kind = "override" if active_overrides else "schedule"
    reason = f"{kind}{'s' if len(chosen) > 1 else ''} {_quoted(c.name for c in chosen)}"
    if active_overrides and active_windows:
        reason += f" (beats schedule {_quoted(w.name for w in active_windows)})"
    if notes:
        reason += "; " + "; ".join(notes)
    return ScheduleDecision(lowest, highest, desired, tuple(c.name for c in chosen), reason)


def _highest(values: Iterable[int | None], default: int) -> int:
    present = [v for v in values if v is not None]
    return max(present) if present else default


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


# -- timing -------------------------------------------------------------------------------------


def _instant(now: float | datetime) -> float:
    if isinstance(now, datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            # A naive time is ambiguous across zones: refuse it rather than guess UTC or local.
            raise ValueError(f"now must be timezone-aware, got {now.isoformat()}")
        return now.timestamp()
    return float(now)


def _shifts(
    window: _Capacity, target_min: int, target_max: int, lead_s: float
) -> tuple[float, float]:
    """How much earlier the window starts and ends than written (see the wake-ahead rule)."""
    raises = any(v is not None and v > target_min for v in (window.min_units, window.desired_units))
    lowers = any(
        v is not None and v < target_max for v in (window.max_units, window.desired_units)
    ) or (window.min_units is not None and window.min_units < target_min)
    return (lead_s if raises else 0.0), (lead_s if lowers else 0.0)


def _override_interval(
    override: OneOffOverride, target_min: int, target_max: int, lead_s: float, t: float
) -> bool:
    early_start, early_end = _shifts(override, target_min, target_max, lead_s)
    return override.start.timestamp() - early_start <= t < override.end.timestamp() - early_end


def _wall(t: float, zone: zoneinfo.ZoneInfo) -> datetime:
    """The naive wall-clock time of instant ``t`` in ``zone``."""
    return datetime.fromtimestamp(t, zone).replace(tzinfo=None)


def _localise(wall: datetime, zone: zoneinfo.ZoneInfo) -> float:
    # fold=0: a skipped wall time takes the offset before the change (02:30 -> 03:30), and a
    # repeated one its first occurrence.
    return wall.replace(tzinfo=zone, fold=0).timestamp()


def _fire_interval(
    window: RecurringWindow, fire: datetime, zone: zoneinfo.ZoneInfo
) -> tuple[float, float]:
    """(start, end) instants of the window started at wall time ``fire``; wall-clock duration."""
    start = _localise(fire, zone)
    # A fire in the spring gap starts after it (02:30 -> 03:30) and lasts its duration from
    # there; elsewhere this is ``fire`` itself.
    started = _wall(start, zone)
    return start, _localise(started + timedelta(seconds=window.duration), zone)


def _window_interval(
    window: RecurringWindow, target_min: int, target_max: int, lead_s: float, t: float
) -> tuple[float, float] | None:
    """The (lead-adjusted) interval of the window's fire that holds at ``t``, if any."""
    zone = zoneinfo.ZoneInfo(window.timezone)
    early_start, early_end = _shifts(window, target_min, target_max, lead_s)
    # Newest fires first, from a little past t + the early start (DST margin).
    fires = croniter(window.cron, _wall(t + early_start, zone) + _DST_MARGIN)
    checked = 0
    for _ in range(_SCAN_LIMIT):
        start, end = _fire_interval(window, fires.get_prev(datetime), zone)
        start, end = start - early_start, end - early_end
        if start > t:
            continue  # inside the margin: not started yet
        if t < end:
            return start, end
        checked += 1
        if checked >= _FIRES_CHECKED:
            return None
    return None


def _window_boundaries(
    window: RecurringWindow,
    target_min: int,
    target_max: int,
    lead_s: float,
    t: float,
    until: float,
) -> set[float]:
    """Every (lead-adjusted) start and end of the window in ``(t, until]``."""
    zone = zoneinfo.ZoneInfo(window.timezone)
    early_start, early_end = _shifts(window, target_min, target_max, lead_s)
    found: set[float] = set()
    current = _window_interval(window, target_min, target_max, lead_s, t)
    if current is not None:
        found.add(current[1])
    fires = croniter(window.cron, _wall(t + early_start, zone) - _DST_MARGIN)
    for _ in range(_SCAN_LIMIT):
        start, end = _fire_interval(window, fires.get_next(datetime), zone)
        start, end = start - early_start, end - early_end
        if start > until:
            break
        found.update(moment for moment in (start, end) if t < moment <= until)
    return found
