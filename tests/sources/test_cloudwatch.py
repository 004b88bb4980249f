"""CloudWatchSource: real aioboto3 against moto's server, and a small fake of GetMetricData.

moto answers plain metric queries over HTTP like CloudWatch; it has no pagination, no
throttling and little metric math, so those are covered with ``FakeGetMetricData``, a fake of
the one client method the source calls.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aioboto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from daemon.errors import PermanentSourceError, TransientSourceError
from daemon.ratelimit_client import ApiThrottle
from daemon.sources.base import MetricQuery, Sample
from daemon.sources.cloudwatch import (
    CloudWatchExpression,
    CloudWatchMetric,
    CloudWatchQuery,
    CloudWatchSource,
)
from daemon.sources.retry import RetryPolicy
from tests.support.moto_server import free_port

REGION = "us-east-1"
NO_RETRIES = RetryPolicy(attempts=1)
REQUESTS = CloudWatchMetric(
    namespace="App",
    metric_name="Requests",
    dimensions=(("Service", "api"),),
    stat="Average",
)
HOURS = 3


def cw(spec: CloudWatchMetric | CloudWatchExpression, name: str = "rps") -> CloudWatchQuery:
    return MetricQuery(name=name, spec=spec)


# --- against moto's server -------------------------------------------------------------


@pytest.fixture
async def moto_data(moto_endpoint: str) -> float:
    """Three hours of App/Requests (value i in minute i, 10 s into it); returns minute 0."""
    # Whole hours, so 5-minute periods line up with the data too.
    base = (time.time() // 3600) * 3600 - HOURS * 3600
    points = [
        {
            "MetricName": "Requests",
            "Dimensions": [{"Name": "Service", "Value": "api"}],
            "Timestamp": datetime.fromtimestamp(base + i * 60 + 10, UTC),
            "Value": float(i),
        }
        for i in range(HOURS * 60)
    ]
    session = aioboto3.Session()
    async with session.client(
        "cloudwatch", region_name=REGION, endpoint_url=moto_endpoint
    ) as client:
        for first in range(0, len(points), 150):
            await client.put_metric_data(Namespace="App", MetricData=points[first : first + 150])
    return base


@pytest.fixture
async def moto_source(moto_endpoint: str) -> AsyncIterator[CloudWatchSource]:
    source = CloudWatchSource(REGION, endpoint_url=moto_endpoint, backoff=NO_RETRIES)
    yield source
    await source.close()


async def test_history_reads_back_what_was_put(
    moto_source: CloudWatchSource, moto_data: float
) -> None:
    # Unaligned bounds are floored to the minute; the minute holding ``end`` is left out.
    series = await moto_source.history(cw(REQUESTS), moto_data + 17, moto_data + 3600 + 42, 60)
    np.testing.assert_array_equal(series.timestamps, moto_data + 60 * np.arange(60))
    np.testing.assert_array_equal(series.values, np.arange(60, dtype=np.float64))


async def test_history_aggregates_over_the_step(
    moto_source: CloudWatchSource, moto_data: float
) -> None:
    series = await moto_source.history(cw(REQUESTS), moto_data, moto_data + HOURS * 3600, 300)
    assert len(series) == HOURS * 12
    # Average of minutes 5k .. 5k+4 is 5k + 2.
    np.testing.assert_allclose(series.values, 5 * np.arange(HOURS * 12) + 2.0)
    assert bool(np.all(np.diff(series.timestamps) == 300))


async def test_latest_is_the_last_complete_period(
    moto_source: CloudWatchSource, moto_data: float
) -> None:
    now = moto_data + HOURS * 3600 + 25  # 25 s into the minute after the data
    assert await moto_source.latest(cw(REQUESTS), now) == Sample(
        moto_data + (HOURS * 60 - 1) * 60, HOURS * 60 - 1.0
    )
    # Ten minutes later the lookback (5 periods) holds nothing: the policy sees ``empty``.
    assert await moto_source.latest(cw(REQUESTS), now + 600) is None


async def test_unknown_metric_is_empty(moto_source: CloudWatchSource, moto_data: float) -> None:
    other = CloudWatchMetric(namespace="App", metric_name="Nope")
    series = await moto_source.history(cw(other), moto_data, moto_data + 3600, 60)
    assert len(series) == 0


async def test_unparseable_answer_is_permanent(
    moto_source: CloudWatchSource, moto_data: float
) -> None:
    # moto answers a percentile statistic with an HTML 500: botocore's ResponseParserError.
    p99 = CloudWatchMetric(namespace="App", metric_name="Requests", stat="p99")
    with pytest.raises(PermanentSourceError, match="unreadable"):
        await moto_source.history(cw(p99), moto_data, moto_data + 3600, 60)


async def test_unreachable_endpoint_is_transient() -> None:
    source = CloudWatchSource(
        REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        backoff=NO_RETRIES,
        connect_timeout_s=1,
    )
    try:
        with pytest.raises(TransientSourceError, match="unreachable"):
            await source.history(cw(REQUESTS), 0.0, 3600.0, 60)
    finally:
        await source.close()


async def test_unknown_profile_is_permanent() -> None:
    source = CloudWatchSource(REGION, profile="no-such-profile", backoff=NO_RETRIES)
    try:
        with pytest.raises(PermanentSourceError, match="no-such-profile"):
            await source.history(cw(REQUESTS), 0.0, 3600.0, 60)
    finally:
        await source.close()


# --- a fake of the one method, for what moto cannot do ---------------------------------


class FakeGetMetricData:
    """Serves fixed datapoints per query label, honouring ScanBy and paginating.

    ``page_size`` bounds datapoints per result per page; ``failures`` are raised, in order,
    by the first calls. Every request is recorded in ``calls``.
    """

    def __init__(
        self,
        data: dict[str, list[tuple[float, float]]],
        *,
        page_size: int = 100_800,
        failures: list[Exception] | None = None,
    ) -> None:
        self.data = data
        self.page_size = page_size
        self.failures = list(failures or [])
        self.calls: list[dict[str, Any]] = []

    async def get_metric_data(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        if self.failures:
            raise self.failures.pop(0)
        offset = int(request.get("NextToken", "0"))
        start = request["StartTime"].timestamp()
        end = request["EndTime"].timestamp()
        more = False
        results = []
        for query in request["MetricDataQueries"]:
            if not query.get("ReturnData", True):
                continue
            points = sorted(p for p in self.data.get(query["Label"], []) if start <= p[0] < end)
            if request.get("ScanBy", "TimestampDescending") == "TimestampDescending":
                points.reverse()
            page = points[offset : offset + self.page_size]
            more = more or offset + self.page_size < len(points)
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query["Label"],
                    "Timestamps": [datetime.fromtimestamp(t, UTC) for t, _ in page],
                    "Values": [v for _, v in page],
                    "StatusCode": "PartialData" if more else "Complete",
                }
            )
        response: dict[str, Any] = {"MetricDataResults": results, "Messages": []}
        if more:
            response["NextToken"] = str(offset + self.page_size)
        return response


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetMetricData",
    )


def minutes(count: int, start: float = 0.0) -> list[tuple[float, float]]:
    return [(start + i * 60.0, float(i)) for i in range(count)]


async def test_pages_are_followed_and_merged_in_order() -> None:
    fake = FakeGetMetricData({"rps": minutes(25)}, page_size=10)
    source = CloudWatchSource(REGION, client=fake, backoff=NO_RETRIES)
    series = await source.history(cw(REQUESTS), 0.0, 25 * 60.0, 60)
    np.testing.assert_array_equal(series.timestamps, 60.0 * np.arange(25))
    np.testing.assert_array_equal(series.values, np.arange(25, dtype=np.float64))
    assert [call.get("NextToken") for call in fake.calls] == [None, "10", "20"]
    assert all(call["ScanBy"] == "TimestampAscending" for call in fake.calls)


async def test_metric_math_sends_inputs_hidden_and_reads_the_expression() -> None:
    spec = CloudWatchExpression(
        expression="m1 / m2 * 100",
        inputs=(
            ("m1", CloudWatchMetric("App", "Errors", stat="Sum")),
            ("m2", CloudWatchMetric("App", "Requests", stat="Sum")),
        ),
    )
    fake = FakeGetMetricData({"error_pct": [(0.0, 1.5), (60.0, 2.5)]})
    source = CloudWatchSource(REGION, client=fake, backoff=NO_RETRIES)
    series = await source.history(cw(spec, "error_pct"), 0.0, 120.0, 60)
    np.testing.assert_array_equal(series.values, [1.5, 2.5])
    (call,) = fake.calls
    entries = {entry["Id"]: entry for entry in call["MetricDataQueries"]}
    assert entries["m1"]["ReturnData"] is False
    assert entries["m2"]["MetricStat"]["Metric"]["MetricName"] == "Requests"
    assert entries["m2"]["MetricStat"]["Period"] == 60
    (output,) = [e for e in entries.values() if e["ReturnData"]]
    assert output["Expression"] == "m1 / m2 * 100"
    assert output["Period"] == 60


async def test_many_queries_are_batched_by_500_without_id_clashes() -> None:
    plain = [cw(CloudWatchMetric("App", f"M{i}"), f"q{i}") for i in range(501)]
    clash = [cw(CloudWatchExpression("m1 * 2", (("m1", REQUESTS),)), name) for name in ("e1", "e2")]
    fake = FakeGetMetricData({"q500": [(0.0, 7.0)], "e2": [(0.0, 9.0)]})
    source = CloudWatchSource(REGION, client=fake, backoff=NO_RETRIES)
    result = await source.history_many([*plain, *clash], 0.0, 60.0, 60)
    sizes = [len(call["MetricDataQueries"]) for call in fake.calls]
    assert max(sizes) <= 500
    assert sum(sizes) == 501 + 4
    for call in fake.calls:
        ids = [entry["Id"] for entry in call["MetricDataQueries"]]
        assert len(ids) == len(set(ids))
    assert result["q500"].values.tolist() == [7.0]
    assert result["e2"].values.tolist() == [9.0]
    assert len(result["q0"]) == 0


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class TimedFake(FakeGetMetricData):
    """Records the fake clock's time of each call."""

    def __init__(self, clock: FakeClock, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.times: list[float] = []

    async def get_metric_data(self, **request: Any) -> dict[str, Any]:
        self.times.append(self.clock.now)
        return await super().get_metric_data(**request)


def throttled_source(
    fake: FakeGetMetricData, clock: FakeClock, throttle: ApiThrottle, attempts: int = 4
) -> CloudWatchSource:
    backoff = RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=10, rng=random.Random(7))
    return CloudWatchSource(
        REGION, client=fake, backoff=backoff, sleep=clock.sleep, throttle=throttle
    )


