"""Prometheus over its HTTP API, with aiohttp on the event loop.

Why not ``prometheus-api-client``: it is blocking (``requests``), so on the loop it would stall
every other reconciler for the length of a slow query, and through ``asyncio.to_thread`` it
would hold default-executor threads that other work needs. It also does not serve our needs:
``custom_query_range`` does not split long ranges, ``get_metric_range_data(chunk_size=...)``
returns one unmerged item per chunk, and its errors are not ours to classify. Two endpoints
and a small JSON shape are cheaper to speak directly than to wrap.

A query must yield exactly one series: the planner forecasts one number, and silently summing
or picking one of several series would hide a wrong query. Users aggregate in PromQL.

Authentication (bearer token from a rotating file or PROMETHEUS_BEARER_TOKEN, basic auth) and
TLS (a CA bundle) go with each request, so targets with different credentials can share one
connection pool. Every request first asks the URL's shared throttle (``ApiThrottle``): a token
bucket for all targets on that URL, and the server's ``Retry-After`` after a 429 or 503, during
which a read fails at once without a request. URLs reach messages only through ``redact_url``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import ssl
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import numpy as np

from daemon.errors import ConfigError, PermanentSourceError, SourceError, TransientSourceError
from daemon.ratelimit_client import ApiThrottle, Throttled, parse_retry_after, throttle_for_key
from daemon.redact import redact_text, redact_url, register_secret
from daemon.sources.base import MetricQuery, Sample, Series
from daemon.sources.credentials import SecretFile, secret_from_env

T = TypeVar("T")

PromQuery = MetricQuery[str]
"""A named PromQL expression, e.g. ``MetricQuery("rps", 'sum(rate(http_requests_total[5m]))')``."""

# Prometheus refuses a range query of more than 11,000 points per series; stay well under it
# so a rounding difference in how the server counts the points can never trip the limit.
MAX_POINTS_PER_REQUEST = 10_000

# Error bodies can be whole HTML pages from a proxy; keep log lines readable.
_MAX_ERROR_TEXT = 300

# The documented variable a bearer token is read from when a source names no other credential.
BEARER_TOKEN_ENV = "PROMETHEUS_BEARER_TOKEN"

# Client-side rate limit per Prometheus URL, all targets together (same defaults as the
# settings'). 1,000 targets at 15 s tick at about 67 requests a second, and their history
# loads at start-up add about as much again: three times that never slows a healthy daemon,
# and still stops a runaway (a retry storm, a bug) from flooding the server.
DEFAULT_REQUESTS_PER_SECOND = 200.0
DEFAULT_BURST = 400

# Headers whose value is a credential (registered with ``daemon.redact``, so never logged).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})

# The throttle's name for this source's requests: reads only, one gate per URL.
_READ = "read"


@dataclass(frozen=True)
class PrometheusAuth:
    """How to authenticate to Prometheus and verify its certificate; all optional.

    At most one of ``bearer_token``, ``bearer_token_file`` and basic auth (``username`` with
    ``password`` or ``password_file``). ``ca_file``: PEM CAs that sign an https server's
    certificate, else the system's. ``insecure_skip_verify`` turns verification off (tests).
    """

    bearer_token: str | None = None
    bearer_token_file: Path | None = None
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        bearers = (self.bearer_token is not None) + (self.bearer_token_file is not None)
        if bearers > 1 or (bearers and self.username is not None):
            raise ValueError("use one of bearer_token, bearer_token_file and basic auth")
        if self.username is not None and (self.password is None) == (self.password_file is None):
            raise ValueError("basic auth needs exactly one of password and password_file")
        if self.ca_file is not None and self.insecure_skip_verify:
            raise ValueError("ca_file and insecure_skip_verify exclude each other")


class BasicAuthOptions(Protocol):
    """The basic-auth part of a Prometheus source's settings (``BasicAuthConfig``)."""

    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str | None: ...
    @property
    def password_file(self) -> Path | None: ...
    @property
    def password_env(self) -> str | None: ...


