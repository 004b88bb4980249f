"""The real Prometheus server on loopback, with history backfilled before it starts.

History goes in through ``promtool tsdb create-blocks-from openmetrics`` *before* the server
starts: a running server only picks up new blocks after about a minute. Use
``backfilled_prometheus({"name": [(ts, value), ...]})`` from any test, e.g. an end-to-end test
with 14 days of a daily pattern at 60 s.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.moto_server import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

Points = Sequence[tuple[float, float]]


@dataclass
class PrometheusServer:
    """A running server: ``url`` is its base URL, ``workdir`` holds config, data and log."""

    url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def openmetrics_text(series: Mapping[str, Points]) -> str:
    """Render series as OpenMetrics gauges; keys are ``name`` or ``name{label="v",...}``.

    Samples of one metric family must be contiguous, so keys are grouped by family name.
    """
    families: dict[str, list[str]] = {}
    for key in series:
        families.setdefault(key.split("{", 1)[0], []).append(key)
    lines: list[str] = []
    for family, keys in families.items():
        lines.append(f"# TYPE {family} gauge")
        for key in keys:
            for timestamp, value in sorted(series[key]):
                lines.append(f"{key} {_om_value(value)} {timestamp:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def start_prometheus(series: Mapping[str, Points] | None = None) -> PrometheusServer:
    """Start Prometheus on a free loopback port, backfilled with ``series``; wait until ready."""
    workdir = Path(tempfile.mkdtemp(prefix="elasticd-prometheus-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    config = workdir / "prometheus.yml"
    # No scrape targets: tests read only what they backfilled, so results are exact.
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    if series:
        source = workdir / "backfill.om"
        source.write_text(openmetrics_text(series))
        subprocess.run(
            [
                PROMTOOL,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "-q",
                str(source),
                str(data_dir),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            # Backfilled history may be older than the default 15 days.
            "--storage.tsdb.retention.time=3650d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = PrometheusServer(url=f"http://127.0.0.1:{port}", process=process, workdir=workdir)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def backfilled_prometheus(series: Mapping[str, Points] | None = None) -> Iterator[PrometheusServer]:
    """A started, backfilled server for the block; stopped and removed afterwards."""
    server = start_prometheus(series)
    try:
        yield server
    finally:
        server.stop()


def daily_pattern(
    start: float, days: int, step_s: float, *, base: float = 100.0, amplitude: float = 50.0
) -> list[tuple[float, float]]:
    """A smooth daily cycle (peak at midday UTC) from ``start`` for ``days``, every ``step_s``."""
    count = int(days * 86400 / step_s)
    return [
        (
            start + i * step_s,
            base
            + amplitude * math.sin(2 * math.pi * ((start + i * step_s) % 86400 - 21600) / 86400),
        )
        for i in range(count)
    ]


def _wait_ready(server: PrometheusServer, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = (server.workdir / "prometheus.log").read_text(errors="replace")
            raise RuntimeError(f"prometheus exited with {server.process.returncode}: {log[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"prometheus at {server.url} not ready after {timeout_s}s")


def _om_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


__all__ = [
    "PrometheusServer",
    "backfilled_prometheus",
    "daily_pattern",
    "openmetrics_text",
    "start_prometheus",
]
