"""What each target's decisions depend on, kept in the state directory across restarts and reloads.

The Kubernetes HPA forgets its stabilisation window when the controller restarts, so a restart
20 s into a 300 s window scales down at once; elasticd must not. After every tick the
reconciler writes its ``TickState`` (the stabilisation window, rate-limit events, calibration,
the plan's capacity ledger, the newest sample observed) and the last size it wrote to
``<state_dir>/targets/<name>.json``, atomically (a temporary file renamed over the old one, so a
kill -9 mid-write leaves the previous state, never half a file), and reads it back before its
first tick.

What is restored when the target's settings changed (a reload that edits it, or a restart on
an edited file):

- the stabilisation window and rate-limit events always, unless the target says
  ``keep_state_on_change: false``: a changed target keeps its window, so an edit cannot drop
  capacity at once;
- the calibration and the ledger only while the unit capacity, the lead time and the shortfall
  target are the same: they are measured in those terms, and would mislead under others.

A file that cannot be read or parsed is logged and ignored (the target starts fresh and holds
scale-downs for one window, see ``Reconciler``); it is never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.core.landed import LandedCapacity
from daemon.core.tick import TickState
from daemon.core.types import PlannerState
from daemon.private_dir import ensure_private_dir
from models.calibration import CalibrationState

__all__ = ["DecisionStateStore", "SavedState", "StateKey", "ensure_private_dir"]

log = logging.getLogger("elasticd.state")

FORMAT_VERSION = 1
TOURNAMENT_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class StateKey:
    """The settings a saved calibration and ledger are only valid under."""

    unit_capacity: float
    lead_s: float
    shortfall_target: float

    def as_json(self) -> dict[str, float]:
        return {
            "unit_capacity": self.unit_capacity,
            "lead_s": self.lead_s,
            "shortfall_target": self.shortfall_target,
        }


@dataclass(frozen=True, slots=True)
class SavedState:
    """A target's restored decision state and how much of it could be kept."""

    state: TickState
    last_written: int | None
    saved_at: float
    settings_changed: bool