async def test_throttling_and_5xx_are_retried_with_backoff() -> None:
    clock = FakeClock()
    throttle = ApiThrottle(25.0, 50, clock=clock, sleep=clock.sleep, rng=random.Random(3))
    failures: list[Exception] = [
        client_error("Throttling", 400),
        client_error("TooManyRequests", 429),
        client_error("InternalFailure", 500),
    ]
    fake = TimedFake(clock, {"rps": minutes(3)}, failures=failures)
    series = await throttled_source(fake, clock, throttle).history(cw(REQUESTS), 0.0, 180.0, 60)
    assert len(series) == 3
    assert len(fake.calls) == 4
    gaps = [later - earlier for earlier, later in zip(fake.times, fake.times[1:], strict=False)]
    # After a throttle the next call waits out the throttle's backoff (1 s, then 2 s, with
    # jitter down to half); after a 5xx only the retry policy's (up to 2 s, full jitter).
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0
    assert 0 <= gaps[2] <= 2.0


async def test_a_throttled_account_holds_every_source_on_it() -> None:
    clock = FakeClock()
    throttle = ApiThrottle(25.0, 50, clock=clock, sleep=clock.sleep, rng=random.Random(3))
    first = TimedFake(clock, {"rps": minutes(3)}, failures=[client_error("Throttling", 400)])
    second = TimedFake(clock, {"rps": minutes(3)})
    source = throttled_source(first, clock, throttle, attempts=1)
    with pytest.raises(TransientSourceError, match="Throttling"):
        await source.history(cw(REQUESTS), 0.0, 180.0, 60)
    thrown_at = clock.now
    other = throttled_source(second, clock, throttle, attempts=1)
    assert len(await other.history(cw(REQUESTS), 0.0, 180.0, 60)) == 3
    # Another target's source on the same account waited the backoff out before calling.
    assert second.times[0] - thrown_at >= 0.5


