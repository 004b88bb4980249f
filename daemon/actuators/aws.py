"""What the AWS actuators share: one lazily opened aioboto3 client and one error mapping.

botocore's own retries are off by default here: ``retry.with_retries`` is the one retry
policy for reads, and stacking botocore's on top would multiply attempts and hide throttling.
Writes are sent at most once per call (see :mod:`daemon.actuators.retry`).

Politeness: every request takes a token from a throttle shared by all clients of the same
service, region and endpoint (each target opens its own client, but AWS's request limits are
the account's), and a throttling answer (``Throttling``, ``RequestLimitExceeded``, HTTP 429 ...)
closes that throttle for reads or writes for its ``Retry-After``, or for a growing backoff.

Fencing: AWS has no compare-and-set on an Auto Scaling group's or node group's size. The
fence is therefore the caller's lease deadline, checked immediately before each write (and
bounding its timeout), plus a fresh read just before it compared with the size the decision
was made on; a writer overlapping another can still land in the few milliseconds between
that read and its write, which is as close as these APIs allow.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Required, TypedDict

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from daemon.actuators.retry import RetryPolicy, WriteGuard, throttled_error, with_retries
from daemon.errors import (
    ActuatorError,
    PermanentActuatorError,
    ThrottledError,
    TransientActuatorError,
)
from daemon.ratelimit_client import ApiThrottle, Throttled, parse_retry_after, throttle_for_key

# Answers that mean "you are sending too much": the throttle backs off (or honours Retry-After).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)
# Seconds a write may take when the caller sets no deadline (botocore's own read timeout is
# 15 s and connect timeout 5 s).
WRITE_TIMEOUT_S = 20.0

# Error codes a later retry may get past: throttling, and "busy" answers while an earlier
# update or scaling activity is still running.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "SlowDown",
        "ResourceInUseException",
        "ResourceContention",
        "ScalingActivityInProgress",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "ServerException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

# Configuration and credential problems: retrying cannot fix them.
_PERMANENT_BOTOCORE = (
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    ParamValidationError,
)

CALL_ERRORS = (
    ClientError,
    BotoCoreError,
    ResponseParserError,
    aiohttp.ClientError,
    TimeoutError,
    OSError,
)


def default_client_config() -> Config:
    """No botocore retries (we retry ourselves) and timeouts short enough for one tick."""
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=15,
    )


def map_aws_error(
    error: BaseException, what: str, *, timeout: float | None = None
) -> ActuatorError:
    """The project's error for a failed AWS call, chosen by what the caller should do."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = f"{what}: {code or 'HTTP ' + str(status)}: {info.get('Message', '')}".rstrip(": ")
        if code in TRANSIENT_CODES or status == 429 or status >= 500:
            return TransientActuatorError(detail)
        return PermanentActuatorError(detail)
    if isinstance(error, ResponseParserError):
        # An unparseable answer: moto's HTML 500 for a missing group, or a proxy's error page.
        # Retrying gets the same page, so stop and report.
        return PermanentActuatorError(f"{what}: unreadable response: {str(error)[:200]}")
    if isinstance(error, _PERMANENT_BOTOCORE):
        return PermanentActuatorError(f"{what}: {error}")
    if isinstance(error, TimeoutError):
        after = f" after {timeout:g}s" if timeout is not None else ""
        return TransientActuatorError(f"{what}: timed out{after}")
    # Connection refused or reset, read timeouts, DNS failures: the network may recover.
    return TransientActuatorError(f"{what}: {type(error).__name__}: {error}".rstrip(": "))


def throttling_of(error: BaseException) -> tuple[bool, float | None]:
    """(whether ``error`` is a throttling answer, the seconds of its Retry-After if any)."""
    if not isinstance(error, ClientError):
        return False, None
    code = str(error.response.get("Error", {}).get("Code", ""))
    metadata = error.response.get("ResponseMetadata", {})
    status = int(metadata.get("HTTPStatusCode", 0) or 0)
    headers = {str(k).lower(): v for k, v in (metadata.get("HTTPHeaders") or {}).items()}
    value = headers.get("retry-after")
    retry_after = parse_retry_after(value) if isinstance(value, str) else None
    throttling = code in THROTTLING_CODES or status == 429
    if status == 503 and retry_after is not None:
        throttling = True
    return throttling, retry_after


