"""PrometheusSource against the real Prometheus server (and a tiny real HTTP server for faults)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from daemon.errors import PermanentSourceError, TransientSourceError
from daemon.sources.base import MetricQuery, Sample
from daemon.sources.prometheus import PrometheusSource, plan_chunks
from tests.support.moto_server import free_port
from tests.support.prometheus_data import LONG_DAYS, STEP, PromData


def q(spec: str) -> MetricQuery[str]:
    return MetricQuery(name="test", spec=spec)


@pytest.fixture
async def source(prometheus: PromData) -> AsyncIterator[PrometheusSource]:
    src = PrometheusSource(prometheus.url, timeout_s=10)
    yield src
    await src.close()


# --- instant queries -------------------------------------------------------------------


async def test_latest_reads_the_value_at_now(
    source: PrometheusSource, prometheus: PromData
) -> None:
    sample = await source.latest(q("demand"), prometheus.base + 600)
    assert sample == Sample(prometheus.base + 600, 10.0)


async def test_latest_of_a_scalar_and_of_a_range_selector(
    source: PrometheusSource, prometheus: PromData
) -> None:
    now = prometheus.base + 600
    assert await source.latest(q("42"), now) == Sample(now, 42.0)
    # ``demand[5m]`` is a matrix; its newest point is the latest sample.
    assert await source.latest(q("demand[5m]"), now) == Sample(now, 10.0)


async def test_latest_is_none_when_nothing_matches(
    source: PrometheusSource, prometheus: PromData
) -> None:
    assert await source.latest(q("no_such_metric"), prometheus.base + 600) is None
    # Beyond Prometheus's 5-minute lookback the series is gone.
    assert await source.latest(q("demand"), prometheus.base + 120 * STEP + 3600) is None


async def test_latest_refuses_a_string_result(
    source: PrometheusSource, prometheus: PromData
) -> None:
    with pytest.raises(PermanentSourceError, match="'string'"):
        await source.latest(q('"hello"'), prometheus.base)


async def test_more_than_one_series_asks_the_user_to_aggregate(
    source: PrometheusSource, prometheus: PromData
) -> None:
    with pytest.raises(PermanentSourceError, match=r"2 series.*sum\(split\)"):
        await source.latest(q("split"), prometheus.base + STEP)
    with pytest.raises(PermanentSourceError, match=r"sum\(split\)"):
        await source.history(q("split"), prometheus.base, prometheus.base + STEP, STEP)
    sample = await source.latest(q("sum(split)"), prometheus.base + STEP)
    assert sample == Sample(prometheus.base + STEP, 3.0)


async def test_bad_promql_carries_prometheus_error_text(
    source: PrometheusSource, prometheus: PromData
) -> None:
    with pytest.raises(PermanentSourceError, match=r"400 bad_data.*parse error"):
        await source.latest(q("sum(demand"), prometheus.base)


# --- range queries ---------------------------------------------------------------------


async def test_history_returns_exact_points(source: PrometheusSource, prometheus: PromData) -> None:
    start = prometheus.base
    series = await source.history(q("demand"), start, start + 59 * STEP, STEP)
    np.testing.assert_array_equal(series.timestamps, start + STEP * np.arange(60))
    np.testing.assert_array_equal(series.values, np.arange(60, dtype=np.float64))


async def test_history_of_nothing_is_empty(source: PrometheusSource, prometheus: PromData) -> None:
    series = await source.history(q("nope"), prometheus.base, prometheus.base + 600, STEP)
    assert len(series) == 0


async def test_history_parses_nan_and_infinities(
    source: PrometheusSource, prometheus: PromData
) -> None:
    series = await source.history(q("weird"), prometheus.base, prometheus.base + 4 * STEP, STEP)
    values = series.values
    assert values[0] == 1.0
    assert math.isnan(values[1])
    assert values[2] == math.inf
    assert values[3] == -math.inf
    assert values[4] == -2.0


@pytest.mark.parametrize("max_points", [1, 7, 60, 10_000])
async def test_chunked_history_equals_one_request(prometheus: PromData, max_points: int) -> None:
    # 119 minutes: chunks of 7 leave a short last chunk, chunks of 1 make many boundaries.
    start, end = prometheus.base, prometheus.base + 119 * STEP
    src = PrometheusSource(prometheus.url, max_points_per_request=max_points)
    try:
        series = await src.history(q("demand"), start, end, STEP)
    finally:
        await src.close()
    np.testing.assert_array_equal(series.timestamps, start + STEP * np.arange(120))
    np.testing.assert_array_equal(series.values, np.arange(120, dtype=np.float64))


async def test_fourteen_days_at_60s_is_chunked_past_the_server_limit(
    source: PrometheusSource, prometheus: PromData
) -> None:
    start = prometheus.base
    end = start + LONG_DAYS * 86400 - STEP
    # The server refuses the range in one request ...
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{prometheus.url}/api/v1/query_range",
            params={"query": "long", "start": str(start), "end": str(end), "step": "60"},
        ) as response,
    ):
        assert response.status == 400
        assert "11,000 points" in (await response.json())["error"]
    # ... and the source gets all 20,160 points, in order, each once.
    series = await source.history(q("long"), start, end, STEP)
    expected = np.array(prometheus.series["long"])
    assert len(series) == LONG_DAYS * 1440
    np.testing.assert_array_equal(series.timestamps, expected[:, 0])
    np.testing.assert_allclose(series.values, expected[:, 1])


async def test_a_series_changing_labels_between_chunks_is_refused(prometheus: PromData) -> None:
    start, end = prometheus.base, prometheus.base + 29 * STEP
    # In one request the two label sets are two series ...
    one = PrometheusSource(prometheus.url)
    # ... and in chunks of 15 points each chunk holds one of them; both must be refused.
    chunked = PrometheusSource(prometheus.url, max_points_per_request=15)
    try:
        for src in (one, chunked):
            with pytest.raises(PermanentSourceError, match=r"sum\(changing\)"):
                await src.history(q("changing"), start, end, STEP)
    finally:
        await one.close()
        await chunked.close()


@pytest.mark.parametrize(
    ("start", "end", "step", "max_points", "expected"),
    [
        (0.0, 0.0, 60.0, 10, [(0.0, 0.0)]),
        (0.0, 540.0, 60.0, 10, [(0.0, 540.0)]),
        (0.0, 600.0, 60.0, 10, [(0.0, 540.0), (600.0, 600.0)]),
        (0.0, 650.0, 60.0, 5, [(0.0, 240.0), (300.0, 540.0), (600.0, 600.0)]),
    ],
)
def test_plan_chunks_covers_the_grid_once(
    start: float, end: float, step: float, max_points: int, expected: list[tuple[float, float]]
) -> None:
    assert plan_chunks(start, end, step, max_points) == expected


# --- transport and server faults -------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def fault_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """A real HTTP server on loopback answering every request with the given handler."""
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


def _answer(status: int, body: dict[str, str]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return handler


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            503,
            {"status": "error", "errorType": "unavailable", "error": "shutting down"},
            TransientSourceError,
        ),
        (500, {"status": "error", "errorType": "internal", "error": "boom"}, TransientSourceError),
        (
            422,
            {"status": "error", "errorType": "execution", "error": "too many samples"},
            PermanentSourceError,
        ),
        (
            429,
            {"status": "error", "errorType": "unknown", "error": "slow down"},
            TransientSourceError,
        ),
    ],
)
async def test_http_errors_map_by_status(
    fault_server: Callable[[Handler], Awaitable[str]],
    status: int,
    body: dict[str, str],
    error: type[Exception],
) -> None:
    url = await fault_server(_answer(status, body))
    src = PrometheusSource(url)
    try:
        with pytest.raises(error, match=body["error"]):
            await src.latest(q("x"), 0.0)
    finally:
        await src.close()


async def test_non_json_answers(fault_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def html(request: web.Request) -> web.StreamResponse:
        status = 502 if "query_range" in request.path else 200
        return web.Response(text="<html>proxy page</html>", status=status)

    src = PrometheusSource(await fault_server(html))
    try:
        # A gateway error may pass; an HTML page with 200 means a wrong URL and will not.
        with pytest.raises(TransientSourceError, match="502"):
            await src.history(q("x"), 0.0, 60.0, 60.0)
        with pytest.raises(PermanentSourceError, match="check the URL"):
            await src.latest(q("x"), 0.0)
    finally:
        await src.close()


async def test_timeout_is_transient(fault_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.6)
        return web.json_response({})

    src = PrometheusSource(await fault_server(slow), timeout_s=0.1)
    try:
        with pytest.raises(TransientSourceError, match="timed out"):
            await src.latest(q("x"), 0.0)
    finally:
        await src.close()


async def test_connection_refused_is_transient() -> None:
    src = PrometheusSource(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TransientSourceError):
            await src.history(q("x"), 0.0, 600.0, 60.0)
    finally:
        await src.close()


async def test_a_shared_session_is_left_open(prometheus: PromData) -> None:
    async with aiohttp.ClientSession() as session:
        src = PrometheusSource(prometheus.url, session=session, headers={"X-Scope-OrgID": "t1"})
        assert await src.latest(q("demand"), prometheus.base) == Sample(prometheus.base, 0.0)
        await src.close()
        assert not session.closed