class PrometheusOptions(Protocol):
    """A Prometheus source's settings as ``from_config`` reads them (``PrometheusSourceConfig``
    satisfies it; sources do not import the settings package)."""

    @property
    def url(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def bearer_token_file(self) -> Path | None: ...
    @property
    def basic_auth(self) -> BasicAuthOptions | None: ...
    @property
    def ca_file(self) -> Path | None: ...
    @property
    def insecure_skip_verify(self) -> bool: ...
    @property
    def requests_per_second(self) -> float: ...
    @property
    def burst(self) -> int: ...


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
        auth: PrometheusAuth | None = None,
        throttle: ApiThrottle | None = None,
    ) -> None:
        """``base_url`` may carry a path prefix (``http://host/prometheus``) and, discouraged,
        ``user:password@`` (used as basic auth, and never shown).

        ``session``: share one with other components; it is left open by ``close()``. Without
        one, the source opens its own on first use (inside the running loop) and closes it.
        ``headers``: sent with every request, e.g. a tenant header.
        ``max_concurrent_requests`` bounds the chunks of one long range fetched at once.
        ``auth``: credentials and TLS verification. ``throttle``: the rate limit and
        Retry-After gate; by default the one shared by every source on this URL.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not 1 <= max_points_per_request <= 11_000:
            raise ValueError("max_points_per_request must be in [1, 11000]")
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        auth = auth or PrometheusAuth()
        clean_url, url_user, url_password = _split_userinfo(base_url.rstrip("/"))
        if url_user is not None:
            if auth.username is not None or auth.bearer_token or auth.bearer_token_file:
                raise ValueError("credentials both in the URL and in auth; use auth only")
            auth = PrometheusAuth(
                username=url_user,
                password=url_password or "",
                ca_file=auth.ca_file,
                insecure_skip_verify=auth.insecure_skip_verify,
            )
        self._base_url = clean_url
        # What messages show: the URL as configured, its secrets masked.
        self._display_url = redact_url(base_url.rstrip("/"))
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None
        self._headers = dict(headers or {})
        self._max_points = max_points_per_request
        self._max_concurrent = max_concurrent_requests
        self._bearer = auth.bearer_token
        self._bearer_file = (
            SecretFile(auth.bearer_token_file, "bearer_token_file")
            if auth.bearer_token_file is not None
            else None
        )
        self._username = auth.username
        self._password = auth.password
        self._password_file = (
            SecretFile(auth.password_file, "basic_auth.password_file")
            if auth.password_file is not None
            else None
        )
        secrets = [self._bearer, self._password]
        # An Authorization (or API-key) header given in the config is a secret too.
        secrets += [
            value
            for name, value in self._headers.items()
            if name.lower() in _SECRET_HEADERS or name.lower().endswith(("-token", "-key"))
        ]
        for secret in secrets:
            if secret:
                register_secret(secret)
        self._ssl = _ssl_setting(auth)
        self._throttle = throttle or throttle_for_key(
            ("prometheus", clean_url), qps=DEFAULT_REQUESTS_PER_SECOND, burst=DEFAULT_BURST
        )

    @classmethod
    def from_config(
        cls,
        config: PrometheusOptions,
        *,
        session: aiohttp.ClientSession | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> PrometheusSource:
        """A source as a ``prometheus`` entry of the configuration describes it.

        Credentials: ``bearer_token_file``, else ``basic_auth``, else an ``Authorization``
        header given in ``headers``, else ``PROMETHEUS_BEARER_TOKEN`` from ``environ`` if set.
        ``ConfigError`` when a named environment variable is not set.
        """
        basic = config.basic_auth
        password = None
        if basic is not None:
            password = basic.password
            if basic.password_env is not None:
                password = secret_from_env(basic.password_env, environ)
                if password is None:
                    raise ConfigError(
                        "basic_auth.password_env",
                        f"environment variable {basic.password_env} is not set",
                    )
        explicit = (
            config.bearer_token_file is not None
            or basic is not None
            or "@" in urlsplit(config.url).netloc
            or any(name.lower() == "authorization" for name in config.headers)
        )
        auth = PrometheusAuth(
            bearer_token=None if explicit else secret_from_env(BEARER_TOKEN_ENV, environ),
            bearer_token_file=config.bearer_token_file,
            username=basic.username if basic is not None else None,
            password=password,
            password_file=basic.password_file if basic is not None else None,
            ca_file=config.ca_file,
            insecure_skip_verify=config.insecure_skip_verify,
        )
        clean_url = _split_userinfo(config.url.rstrip("/"))[0]
        throttle = throttle_for_key(
            ("prometheus", clean_url), qps=config.requests_per_second, burst=config.burst
        )
        return cls(
            config.url,
            timeout_s=config.timeout,
            session=session,
            headers=config.headers,
            auth=auth,
            throttle=throttle,
        )

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
            series = only_series(result, query)
            if series is None:
                return None
            timestamp, value = _point(series.get("value"))
            return Sample(timestamp, value)
        if result_type == "matrix":
            # A range selector (``x[5m]``) as an instant query: its newest point is the latest.
            series = only_series(result, query)
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
        return merge_chunks(query, parts)

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
        return only_series(data.get("result"), query)

    async def _call(self, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
        """POST one API call and return its ``data``, mapping every failure to our errors.

        POST (form-encoded) rather than GET: long PromQL in a URL can exceed proxy limits.
        """
        url = _api_url(self._base_url, endpoint)
        try:
            await self._throttle.admit(_READ, max_wait=self._timeout_s)
        except Throttled as error:
            # Nothing was sent: the server asked us to wait, or our own rate limit is full.
            raise TransientSourceError(
                f"Prometheus {endpoint} {error} ({self._display_url})"
            ) from None
        headers = self.request_headers()
        session = self._ensure_session()
        try:
            async with session.post(
                url,
                data=form,
                headers=headers,
                ssl=self._ssl,
                timeout=self._timeout,
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError as error:
            raise TransientSourceError(
                f"Prometheus {endpoint} timed out after {self._timeout_s:g}s: {self._display_url}"
            ) from error
        except aiohttp.ClientError as error:
            # Connection refused, reset, DNS failure, TLS failure, disconnect mid-body: all
            # may pass. The library's text may quote the URL: redact it.
            raise TransientSourceError(
                f"Prometheus {endpoint} failed ({self._display_url}): {redact_text(repr(error))}"
            ) from error
        if status == 429 or (status == 503 and retry_after is not None):
            # The server is shedding load: no request from any target until it said, or an
            # exponential backoff when a 429 named no time.
            seconds = self._throttle.throttled(_READ, retry_after, why=f"HTTP {status}")
            raise TransientSourceError(
                f"Prometheus {endpoint} throttled (HTTP {status}), retry after "
                f"{math.ceil(seconds)}s ({self._display_url}): {_error_text(body)}"
            )
        if status in (401, 403):
            files = [file for file in (self._bearer_file, self._password_file) if file is not None]
            if files:
                # The file may have rotated between our read and the server's check, or be
                # fixed without a restart: read it again next time, and retry meanwhile.
                for file in files:
                    file.invalidate()
                raise TransientSourceError(
                    f"Prometheus {endpoint}: credentials refused (HTTP {status}); "
                    f"{files[0].path} is read again on the next try: {_error_text(body)}"
                )
        else:
            self._throttle.succeeded(_READ)
        return _parse_response(endpoint, status, body)

    def request_headers(self) -> dict[str, str]:
        """The configured headers plus this request's Authorization, secrets read now."""
        if self._username is not None:
            password = (
                self._password_file.read() if self._password_file is not None else self._password
            )
            pair = f"{self._username}:{password or ''}".encode()
            return {**self._headers, "Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        token = self._bearer_file.read() if self._bearer_file is not None else self._bearer
        if token is None:
            return self._headers
        return {**self._headers, "Authorization": f"Bearer {token}"}

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without ``user:password@``, and the user and password it carried (unquoted)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), unquote(password) if has_password else None


