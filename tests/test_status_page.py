"""The status page: what a person sees in a real browser, behind a path prefix, with no
secret on it.

The browser test runs ``elasticd run`` on the simulator as a process and loads the page in
Debian's headless Chromium through selenium and chromedriver, directly and through a small
reverse proxy that mounts the telemetry port under ``/elasticd/`` with X-Forwarded-Prefix.
The unit tests cover the ring's bounds, escaping and the prefix header without a browser.
"""

from __future__ import annotations

import http.server
import math
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from daemon.core.types import Reason
from daemon.settings import parse_settings
from daemon.status_page import StatusBoard, TargetInfo, TargetRing, render_page
from daemon.telemetry import HealthState, Telemetry, build_app
from tests.e2e.daemon_process import DaemonProcess
from tests.runtime.test_app import simulator_config, write_config

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# Secrets in a source URL: its password and a token parameter. Neither may reach the page.
PASSWORD = "pw-9f2c61d0"
TOKEN = "tok-5be0a7c3e1"
SECRET_URL = f"http://elastic:{PASSWORD}@127.0.0.1:9/prometheus?token={TOKEN}"


def config_with_secrets(state: Path) -> dict[str, Any]:
    config = simulator_config(state)
    config["sources"]["metrics"] = {"type": "prometheus", "url": SECRET_URL}
    return config


# -- the ring ------------------------------------------------------------------------------------


def test_the_ring_keeps_every_tick_at_first_then_stays_bounded_over_its_window() -> None:
    ring = TargetRing(points=40, window_s=3600.0)
    for i in range(10):
        ring.add(float(i), (i, i, 1, 1))
    assert len(ring) == 10  # a young daemon already draws a line

    for i in range(10, 20_000):  # 20,000 one-second ticks
        ring.add(float(i), (i, i, 1, 1))
        assert len(ring) <= 40
    times, values = ring.points()
    assert times[-1] == 19_999.0 and values[-1, 0] == 19_999.0  # the newest tick is drawn
    assert times[0] >= 19_999.0 - 3600.0  # nothing older than the window
    assert len(times) >= 30  # and the window is still drawn with most of its points
    assert np.all(np.diff(times) > 0)


def test_missing_values_break_the_line_instead_of_bridging_it() -> None:
    board = StatusBoard()
    board.configure(parse_settings(config_with_secrets(Path("/tmp/state")), "test.yaml"))
    for i, demand in enumerate([10.0, 20.0, None, None, 30.0, 40.0]):
        board.record(
            "checkout",
            1000.0 + i,
            demand=demand,
            forecast=50.0,
            desired=2,
            current=2,
            ready=2,
            reason="forecast",
        )
    page = render_page(board, {"ready": True, "targets": {}}, now=1006.0)
    assert page.count('class="demand"') == 2  # two stretches around the gap
    assert page.count('class="forecast"') == 1


def test_every_target_has_a_row_but_only_the_first_charts_are_drawn() -> None:
    board = StatusBoard()
    names = [f"svc-{i:03d}" for i in range(120)]
    board.targets = {name: TargetInfo("deployment", "active", 1, 9, 10.0, "sim") for name in names}
    for name in names:
        board.record(
            name, 1.0, demand=5.0, forecast=6.0, desired=1, current=1, ready=1, reason="forecast"
        )
    page = render_page(board, {"ready": True}, now=2.0, max_charts=50)
    assert page.count("<tr>") == 1 + 120  # the header and a row a target
    assert page.count('<svg class="chart"') == 50
    assert "Charts for 50 of 120 targets" in page
    assert '<a href="#t-svc-000">' in page  # charted: an anchor on this page
    assert '<a href="?target=svc-119#t-svc-119">' in page  # not charted: its own page

    one = render_page(board, {"ready": True}, now=2.0, chart="svc-119")
    assert one.count('<svg class="chart"') == 1 and 'data-target="svc-119"' in one
    missing = render_page(board, {"ready": True}, now=2.0, chart="<nope>")
    assert "No target named &lt;nope&gt;." in missing


def test_the_bounds_shown_are_those_in_force_at_the_last_tick() -> None:
    """A schedule window raised the minimum from 1 to 4: the row must say 4, not the 1 of
    the file (with the configured bounds beside it)."""
    board = StatusBoard()
    board.targets = {
        "web": TargetInfo("deployment", "active", 1, 9, 10.0, "sim"),
        "api": TargetInfo("deployment", "active", 2, 8, 10.0, "sim"),
    }
    common = {"demand": 5.0, "forecast": 6.0, "desired": 4, "current": 4, "ready": 4}
    board.record("web", 1.0, reason="clamped_min", bounds=(4, 9), **common)
    board.record("api", 1.0, reason="forecast", bounds=(2, 8), **common)
    page = render_page(board, {"ready": True}, now=2.0)
    web = page[page.index('<a href="#t-web">') :].split("</tr>", 1)[0]
    api = page[page.index('<a href="#t-api">') :].split("</tr>", 1)[0]
    assert '<td class="n">4/9 <span class="muted" title="configured">(1/9)</span></td>' in web
    assert '<td class="n">2/8</td>' in api  # unchanged by any window: shown once


# -- escaping, secrets, the prefix ----------------------------------------------------------------