class DecisionStateStore:
    """One JSON file per target under ``directory`` (created 0700: it tells what runs where)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, target: str) -> Path:
        return self.directory / f"{target}.json"

    def save(
        self,
        target: str,
        key: StateKey,
        state: TickState,
        *,
        now: float,
        last_written: int | None,
    ) -> None:
        """Write the state atomically; raises ``OSError`` (the caller logs and goes on)."""
        document = {
            "version": FORMAT_VERSION,
            "target": target,
            "saved_at": now,
            "key": key.as_json(),
            "state": encode(state),
            "last_written": last_written,
        }
        # A unique temporary name in the same directory, renamed over the file: readers see the
        # old state or the new one, never a torn write.
        self._write(self.path(target), document)

    def tournament_path(self, target: str) -> Path:
        return self.directory / f"{target}.tournament.json"

    def save_tournament(self, target: str, key: StateKey, data: dict[str, Any]) -> None:
        """Write the tournament (scoreboard, candidates' states, conformal rings) atomically.
        Tens of kilobytes, so the reconciler writes it every few minutes and on stop, while
        the small acting state above is written every tick."""
        document = {"version": TOURNAMENT_FORMAT_VERSION, "target": target, "key": key.as_json()}
        self._write(self.tournament_path(target), {**document, "tournament": data})

    def load_tournament(self, target: str, key: StateKey) -> dict[str, Any] | None:
        """The saved tournament of ``target`` under the same settings key, or None."""
        document = _read(self.tournament_path(target), target, "tournament state")
        if (
            not isinstance(document, dict)
            or document.get("version") != TOURNAMENT_FORMAT_VERSION
            or document.get("target") != target
            or document.get("key") != key.as_json()
            or not isinstance(document.get("tournament"), dict)
        ):
            # Scores made under another unit, lead or target compare nothing now.
            return None
        data: dict[str, Any] = document["tournament"]
        return data

    def _write(self, path: Path, document: dict[str, Any]) -> None:
        text = json.dumps(document, separators=(",", ":"), allow_nan=False)
        ensure_private_dir(self.directory)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def load(self, target: str, key: StateKey, *, keep_on_change: bool = True) -> SavedState | None:
        """The saved state of ``target``, or None when there is none or it is unusable."""
        path = self.path(target)
        document = _read(path, target, "decision state")
        if document is None:
            return None
        try:
            return _restore(document, target, key, keep_on_change)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            log.warning(
                "decision state %s malformed, starting fresh: %s",
                path,
                error,
                extra={"target": target},
            )
            return None


def _read(path: Path, target: str, what: str) -> Any:
    """The JSON document at ``path``; None when absent or unreadable (logged, never raised)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        log.warning(
            "%s %s unreadable, starting fresh: %s", what, path, error, extra={"target": target}
        )
        return None


def encode(state: TickState) -> dict[str, Any]:
    """A ``TickState`` as plain JSON values (non-finite times as None)."""
    calibration = state.calibration
    return {
        "recommendations": [[t, n] for t, n in state.planner.recommendations],
        "scale_events": [[t, n] for t, n in state.planner.scale_events],
        "calibration": {
            "conformal": calibration.conformal,
            "integral": calibration.integral,
            "observed_steps": calibration.observed_steps,
            "short_steps": calibration.short_steps,
        },
        "forecast_source": state.forecast_source,
        "landed": {
            "ready": state.landed.ready,
            "pending": [[t, n] for t, n in state.landed.pending],
            "started": state.landed.started,
        },
        "last_sample_time": (
            state.last_sample_time if math.isfinite(state.last_sample_time) else None
        ),
    }


def decode(data: dict[str, Any]) -> TickState:
    """The inverse of :func:`encode`; raises on anything malformed."""
    calibration = data["calibration"]
    landed = data["landed"]
    last = data["last_sample_time"]
    return TickState(
        planner=PlannerState(
            recommendations=_pairs(data["recommendations"], _count),
            scale_events=_pairs(data["scale_events"], int),
        ),
        calibration=CalibrationState(
            conformal=_finite(calibration["conformal"]),
            integral=_finite(calibration["integral"]),
            observed_steps=_count(calibration["observed_steps"]),
            short_steps=_count(calibration["short_steps"]),
        ),
        forecast_source=str(data["forecast_source"]),
        landed=LandedCapacity(
            ready=_count(landed["ready"]),
            pending=_pairs(landed["pending"], _count),
            started=bool(landed["started"]),
        ),
        last_sample_time=-math.inf if last is None else _finite(last),
    )


def _restore(
    document: dict[str, Any], target: str, key: StateKey, keep_on_change: bool
) -> SavedState | None:
    if (
        not isinstance(document, dict)
        or document.get("version") != FORMAT_VERSION
        or document.get("target") != target
    ):
        raise ValueError("not a decision state of this target and format")
    saved = decode(document["state"])
    changed = document["key"] != key.as_json()
    if changed and not keep_on_change:
        log.info(
            "target settings changed and keep_state_on_change is false: starting fresh",
            extra={"target": target},
        )
        return None
    state = saved
    if changed:
        # The window is in units and seconds, valid under any settings; calibration and the
        # ledger are in the old unit, lead and target's terms.
        state = TickState(planner=saved.planner)
    last_written = document.get("last_written")
    return SavedState(
        state=state,
        last_written=None if last_written is None else _count(last_written),
        saved_at=_finite(document["saved_at"]),
        settings_changed=changed,
    )


def _pairs(items: Any, number: Callable[[Any], int]) -> tuple[tuple[float, int], ...]:
    return tuple((_finite(t), number(n)) for t, n in items)


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _count(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"not a count: {value!r}")
    return number
