"""``elasticd backtest`` straight from a source: a target's own Prometheus or CloudWatch history,
or a Prometheus query without a config, replayed by the one backtest path.

Prometheus is the real server of ``tests/sources/conftest.py`` (its session fixture, history
backfilled with promtool: ``long`` is 14 days of a daily cycle at 60 s). CloudWatch is moto's
server with a few hours put through PutMetricData. Credentials and TLS, which the real
Prometheus does not check, are tested against a small https server in this module.
"""

from __future__ import annotations

import csv
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aioboto3
import numpy as np
import pytest
import yaml
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from daemon.backtest.from_source import read_prometheus_history
from daemon.backtest.prometheus_range import PrometheusRangeReader
from daemon.cli import main
from daemon.errors import PermanentSourceError, TransientSourceError
from daemon.settings import PrometheusSourceConfig
from tests.support.fake_prometheus import make_tls_files
from tests.support.moto_server import free_port
from tests.support.prometheus_data import PromData

# The session's backfilled Prometheus, shared with tests/sources.
DAY = 86_400.0


def away_from_a_minute_edge() -> None:
    """Wait until the clock is well inside a minute: the command reads the clock again, and
    its window (whole minutes back from its own "now") must begin on the point the test
    computed, not one step later because a minute turned in between."""
    while not 5.0 <= time.time() % 60.0 <= 45.0:
        time.sleep(0.5)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["backtest", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_config(path: Path, source: dict[str, Any], query: Any, **settings: Any) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                **settings,
                "state_dir": str(path.parent / "state"),
                "sources": {"metrics": source},
                "targets": [
                    {
                        "name": "web",
                        "kind": "deployment",
                        "namespace": "shop",
                        "workload": "web",
                        "source": "metrics",
                        "query": query,
                        "unit_capacity": 30,
                        "lead_time": "10m",
                        "min_units": 2,
                        "max_units": 40,
                    }
                ],
            }
        )
    )
    return path


# --- Prometheus: reading ---------------------------------------------------------------------


def test_a_long_range_is_read_in_chunks_and_merged_exactly(prometheus: PromData) -> None:
    points = prometheus.series["long"]
    start, end = points[0][0], points[-1][0]
    # The trap the chunks avoid: one request for 14 days at 60 s is refused.
    with (
        PrometheusConnect(url=prometheus.url) as client,
        pytest.raises(PrometheusApiClientException, match="400"),
    ):
        client.custom_query_range(
            "long",
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step="60",
        )
    reader = PrometheusRangeReader(PrometheusSourceConfig(type="prometheus", url=prometheus.url))
    counts: list[int] = []
    try:
        series = reader.read("long", start, end, 60.0, progress=counts.append)
    finally:
        reader.close()
    assert counts == [10_000, 10_000, 160]
    np.testing.assert_array_equal(series.timestamps, [t for t, _ in points])
    np.testing.assert_array_equal(series.values, [v for _, v in points])


def test_the_daemons_one_series_rule_and_api_errors_apply(prometheus: PromData) -> None:
    reader = PrometheusRangeReader(
        PrometheusSourceConfig(type="prometheus", url=prometheus.url), retries=0
    )
    base = prometheus.base
    try:
        with pytest.raises(PermanentSourceError, match="returned 2 series"):
            reader.read("split", base, base + 60, 60.0)
        with pytest.raises(PermanentSourceError, match="HTTP 400 bad_data"):
            reader.read("sum(", base, base + 60, 60.0)
    finally:
        reader.close()
    closed = PrometheusRangeReader(
        PrometheusSourceConfig(type="prometheus", url=f"http://127.0.0.1:{free_port()}"),
        retries=0,
    )
    with pytest.raises(TransientSourceError, match="query_range failed"):
        closed.read("up", base, base + 60, 60.0)


def test_bad_points_are_cleaned_as_the_daemon_cleans_its_history(prometheus: PromData) -> None:
    config = PrometheusSourceConfig(type="prometheus", url=prometheus.url)
    base = prometheus.base
    # weird: 1, NaN, +Inf, -Inf, -2 a minute apart; Prometheus repeats -2 for its lookback.
    history = read_prometheus_history(
        config, "weird", start=base - 600, end=base + 3600, step=60.0, progress=False
    )
    trace = history.trace
    assert trace.start == base and trace.step_s == 60.0
    np.testing.assert_array_equal(trace.values, [1.0, np.nan, np.nan, np.nan] + [0.0] * 6)
    assert history.summary_lines()[1] == (
        "cleaned as the daemon cleans its history: 3 non finite, 6 negative clamped"
    )


