"""PrometheusSource credentials, TLS, Retry-After and rate limit, against a fake Prometheus on
loopback that demands each; and URLs with secrets never reaching an error message."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from daemon.errors import ConfigError, PermanentSourceError, TransientSourceError
from daemon.ratelimit_client import ApiThrottle
from daemon.settings.sources import BasicAuthConfig, PrometheusSourceConfig
from daemon.sources.base import MetricQuery, Sample
from daemon.sources.prometheus import PrometheusSource
from tests.support.fake_prometheus import FakePrometheus, Fault, make_tls_files
from tests.support.moto_server import free_port

QUERY = MetricQuery("web", "sum(rate(http_requests_total[5m]))")


@pytest.fixture
async def fake() -> AsyncIterator[FakePrometheus]:
    server = FakePrometheus()
    yield server
    await server.stop()


def config(url: str, **fields: object) -> PrometheusSourceConfig:
    return PrometheusSourceConfig.model_validate({"type": "prometheus", "url": url, **fields})


class FakeClock:
    """Monotonic time that only moves when a test (or a throttled wait) moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# --- bearer token ---------------------------------------------------------------------


async def test_bearer_token_from_the_environment(fake: FakePrometheus) -> None:
    fake.bearer = lambda: "env-token-1"
    url = await fake.start()
    source = PrometheusSource.from_config(
        config(url), environ={"PROMETHEUS_BEARER_TOKEN": "env-token-1"}
    )
    try:
        assert await source.latest(QUERY, 5.0) == Sample(5.0, 42.0)
    finally:
        await source.close()
    assert fake.seen[-1].authorization == "Bearer env-token-1"


async def test_without_the_token_the_server_refuses(fake: FakePrometheus) -> None:
    fake.bearer = lambda: "env-token-1"
    url = await fake.start()
    source = PrometheusSource.from_config(config(url), environ={})
    try:
        with pytest.raises(PermanentSourceError, match="401"):
            await source.latest(QUERY, 5.0)
    finally:
        await source.close()
    assert fake.seen[-1].authorization is None


