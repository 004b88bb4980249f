"""Signals only set flags: the supervisor decides what to do, on the event loop, in order.

Doing work inside a handler (closing clients, reloading files) would run it at an arbitrary
point of whatever the loop was doing; setting an event defers it to a safe point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LastResort", "SignalFlags"]

log = logging.getLogger("elasticd.signals")


@dataclass
class SignalFlags:
    """``stop``: SIGTERM or SIGINT arrived. ``reload``: SIGHUP arrived, or the configuration
    watcher saw the file change (cleared by the reader): both reload the same way."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reload: asyncio.Event = field(default_factory=asyncio.Event)
    _installed: list[int] = field(default_factory=list)

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum, flag in (
            (signal.SIGTERM, self.stop),
            (signal.SIGINT, self.stop),
            (signal.SIGHUP, self.reload),
        ):
            loop.add_signal_handler(signum, _setter(signum, flag))
            self._installed.append(signum)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        self._installed.clear()


def _setter(signum: int, flag: asyncio.Event) -> Callable[[], None]:
    def handler() -> None:
        log.info("received %s", signal.Signals(signum).name, extra={"signal": signum})
        flag.set()

    return handler


class LastResort:
    """Ends the process if shutdown overruns its deadline: a stuck close or a hung thread must
    not keep a daemon that was told to stop alive until something kills it harder.

    A daemon thread, not a loop timer: the loop is exactly what may be stuck. Armed when the
    stop begins and cancelled once the process is about to return normally.
    """

    def __init__(self, deadline_s: float, exit_code: int = 1) -> None:
        self.deadline_s = deadline_s
        self._timer = threading.Timer(deadline_s, self._expire, args=(deadline_s, exit_code))
        self._timer.daemon = True

    @staticmethod
    def _expire(deadline_s: float, exit_code: int) -> None:
        log.error("shutdown did not finish within %.0fs; exiting now", deadline_s)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(exit_code)

    def arm(self) -> None:
        if not self._timer.is_alive():
            self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