async def test_throttling_gives_up_after_bounded_attempts() -> None:
    clock = FakeClock()
    throttle = ApiThrottle(25.0, 50, clock=clock, sleep=clock.sleep, rng=random.Random(3))
    fake = TimedFake(clock, {}, failures=[client_error("ThrottlingException", 400)] * 5)
    source = throttled_source(fake, clock, throttle, attempts=3)
    with pytest.raises(TransientSourceError, match="ThrottlingException"):
        await source.history(cw(REQUESTS), 0.0, 180.0, 60)
    assert len(fake.calls) == 3


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (client_error("InvalidParameterValue", 400), PermanentSourceError),
        (client_error("AccessDenied", 403), PermanentSourceError),
        (client_error("ExpiredToken", 400), TransientSourceError),
        (client_error("ServiceUnavailable", 503), TransientSourceError),
        (
            ResponseParserError("Unable to parse response (syntax error), invalid XML"),
            PermanentSourceError,
        ),
    ],
)
async def test_errors_are_mapped_by_code(failure: Exception, error: type[Exception]) -> None:
    fake = FakeGetMetricData({}, failures=[failure])
    source = CloudWatchSource(REGION, client=fake, backoff=NO_RETRIES)
    with pytest.raises(error) as raised:
        await source.history(cw(REQUESTS), 0.0, 180.0, 60)
    assert raised.value.__cause__ is failure