async def test_a_rotated_token_file_is_used_by_the_next_request(
    fake: FakePrometheus, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    current = {"token": "token-one"}
    token_file.write_text("token-one\n")
    fake.bearer = lambda: current["token"]
    url = await fake.start()
    # The env variable is set too: a token file given in the config wins over it.
    source = PrometheusSource.from_config(
        config(url, bearer_token_file=str(token_file)),
        environ={"PROMETHEUS_BEARER_TOKEN": "env-token"},
    )
    try:
        assert await source.latest(QUERY, 1.0) == Sample(1.0, 42.0)
        # Rotate as Kubernetes does: a new file swapped in atomically; the server now wants it.
        staged = tmp_path / "token.new"
        staged.write_text("token-two\n")
        os.replace(staged, token_file)
        current["token"] = "token-two"
        assert await source.latest(QUERY, 2.0) == Sample(2.0, 42.0)
    finally:
        await source.close()
    assert [seen.authorization for seen in fake.seen] == ["Bearer token-one", "Bearer token-two"]


async def test_a_token_rewritten_in_place_is_reread_after_a_refusal(
    fake: FakePrometheus, tmp_path: Path
) -> None:
    # An in-place rewrite of the same size within one clock tick keeps size and mtime: the
    # stat check cannot see it, so a 401 makes the next request read the file again.
    token_file = tmp_path / "token"
    token_file.write_text("aaaa")
    current = {"token": "aaaa"}
    fake.bearer = lambda: current["token"]
    url = await fake.start()
    source = PrometheusSource.from_config(config(url, bearer_token_file=str(token_file)))
    try:
        await source.latest(QUERY, 1.0)
        info = os.stat(token_file)
        token_file.write_text("bbbb")
        os.utime(token_file, ns=(info.st_atime_ns, info.st_mtime_ns))
        current["token"] = "bbbb"
        # Transient: the next try reads the file again and may succeed without a restart.
        with pytest.raises(TransientSourceError, match="credentials refused"):
            await source.latest(QUERY, 2.0)
        assert await source.latest(QUERY, 3.0) == Sample(3.0, 42.0)
    finally:
        await source.close()
    assert [seen.authorization for seen in fake.seen][-1] == "Bearer bbbb"


# --- basic auth -----------------------------------------------------------------------


async def test_basic_auth_with_a_password_file(fake: FakePrometheus, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("pa55word\n")
    fake.basic = ("scraper", "pa55word")
    url = await fake.start()
    basic = {"username": "scraper", "password_file": str(password_file)}
    source = PrometheusSource.from_config(
        config(url, basic_auth=basic), environ={"PROMETHEUS_BEARER_TOKEN": "not-for-basic"}
    )
    try:
        assert await source.latest(QUERY, 1.0) == Sample(1.0, 42.0)
    finally:
        await source.close()
    assert fake.seen[-1].authorization is not None
    assert fake.seen[-1].authorization.startswith("Basic ")


async def test_basic_auth_with_a_password_from_the_environment(fake: FakePrometheus) -> None:
    fake.basic = ("scraper", "from-env")
    url = await fake.start()
    basic = {"username": "scraper", "password_env": "PROM_PASSWORD"}
    source = PrometheusSource.from_config(
        config(url, basic_auth=basic), environ={"PROM_PASSWORD": "from-env"}
    )
    try:
        assert await source.latest(QUERY, 1.0) == Sample(1.0, 42.0)
    finally:
        await source.close()
    with pytest.raises(ConfigError, match="PROM_PASSWORD is not set"):
        PrometheusSource.from_config(config(url, basic_auth=basic), environ={})


async def test_credentials_in_the_url_are_basic_auth_and_never_shown(
    fake: FakePrometheus,
) -> None:
    fake.basic = ("user", "s3cret")
    url = await fake.start()
    with_secret = url.replace("http://", "http://user:s3cret@")
    source = PrometheusSource.from_config(config(with_secret))
    try:
        assert await source.latest(QUERY, 1.0) == Sample(1.0, 42.0)
        fake.faults.append(Fault(500))
        with pytest.raises(TransientSourceError) as raised:
            await source.latest(QUERY, 2.0)
    finally:
        await source.close()
    assert "s3cret" not in str(raised.value)
    assert fake.seen[0].authorization is not None
    assert fake.seen[0].authorization.startswith("Basic ")


async def test_a_wrong_password_is_refused(fake: FakePrometheus) -> None:
    fake.basic = ("scraper", "right")
    url = await fake.start()
    source = PrometheusSource.from_config(
        config(url, basic_auth={"username": "scraper", "password": "wrong"})
    )
    try:
        with pytest.raises(PermanentSourceError, match="401"):
            await source.latest(QUERY, 1.0)
    finally:
        await source.close()


# --- TLS ------------------------------------------------------------------------------


async def test_tls_with_a_private_ca(fake: FakePrometheus, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    url = await fake.start(tls=tls.server_context())
    assert url.startswith("https://")
    trusting = PrometheusSource.from_config(config(url, ca_file=str(tls.ca_file)))
    untrusting = PrometheusSource.from_config(config(url))
    skipping = PrometheusSource.from_config(config(url, insecure_skip_verify=True))
    try:
        assert await trusting.latest(QUERY, 1.0) == Sample(1.0, 42.0)
        # The system's CAs do not know ours: the handshake fails before any request.
        with pytest.raises(TransientSourceError, match=r"(?i)certificate"):
            await untrusting.latest(QUERY, 1.0)
        assert await skipping.latest(QUERY, 2.0) == Sample(2.0, 42.0)
    finally:
        for source in (trusting, untrusting, skipping):
            await source.close()
    assert len(fake.seen) == 2


# --- Retry-After and the rate limit ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [
        (429, "30"),
        (503, "30"),
        (429, "date"),  # an HTTP date 30 s ahead, made when the test runs
    ],
)
async def test_retry_after_holds_every_request_until_it_passes(
    fake: FakePrometheus, status: int, retry_after: str
) -> None:
    url = await fake.start()
    if retry_after == "date":
        retry_after = format_datetime(datetime.fromtimestamp(time.time() + 30.5, UTC), usegmt=True)
    fake.faults.append(Fault(status, retry_after))
    clock = FakeClock()
    throttle = ApiThrottle(100.0, 10, clock=clock, sleep=clock.sleep)
    source = PrometheusSource(url, throttle=throttle)
    other = PrometheusSource(url, throttle=throttle)  # another target on the same Prometheus
    try:
        with pytest.raises(TransientSourceError, match=r"throttled \(HTTP \d+\), retry after 3\ds"):
            await source.latest(QUERY, 1.0)
        assert len(fake.seen) == 1
        clock.now += 20
        for src in (source, other):
            with pytest.raises(TransientSourceError, match=r"throttled: retry after \d+s"):
                await src.latest(QUERY, 1.0)
            with pytest.raises(TransientSourceError, match="throttled"):
                await src.history(QUERY, 0.0, 600.0, 60.0)
        assert len(fake.seen) == 1  # nothing was sent while held
        clock.now += 11
        assert await other.latest(QUERY, 3.0) == Sample(3.0, 42.0)
    finally:
        await source.close()
        await other.close()
    assert len(fake.seen) == 2


async def test_a_503_without_retry_after_is_not_a_hold(fake: FakePrometheus) -> None:
    url = await fake.start()
    fake.faults.append(Fault(503))
    source = PrometheusSource(url)
    try:
        with pytest.raises(TransientSourceError, match="503"):
            await source.latest(QUERY, 1.0)
        assert await source.latest(QUERY, 2.0) == Sample(2.0, 42.0)
    finally:
        await source.close()


async def test_sources_on_one_url_share_the_configured_rate_limit(fake: FakePrometheus) -> None:
    url = await fake.start()
    settings = config(url, requests_per_second=2, burst=3)
    first = PrometheusSource.from_config(settings)
    second = PrometheusSource.from_config(settings)
    try:
        assert first._throttle is second._throttle
        bucket = first._throttle.bucket
        assert (bucket.rate, bucket.burst) == (2.0, 3)
        for source in (first, second, first):
            await source.latest(QUERY, 1.0)
        # The burst is spent by three requests from two sources: the next must wait ~0.5 s.
        assert bucket.tokens < 1.0
    finally:
        await first.close()
        await second.close()


async def test_an_empty_bucket_waits_for_its_turn(fake: FakePrometheus) -> None:
    url = await fake.start()
    clock = FakeClock()
    throttle = ApiThrottle(2.0, 2, clock=clock, sleep=clock.sleep)
    source = PrometheusSource(url, throttle=throttle)
    try:
        for moment in range(5):
            await source.latest(QUERY, float(moment))
    finally:
        await source.close()
    # Two go at once (the burst), then one every half second.
    assert clock.slept == pytest.approx([0.5, 0.5, 0.5])
    assert len(fake.seen) == 5


# --- secrets in messages --------------------------------------------------------------


async def test_a_refused_connection_does_not_show_the_password() -> None:
    url = f"http://user:s3cret@127.0.0.1:{free_port()}/prefix?token=abc123"
    source = PrometheusSource(url)
    try:
        with pytest.raises(TransientSourceError) as raised:
            await source.latest(QUERY, 1.0)
    finally:
        await source.close()
    text = str(raised.value)
    assert "127.0.0.1" in text and "user:***@" in text
    assert "s3cret" not in text and "abc123" not in text


def test_basic_auth_options_satisfy_the_protocol() -> None:
    # from_config reads settings through a Protocol; this is the settings class it must accept.
    basic = BasicAuthConfig(username="u", password="p")
    assert basic.password_env is None


async def test_a_query_string_in_the_url_stays_a_query_string(fake: FakePrometheus) -> None:
    # A proxy that takes its token as a parameter: the API path goes before the query.
    url = await fake.start()
    source = PrometheusSource(f"{url}/?token=abc123")
    try:
        assert await source.latest(QUERY, 1.0) == Sample(1.0, 42.0)
    finally:
        await source.close()
    assert fake.seen[-1].path == "/api/v1/query"
