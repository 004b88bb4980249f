"""A target stopped while it still trains at start-up stops at once (a race found by CI: the
model cadence was started after stop() had run, and the stop then waited on it for hours)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from daemon.runtime.target import TargetRuntime


class SlowStartTrainer:
    """The trainer's surface TargetRuntime uses: a start-up fit that outlives the SIGTERM."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cadence_runs = 0

    async def start(self) -> None:
        # Shielded as a fit in a worker thread is: cancelling the agent does not stop it.
        await asyncio.shield(asyncio.sleep(0.3))
        self.started.set()

    async def run_cadence(self) -> None:
        self.cadence_runs += 1
        await asyncio.sleep(3600)

    async def stop(self) -> None:
        # Ending its background tasks takes a moment, in which the start-up fit may finish.
        await asyncio.sleep(0.5)


class Reconciler:
    async def run(self, stopping: asyncio.Event) -> None:
        await stopping.wait()


async def test_a_stop_during_start_up_training_returns_promptly() -> None:
    trainer = SlowStartTrainer()
    runtime = TargetRuntime(
        name="web",
        fingerprint=(),
        reconciler=Reconciler(),
        trainer=trainer,  # type: ignore[arg-type]
    )
    runtime.start()
    await asyncio.sleep(0.05)
    began = time.monotonic()

    await asyncio.wait_for(runtime.stop(grace_s=5.0), timeout=10.0)

    assert time.monotonic() - began < 5.0
    assert trainer.cadence_runs == 0
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("model_trainer"))


async def test_a_stop_after_start_up_cancels_the_cadence() -> None:
    trainer: Any = SlowStartTrainer()
    runtime = TargetRuntime(name="web", fingerprint=(), reconciler=Reconciler(), trainer=trainer)
    runtime.start()
    await asyncio.wait_for(trainer.started.wait(), timeout=5.0)
    await asyncio.sleep(0.05)
    assert trainer.cadence_runs == 1

    await asyncio.wait_for(runtime.stop(grace_s=5.0), timeout=10.0)

    assert runtime._trainer_task is not None and runtime._trainer_task.done()
