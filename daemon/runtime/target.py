"""One target's running parts: its trainer and reconciler agents and the adapters they own.

The supervisor starts, replaces and stops these as wholes, so a reload that changes one
target never disturbs another's state (its tick state, its history, its fitted model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from daemon.runtime.reconciler import Reconciler
from daemon.runtime.trainer import ModelTrainer

__all__ = ["TargetRuntime"]

log = logging.getLogger("elasticd.target")

Closer = Callable[[], Awaitable[None]]


@dataclass
class TargetRuntime:
    """``fingerprint``: everything in the configuration this target's parts were built from;
    a reload rebuilds the target only when it differs."""

    name: str
    fingerprint: Hashable
    reconciler: Reconciler
    trainer: ModelTrainer
    closers: list[Closer] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _agent: asyncio.Task[None] | None = None
    _trainer_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._agent = asyncio.create_task(self._run(), name=f"target:{self.name}")
        self._agent.add_done_callback(self._report)

    def _report(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("target agent died", extra={"target": self.name}, exc_info=task.exception())

    async def _run(self) -> None:
        # Train (or load) first: a reconciler ticking on an empty history would forecast from
        # the weakest fallback and could make a decision the real model would not.
        try:
            await self.trainer.start()
        except Exception:
            # Forecasts fall back to simpler models; scaling on observed demand still works.
            log.exception(
                "model start-up failed; continuing with the fallback forecaster",
                extra={"target": self.name},
            )
            self.trainer.started.set()
        if self.stopping.is_set():
            # Stopped while it trained: no cadence to start (stop() has already run and would
            # not cancel a task created after it, which then slept for hours).
            return
        self._trainer_task = asyncio.create_task(
            self._train_on_cadence(), name=f"model_trainer:{self.name}"
        )
        await self.reconciler.run(self.stopping)

    async def _train_on_cadence(self) -> None:
        # A failed fit keeps the model in use and shows in /readyz (the trainer's own loop).
        await self.trainer.run_cadence()

    async def stop(self, grace_s: float) -> None:
        """Stop starting ticks; let one in flight (and its write) finish within ``grace_s``."""
        self.stopping.set()
        if self._trainer_task is not None:
            self._trainer_task.cancel()
        agent = self._agent
        if agent is not None and not agent.done():
            if not self.trainer.started.is_set():
                # Still loading history or fitting: nothing to finish, nothing written yet.
                agent.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(agent), timeout=grace_s)
            except TimeoutError:
                log.warning(
                    "tick still running after %.0fs; cancelling it",
                    grace_s,
                    extra={"target": self.name},
                )
                agent.cancel()
            except asyncio.CancelledError:
                if not agent.cancelled():
                    raise
            except Exception:
                log.exception("target agent failed", extra={"target": self.name})
        # The cadence may have been started while stop() waited for the agent.
        if self._trainer_task is not None:
            self._trainer_task.cancel()
        for task in (self._trainer_task, agent):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        # History retries and asked-for retrains end with the target, not a moment later.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.trainer.stop(), timeout=grace_s)

    async def close(self) -> None:
        for closer in self.closers:
            try:
                await asyncio.wait_for(closer(), timeout=5.0)
            except Exception as error:
                log.warning("closing failed: %r", error, extra={"target": self.name})
