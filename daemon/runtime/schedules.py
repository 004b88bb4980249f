"""Which schedule windows and overrides hold at an instant, and the bounds they impose.

Pure: ``now`` is passed in. A window is active from each cron match for its duration; the
cron is read in the window's time zone, so a 07:30 Europe/Berlin window follows DST.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from daemon.settings import Override, ScheduleWindow, TargetConfig

__all__ = ["Bounds", "active_bounds"]


@dataclass(frozen=True, slots=True)
class Bounds:
    """Per-tick bounds; None leaves the target's own. ``names`` are the windows in force."""

    min_units: int | None = None
    max_units: int | None = None
    names: tuple[str, ...] = ()


def _window_active(window: ScheduleWindow, now: float) -> bool:
    zone = zoneinfo.ZoneInfo(window.timezone)
    local = datetime.fromtimestamp(now, zone)
    # The latest start at or before now: get_prev is strict, so a start in this very minute
    # is found by match() instead.
    start: datetime = croniter(window.cron, local.replace(microsecond=0)).get_prev(datetime)
    if croniter.match(window.cron, local):
        start = local.replace(second=0, microsecond=0)
    return bool(now < start.timestamp() + window.duration)


def _override_active(override: Override, now: float) -> bool:
    moment = datetime.fromtimestamp(now, UTC)
    return override.start <= moment < override.end


def active_bounds(target: TargetConfig, now: float) -> Bounds:
    """The bounds every active window imposes: the highest floor and the lowest ceiling.

    ``desired_units`` pins both bounds. An override outranks schedules: it is the operator's
    explicit word for this moment, so when any override is active only overrides count.
    """
    overrides = [o for o in target.overrides if _override_active(o, now)]
    windows: list[ScheduleWindow | Override] = list(overrides)
    if not overrides:
        windows = [w for w in target.schedules if _window_active(w, now)]
    lows: list[int] = []
    highs: list[int] = []
    for window in windows:
        if window.desired_units is not None:
            lows.append(window.desired_units)
            highs.append(window.desired_units)
        if window.min_units is not None:
            lows.append(window.min_units)
        if window.max_units is not None:
            highs.append(window.max_units)
    return Bounds(
        min_units=max(lows) if lows else None,
        max_units=min(highs) if highs else None,
        names=tuple(window.name for window in windows),
    )