class _AuthPrometheus:
    """An https query_range endpoint answering 7.0 at every step, recording what it was sent."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.seen: list[tuple[str | None, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                form = dict(urllib.parse.parse_qsl(url.query))
                owner.seen.append((self.headers.get("Authorization"), form))
                start, end, step = (float(form[key]) for key in ("start", "end", "step"))
                values = [[start + i * step, "7"] for i in range(int((end - start) / step) + 1)]
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "matrix",
                            "result": [{"metric": {}, "values": values}],
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def https_prometheus(tmp_path: Path) -> Iterator[tuple[_AuthPrometheus, Path]]:
    tls = make_tls_files(tmp_path)
    server = _AuthPrometheus(tls.server_context())
    yield server, tls.ca_file
    server.stop()


def test_the_sources_credentials_and_ca_bundle_are_used(
    https_prometheus: tuple[_AuthPrometheus, Path], tmp_path: Path
) -> None:
    server, ca_file = https_prometheus
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    configs = [
        PrometheusSourceConfig(
            type="prometheus",
            url=f"{server.url}/?tenant=shop",
            bearer_token_file=token,
            ca_file=ca_file,
        ),
        PrometheusSourceConfig(
            type="prometheus",
            url=server.url,
            basic_auth={"username": "elasticd", "password_env": "PROM_PASSWORD"},  # type: ignore[arg-type]
            ca_file=ca_file,
        ),
    ]
    for config in configs:
        reader = PrometheusRangeReader(config, environ={"PROM_PASSWORD": "pa55"}, retries=0)
        series = reader.read("demand", 600.0, 1200.0, 60.0)
        reader.close()
        assert series.values.tolist() == [7.0] * 11
    (bearer, form), (basic, _) = server.seen
    assert bearer == "Bearer s3cret-token"
    assert form["tenant"] == "shop" and form["query"] == "demand" and form["step"] == "60"
    assert basic == "Basic ZWxhc3RpY2Q6cGE1NQ=="  # elasticd:pa55
    # Without the CA bundle the server's certificate is not trusted: nothing is sent.
    untrusted = PrometheusRangeReader(
        PrometheusSourceConfig(type="prometheus", url=server.url), retries=0
    )
    with pytest.raises(TransientSourceError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.read("demand", 600.0, 1200.0, 60.0)
    assert len(server.seen) == 2


# --- Prometheus: the command ------------------------------------------------------------------


def test_a_target_replays_its_own_prometheus_history_as_its_trace_file_would(
    prometheus: PromData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "elasticd.yaml", {"type": "prometheus", "url": prometheus.url}, "long"
    )
    points = prometheus.series["long"]
    # The last three days of the backfill (it ends a day ago), at the target's step of 60 s.
    away_from_a_minute_edge()
    since = round(time.time() - (points[-1][0] - 3 * DAY))
    code, out, err = run(
        capsys,
        "--config",
        str(config),
        "--target",
        "web",
        "--since",
        f"{since}s",
        "--decisions-out",
        str(tmp_path / "d.csv"),
        "--report-out",
        str(tmp_path / "r.json"),
        "--trace-out",
        str(tmp_path / "t.csv"),
    )
    assert code == 0, err
    # Three days of points, and five more: Prometheus answers with the last sample for its
    # five-minute lookback after a series ends, as it does for the daemon.
    assert "read 4,326 points of 'long' from source 'metrics': 3.0 days at a 1m step" in out
    rows = read_csv(tmp_path / "t.csv")
    expected = [p for p in points if p[0] >= points[-1][0] - 3 * DAY]
    expected += [(expected[-1][0] + 60.0 * i, expected[-1][1]) for i in range(1, 6)]
    assert [float(row["value"]) for row in rows] == [v for _, v in expected]
    assert rows[0]["timestamp"] == datetime.fromtimestamp(expected[0][0], UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["step_s"] == 60.0 and report["steps"] == len(expected)
    parameters = report["parameters"]
    assert (parameters["unit_capacity"], parameters["lead_time_s"]) == (30.0, 600.0)
    assert (parameters["min_units"], parameters["max_units"]) == (2, 40)
    assert parameters["warmup_s"] == pytest.approx(len(expected) * 60.0 / 2)
    # The same history from its trace file, with the same settings: the same decisions.
    code, _, err = run(
        capsys,
        str(tmp_path / "t.csv"),
        "--config",
        str(config),
        "--warmup",
        f"{parameters['warmup_s']}s",
        "--decisions-out",
        str(tmp_path / "from-file.csv"),
    )
    assert code == 0, err
    assert (tmp_path / "from-file.csv").read_text() == (tmp_path / "d.csv").read_text()


def test_a_target_with_several_metrics_replays_each_from_its_source(
    prometheus: PromData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "elasticd.yaml"
    write_config(config, {"type": "prometheus", "url": prometheus.url}, "unused")
    settings = yaml.safe_load(config.read_text())
    target = settings["targets"][0]
    del target["query"], target["unit_capacity"]
    # rps needs twice what cpu needs at times (long * 2 over 40 against long over 30).
    target["metrics"] = [
        {"name": "cpu", "query": "long", "unit_capacity": 30},
        {"name": "rps", "query": "long * 2", "unit_capacity": 40},
    ]
    config.write_text(yaml.safe_dump(settings))
    points = prometheus.series["long"]
    away_from_a_minute_edge()
    since = round(time.time() - (points[-1][0] - DAY))
    code, out, err = run(
        capsys,
        "--config",
        str(config),
        "--since",
        f"{since}s",
        "--decisions-out",
        str(tmp_path / "d.csv"),
        "--report-out",
        str(tmp_path / "r.json"),
        "--trace-out",
        str(tmp_path / "t.csv"),
    )
    assert code == 0, err
    assert "read 1,446 points of 'long' from source 'metrics'" in out
    assert "read 1,446 points of 'long * 2' from source 'metrics'" in out
    rows = read_csv(tmp_path / "t.csv")
    assert list(rows[0]) == ["timestamp", "cpu", "rps"]
    assert all(float(row["rps"]) == 2 * float(row["cpu"]) for row in rows)
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["plan"]["metrics"]["decided_share"]) <= {"cpu", "rps"}
    assert report["plan"]["metrics"]["decided_share"].get("rps", 0) > 0.5
    # Its several-column trace file, with the same config: the same decisions.
    code, _, err = run(
        capsys,
        str(tmp_path / "t.csv"),
        "--config",
        str(config),
        "--warmup",
        f"{report['parameters']['warmup_s']}s",
        "--decisions-out",
        str(tmp_path / "from-file.csv"),
    )
    assert code == 0, err
    assert (tmp_path / "from-file.csv").read_text() == (tmp_path / "d.csv").read_text()


def test_a_prometheus_query_without_a_config(
    prometheus: PromData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "--prometheus",
        prometheus.url,
        "--query",
        "long",
        "--since",
        "16d",
        "--step",
        "10m",
        "--decisions-out",
        str(tmp_path / "d.csv"),
        "--report-out",
        str(tmp_path / "r.json"),
    )
    assert code == 0, err
    # 14 days at 10 m, and the step just after the end, within Prometheus's lookback.
    assert "read 2,017 points of 'long' from Prometheus http://127.0.0.1:" in out
    assert "unit capacity 7.5 (the peak over 20" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["step_s"] == 600.0 and report["steps"] == 2017
    assert report["parameters"]["unit_capacity"] == pytest.approx(7.5)
    assert report["parameters"]["lead_time_s"] == 300.0
    assert report["parameters"]["warmup_s"] == 7 * DAY
    assert len(read_csv(tmp_path / "d.csv")) == 2017


def test_a_simulator_target_replays_the_last_of_its_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "elasticd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "sources": {"sim": {"type": "simulator", "generate": {"days": 3, "step": "5m"}}},
                "targets": [
                    {
                        "name": "checkout",
                        "kind": "simulator",
                        "source": "sim",
                        "unit_capacity": 50,
                        "lead_time": "10m",
                        "max_units": 40,
                    }
                ],
            }
        )
    )
    decisions = tmp_path / "d.csv"
    code, out, err = run(
        capsys, "--config", str(config), "--since", "1d", "--decisions-out", str(decisions)
    )
    assert code == 0, err
    assert "read 1.0 days of 'checkout' from simulator source 'sim'" in out
    assert len(read_csv(decisions)) == 288


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("split", 65, "returned 2 series"),
        ("sum(", 65, "HTTP 400 bad_data"),
        ("absent_metric", 65, "no history: 'absent_metric'"),
    ],
)
def test_an_unusable_query_is_one_line_and_the_data_status(
    prometheus: PromData,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    query: str,
    status: int,
    message: str,
) -> None:
    code, _, err = run(
        capsys,
        "--prometheus",
        prometheus.url,
        "--query",
        query,
        "--since",
        "16d",
        "--step",
        "1h",
        "--decisions-out",
        str(tmp_path / "d.csv"),
    )
    assert code == status
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d.csv").exists()


def test_a_bad_prometheus_url_is_one_line_and_the_data_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "--prometheus", "ftp://p", "--query", "up", "--decisions-out", str(tmp_path / "d")
    )
    assert code == 65
    assert err == (
        "elasticd: --prometheus: invalid URL 'ftp://p': expected http://host:port or https://...\n"
    )


def test_help_shows_each_modes_arguments_with_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["backtest", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "1. a trace file:  TRACE.csv --unit-capacity N --lead-time D --warmup D" in text
    assert "2. a target:      --config FILE [--target NAME] [--since 14d]" in text
    assert "3. a Prometheus:  --prometheus URL --query PROMQL [--since 14d]" in text
    assert "--decisions-out is required in every mode" in text
    assert "examples:\n  elasticd backtest demand.csv" in text
    assert "elasticd backtest --config /etc/elasticd/elasticd.yaml --target web" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["t.csv", "--prometheus", "http://p:9090", "--query", "up"], "TRACE or --prometheus"),
        (["--query", "up"], "--prometheus and --query go together"),
        (["--prometheus", "http://p:9090"], "--prometheus and --query go together"),
        (["--prometheus", "http://p", "--query", "up", "--config", "c.yaml"], "without a config"),
        ([], "give the demand: TRACE (mode 1), --config FILE"),
        (["t.csv", "--since", "3d"], "--since is for reading from a source"),
    ],
)
def test_mixed_modes_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["backtest", *args, "--decisions-out", "d.csv"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


# --- CloudWatch ---------------------------------------------------------------------------------


@pytest.fixture
async def cloudwatch_history(moto_endpoint: str) -> list[tuple[float, float]]:
    """Three hours of App/Jobs (Sum) a minute, a daily-ish ramp; (period start, value)."""
    base = (time.time() // 3600) * 3600 - 3 * 3600
    values = [(base + i * 60, 50.0 + 40.0 * np.sin(i / 20.0)) for i in range(180)]
    session = aioboto3.Session()
    async with session.client(
        "cloudwatch", region_name="us-east-1", endpoint_url=moto_endpoint
    ) as client:
        for first in range(0, len(values), 150):
            await client.put_metric_data(
                Namespace="App",
                MetricData=[
                    {
                        "MetricName": "Jobs",
                        "Dimensions": [{"Name": "Queue", "Value": "jobs"}],
                        "Timestamp": datetime.fromtimestamp(t + 10, UTC),
                        "Value": v,
                    }
                    for t, v in values[first : first + 150]
                ],
            )
    return values


def test_a_target_replays_its_own_cloudwatch_history(
    moto_endpoint: str,
    cloudwatch_history: list[tuple[float, float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(
        tmp_path / "elasticd.yaml",
        {"type": "cloudwatch"},
        {
            "namespace": "App",
            "metric_name": "Jobs",
            "dimensions": {"Queue": "jobs"},
            "statistic": "Sum",
            "period": "1m",
        },
        aws={"region": "us-east-1", "endpoint_url": moto_endpoint},
    )
    code, out, err = run(
        capsys,
        "--config",
        str(config),
        "--since",
        "4h",
        "--decisions-out",
        str(tmp_path / "d.csv"),
        "--report-out",
        str(tmp_path / "r.json"),
        "--trace-out",
        str(tmp_path / "t.csv"),
    )
    assert code == 0, err
    assert "read 180 points of 'web' from CloudWatch source 'metrics'" in out
    rows = read_csv(tmp_path / "t.csv")
    assert [float(row["value"]) for row in rows] == [v for _, v in cloudwatch_history]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["steps"] == 180 and report["step_s"] == 60.0
    assert report["parameters"]["unit_capacity"] == 30.0
    assert report["parameters"]["warmup_s"] == 90 * 60.0
    assert len(read_csv(tmp_path / "d.csv")) == 180


def test_a_target_that_reads_no_demand_is_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "instance-schedule.yaml"
    code, _, err = run(capsys, "--config", str(example), "--decisions-out", str(tmp_path / "d.csv"))
    assert code == 65
    assert "reads no demand: nothing to backtest" in err
