"""A fake Prometheus query API whose answers a test scripts, for the real daemon as a process.

``fake_prometheus.FakePrometheus`` serves one constant value from the test's own event loop;
tests that run ``elasticd run`` as a subprocess need a server that runs beside a synchronous
test and whose value changes on cue. This one runs in a thread on 127.0.0.1 and answers
``/api/v1/query`` per query string:

- ``set(query, value)``: the value every instant query answers from now on;
- ``script(query, values)``: the next ``len(values)`` instant queries answer these instead
  (one glitch, exactly once), then the set value again;
- ``pin(query, timestamp)``: answers carry this sample time instead of the query's own
  evaluation time, so every answer lands in one step of the daemon's forecast grid and the
  forecast follows the newest value instead of a peak of the last minutes.

``/api/v1/query_range`` answers an empty matrix: no history, so the daemon forecasts with its
fallback from the samples it reads, and starts in a second instead of fitting a model. Every
instant answer is recorded in ``served`` with the wall time it was sent.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Served:
    """One instant answer: for which query, when (wall time), with what sample."""

    query: str
    at: float
    timestamp: float
    value: float


class ScriptedPrometheus:
    """Start with ``ScriptedPrometheus()``; ``url`` is its base URL; ``stop()`` when done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._scripts: dict[str, list[float]] = {}
        self._pins: dict[str, float] = {}
        self.served: list[Served] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                self._answer(url.path, dict(urllib.parse.parse_qsl(url.query)))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                self._answer(urllib.parse.urlsplit(self.path).path, form)

            def _answer(self, path: str, form: dict[str, str]) -> None:
                status, body = fake.answer(path.rsplit("/", 1)[-1], form)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set(self, query: str, value: float) -> None:
        with self._lock:
            self._values[query] = value

    def script(self, query: str, values: list[float]) -> None:
        """The next ``len(values)`` instant answers to ``query``, in order."""
        with self._lock:
            self._scripts.setdefault(query, []).extend(values)

    def scripted_left(self, query: str) -> int:
        with self._lock:
            return len(self._scripts.get(query, []))

    def pin(self, query: str, timestamp: float | None) -> None:
        """Stamp answers to ``query`` with ``timestamp`` (None: the evaluation time)."""
        with self._lock:
            if timestamp is None:
                self._pins.pop(query, None)
            else:
                self._pins[query] = timestamp

    def answers(self, query: str) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.query == query]

    def answer(self, endpoint: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if endpoint == "query_range":
            return 200, {"status": "success", "data": {"resultType": "matrix", "result": []}}
        if endpoint != "query":
            return 404, {"status": "error", "errorType": "not_found", "error": endpoint}
        query = form.get("query", "")
        now = time.time()
        with self._lock:
            if query not in self._values:
                return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
            script = self._scripts.get(query)
            value = script.pop(0) if script else self._values[query]
            stamp = self._pins.get(query, float(form.get("time", now)))
            self.served.append(Served(query, now, stamp, value))
        text = "NaN" if math.isnan(value) else repr(float(value))
        sample = {"metric": {}, "value": [stamp, text]}
        return 200, {"status": "success", "data": {"resultType": "vector", "result": [sample]}}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
