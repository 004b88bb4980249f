"""The ``model_trainer`` agent: one per target, fits the forecaster off the event loop.

At start it fills the forecaster's buffer (the last nine days) from the source, then
either loads the saved model (when ``retrain_on_start`` is off) or fits a fresh one; a refused
or missing artifact is logged and replaced by a fit. ``fit`` is then called every
``training.cadence`` and saves each fitted model under ``state_dir/models``.

A pod target linked to a node group has a companion forecaster (the same demand over the node
lead time, saved as ``<target>-nodes``): it gets the same history and is fitted and saved
alongside.

The forecaster keeps only the nine days its forecasts read; each fit reads the training window
(``training.history_window``) from the source, as the fit at start always did, and drops it
after.

Fits are CPU-heavy and run in a worker thread; a shared semaphore lets one fit run at a time,
so on a small host several targets never fight over the cores the event loop needs. History
loads share a second semaphore: a thousand targets start together, and a thousand nine-day
range queries at once only time out in the source's queue; bounded, each load is quick and
its target fits (and starts ticking) as soon as its turn at the fit slot comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.errors import SourceError
from daemon.forecasting import TargetForecaster
from daemon.settings import TrainingConfig
from daemon.sources.base import MetricQuery, MetricSource, Series
from daemon.sources.policy import NegativePolicy, clean_series
from daemon.telemetry import HealthState, Telemetry

__all__ = ["ModelTrainer"]

log = logging.getLogger("elasticd.trainer")

Clock = Callable[[], float]

# History fetches at start: a few tries, since a daemon that starts with no history forecasts
# with the weakest fallback until it has observed a day on its own.
HISTORY_ATTEMPTS = 3
HISTORY_RETRY_S = 2.0


class ModelTrainer:
    """Loads history into one target's forecaster and keeps its model fresh."""

    def __init__(
        self,
        name: str,
        *,
        source: MetricSource[Any],
        query: MetricQuery[Any],
        forecaster: TargetForecaster,
        training: TrainingConfig,
        model_dir: Path,
        telemetry: Telemetry,
        health: HealthState,
        fit_slot: asyncio.Semaphore,
        history_slot: asyncio.Semaphore | None = None,
        clock: Clock = time.time,
        history_timeout_s: float = 60.0,
        negative: NegativePolicy = NegativePolicy.CLAMP,
        companions: Sequence[tuple[str, TargetForecaster]] = (),
    ) -> None:
        """``companions``: (model name, forecaster) pairs fed the same history and fitted
        and saved with the target's own forecaster. ``history_slot``: shared by the targets
        to bound the history loads in flight at once (None: unbounded)."""
        self.name = name
        self.companions = tuple(companions)
        self.source = source
        self.query = query
        self.forecaster = forecaster
        self.training = training
        self.model_dir = model_dir
        self.telemetry = telemetry
        self.health = health
        self.fit_slot = fit_slot
        self.history_slot = history_slot
        self.clock = clock
        self.history_timeout_s = history_timeout_s
        self.negative = negative
        self.started = asyncio.Event()
        """Set once history is loaded and a model (saved, fitted or fallback) is in place."""

    async def start(self) -> None:
        """History, then a model: the saved one if allowed and accepted, else a fresh fit.
        The refits on the cadence are driven by the target's runtime, which owns the task."""
        await self.load_history()
        if not self.training.retrain_on_start:
            refused = await asyncio.to_thread(self._load_all)
            if refused is None:
                log.info("loaded saved model", extra={"target": self.name, "event": "model_loaded"})
                self.health.model_loaded(self.name)
                self.started.set()
                return
            log.warning(
                "saved model not used, training instead: %s",
                refused,
                extra={"target": self.name, "event": "model_refused"},
            )
        await self.fit()
        self.started.set()

    def _load_all(self) -> str | None:
        """Every saved model, or why one was refused (then all are fitted afresh)."""
        for name, forecaster in ((self.name, self.forecaster), *self.companions):
            refused = forecaster.load(self.model_dir, name)
            if refused is not None:
                return f"{name}: {refused}"
        return None

    async def load_history(self) -> None:
        """Fill the forecaster's buffer (what forecasts read between fits) from the source."""
        series = await self._read_history(self.forecaster.buffer_s, HISTORY_ATTEMPTS)
        if series is None:
            log.error(
                "starting without history: forecasts use the fallback until enough is observed",
                extra={"target": self.name},
            )
            return
        for forecaster in (self.forecaster, *(f for _, f in self.companions)):
            forecaster.load_history(series.timestamps, series.values)
        log.info(
            "loaded %d points of history",
            len(series),
            extra={"target": self.name, "event": "history", "points": len(series)},
        )

    async def _read_history(self, seconds: float, attempts: int) -> Series | None:
        """The source's last ``seconds`` on the forecaster's grid, cleaned; None if unreadable."""
        step = self.forecaster.settings.step_s
        for attempt in range(1, attempts + 1):
            try:
                # Waiting for a slot is not the source being slow: the timeout starts inside,
                # and so does the range, so a long wait leaves no gap before the first tick.
                async with self.history_slot or contextlib.nullcontext():
                    end = self.clock()
                    # Grid-aligned start, so the source's points fall on the forecaster's grid.
                    start = math.floor((end - seconds) / step) * step
                    series = await asyncio.wait_for(
                        self.source.history(self.query, start, end, step),
                        timeout=self.history_timeout_s,
                    )
            except (SourceError, TimeoutError) as error:
                self.telemetry.record_source_error(self.name, "history")
                log.warning(
                    "history fetch failed (attempt %d/%d): %s",
                    attempt,
                    attempts,
                    error or "timed out",
                    extra={"target": self.name},
                )
                if attempt < attempts:
                    await asyncio.sleep(HISTORY_RETRY_S * attempt)
                continue
            return clean_series(series, negative=self.negative).series
        return None

    async def fit(self) -> str:
        """Read the training history from the source and fit on it in a worker thread, then
        save the model; companions after it, each its own fit.

        One fit at a time across targets, and its history is read inside that turn: a
        thousand targets starting together then hold one training history at a time, not a
        thousand. If the source cannot be read, the fit uses the nine days the forecaster
        holds (enough for a model; the backtest's window needs the source).
        """
        async with self.fit_slot:
            series = await self._read_history(self.forecaster.settings.train_window_s, 1)
            if series is None:
                log.warning(
                    "training on the history held in memory: the source's could not be read",
                    extra={"target": self.name},
                )
            reason = await self._fit_one(self.name, self.forecaster, series)
            for name, forecaster in self.companions:
                await self._fit_one(name, forecaster, series)
        return reason

    async def _fit_one(self, name: str, forecaster: TargetForecaster, series: Series | None) -> str:
        began = time.perf_counter()
        now = self.clock()
        if series is None:
            reason = await asyncio.to_thread(forecaster.train, now)
        else:
            reason = await asyncio.to_thread(
                forecaster.train_on, series.timestamps, series.values, now
            )
        duration = time.perf_counter() - began
        self.telemetry.record_training(self.name, duration)
        self.health.model_loaded(self.name)
        try:
            await asyncio.to_thread(forecaster.save, self.model_dir, name)
        except OSError as error:
            log.error("could not save the model: %s", error, extra={"target": self.name})
        log.info(
            "trained in %.2fs: %s",
            duration,
            reason,
            extra={
                "target": self.name,
                "event": "trained",
                "model": name,
                "duration_s": round(duration, 3),
                "forecaster": forecaster.forecaster_name,
            },
        )
        return reason
