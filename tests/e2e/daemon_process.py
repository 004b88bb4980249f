"""Run ``elasticd run`` as a subprocess and read its JSON log lines as they arrive."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

LogLine = dict[str, Any]


class DaemonProcess:
    """The daemon started with ``--config``; ``lines`` fills in from its stderr."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        # Never inherit a service manager's socket: the test decides whether there is one.
        inherited = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        full_env = {**inherited, "OMP_NUM_THREADS": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=config.parent,
            env=full_env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.raw.append(line)
                # A traceback from a crash is not JSON: it stays in ``raw`` for the report.
                with contextlib.suppress(ValueError):
                    self.lines.append(json.loads(line))

    def events(self, name: str) -> list[LogLine]:
        with self._lock:
            return [line for line in self.lines if line.get("event") == name]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{what} not seen within {timeout}s; log tail:\n{self.tail()}")

    def wait_event(self, name: str, timeout: float = 30.0, count: int = 1) -> LogLine:
        found = self.wait_for(
            lambda: len(self.events(name)) >= count, timeout, what=f"event {name!r}"
        )
        assert found
        return self.events(name)[count - 1]

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds it took to exit."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)

    def tail(self, lines: int = 30) -> str:
        with self._lock:
            return "".join(self.raw[-lines:])