def test_everything_is_escaped_and_no_secret_is_shown() -> None:
    board = StatusBoard()
    board.configure(parse_settings(config_with_secrets(Path("/tmp/state")), "test.yaml"))
    board.record(
        "checkout",
        1000.0,
        demand=12.5,
        forecast=math.nan,
        desired=3,
        current=2,
        ready=None,
        reason='<script>alert("x")</script>',
    )
    board.set_policy("checkout", [SimpleNamespace(name="<b>hpa</b>", active=True)])
    health = {
        "ready": False,
        "reasons": [f"target checkout: source error GET {SECRET_URL} failed <i>"],
        "targets": {"checkout": {"source": {"error": f"token={TOKEN} refused"}}},
    }
    page = render_page(board, health, now=1001.0)
    assert "<script>" not in page and "<b>hpa</b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;hpa&lt;/b&gt;" in page
    assert PASSWORD not in page and TOKEN not in page
    assert "http://elastic:***@127.0.0.1:9/prometheus?token=***" in page


@pytest.fixture
async def client() -> Any:
    telemetry, health = Telemetry(), HealthState()
    telemetry.status.configure(parse_settings(config_with_secrets(Path("/tmp/state")), "test.yaml"))
    async with TestClient(TestServer(build_app(telemetry, health))) as test_client:
        yield test_client


async def test_links_are_relative_or_under_the_forwarded_prefix(
    client: TestClient[Any, Any],
) -> None:
    for path in ("/", "/status"):
        response = await client.get(path)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert '<a href="metrics">' in await response.text()

    behind = await client.get("/", headers={"X-Forwarded-Prefix": "/ops/elasticd/"})
    assert '<a href="/ops/elasticd/metrics">' in await behind.text()
    # A header that is not a plain path is ignored, never echoed into a link.
    for hostile in ('/x"><script>', "//evil.example", "javascript:alert(1)", "/a/../b"):
        page = await (await client.get("/", headers={"X-Forwarded-Prefix": hostile})).text()
        assert '<a href="metrics">' in page
        assert "evil.example" not in page and "<script>" not in page


# -- a real browser against a real daemon ---------------------------------------------------------


class PrefixProxy:
    """A reverse proxy mounting ``upstream`` under ``/elasticd/``, as an ingress would, and
    saying so in X-Forwarded-Prefix."""

    PREFIX = "/elasticd"

    def __init__(self, upstream: str) -> None:
        prefix = self.PREFIX

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not self.path.startswith(prefix + "/"):
                    self.send_error(404)
                    return
                request = urllib.request.Request(
                    upstream + self.path[len(prefix) :], headers={"X-Forwarded-Prefix": prefix}
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, body = response.status, response.read()
                        kind = response.headers.get("Content-Type", "text/plain")
                except urllib.error.HTTPError as error:
                    status, body, kind = error.code, error.read(), "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (tests/install-servers.sh)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (dev extra)")
    from selenium.webdriver.chrome.service import Service

    # Selenium must use the driver given here, never look one up online.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, str]]:
    path = write_config(tmp_path / "elasticd.yaml", config_with_secrets(tmp_path / "state"))
    process = DaemonProcess(path)
    try:
        url = process.wait_event("telemetry", timeout=60)["url"]
        process.wait_event("ready", timeout=60)
        yield process, url
    finally:
        process.kill()


def test_a_person_sees_each_target_its_numbers_and_a_chart(
    browser: Any, daemon: tuple[DaemonProcess, str]
) -> None:
    from selenium.webdriver.common.by import By

    process, url = daemon
    # A few ticks, so the chart has a line to draw (0.5 s interval).
    process.wait_for(
        lambda: _chart_points(f"{url}/status") >= 4, timeout=30, what="a chart with four points"
    )
    browser.get(f"{url}/status")
    assert browser.title == "elasticd status"
    row = browser.find_element(By.CSS_SELECTOR, "tbody tr")
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "checkout"
    assert cells[1] == "active"
    # demand, forecast, ready and desired: numbers a person can read, bounds as configured.
    for text in cells[2:6]:
        assert float(text) >= 0, cells
    assert cells[6] == "2/80"
    assert cells[8] in {reason.value for reason in Reason}, cells  # the last reason

    chart = browser.find_element(By.CSS_SELECTOR, "svg.chart[data-target='checkout']")
    assert chart.is_displayed()
    assert chart.size["width"] > 300 and chart.size["height"] > 100
    demand = chart.find_elements(By.CSS_SELECTOR, "polyline.demand")
    assert demand and demand[0].is_displayed()
    assert len(demand[0].get_attribute("points").split()) >= 4
    assert chart.find_elements(By.CSS_SELECTOR, "polygon.capacity")

    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Sources" in text and "http://elastic:***@127.0.0.1:9/prometheus?token=***" in text
    assert PASSWORD not in browser.page_source and TOKEN not in browser.page_source

    # Behind a path prefix: the page loads and its links stay under the prefix.
    proxy = PrefixProxy(url)
    try:
        browser.get(proxy.url)
        assert browser.find_element(By.CSS_SELECTOR, "tbody tr td").text == "checkout"
        browser.find_element(By.LINK_TEXT, "metrics").click()
        assert browser.current_url == proxy.url + "metrics"
        assert "elasticd_observed_demand" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        proxy.close()
    code, _ = process.stop()
    assert code == 0


def _chart_points(url: str) -> int:
    """Points of the demand line on the page as served (before any browser is involved)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        page = response.read().decode()
    marker = 'class="demand" points="'
    start = page.find(marker)
    if start < 0:
        return 0
    end = page.find('"', start + len(marker))
    return len(page[start + len(marker) : end].split())
