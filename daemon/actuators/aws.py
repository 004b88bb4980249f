"""What the AWS actuators share: one lazily opened aioboto3 client and one error mapping.

botocore's own retries are off by default here: ``retry.with_retries`` is the one retry
policy, and stacking botocore's on top would multiply attempts and hide throttling.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

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

from daemon.actuators.retry import RetryPolicy, with_retries
from daemon.errors import ActuatorError, PermanentActuatorError, TransientActuatorError

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


def map_aws_error(error: BaseException, what: str) -> ActuatorError:
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
        return TransientActuatorError(f"{what}: timed out")
    # Connection refused or reset, read timeouts, DNS failures: the network may recover.
    return TransientActuatorError(f"{what}: {type(error).__name__}: {error}")


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
    ) -> None:
        self.service = service
        self._region = region
        self._endpoint_url = endpoint_url
        self._session = session or aioboto3.Session()
        self._config = client_config or default_client_config()
        self._retry = retry or RetryPolicy()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def call(self, operation: str, what: str, **params: Any) -> dict[str, Any]:
        """Run one API operation (snake_case name), mapping and retrying its errors."""

        async def once() -> dict[str, Any]:
            try:
                api = await self._open()
                result: dict[str, Any] = await getattr(api, operation)(**params)
            except CALL_ERRORS as error:
                raise map_aws_error(error, what) from error
            return result

        return await with_retries(once, self._retry, what=what)

    async def close(self) -> None:
        async with self._lock:
            self._client = None
            await self._stack.aclose()

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
