"""Amazon CloudWatch through ``GetMetricData`` with aioboto3.

The source depends on that one client method only (``GetMetricDataClient``), so tests can fake
it in a few lines where moto falls short (pagination, metric math, throttling).

Choices:

- Credentials: aioboto3's default chain (environment, profile, IRSA web identity, instance
  role); ``profile`` only names a profile. botocore's own retries are off, so the one retry
  policy (``daemon.sources.retry``) decides, and throttling is not retried twice over.
- Time: start and end are floored to the period. CloudWatch's end is exclusive, so the period
  still filling at ``end`` is left out: a half-filled ``Sum`` would look like a drop in demand.
  A point's timestamp is the start of its period, as CloudWatch reports it.
- Order: results are requested ascending and sorted again, as the default is descending.
- Throttling: every call takes a token from a bucket shared by all sources on the same region
  and endpoint (the account's GetMetricData quota is shared too), and a throttling answer
  closes that bucket's gate for an exponential, jittered backoff (1 s, 2 s, 4 s...) that
  every target waits out before its next call, so a throttled API is not hammered.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import aioboto3
import aiohttp
import botocore.exceptions
import numpy as np
from aiobotocore.config import AioConfig
from botocore.parsers import ResponseParserError

from daemon.errors import PermanentSourceError, SourceError, TransientSourceError
from daemon.ratelimit_client import ApiThrottle, Throttled, throttle_for_key
from daemon.sources.base import Sample, Series
from daemon.sources.cloudwatch_specs import (
    ID_PREFIX,
    CloudWatchExpression,
    CloudWatchMetric,
    CloudWatchQuery,
    CloudWatchSpec,
    check_period,
)
from daemon.sources.retry import RetryPolicy, retry_transient

# The query specs live apart, free of AWS imports; they are this source's vocabulary too.
__all__ = [
    "CloudWatchExpression",
    "CloudWatchMetric",
    "CloudWatchQuery",
    "CloudWatchSource",
    "CloudWatchSpec",
    "is_throttling",
    "map_error",
]

# GetMetricData takes at most 500 MetricDataQuery entries per call.
MAX_QUERIES_PER_CALL = 500

# GetMetricData's default quota is 50 calls a second per account and region, shared with every
# other tool on the account: stay at half of it.
DEFAULT_CALLS_PER_SECOND = 25.0
DEFAULT_BURST = 50
# Longest a call waits for the throttle (a closed gate or an empty bucket) before failing as
# transient: the next tick tries again rather than stalling this one.
MAX_THROTTLE_WAIT_S = 10.0
_READ = "read"


_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
    }
)
# botocore refreshes temporary credentials (IRSA, SSO) on its own; the next try gets new ones.
_EXPIRED_CREDENTIAL_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
_TRANSIENT_SERVER_CODES = frozenset(
    {"InternalFailure", "InternalServiceError", "InternalServiceFault", "ServiceUnavailable"}
)


class GetMetricDataClient(Protocol):
    """The one client method the source uses; an aioboto3 CloudWatch client satisfies it."""

    async def get_metric_data(self, **kwargs: Any) -> dict[str, Any]: ...


class CloudWatchSource:
    """Reads CloudWatch metrics and metric-math expressions as one series per query."""

    def __init__(
        self,
        region: str,
        *,
        endpoint_url: str | None = None,
        profile: str | None = None,
        session: aioboto3.Session | None = None,
        client: GetMetricDataClient | None = None,
        backoff: RetryPolicy | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        latest_lookback_periods: int = 5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        throttle: ApiThrottle | None = None,
    ) -> None:
        """``client``: use this instead of opening one (tests, or sharing); not closed by us.

        ``session``: an aioboto3 session to open the client from; else one is made for
        ``profile`` (None: the default credential chain). ``endpoint_url``: e.g. a VPC
        endpoint or moto. ``latest_lookback_periods``: how many whole periods ``latest()``
        searches back for a datapoint. ``sleep`` is injectable so tests do not wait.
        ``throttle``: rate limit and throttling backoff; by default the one shared by every
        source on this region and endpoint.
        """
        if latest_lookback_periods < 1:
            raise ValueError("latest_lookback_periods must be >= 1")
        self._region = region
        self._endpoint_url = endpoint_url
        self._profile = profile
        self._session = session
        self._client = client
        self._backoff = backoff if backoff is not None else RetryPolicy()
        self._config = AioConfig(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": 1},
        )
        self._lookback_periods = latest_lookback_periods
        self._sleep = sleep
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._client_lock = asyncio.Lock()
        self._throttle = throttle or throttle_for_key(
            ("cloudwatch", region, endpoint_url), qps=DEFAULT_CALLS_PER_SECOND, burst=DEFAULT_BURST
        )

    async def latest(self, query: CloudWatchQuery, now: float) -> Sample | None:
        """The newest complete period's value within the lookback; None when there is none."""
        period = query.spec.period_s
        end = math.floor(now / period) * period
        start = end - period * self._lookback_periods
        series = (await self.history_many([query], start, end, period))[query.name]
        if len(series) == 0:
            return None
        return Sample(float(series.timestamps[-1]), float(series.values[-1]))

    async def history(
        self, query: CloudWatchQuery, start: float, end: float, step: float
    ) -> Series:
        """Values per ``step``-second period from ``start`` to ``end`` (both floored)."""
        return (await self.history_many([query], start, end, step))[query.name]

    async def history_many(
        self, queries: Sequence[CloudWatchQuery], start: float, end: float, step: float
    ) -> dict[str, Series]:
        """Several queries over one range, batched up to 500 entries a call; keyed by name."""
        period = _as_period(step)
        names = [query.name for query in queries]
        if len(set(names)) != len(names):
            raise ValueError(f"query names must be unique, got {names}")
        aligned_start = math.floor(start / period) * period
        aligned_end = math.floor(end / period) * period
        if aligned_end <= aligned_start:
            # CloudWatch refuses an empty window; nothing complete lies in it anyway.
            return {name: Series.empty() for name in names}
        entries = [_entries(index, query, period) for index, query in enumerate(queries)]
        points: dict[str, list[tuple[float, float]]] = {}
        for batch in _batches(entries):
            points.update(await self._fetch_batch(batch, aligned_start, aligned_end))
        return {
            query.name: _to_series(points.get(_output_id(index), []))
            for index, query in enumerate(queries)
        }

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None
            self._client = None

    async def _fetch_batch(
        self, batch: Sequence[dict[str, Any]], start: float, end: float
    ) -> dict[str, list[tuple[float, float]]]:
        client = await self._ensure_client()
        points: dict[str, list[tuple[float, float]]] = {}
        request: dict[str, Any] = {
            "MetricDataQueries": list(batch),
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(end, UTC),
            "ScanBy": "TimestampAscending",
        }
        while True:

            async def call(request: dict[str, Any] = request) -> dict[str, Any]:
                await self._admit()
                try:
                    response = await client.get_metric_data(**request)
                except Exception as error:
                    if is_throttling(error):
                        # Every source on this account and region waits this out.
                        self._throttle.throttled(_READ, None, why=_error_code(error))
                    mapped = map_error(error)
                    if mapped is None:
                        raise
                    raise mapped from error
                self._throttle.succeeded(_READ)
                return response

            response = await retry_transient(
                call, self._backoff, what="CloudWatch GetMetricData", sleep=self._sleep
            )
            for result in response.get("MetricDataResults", []):
                _check_status(result)
                series = points.setdefault(result["Id"], [])
                series.extend(
                    (_epoch(timestamp), float(value))
                    for timestamp, value in zip(
                        result.get("Timestamps", []), result.get("Values", []), strict=True
                    )
                )
            token = response.get("NextToken")
            if not token:
                return points
            request = {**request, "NextToken": token}

    async def _admit(self) -> None:
        """Wait out a throttling backoff and take a request token, or fail as transient if
        that would take longer than ``MAX_THROTTLE_WAIT_S``."""
        blocked = self._throttle.blocked_for(_READ)
        if blocked > MAX_THROTTLE_WAIT_S:
            raise TransientSourceError(
                f"CloudWatch GetMetricData throttled, retry after {math.ceil(blocked)}s"
            )
        if blocked > 0:
            await self._sleep(blocked)
        try:
            await self._throttle.admit(_READ, max_wait=MAX_THROTTLE_WAIT_S)
        except Throttled as error:
            raise TransientSourceError(f"CloudWatch GetMetricData {error}") from None

    async def _ensure_client(self) -> GetMetricDataClient:
        # The lock keeps concurrent first calls from opening two clients and leaking one.
        async with self._client_lock:
            if self._client is not None:
                return self._client
            stack = contextlib.AsyncExitStack()
            try:
                # Inside the try: an unknown profile fails here, as a configuration error.
                session = self._session or aioboto3.Session(profile_name=self._profile)
                client: GetMetricDataClient = await stack.enter_async_context(
                    session.client(
                        "cloudwatch",
                        region_name=self._region,
                        endpoint_url=self._endpoint_url,
                        config=self._config,
                    )
                )
            except Exception as error:
                await stack.aclose()
                mapped = map_error(error)
                if mapped is None:
                    raise
                raise mapped from error
            self._client, self._exit_stack = client, stack
            return client