@pytest.mark.parametrize(
    ("status", "error"),
    [("Forbidden", PermanentSourceError), ("InternalError", TransientSourceError)],
)
async def test_failed_result_status(status: str, error: type[Exception]) -> None:
    class Failing(FakeGetMetricData):
        async def get_metric_data(self, **request: Any) -> dict[str, Any]:
            response = await super().get_metric_data(**request)
            for result in response["MetricDataResults"]:
                result["StatusCode"] = status
                result["Messages"] = [{"Code": status, "Value": "no access"}]
            return response

    source = CloudWatchSource(REGION, client=Failing({"rps": minutes(3)}), backoff=NO_RETRIES)
    with pytest.raises(error, match=status):
        await source.history(cw(REQUESTS), 0.0, 180.0, 60)


async def test_an_empty_aligned_window_makes_no_call() -> None:
    fake = FakeGetMetricData({"rps": minutes(3)})
    source = CloudWatchSource(REGION, client=fake, backoff=NO_RETRIES)
    series = await source.history(cw(REQUESTS), 61.0, 119.0, 60)
    assert len(series) == 0
    assert fake.calls == []


@pytest.mark.parametrize(
    "build",
    [
        lambda: CloudWatchMetric("App", "X", period_s=45),
        lambda: CloudWatchMetric("", "X"),
        lambda: CloudWatchExpression("a + a", (("a", REQUESTS), ("a", REQUESTS))),
        lambda: CloudWatchExpression("M1", (("M1", REQUESTS),)),
        lambda: CloudWatchExpression("elasticd_0", (("elasticd_0", REQUESTS),)),
    ],
)
def test_invalid_specs_are_refused(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


async def test_step_must_be_a_valid_period() -> None:
    source = CloudWatchSource(REGION, client=FakeGetMetricData({}), backoff=NO_RETRIES)
    for step in (45.0, 60.5, math.nan):
        with pytest.raises(ValueError):
            await source.history(cw(REQUESTS), 0.0, 600.0, step)