class AwsOptions(TypedDict, total=False):
    """How an AWS actuator reaches its service: every ``AwsSizeActuator`` takes these."""

    region: Required[str]
    endpoint_url: str | None
    session: aioboto3.Session | None
    client_config: Config | None
    retry: RetryPolicy | None


class AwsClient:
    """One aioboto3 client for one service, opened on first use and closed by ``close()``."""

    def __init__(
        self,
        service: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        client_config: Config | None = None,
        retry: RetryPolicy | None = None,
        throttle: ApiThrottle | None = None,
        write_timeout: float = WRITE_TIMEOUT_S,
    ) -> None:
        """``throttle`` defaults to the one shared by every client of ``service`` in
        ``region`` at ``endpoint_url``."""
        self.service = service
        self._region = region
        self._endpoint_url = endpoint_url
        self._session = session or aioboto3.Session()
        self._config = client_config or default_client_config()
        self._retry = retry or RetryPolicy()
        self.throttle = throttle or throttle_for_key(("aws", service, region, endpoint_url))
        self.write_timeout = write_timeout
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    def ensure_writable(self, what: str) -> None:
        """``ThrottledError`` at once if AWS told this client to hold its writes."""
        try:
            self.throttle.check("write")
        except Throttled as refused:
            raise throttled_error(what, refused) from refused

    async def call(self, operation: str, what: str, **params: Any) -> dict[str, Any]:
        """Run one reading API operation (snake_case name), mapping and retrying its errors."""

        async def once() -> dict[str, Any]:
            try:
                await self.throttle.admit("read", max_wait=self.write_timeout)
            except Throttled as refused:
                raise throttled_error(what, refused) from refused
            return await self._send("read", operation, what, params, None)

        return await with_retries(once, self._retry, what=what)

    async def write(
        self,
        operation: str,
        what: str,
        guard: WriteGuard,
        deadline: float | None,
        **params: Any,
    ) -> dict[str, Any]:
        """Run one writing operation exactly once, or not at all: not after ``deadline``
        (``FencedError``), not while throttled or backing off; a failure feeds ``guard``."""
        try:
            await self.throttle.admit("write", deadline=deadline, max_wait=self.write_timeout)
        except Throttled as refused:
            raise throttled_error(what, refused) from refused
        await self._open_mapped(what)
        # Checked after the waits above: immediately before the request.
        limit = guard.fence(deadline, self.write_timeout)
        try:
            result = await self._send("write", operation, what, params, limit)
        except ActuatorError as error:
            guard.failed(error)
            raise
        guard.succeeded()
        return result

    async def close(self) -> None:
        async with self._lock:
            self._client = None
            await self._stack.aclose()

    async def _send(
        self, kind: str, operation: str, what: str, params: dict[str, Any], limit_s: float | None
    ) -> dict[str, Any]:
        try:
            api = await self._open()
            request = getattr(api, operation)(**params)
            result: dict[str, Any] = await (
                asyncio.wait_for(request, timeout=limit_s) if limit_s is not None else request
            )
        except CALL_ERRORS as error:
            mapped = map_aws_error(error, what, timeout=limit_s)
            throttling, retry_after = throttling_of(error)
            if throttling:
                seconds = self.throttle.throttled(kind, retry_after, f"{what} throttled")
                raise ThrottledError(f"{mapped}; throttled: retry after {seconds:.3g}s") from error
            raise mapped from error
        self.throttle.succeeded(kind)
        return result

    async def _open_mapped(self, what: str) -> None:
        try:
            await self._open()
        except CALL_ERRORS as error:
            raise map_aws_error(error, what) from error

    async def _open(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await self._stack.enter_async_context(
                    self._session.client(
                        self.service,
                        region_name=self._region,
                        endpoint_url=self._endpoint_url,
                        config=self._config,
                    )
                )
            return self._client