def _api_url(base_url: str, endpoint: str) -> str:
    """The endpoint's URL below ``base_url``'s path; a query string (a proxy's token) stays
    a query string rather than being followed by the path."""
    parts = urlsplit(base_url)
    path = f"{parts.path.rstrip('/')}/api/v1/{endpoint}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _ssl_setting(auth: PrometheusAuth) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=``: True verifies with the system's CAs, False does not verify."""
    if auth.insecure_skip_verify:
        return False
    if auth.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(auth.ca_file))
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"ca_file {auth.ca_file}: cannot load a CA bundle ({error})") from None


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


def _error_text(body: bytes) -> str:
    """The server's own words about an error: the API's ``error`` field, else the body."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        return redact_text(str(payload["error"])[:_MAX_ERROR_TEXT])
    return redact_text(body[:_MAX_ERROR_TEXT].decode("utf-8", "replace"))


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


def only_series(result: Any, query: PromQuery) -> dict[str, Any] | None:
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


def merge_chunks(query: PromQuery, parts: Sequence[dict[str, Any] | None]) -> Series:
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
    raw = [part.get("values", []) for part in present]
    count = sum(len(values) for values in raw)
    if not count:
        return Series.empty()
    # Straight into one array: a list of (time, value) tuples first was ~110 bytes a point
    # beside the parsed JSON, with eight 9-day history loads at once at start-up (issue 10).
    flat = (number for values in raw for point in values for number in _point(point))
    array = np.fromiter(flat, dtype=np.float64, count=2 * count).reshape(count, 2)
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
