"""The conformal offset of one forecast stream, computed step by step (one implementation).

A forecast made at grid step ``j`` is of the peak over steps ``j+1 .. j+k``; it resolves at step
``j + k``, when its log1p residual (observed peak against forecast, positive = it fell short)
joins a trailing window. On whole multiples of the refresh period of the absolute grid the
offset becomes the ``1 - target`` quantile of the window's residuals made by the rung in use
(a fallback's errors say nothing of the model's), and holds until the next refresh.

The daemon's reconciler and the backtest's walk-forward both feed every grid step through
:meth:`ConformalTracker.update`, so they compute the same number. The tracker is a small mutable
object (a ring of residuals; copying a week of them per step would be the replay's whole cost);
:meth:`ConformalTracker.to_json` and :meth:`ConformalTracker.from_json` persist it.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.calibration import MIN_RESIDUALS

FloatArray = NDArray[np.float64]

DEFAULT_REFRESH_S = 3600.0
DEFAULT_WINDOW_S = 7 * 86_400.0
# Residuals are kept in float16: a week of 1-minute steps is 20 KB per tracker (80 in
# float64), which at 1,000 targets with two forecasting candidates each is the difference
# between meeting the daemon's memory budget and not. A log1p residual in float16 keeps three
# significant digits, a tenth of a percent of the forecast: far below any unit's rounding,
# and the quantile of ten thousand of them moves by less.
_STORED = np.float16


@dataclass(frozen=True, slots=True)
class ConformalSettings:
    """``lead_steps`` = k; windows in grid steps of ``step_s``."""

    step_s: float
    lead_steps: int
    shortfall_target: float
    scale: float
    window_s: float = DEFAULT_WINDOW_S
    refresh_s: float = DEFAULT_REFRESH_S
    min_residuals: int = MIN_RESIDUALS

    def __post_init__(self) -> None:
        if not (self.step_s > 0 and math.isfinite(self.step_s)):
            raise ValueError(f"step_s must be > 0, got {self.step_s}")
        if self.lead_steps < 1:
            raise ValueError(f"lead_steps must be >= 1, got {self.lead_steps}")
        if not 0.0 < self.shortfall_target < 0.5:
            raise ValueError(f"shortfall_target must be in (0, 0.5), got {self.shortfall_target}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be > 0, got {self.scale}")

    @property
    def window_steps(self) -> int:
        return max(1, round(self.window_s / self.step_s))

    @property
    def refresh_steps(self) -> int:
        return max(1, round(self.refresh_s / self.step_s))


def grid_index(time_s: float, step_s: float) -> int:
    """The absolute grid step a time falls in (the conformal refresh is on whole multiples of
    it). The epsilon keeps a time exactly on a step boundary, divided in floating point, from
    landing one step early."""
    return math.floor(time_s / step_s + 1e-6)


def _log1p_units(value: float, scale: float) -> float:
    return math.log1p(max(value, 0.0) / scale)


class ConformalTracker:
    """Residuals of one forecast stream and the offset in force (mutable: one per stream)."""

    __slots__ = (
        "_codes",
        "_last",
        "_offset",
        "_pending",
        "_residuals",
        "_runs",
        "settings",
    )

    def __init__(self, settings: ConformalSettings) -> None:
        self.settings = settings
        size = settings.window_steps + 1  # the window holds residuals of j in [i-k-W, i-k]
        # Ring indexed by the forecast's grid step modulo the size; NaN = none resolved there.
        self._residuals = np.full(size, np.nan, dtype=_STORED)
        # Which rung made each resolved forecast, as runs (first forecast step, code): the
        # rung changes only when a model is installed, so a code per slot said the same thing
        # ten thousand times (10 KB a tracker at 1,000 targets).
        self._runs: list[tuple[int, int]] = []
        self._codes: dict[str, int] = {}
        # Forecasts not yet resolved: [grid step, log1p forecast, rung code, peak so far].
        self._pending: list[list[float]] = []
        self._last: int | None = None  # newest grid step seen
        self._offset = 0.0

    @property
    def offset(self) -> float:
        """The offset in force at the newest step."""
        return self._offset

    def latest_residual(self) -> float | None:
        """The residual of the forecast that resolved at the newest step (made ``lead_steps``
        earlier, against the peak observed since): how far it fell short (> 0) or over (< 0),
        in log1p space. None when that forecast or every observation since is missing."""
        if self._last is None:
            return None
        slot = (self._last - self.settings.lead_steps) % self._residuals.size
        value = float(self._residuals[slot])
        return value if math.isfinite(value) else None

    def _code(self, rung: str) -> int:
        code = self._codes.get(rung)
        if code is None:
            code = len(self._codes) + 1  # 0 = no residual
            self._codes[rung] = code
        return code

    def update(self, index: int, value: float | None, forecast: float | None, rung: str) -> float:
        """Account for grid step ``index``: its observed ``value`` (None/NaN: missing), the base
        ``forecast`` made there (None/NaN: none) by ``rung``; returns the offset in force there.

        Steps must come in increasing order; a skipped step counts as missing. Calling again
        for the newest step is allowed and changes nothing (the daemon may tick twice a step).
        """
        last = self._last
        if last is not None and index <= last:
            return self._offset
        start = index if last is None else last + 1
        for step in range(start, index + 1):
            # A skipped step has no observation and no forecast.
            is_now = step == index
            self._advance(step, value if is_now else None, forecast if is_now else None, rung)
        self._last = index
        return self._offset

    def _advance(self, step: int, value: float | None, forecast: float | None, rung: str) -> None:
        settings = self.settings
        k = settings.lead_steps
        observed = value is not None and math.isfinite(value)
        pending = self._pending
        if observed:
            assert value is not None
            for entry in pending:
                if not entry[3] >= value:  # NaN peak (nothing seen yet) or lower
                    entry[3] = value
        size = self._residuals.size
        slot = (step - k) % size
        # Forecast step - k resolves now; the ring slot it takes held step - k - size.
        self._residuals[slot] = np.nan
        if pending and int(pending[0][0]) == step - k:
            _made, log_forecast, code, peak = pending.pop(0)
            if math.isfinite(peak):
                self._residuals[slot] = _log1p_units(peak, settings.scale) - log_forecast
                runs = self._runs
                if not runs or runs[-1][1] != int(code):
                    runs.append((step - k, int(code)))
        if step % settings.refresh_steps == 0:
            self._offset = self._quantile(self._code(rung), step - k)
        if forecast is not None and math.isfinite(forecast):
            pending.append(
                [float(step), _log1p_units(forecast, settings.scale), self._code(rung), math.nan]
            )

    def _slot_codes(self, newest: int) -> NDArray[np.int64]:
        """The rung code of the forecast each ring slot holds, the newest resolved forecast
        being step ``newest`` (0 before the first run). Old runs are dropped on the way."""
        size = self._residuals.size
        runs = self._runs
        oldest = newest - size + 1
        while len(runs) > 1 and runs[1][0] <= oldest:
            runs.pop(0)
        slots = np.arange(size, dtype=np.int64)
        steps = newest - (newest - slots) % size
        starts = np.array([start for start, _ in runs], dtype=np.int64)
        codes = np.array([0, *(code for _, code in runs)], dtype=np.int64)
        result: NDArray[np.int64] = codes[np.searchsorted(starts, steps, side="right")]
        return result

    def _quantile(self, code: int, newest: int) -> float:
        residuals = self._residuals[self._slot_codes(newest) == code]
        finite = residuals[np.isfinite(residuals)]
        if finite.size < self.settings.min_residuals:
            return 0.0
        return float(np.quantile(finite.astype(np.float64), 1.0 - self.settings.shortfall_target))

    def copy(self) -> ConformalTracker:
        """An independent tracker with the same residuals (a challenger starts from the
        champion's record: the same rung's recent errors are the best prior it has)."""
        twin = ConformalTracker(self.settings)
        twin._residuals = self._residuals.copy()
        twin._runs = list(self._runs)
        twin._codes = dict(self._codes)
        twin._pending = [list(entry) for entry in self._pending]
        twin._last = self._last
        twin._offset = self._offset
        return twin

    # -- persistence ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (the ring as base64 of its bytes)."""
        return {
            "last": self._last,
            "offset": self._offset,
            "codes": dict(self._codes),
            # JSON has no NaN: a forecast with no observation yet carries its peak as null.
            "pending": [[x if math.isfinite(x) else None for x in e] for e in self._pending],
            "residuals": base64.b64encode(self._residuals.tobytes()).decode("ascii"),
            "runs": [list(run) for run in self._runs],
        }

    @classmethod
    def from_json(cls, settings: ConformalSettings, data: dict[str, Any]) -> ConformalTracker:
        """Restore a snapshot; one taken under a different window starts empty instead."""
        tracker = cls(settings)
        residuals = np.frombuffer(base64.b64decode(data["residuals"]), dtype=_STORED)
        if residuals.size != tracker._residuals.size or "runs" not in data:
            return tracker
        tracker._residuals = residuals.copy()
        tracker._runs = [(int(start), int(code)) for start, code in data["runs"]]
        tracker._codes = {str(name): int(code) for name, code in data["codes"].items()}
        tracker._pending = [
            [float(x) if x is not None else math.nan for x in entry] for entry in data["pending"]
        ]
        tracker._last = None if data["last"] is None else int(data["last"])
        tracker._offset = float(data["offset"])
        return tracker
