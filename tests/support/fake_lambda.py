"""An in-repo fake of the AWS Lambda REST API for provisioned concurrency (moto 5.2 lacks it).

It answers the calls the ``lambda-provisioned-concurrency`` actuator makes, over HTTP on
loopback, the way AWS does:

- ``GET/PUT/DELETE /2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=q``:
  JSON bodies with ``RequestedProvisionedConcurrentExecutions``, ``Allocated...``,
  ``Available...``, ``Status``, ``StatusReason``, ``LastModified``; PUT answers 202 with the
  config ``IN_PROGRESS``, which turns ``READY`` after ``ready_after`` seconds (or when the
  test calls ``finish``), or ``FAILED`` when the test asked for it; DELETE answers 204.
- ``GET /2016-08-19/account-settings``: ``AccountLimit`` with the unreserved concurrency;
  ``GET /2019-09-30/functions/{name}/concurrency``: the function's reserved concurrency
  (``{}`` when it has none).
- Errors as Lambda sends them (``x-amzn-ErrorType`` header, ``{"Type", "message"}`` body):
  404 ``ResourceNotFoundException`` (no such function, alias or version), 404
  ``ProvisionedConcurrencyConfigNotFoundException`` (nothing configured), 409
  ``ResourceConflictException`` (a change while one is ``IN_PROGRESS``), 400
  ``InvalidParameterValueException`` ($LATEST, below 1, or beyond the unreserved concurrency
  minus the 100 AWS keeps for other functions), and injected faults: 429
  ``TooManyRequestsException`` with ``Retry-After``, 500 ``ServiceException``.

It runs in a thread (``ThreadingHTTPServer``), so both async unit tests and a daemon
subprocess can reach it while the test thread blocks. Every request is recorded. With
``upstream`` (a moto server) every other request is forwarded there, so one daemon whose
``aws.endpoint_url`` points here reaches Lambda on the fake and ECS or EC2 on moto.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeLambda", "LambdaRequest"]

JsonObj = dict[str, Any]
CONFIG_PATH = "/2019-09-30/functions/"
SETTINGS_PATH = "/2016-08-19/account-settings"
ACCOUNT = "123456789012"
REGION = "us-east-1"
# AWS keeps this much of the account's concurrency unreserved for functions without any.
UNRESERVED_MINIMUM = 100


@dataclass(frozen=True, slots=True)
class LambdaRequest:
    """One request the fake answered: wall time, verb, operation, function, qualifier, body."""

    time: float
    method: str
    operation: str
    function: str | None
    qualifier: str | None
    body: JsonObj | None
    status: int


@dataclass
class _Config:
    requested: int
    allocated: int
    status: str
    reason: str | None
    modified: float
    """Wall-clock epoch seconds of the last change (``LastModified``)."""
    ready_at: float | None
    """Monotonic instant it turns READY; None waits for ``finish`` (or a failure)."""
    fail_with: str | None = None


@dataclass
class _Fault:
    operation: str
    status: int
    code: str
    message: str
    retry_after: str | None
    remaining: int


@dataclass
class _State:
    functions: dict[str, set[str]] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    configs: dict[tuple[str, str], _Config] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    requests: list[LambdaRequest] = field(default_factory=list)
    concurrent_executions: int = 1000
    unreserved: int = 1000
    ready_after: float | None = 0.0
    fail_next: dict[tuple[str, str], str] = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class FakeLambda:
    """The fake's state and server; ``start()`` serves it on loopback, ``url`` is the endpoint.

    ``ready_after``: seconds from a PUT to READY; ``None`` keeps it IN_PROGRESS until
    ``finish()``, so unit tests need no sleeps. ``monotonic`` is injectable for the same reason.
    """

    def __init__(
        self,
        *,
        ready_after: float | None = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        upstream: str | None = None,
    ) -> None:
        self._state = _State(ready_after=ready_after)
        self._upstream = urllib.parse.urlsplit(upstream) if upstream else None
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeLambda:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            def do_PUT(self) -> None:
                fake._serve(self)

            def do_DELETE(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the test reads ``requests()`` instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        # A short poll: shutdown() waits up to one poll interval (0.5 s by default).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- what the test sets up and reads -----------------------------------------------------

    def add_function(self, name: str, qualifiers: tuple[str, ...] = ("live",)) -> None:
        """A function with its aliases and published versions (``$LATEST`` always exists)."""
        with self._lock:
            self._state.functions[name] = {"$LATEST", *qualifiers}

    def set_account(self, *, concurrent_executions: int, unreserved: int) -> None:
        with self._lock:
            self._state.concurrent_executions = concurrent_executions
            self._state.unreserved = unreserved

    def set_reserved(self, function: str, reserved: int) -> None:
        """The function's reserved concurrency (PutFunctionConcurrency, done by hand)."""
        with self._lock:
            self._state.reserved[function] = reserved

    def set_config(
        self,
        function: str,
        qualifier: str,
        requested: int,
        *,
        status: str = "READY",
        allocated: int | None = None,
        modified: float | None = None,
        reason: str | None = None,
    ) -> None:
        """A config as if set earlier (by hand, or by Application Auto Scaling)."""
        with self._lock:
            self._state.configs[(function, qualifier)] = _Config(
                requested=requested,
                allocated=requested if allocated is None else allocated,
                status=status,
                reason=reason,
                modified=self._wall_clock() if modified is None else modified,
                ready_at=None,
            )

    def finish(self, function: str, qualifier: str) -> None:
        """An IN_PROGRESS config becomes READY now (or FAILED, if ``fail_next`` asked)."""
        with self._lock:
            config = self._state.configs[(function, qualifier)]
            self._complete(config)

    def fail_next(self, function: str, qualifier: str, reason: str) -> None:
        """The next PUT on the config ends FAILED with ``reason`` instead of READY."""
        with self._lock:
            self._state.fail_next[(function, qualifier)] = reason

    def inject_fault(
        self,
        operation: str,
        *,
        status: int = 429,
        code: str = "TooManyRequestsException",
        message: str = "Rate exceeded",
        retry_after: float | None = None,
        count: int = 1,
    ) -> None:
        """The next ``count`` calls of ``operation`` (``PutProvisionedConcurrencyConfig``...)
        answer this error instead, with a ``Retry-After`` header if given."""
        after = f"{retry_after:g}" if retry_after is not None else None
        with self._lock:
            self._state.faults.append(_Fault(operation, status, code, message, after, count))

    def config(self, function: str, qualifier: str) -> JsonObj | None:
        """The config as GetProvisionedConcurrencyConfig would answer now (None if absent)."""
        with self._lock:
            found = self._state.configs.get((function, qualifier))
            if found is None:
                return None
            self._advance(found)
            return self._body(found)

    def requests(self, operation: str | None = None) -> list[LambdaRequest]:
        with self._lock:
            return [r for r in self._state.requests if operation in (None, r.operation)]

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(parsed.query)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = parsed.path.rstrip("/")
        ours = path == SETTINGS_PATH or path.startswith(CONFIG_PATH)
        if not ours and self._upstream is not None:
            self._forward(handler, raw)
            return
        body: JsonObj | None = None
        function: str | None = None
        qualifiers = query.get("Qualifier")
        qualifier = qualifiers[0] if qualifiers else None
        operation = "Unknown"
        status, headers, payload = 404, {}, b""
        answer: JsonObj | None
        try:
            body = json.loads(raw) if raw else None
            if path == SETTINGS_PATH and handler.command == "GET":
                operation = "GetAccountSettings"
                status, answer = self._route_settings()
            elif path.startswith(CONFIG_PATH) and path.endswith("/concurrency"):
                operation = "GetFunctionConcurrency"
                function = urllib.parse.unquote(path[len(CONFIG_PATH) : -len("/concurrency")])
                status, answer = self._route_reserved(function)
            elif path.startswith(CONFIG_PATH) and path.endswith("/provisioned-concurrency"):
                function = urllib.parse.unquote(
                    path[len(CONFIG_PATH) : -len("/provisioned-concurrency")]
                )
                operation = {
                    "GET": "GetProvisionedConcurrencyConfig",
                    "PUT": "PutProvisionedConcurrencyConfig",
                    "DELETE": "DeleteProvisionedConcurrencyConfig",
                }[handler.command]
                status, answer = self._route_config(operation, function, qualifier, body)
            else:
                raise _ApiError(404, "UnknownOperationException", f"no route {parsed.path}")
            payload = json.dumps(answer).encode() if answer is not None else b""
        except _ApiError as error:
            status = error.status
            headers = {"x-amzn-ErrorType": error.code, **error.headers}
            failure: JsonObj = {"Type": "User", "message": error.message}
            if error.code == "TooManyRequestsException":
                failure |= {"Reason": "CallerRateLimitExceeded"}
                if "Retry-After" in error.headers:
                    failure["retryAfterSeconds"] = error.headers["Retry-After"]
            payload = json.dumps(failure).encode()
        except ValueError as error:
            status, payload = 400, json.dumps({"message": str(error)}).encode()
            headers = {"x-amzn-ErrorType": "InvalidRequestContentException"}
        with self._lock:
            self._state.requests.append(
                LambdaRequest(
                    self._wall_clock(),
                    handler.command,
                    operation,
                    function,
                    qualifier,
                    body,
                    status,
                )
            )
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("x-amzn-RequestId", "fake-lambda")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _forward(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        """Relay the request to ``upstream`` and its answer back, unchanged."""
        assert self._upstream is not None
        connection = http.client.HTTPConnection(
            self._upstream.hostname or "127.0.0.1", self._upstream.port, timeout=30
        )
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
            connection.request(handler.command, handler.path, body=raw, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
            handler.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        finally:
            connection.close()

    def _fault(self, operation: str) -> None:
        for fault in self._state.faults:
            if fault.remaining > 0 and fault.operation == operation:
                fault.remaining -= 1
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                raise _ApiError(fault.status, fault.code, fault.message, headers)

    def _route_settings(self) -> tuple[int, JsonObj]:
        with self._lock:
            self._fault("GetAccountSettings")
            state = self._state
            return 200, {
                "AccountLimit": {
                    "TotalCodeSize": 80_530_636_800,
                    "CodeSizeUnzipped": 262_144_000,
                    "CodeSizeZipped": 52_428_800,
                    "ConcurrentExecutions": state.concurrent_executions,
                    "UnreservedConcurrentExecutions": state.unreserved,
                },
                "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": len(state.functions)},
            }

    def _route_reserved(self, function: str) -> tuple[int, JsonObj]:
        with self._lock:
            self._fault("GetFunctionConcurrency")
            if function not in self._state.functions:
                arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
                raise _ApiError(404, "ResourceNotFoundException", f"Function not found: {arn}")
            reserved = self._state.reserved.get(function)
            return 200, {} if reserved is None else {"ReservedConcurrentExecutions": reserved}

    def _route_config(
        self, operation: str, function: str, qualifier: str | None, body: JsonObj | None
    ) -> tuple[int, JsonObj | None]:
        with self._lock:
            self._fault(operation)
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
            qualifiers = self._state.functions.get(function)
            if qualifiers is None:
                raise _ApiError(404, "ResourceNotFoundException", f"Function not found: {arn}")
            if not qualifier:
                raise _ApiError(
                    400, "InvalidParameterValueException", "Qualifier must be specified"
                )
            if qualifier not in qualifiers:
                raise _ApiError(
                    404, "ResourceNotFoundException", f"Function not found: {arn}:{qualifier}"
                )
            key = (function, qualifier)
            found = self._state.configs.get(key)
            if found is not None:
                self._advance(found)
            if operation == "GetProvisionedConcurrencyConfig":
                if found is None:
                    raise _ApiError(
                        404,
                        "ProvisionedConcurrencyConfigNotFoundException",
                        "No Provisioned Concurrency Config found for this function",
                    )
                return 200, self._body(found)
            if found is not None and found.status == "IN_PROGRESS":
                raise _ApiError(
                    409,
                    "ResourceConflictException",
                    "The operation cannot be performed at this time. An update is in "
                    f"progress for resource: {arn}:{qualifier}",
                )
            if operation == "DeleteProvisionedConcurrencyConfig":
                if found is None:
                    raise _ApiError(
                        404,
                        "ResourceNotFoundException",
                        f"No Provisioned Concurrency Config found for {arn}:{qualifier}",
                    )
                del self._state.configs[key]
                return 204, None
            return 202, self._put(key, qualifier, found, body)

    def _put(
        self, key: tuple[str, str], qualifier: str, found: _Config | None, body: JsonObj | None
    ) -> JsonObj:
        if qualifier == "$LATEST":
            raise _ApiError(
                400,
                "InvalidParameterValueException",
                "Provisioned Concurrency Configs cannot be applied to unpublished function "
                "versions.",
            )
        wanted = (body or {}).get("ProvisionedConcurrentExecutions")
        if not isinstance(wanted, int) or wanted < 1:
            raise _ApiError(
                400,
                "InvalidParameterValueException",
                "ProvisionedConcurrentExecutions must be at least 1",
            )
        reserved = self._state.reserved.get(key[0])
        if reserved is not None and wanted > reserved:
            raise _ApiError(
                400,
                "InvalidParameterValueException",
                "Requested Provisioned Concurrency should not be greater than the reserved "
                f"concurrency for the function [{reserved}].",
            )
        if reserved is None and wanted > self._state.unreserved - UNRESERVED_MINIMUM:
            raise _ApiError(
                400,
                "InvalidParameterValueException",
                "Specified ConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of "
                f"[{UNRESERVED_MINIMUM}].",
            )
        delay = self._state.ready_after
        config = _Config(
            requested=wanted,
            # What serves now keeps serving while the new amount is allocated.
            allocated=found.allocated if found is not None else 0,
            status="IN_PROGRESS",
            reason=None,
            modified=self._wall_clock(),
            ready_at=None if delay is None else self._monotonic() + delay,
            fail_with=self._state.fail_next.pop(key, None),
        )
        self._state.configs[key] = config
        return self._body(config)

    def _advance(self, config: _Config) -> None:
        if (
            config.status == "IN_PROGRESS"
            and config.ready_at is not None
            and self._monotonic() >= config.ready_at
        ):
            self._complete(config)

    @staticmethod
    def _complete(config: _Config) -> None:
        if config.fail_with is not None:
            config.status, config.reason = "FAILED", config.fail_with
            config.allocated = 0
        else:
            config.status, config.reason = "READY", None
            config.allocated = config.requested
        config.ready_at = None

    @staticmethod
    def _body(config: _Config) -> JsonObj:
        stamp = datetime.fromtimestamp(config.modified, UTC)
        body: JsonObj = {
            "RequestedProvisionedConcurrentExecutions": config.requested,
            "AvailableProvisionedConcurrentExecutions": config.allocated,
            "AllocatedProvisionedConcurrentExecutions": config.allocated,
            "Status": config.status,
            # Lambda's own format: milliseconds and a +0000 offset.
            "LastModified": f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond // 1000:03d}+0000",
        }
        if config.reason:
            body["StatusReason"] = config.reason
        return body