def _error_code(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", "Unknown"))
    return type(error).__name__


def is_throttling(error: BaseException) -> bool:
    """Whether the API refused the call for its rate (a throttling code, or HTTP 429)."""
    if not isinstance(error, botocore.exceptions.ClientError):
        return False
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return _error_code(error) in _THROTTLING_CODES or status == 429


def map_error(error: BaseException) -> SourceError | None:
    """Our error type for an SDK or transport error; None when it is not one we know."""
    if isinstance(error, SourceError):
        return error
    if isinstance(error, botocore.exceptions.ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", "Unknown"))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"CloudWatch {code} (HTTP {status}): {str(info.get('Message', ''))[:300]}"
        if (
            code in _THROTTLING_CODES
            or code in _TRANSIENT_SERVER_CODES
            or code in _EXPIRED_CREDENTIAL_CODES
            or status >= 500
            or status == 429
        ):
            return TransientSourceError(message)
        return PermanentSourceError(message)
    if isinstance(error, ResponseParserError):
        # An unparseable body: moto's HTML 500 for an unknown resource or statistic, or a
        # proxy page. The same request gets the same page, so retrying only delays the report.
        return PermanentSourceError(f"CloudWatch answered an unreadable response: {error}"[:400])
    if isinstance(
        error,
        botocore.exceptions.HTTPClientError
        | botocore.exceptions.ConnectionError
        | botocore.exceptions.CredentialRetrievalError
        | aiohttp.ClientError
        | TimeoutError,
    ):
        # Network trouble, or STS briefly unable to hand out web-identity credentials.
        return TransientSourceError(f"CloudWatch unreachable: {error!r}"[:400])
    if isinstance(error, botocore.exceptions.BotoCoreError):
        # No credentials, no region, unknown profile, invalid parameters: configuration.
        return PermanentSourceError(f"CloudWatch client error: {error}")
    return None


def _as_period(step: float) -> int:
    period = round(step)
    if not math.isclose(step, period):
        raise ValueError(f"CloudWatch step must be a whole number of seconds, got {step}")
    check_period(period)
    return period


def _output_id(index: int) -> str:
    return f"{ID_PREFIX}{index}"


def _entries(index: int, query: CloudWatchQuery, period: int) -> list[dict[str, Any]]:
    """The MetricDataQuery entries of one query: its inputs first, its output last."""
    spec = query.spec
    output_id = _output_id(index)
    if isinstance(spec, CloudWatchMetric):
        return [
            {
                "Id": output_id,
                "MetricStat": spec.metric_stat(period),
                "Label": query.name,
                "ReturnData": True,
            }
        ]
    inputs = [
        (
            {"Id": input_id, "Expression": item, "Period": period, "ReturnData": False}
            if isinstance(item, str)
            else {"Id": input_id, "MetricStat": item.metric_stat(period), "ReturnData": False}
        )
        for input_id, item in spec.inputs
    ]
    output = {
        "Id": output_id,
        "Expression": spec.expression,
        "Period": period,
        "Label": query.name,
        "ReturnData": True,
    }
    return [*inputs, output]


def _batches(entries: Sequence[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Pack queries into calls of at most 500 entries whose ids never collide.

    Expressions name their inputs in their text, so two expressions that both call an input
    ``m1`` go to different calls rather than having their text rewritten.
    """
    batches: list[list[dict[str, Any]]] = []
    ids: list[set[str]] = []
    for group in entries:
        if len(group) > MAX_QUERIES_PER_CALL:
            raise PermanentSourceError(
                f"a query has {len(group)} entries; GetMetricData takes {MAX_QUERIES_PER_CALL}"
            )
        group_ids = {entry["Id"] for entry in group}
        for batch, batch_ids in zip(batches, ids, strict=True):
            if len(batch) + len(group) <= MAX_QUERIES_PER_CALL and not batch_ids & group_ids:
                batch.extend(group)
                batch_ids.update(group_ids)
                break
        else:
            batches.append(list(group))
            ids.append(set(group_ids))
    return batches


def _check_status(result: Mapping[str, Any]) -> None:
    status = result.get("StatusCode", "Complete")
    if status in ("Complete", "PartialData"):
        # PartialData comes with a NextToken; the next page holds the rest.
        return
    messages = "; ".join(
        f"{message.get('Code', '')}: {message.get('Value', '')}"
        for message in result.get("Messages", [])
    )
    text = f"CloudWatch result {result.get('Label', result.get('Id'))!r}: {status} {messages}"
    if status == "InternalError":
        raise TransientSourceError(text)
    raise PermanentSourceError(text)


def _epoch(timestamp: datetime | float) -> float:
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            # botocore returns aware datetimes; a naive one from a fake is meant as UTC.
            timestamp = timestamp.replace(tzinfo=UTC)
        return timestamp.timestamp()
    return float(timestamp)


def _to_series(points: list[tuple[float, float]]) -> Series:
    if not points:
        return Series.empty()
    ordered = sorted(points, key=lambda point: point[0])
    timestamps: list[float] = []
    values: list[float] = []
    for timestamp, value in ordered:
        # A point repeated across pages is kept once, first copy wins.
        if timestamps and timestamp == timestamps[-1]:
            continue
        timestamps.append(timestamp)
        values.append(value)
    return Series(np.asarray(timestamps, dtype=np.float64), np.asarray(values, dtype=np.float64))
