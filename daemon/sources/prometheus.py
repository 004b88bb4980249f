"""Prometheus over its HTTP API, with aiohttp on the event loop.

Why not ``prometheus-api-client``: it is blocking (``requests``), so on the loop it would stall
every other reconciler for the length of a slow query, and through ``asyncio.to_thread`` it
would hold default-executor threads that other work needs. It also does not serve our needs:
``custom_query_range`` does not split long ranges, ``get_metric_range_data(chunk_size=...)``
returns one unmerged item per chunk, and its errors are not ours to classify. Two endpoints
and a small JSON shape are cheaper to speak directly than to wrap.

A query must yield exactly one series: the planner forecasts one number, and silently summing
or picking one of several series would hide a wrong query. Users aggregate in PromQL.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import numpy as np

from daemon.errors import PermanentSourceError, SourceError, TransientSourceError
from daemon.sources.base import MetricQuery, Sample, Series

T = TypeVar("T")

PromQuery = MetricQuery[str]
"""A named PromQL expression, e.g. ``MetricQuery("rps", 'sum(rate(http_requests_total[5m]))')``."""

# Prometheus refuses a range query of more than 11,000 points per series; stay well under it
# so a rounding difference in how the server counts the points can never trip the limit.
MAX_POINTS_PER_REQUEST = 10_000

# Error bodies can be whole HTML pages from a proxy; keep log lines readable.
_MAX_ERROR_TEXT = 300


class PrometheusSource:
    """Reads one-series PromQL queries from a Prometheus-compatible HTTP API."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        max_points_per_request: int = MAX_POINTS_PER_REQUEST,
        max_concurrent_requests: int = 4,
    ) -> None:
        """``base_url`` may carry a path prefix (``http://host/prometheus``).

        ``session``: share one with other components; it is left open by ``close()``. Without
        one, the source opens its own on first use (inside the running loop) and closes it.
        ``headers``: sent with every request, e.g. ``Authorization`` or a tenant header.
        ``max_concurrent_requests`` bounds the chunks of one long range fetched at once.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not 1 <= max_points_per_request <= 11_000:
            raise ValueError("max_points_per_request must be in [1, 11000]")
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None
        self._headers = dict(headers or {})
        self._max_points = max_points_per_request
        self._max_concurrent = max_concurrent_requests

    async def latest(self, query: PromQuery, now: float) -> Sample | None:
        """The query's value at ``now`` via ``/api/v1/query``; None when it matched nothing.

        Prometheus itself only looks back 5 minutes (its lookback delta) for an instant
        vector; the policy's ``max_age_s`` decides staleness beyond that.
        """
        data = await self._call("query", {"query": query.spec, "time": _fmt_time(now)})
        result_type = data.get("resultType")
        result = data.get("result")
        if result_type == "scalar":
            timestamp, value = _point(result)
            return Sample(timestamp, value)
        if result_type == "vector":
            series = _only_series(result, query)
            if series is None:
                return None
            timestamp, value = _point(series.get("value"))
            return Sample(timestamp, value)
        if result_type == "matrix":
            # A range selector (``x[5m]``) as an instant query: its newest point is the latest.
            series = _only_series(result, query)
            if series is None or not series.get("values"):
                return None
            timestamp, value = _point(series["values"][-1])
            return Sample(timestamp, value)
        raise PermanentSourceError(
            f"query {query.name!r}: result type {result_type!r} is not a number or series; "
            f"use a query that returns one time series"
        )

    async def history(self, query: PromQuery, start: float, end: float, step: float) -> Series:
        """Points in ``[start, end]`` every ``step`` s via ``/api/v1/query_range``.

        Long ranges are split into chunks on the same step grid, fetched concurrently and
        merged in order; chunks never overlap, so no boundary point appears twice.
        """
        if not (math.isfinite(start) and math.isfinite(end) and end >= start):
            raise ValueError(f"need finite start <= end, got start={start} end={end}")
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"step must be > 0, got {step}")
        chunks = plan_chunks(start, end, step, self._max_points)
        limit = asyncio.Semaphore(self._max_concurrent)

        async def fetch(chunk: tuple[float, float]) -> dict[str, Any] | None:
            async with limit:
                return await self._range_chunk(query, chunk[0], chunk[1], step)

        parts = await _gather_all([fetch(chunk) for chunk in chunks])
        return _merge(query, parts)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _range_chunk(
        self, query: PromQuery, start: float, end: float, step: float
    ) -> dict[str, Any] | None:
        data = await self._call(
            "query_range",
            {
                "query": query.spec,
                "start": _fmt_time(start),
                "end": _fmt_time(end),
                "step": _fmt_time(step),
            },
        )
        if data.get("resultType") != "matrix":
            raise PermanentSourceError(
                f"query {query.name!r}: range query returned {data.get('resultType')!r}, "
                f"expected a matrix"
            )
        return _only_series(data.get("result"), query)

    async def _call(self, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
        """POST one API call and return its ``data``, mapping every failure to our errors.

        POST (form-encoded) rather than GET: long PromQL in a URL can exceed proxy limits.
        """
        url = f"{self._base_url}/api/v1/{endpoint}"
        session = self._ensure_session()
        try:
            async with session.post(
                url, data=form, headers=self._headers, timeout=self._timeout
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError as error:
            raise TransientSourceError(f"Prometheus {endpoint} timed out: {url}") from error
        except aiohttp.ClientError as error:
            # Connection refused, reset, DNS failure, disconnect mid-body: all may pass.
            raise TransientSourceError(f"Prometheus {endpoint} failed: {error!r}") from error
        return _parse_response(endpoint, status, body)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def plan_chunks(
    start: float, end: float, step: float, max_points: int
) -> list[tuple[float, float]]:
    """Split ``[start, end]`` into ranges of at most ``max_points`` points on one step grid.

    Each chunk starts one step after the previous one ends, so no point is fetched twice.
    """
    total = math.floor((end - start) / step + 1e-9) + 1
    chunks = []
    for first in range(0, total, max_points):
        last = min(first + max_points, total) - 1
        chunks.append((start + first * step, start + last * step))
    return chunks


def _parse_response(endpoint: str, status: int, body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        text = body[:_MAX_ERROR_TEXT].decode("utf-8", "replace")
        if status >= 500 or status in (408, 429):
            raise TransientSourceError(f"Prometheus {endpoint}: HTTP {status}: {text}")
        raise PermanentSourceError(
            f"Prometheus {endpoint}: HTTP {status}, not a Prometheus API response "
            f"(check the URL): {text}"
        )
    if status == 200 and payload.get("status") == "success":
        data = payload.get("data")
        if not isinstance(data, dict):
            raise PermanentSourceError(f"Prometheus {endpoint}: response without data")
        return data
    error_type = payload.get("errorType", "unknown")
    error_text = str(payload.get("error", ""))[:_MAX_ERROR_TEXT]
    message = f"Prometheus {endpoint}: HTTP {status} {error_type}: {error_text}"
    # 5xx (internal, unavailable, timeout) and 408/429 may pass; other 4xx (bad_data for a
    # PromQL syntax error, 422 execution errors) will fail again on the same query.
    if status >= 500 or status in (408, 429) or error_type in ("timeout", "unavailable"):
        raise TransientSourceError(message)
    raise PermanentSourceError(message)


def _only_series(result: Any, query: PromQuery) -> dict[str, Any] | None:
    if not isinstance(result, list):
        raise PermanentSourceError(f"query {query.name!r}: malformed result {result!r:.100}")
    if not result:
        return None
    if len(result) > 1:
        labels = ", ".join(_labels(item.get("metric", {})) for item in result[:3])
        more = ", ..." if len(result) > 3 else ""
        raise PermanentSourceError(
            f"query {query.name!r} returned {len(result)} series ({labels}{more}); "
            f"it must return exactly one: aggregate it, e.g. sum({query.spec})"
        )
    series = result[0]
    if not isinstance(series, dict):
        raise PermanentSourceError(f"query {query.name!r}: malformed series {series!r:.100}")
    return series


def _merge(query: PromQuery, parts: Sequence[dict[str, Any] | None]) -> Series:
    present = [part for part in parts if part is not None]
    if not present:
        return Series.empty()
    # Chunked, one query could yield a different single series per chunk (a label changed
    # mid-range); unchunked that would be two series, so refuse it the same way.
    label_sets = {_labels(part.get("metric", {})) for part in present}
    if len(label_sets) > 1:
        raise PermanentSourceError(
            f"query {query.name!r} returned {len(label_sets)} different series over the range "
            f"({', '.join(sorted(label_sets))}); aggregate it, e.g. sum({query.spec})"
        )
    points = [_point(point) for part in present for point in part.get("values", [])]
    if not points:
        return Series.empty()
    array = np.array(points, dtype=np.float64)
    order = np.argsort(array[:, 0], kind="stable")
    array = array[order]
    # Defensive: a compatible server (Thanos, Mimir) might repeat a boundary point.
    keep = np.concatenate(([True], np.diff(array[:, 0]) > 0))
    return Series(array[keep, 0], array[keep, 1])


def _point(raw: Any) -> tuple[float, float]:
    """Parse ``[timestamp, "value"]``; ``float`` reads Prometheus's "NaN", "+Inf", "-Inf"."""
    try:
        timestamp, value = raw
        return float(timestamp), float(value)
    except (TypeError, ValueError) as error:
        raise PermanentSourceError(f"malformed sample {raw!r:.100}") from error


def _labels(metric: Mapping[str, str]) -> str:
    name = metric.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _fmt_time(seconds: float) -> str:
    # Millisecond precision is what Prometheus keeps; more digits only make URLs longer.
    return f"{seconds:.3f}"


async def _gather_all(coroutines: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run all chunk fetches; on failure cancel the rest and raise the most telling error.

    A permanent error wins over a transient one: if any chunk's query is wrong, retrying
    the whole range will not help.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as errors:
        flat = _flatten(errors)
        for kind in (PermanentSourceError, SourceError):
            for error in flat:
                if isinstance(error, kind):
                    # Keep the library error as the cause; the group adds nothing for users.
                    raise error from error.__cause__
        raise
    return [task.result() for task in tasks]


def _flatten(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    flat: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            flat.extend(_flatten(error))
        else:
            flat.append(error)
    return flat
