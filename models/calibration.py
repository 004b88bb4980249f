"""Online calibration of the forecast so that the realised share of short steps meets a target.

A quantile loss alone does not deliver its quantile here: the regressor is fit on a few weeks
of correlated rows, demand drifts, and a missed peak is not the same event as a short step. Two
terms, added in ``log1p(demand / scale)`` space, correct for that:

* a *conformal* term: the ``1 - target`` quantile of recent out-of-sample residuals (observed
  peak against forecast peak), refreshed as forecasts resolve; it follows changes in how wrong
  the model is;
* an *integral* term driven by the realised short steps (a quantile tracker, as in conformal
  PID control): each short step raises it by ``gain * (1 - target)``, each served step lowers it
  by ``gain * target``. It settles only where the short share equals the target, whatever the
  link between forecast misses and short steps is.

Everything here is a pure function over frozen values; the caller owns the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# Below this many resolved forecasts the residual quantile is mostly noise.
MIN_RESIDUALS = 50


@dataclass(frozen=True, slots=True)
class CalibrationSettings:
    """``shortfall_target`` is the share of short steps aimed at; ``scale`` one unit's demand."""

    shortfall_target: float
    scale: float
    gain: float = 0.03
    window_s: float = 7 * 86_400.0
    min_integral: float = -0.5
    max_integral: float = 1.5

    def __post_init__(self) -> None:
        if not 0.0 < self.shortfall_target < 0.5:
            raise ValueError(f"shortfall_target must be in (0, 0.5), got {self.shortfall_target}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.gain < 0:
            raise ValueError(f"gain must be >= 0, got {self.gain}")


@dataclass(frozen=True, slots=True)
class CalibrationState:
    conformal: float = 0.0
    integral: float = 0.0
    observed_steps: int = 0
    short_steps: int = 0

    @property
    def offset(self) -> float:
        return self.conformal + self.integral

    @property
    def short_fraction(self) -> float:
        return self.short_steps / self.observed_steps if self.observed_steps else 0.0


def log_residuals(actual_peak: FloatArray, forecast: FloatArray, scale: float) -> FloatArray:
    """How far each forecast fell short (positive) or over (negative), in log1p space."""
    return np.log1p(np.maximum(actual_peak, 0.0) / scale) - np.log1p(
        np.maximum(forecast, 0.0) / scale
    )


def conformal_offset(residuals: FloatArray, settings: CalibrationSettings) -> float:
    """The ``1 - target`` quantile of the finite residuals (0 when too few have resolved)."""
    finite = residuals[np.isfinite(residuals)]
    if finite.size < MIN_RESIDUALS:
        return 0.0
    return float(np.quantile(finite, 1.0 - settings.shortfall_target))


def with_conformal(state: CalibrationState, offset: float) -> CalibrationState:
    return replace(state, conformal=offset)


def observe_step(
    state: CalibrationState, settings: CalibrationSettings, short: bool
) -> CalibrationState:
    """Account for one served (or short) step; the integral moves towards the target share."""
    error = (1.0 if short else 0.0) - settings.shortfall_target
    integral = state.integral + settings.gain * error
    integral = min(settings.max_integral, max(settings.min_integral, integral))
    return CalibrationState(
        conformal=state.conformal,
        integral=integral,
        observed_steps=state.observed_steps + 1,
        short_steps=state.short_steps + int(short),
    )


def calibrated(forecast: float, state: CalibrationState, settings: CalibrationSettings) -> float:
    """The forecast raised (or lowered) by the current offset; NaN stays NaN."""
    if not math.isfinite(forecast):
        return forecast
    z = math.log1p(max(forecast, 0.0) / settings.scale) + state.offset
    return settings.scale * math.expm1(max(z, 0.0))
