"""The ``model_trainer`` agent: one per target, fits the forecaster off the event loop.

At start it fills the forecaster's buffer (the last nine days) from the source, then
either loads the saved model (when ``retrain_on_start`` is off) or fits a fresh one; a refused
or missing artifact is logged and replaced by a fit (a refused one is quarantined first, see
``models.artifacts.quarantine``). ``fit`` is then called every ``training.cadence`` and saves
each fitted model under ``state_dir/models``.

Two things do not wait for the cadence, each a task of this trainer that ends with the task
that started it (the target's agent) or ``stop``:

- history that cannot be read at start (the source is down) is retried with exponential,
  jittered backoff capped at ``HISTORY_RETRY_MAX_S`` for as long as it fails, and the model is
  fitted as soon as it loads; meanwhile the target decides on the fallback;
- a model that fails to forecast is dropped by its forecaster, which asks for a retrain: the
  fit starts at once (no sooner than ``RETRAIN_GAP_S`` after the previous asked-for one, so a
  model that keeps failing cannot keep a core busy).

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
import random
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

# History fetches at start: a few tries before the target starts on the fallback, since a
# daemon that starts with no history forecasts with the weakest one until history loads.
HISTORY_ATTEMPTS = 3
# Then retried in the background, for as long as it fails: the delay doubles from the first
# retry's, up to the cap, each drawn from its upper half so targets do not retry in step.
HISTORY_RETRY_S = 2.0
HISTORY_RETRY_MAX_S = 300.0
# Asked-for retrains (a model failed) are at least this far apart.
RETRAIN_GAP_S = 30.0
_SHARED_RNG = random.Random()


def retry_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """The wait after failed attempt ``attempt`` (1, 2, ...): ``base * 2**(attempt - 1)``
    capped at ``max_s``, jittered into its upper half."""
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 60))
    return ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0)


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
        history_retry_s: float = HISTORY_RETRY_S,
        history_retry_max_s: float = HISTORY_RETRY_MAX_S,
        retrain_gap_s: float = RETRAIN_GAP_S,
        rng: random.Random | None = None,
    ) -> None:
        """``companions``: (model name, forecaster) pairs fed the same history and fitted
        and saved with the target's own forecaster. ``history_slot``: shared by the targets
        to bound the history loads in flight at once (None: unbounded).
        ``history_retry_s``/``history_retry_max_s``: first and largest wait between history
        attempts; ``retrain_gap_s``: least time between two asked-for retrains."""
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
        self.history_retry_s = history_retry_s
        self.history_retry_max_s = history_retry_max_s
        self.retrain_gap_s = retrain_gap_s
        # One Random for every target's jitter (2.5 KB each; issue 10's memory budget).
        self._rng = rng or _SHARED_RNG
        self.started = asyncio.Event()
        """Set once history is loaded and a model (saved, fitted or fallback) is in place."""
        self.history_loaded = False
        self._history_attempts = 0
        self._history_task: asyncio.Task[None] | None = None
        self._retrain_task: asyncio.Task[None] | None = None
        self._retrain_reason: str | None = None
        self._last_retrain: float | None = None  # loop time of the last asked-for retrain
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """History, then a model: the saved one if allowed and accepted, else a fresh fit.
        The refits on the cadence are driven by the target's runtime, which owns the task
        (``run_cadence``).

        History that cannot be read within ``HISTORY_ATTEMPTS`` goes on being retried in the
        background (the target starts on the fallback meanwhile); a model that fails later
        asks for a retrain, which starts at once. Both tasks end with the task that called
        ``start`` (the target's agent), or with ``stop``."""
        self._loop = asyncio.get_running_loop()
        self._bind_to(asyncio.current_task())
        for _, forecaster in self._models():
            forecaster.on_model_failure(self._model_failed)
        loaded = await self.load_history()
        if not self.training.retrain_on_start:
            refused, corrupt = await asyncio.to_thread(self._load_all)
            if refused is None:
                log.info("loaded saved model", extra={"target": self.name, "event": "model_loaded"})
                self._report_model()
                self.started.set()
                self._retry_history_later(loaded)
                return
            if corrupt:
                self.telemetry.record_model_failure(self.name, "load")
            log.warning(
                "saved model not used, training instead: %s",
                refused,
                extra={"target": self.name, "event": "model_refused"},
            )
        try:
            # Without history the source is down: fit on the buffer, not another failed read.
            await self.fit(read_source=loaded)
        except Exception as error:
            # The forecaster keeps its fallback; deciding on observed demand still works.
            self._training_failed(error)
        self.started.set()
        self._retry_history_later(loaded)

    def _models(self) -> tuple[tuple[str, TargetForecaster], ...]:
        return ((self.name, self.forecaster), *self.companions)

    def _bind_to(self, owner: asyncio.Task[Any] | None) -> None:
        """This trainer's background tasks end when ``owner`` does."""
        if owner is not None:
            owner.add_done_callback(lambda _: self._cancel_tasks())

    def _cancel_tasks(self) -> None:
        for task in (self._history_task, self._retrain_task):
            if task is not None and not task.done():
                task.cancel()

    async def stop(self) -> None:
        """End the background tasks (history retries, asked-for retrains) and wait for them."""
        self._cancel_tasks()
        for task in (self._history_task, self._retrain_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _load_all(self) -> tuple[str | None, bool]:
        """Every saved model, or why one was refused (then all are fitted afresh) and whether
        it was there to refuse (not merely missing). A refused artifact is quarantined by its
        forecaster, which owns it."""
        for name, forecaster in self._models():
            existed = any((self.model_dir / f"{name}{ext}").exists() for ext in (".json", ".pkl"))
            refused = forecaster.load(self.model_dir, name, owner=True)
            if refused is not None:
                return f"{name}: {refused}", existed
            self.telemetry.set_model_trained_at(self.name, forecaster.trained_at or self.clock())
        return None, False

    def _report_model(self, error: str | None = None) -> None:
        """The model in use, as /readyz shows it."""
        self.health.model_state(
            self.name,
            self.forecaster.forecaster_name,
            self.forecaster.trained_at,
            error,
            now=self.clock(),
        )

    # -- history ------------------------------------------------------------------------

    async def load_history(self, attempts: int = HISTORY_ATTEMPTS) -> bool:
        """Fill the forecaster's buffer (what forecasts read between fits) from the source;
        False when it could not be read in ``attempts`` tries."""
        series = await self._read_history(self.forecaster.buffer_s, attempts)
        if series is None:
            log.error(
                "starting without history: forecasts use the fallback until it loads "
                "(retrying in the background)",
                extra={"target": self.name, "event": "history_failed"},
            )
            return False
        for forecaster in (self.forecaster, *(f for _, f in self.companions)):
            forecaster.load_history(series.timestamps, series.values)
        self.history_loaded = True
        log.info(
            "loaded %d points of history",
            len(series),
            extra={"target": self.name, "event": "history", "points": len(series)},
        )
        return True

    def _retry_history_later(self, loaded: bool) -> None:
        if loaded or self._history_task is not None:
            return
        self._history_task = asyncio.create_task(
            self._retry_history(), name=f"history_retry:{self.name}"
        )

    async def _retry_history(self) -> None:
        """Retry the history load with backoff until it works, then fit on it at once."""
        while True:
            delay = retry_delay(
                self._history_attempts, self.history_retry_s, self.history_retry_max_s, self._rng
            )
            log.info(
                "retrying history in %.0fs",
                delay,
                extra={"target": self.name, "event": "history_retry", "delay_s": round(delay, 3)},
            )
            await asyncio.sleep(delay)
            if await self._load_history_once():
                break
        # A saved model still in use needs only the history it reads; anything else (the
        # fallback the target started on) is replaced by a fit now, not at the cadence.
        if all(f.forecaster_name == "model" for _, f in self._models()):
            return
        try:
            await self.fit()
        except Exception as error:
            self._training_failed(error)

    async def _load_history_once(self) -> bool:
        failed = self._history_attempts
        series = await self._read_history(self.forecaster.buffer_s, 1)
        if series is None:
            return False
        for _, forecaster in self._models():
            forecaster.load_history(series.timestamps, series.values)
        self.history_loaded = True
        log.info(
            "loaded %d points of history after %d failed attempts",
            len(series),
            failed,
            extra={"target": self.name, "event": "history", "points": len(series)},
        )
        return True

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
                self._history_attempts += 1
                self.telemetry.record_source_error(self.name, "history")
                text = str(error) or f"timed out after {self.history_timeout_s:g}s"
                self.health.source_failed(self.name, f"history: {text}")
                log.warning(
                    "history fetch failed (attempt %d/%d): %s",
                    attempt,
                    attempts,
                    text,
                    extra={"target": self.name},
                )
                if attempt < attempts:
                    await asyncio.sleep(
                        retry_delay(
                            self._history_attempts,
                            self.history_retry_s,
                            self.history_retry_max_s,
                            self._rng,
                        )
                    )
                continue
            self._history_attempts = 0
            self.health.source_reached(self.name)
            return clean_series(series, negative=self.negative).series
        return None

    # -- asked-for retrains -------------------------------------------------------------

    def _model_failed(self, reason: str) -> None:
        """A forecaster dropped its model (from the thread that found it): retrain now."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._schedule_retrain, reason)

    def _schedule_retrain(self, reason: str) -> None:
        self.telemetry.record_model_failure(self.name, "forecast")
        log.error(
            "model dropped, retraining now: %s",
            reason,
            extra={"target": self.name, "event": "model_failed"},
        )
        self._report_model(reason)
        self._retrain_reason = reason
        if self._retrain_task is None or self._retrain_task.done():
            self._retrain_task = asyncio.create_task(
                self._retrain(), name=f"model_retrain:{self.name}"
            )

    async def _retrain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._retrain_reason is not None:
            if self._last_retrain is not None:
                await asyncio.sleep(max(0.0, self._last_retrain + self.retrain_gap_s - loop.time()))
            self._last_retrain = loop.time()
            self._retrain_reason = None
            try:
                await self.fit()
            except Exception as error:
                self._training_failed(error)

    @property
    def history_pending(self) -> bool:
        """History could not be read at start and is still being retried (or fitted on)."""
        return self._history_task is not None and not self._history_task.done()

    @property
    def retrain_pending(self) -> bool:
        """A retrain was asked for (a model failed) and has not finished yet."""
        return self._retrain_task is not None and not self._retrain_task.done()

    def _training_failed(self, error: BaseException) -> None:
        log.error(
            "training failed; keeping the forecaster in use: %r",
            error,
            extra={"target": self.name, "event": "training_failed"},
            exc_info=error,
        )
        self._report_model(f"training failed: {error!r}")

    # -- fits ---------------------------------------------------------------------------

    async def run_cadence(self) -> None:
        """Refit every ``training.cadence`` until cancelled; a failed fit keeps the forecaster
        in use, is logged and shows in /readyz, and the next one is tried on time."""
        while True:
            await asyncio.sleep(self.training.cadence)
            try:
                await self.fit()
            except Exception as error:
                self._training_failed(error)

    async def fit(self, *, read_source: bool = True) -> str:
        """Read the training history from the source and fit on it in a worker thread, then
        save the model; companions after it, each its own fit. ``read_source`` False: fit
        on the history in memory only.

        One fit at a time across targets, and its history is read inside that turn: a
        thousand targets starting together then hold one training history at a time, not a
        thousand. If the source cannot be read, the fit uses the nine days the forecaster
        holds (enough for a model; the backtest's window needs the source).
        """
        async with self.fit_slot:
            series = (
                await self._read_history(self.forecaster.settings.train_window_s, 1)
                if read_source
                else None
            )
            if series is None and read_source:
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
        error_text: str | None = None
        try:
            await asyncio.to_thread(forecaster.save, self.model_dir, name)
        except OSError as error:
            error_text = f"could not save the model: {error}"
            log.error("%s", error_text, extra={"target": self.name})
        if forecaster is self.forecaster:
            self._report_model(error_text)
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
