"""Long range reads from Prometheus for ``elasticd backtest``, with ``prometheus-api-client``.

The daemon reads Prometheus on its event loop (``daemon.sources.prometheus``), where a
blocking client would stall every target. A backtest is a one-off command that may block, so
here the library serves, with what it lacks added around it:

- Chunks: ``custom_query_range`` sends one request, and Prometheus refuses more than 11,000
  points per series (14 days at 60 s are 20,160), so the range is split on one step grid with
  the daemon's own ``plan_chunks`` and the parts merged with its one-series rule: a query that
  returns several series is refused here as the daemon would refuse it.
- Credentials: the headers the daemon would send (bearer token file, basic auth, a URL's
  user:password, ``PROMETHEUS_BEARER_TOKEN``), computed by ``PrometheusSource.from_config``;
  the CA bundle or ``insecure_skip_verify`` as ``requests``' ``verify``.
- Retries: ``requests``' adapter retries 429, 502, 503 and 504 (honouring ``Retry-After``)
  and connection failures, with backoff. The library puts the query in the URL whatever the
  method, so it is sent as a GET, the one method those status retries apply to.
- Errors: mapped to ``SourceError`` (permanent for a 4xx such as a PromQL syntax error),
  with secrets masked.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from daemon.errors import PermanentSourceError, SourceError, TransientSourceError
from daemon.redact import redact_text, redact_url
from daemon.sources.base import MetricQuery, Series
from daemon.sources.prometheus import (
    MAX_POINTS_PER_REQUEST,
    PrometheusOptions,
    PrometheusSource,
    merge_chunks,
    only_series,
    plan_chunks,
)

# A chunk of 10,000 points can take a while on a busy server; the daemon's per-tick timeout
# (10 s by default) is meant for instant queries, so a history read waits at least this long.
MIN_READ_TIMEOUT_S = 60.0
RETRY_STATUSES = (429, 502, 503, 504)

Progress = Callable[[int], None]
"""Called with the number of points each finished chunk held."""


class PrometheusRangeReader:
    """Blocking ``query_range`` reads of one Prometheus, as its source settings describe it."""

    def __init__(
        self,
        config: PrometheusOptions,
        *,
        retries: int = 3,
        max_points_per_request: int = MAX_POINTS_PER_REQUEST,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        """``retries``: further tries of a failed request (0 in tests of failures)."""
        # The daemon's source works out the credentials (and registers them as secrets to
        # redact); it opens no connection until used, and is not used beyond this.
        headers = PrometheusSource.from_config(config, environ=environ).request_headers()
        parts = urlsplit(config.url.rstrip("/"))
        # user:password went into the Authorization header; keep them out of every URL.
        netloc = parts.netloc.rpartition("@")[2]
        self._display_url = redact_url(config.url)
        # A query string (a proxy's token) goes with every request as parameters: the library
        # appends /api/v1/... to the URL, which would otherwise land inside the query string.
        self._params = dict(parse_qsl(parts.query))
        session = requests.Session()
        session.verify = str(config.ca_file) if config.ca_file else not config.insecure_skip_verify
        self._max_points = max_points_per_request
        self._client = PrometheusConnect(
            url=urlunsplit((parts.scheme, netloc, parts.path, "", "")),
            headers=dict(headers),
            session=session,
            retry=Retry(
                total=retries,
                backoff_factor=0.5,
                status_forcelist=RETRY_STATUSES,
                respect_retry_after_header=True,
            ),
            timeout=max(config.timeout, MIN_READ_TIMEOUT_S),
        )

    def chunks(self, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """The requests ``read`` makes for this range: first and last point of each."""
        return plan_chunks(start, end, step, self._max_points)

    def read(
        self,
        query: str,
        start: float,
        end: float,
        step: float,
        *,
        progress: Progress | None = None,
    ) -> Series:
        """The query's one series at ``start``, ``start + step``, ... up to ``end``.

        ``start`` and ``step`` should be whole seconds: the library rounds times to seconds.
        """
        if not (math.isfinite(step) and step > 0 and math.isfinite(start) and end >= start):
            raise ValueError(f"need start <= end and step > 0, got {start}, {end}, {step}")
        named: MetricQuery[str] = MetricQuery("query", query)
        parts = []
        for first, last in self.chunks(start, end, step):
            result = self._query_range(query, first, last, step)
            part = only_series(result, named)
            parts.append(part)
            if progress is not None:
                progress(len(part.get("values", [])) if part is not None else 0)
        return merge_chunks(named, parts)

    def close(self) -> None:
        self._client.close()

    def _query_range(self, query: str, first: float, last: float, step: float) -> Any:
        try:
            return self._client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(first, UTC),
                end_time=datetime.fromtimestamp(last, UTC),
                step=f"{step:g}",
                params=self._params,
            )
        except PrometheusApiClientException as error:
            raise _api_error(str(error), self._display_url) from None
        except requests.exceptions.RetryError as error:
            raise TransientSourceError(
                f"Prometheus query_range ({self._display_url}) kept failing after retries: "
                f"{redact_text(str(error))[:300]}"
            ) from None
        except requests.exceptions.RequestException as error:
            raise TransientSourceError(
                f"Prometheus query_range failed ({self._display_url}): "
                f"{redact_text(str(error))[:300]}"
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            # A 200 that is not the API's JSON: an HTML page behind a wrong URL or a proxy.
            raise PermanentSourceError(
                f"Prometheus query_range ({self._display_url}): not a Prometheus API response "
                f"(check the URL): {redact_text(repr(error))[:200]}"
            ) from None


_API_ERROR = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


def _api_error(text: str, url: str) -> SourceError:
    """The library's ``HTTP Status Code 400 (b'{...}')`` as our error, with the API's words."""
    match = _API_ERROR.match(text)
    if match is None:
        return TransientSourceError(f"Prometheus query_range ({url}): {redact_text(text)[:300]}")
    status = int(match.group(1))
    detail = match.group(2)
    try:
        body = ast.literal_eval(detail)
        payload = json.loads(body)
        detail = f"{payload.get('errorType', 'error')}: {payload.get('error', '')}"
    except (ValueError, SyntaxError, TypeError, AttributeError):
        pass  # not the API's JSON: show the body as it came
    message = f"Prometheus query_range ({url}): HTTP {status} {redact_text(str(detail))[:300]}"
    if 400 <= status < 500 and status not in (408, 429):
        return PermanentSourceError(message)
    return TransientSourceError(message)
