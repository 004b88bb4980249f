"""The Grafana dashboard and the alert rules, against a real Prometheus scraping a real elasticd.

Static: the dashboard is importable as is (a data source variable rather than a fixed one,
unique panel ids, a grid that fits, a row repeated per target whose panels filter on it).

Live: a real Prometheus scrapes ``elasticd run`` (a subprocess) every second and loads the
rules file. The daemon runs three targets so that every series the dashboard and the alerts
read exists: ``checkout`` on the embedded simulator in compressed time (demand, forecasts,
decisions, a model), ``idle`` whose query matches nothing (unusable demand, a fallback model)
and ``ghost`` whose Prometheus is down and whose Deployment does not exist (source and
actuator errors) on the fake Kubernetes API server. A second daemon runs sharded (its
membership Lease on the same fake server) as its own job, for the sharding alerts. Then
every dashboard query, every
template variable, and every alert's query (its comparison stripped) must return data: a
renamed metric or label fails here. The rules must evaluate without error, and the alerts
the broken targets deserve must be pending for them and for no other target.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_alerts import RULES, alert_query, alerts
from tests.e2e.daemon_process import DaemonProcess
from tests.runtime.test_app import replay_start
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig
from tests.support.moto_server import free_port
from tests.support.prometheus_server import PROMETHEUS, PrometheusServer, start_prometheus

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "elasticd-dashboard.json"
# All of the data: the All value of both variables, and a rate window that holds several
# one-second scrapes.
SUBSTITUTIONS = {"$job": ".*", "$target": ".*", "$__rate_interval": "15s"}
# Start-up (about 5 s), the first fits, a forecast whose horizon has passed and a scale-up
# whose units are ready (the 2 minute lead time is 1 s at 120x), two scrapes after each: about
# 12 s on an idle machine; the rest is slack for a busy one.
DATA_TIMEOUT_S = 45.0

Obj = dict[str, Any]


def dashboard() -> Obj:
    loaded: Obj = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[Obj]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title and refId, PromQL) for every query of every panel."""
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in panels()
        for target in panel["targets"]
    ]


def variables() -> dict[str, Obj]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def expand(query: str) -> str:
    for name, value in SUBSTITUTIONS.items():
        query = query.replace(name, value)
    assert "$" not in query, f"a dashboard variable this test does not know: {query}"
    return query


# -- static -------------------------------------------------------------------------------------


def test_the_dashboard_is_importable_as_is() -> None:
    board = dashboard()
    assert board["uid"] == "elasticd" and board["title"] and board["schemaVersion"] >= 36
    assert "__inputs" not in board  # nothing to fill in: the data source is a variable
    assert variables()["datasource"]["type"] == "datasource"
    assert variables()["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_one_row_per_target_with_every_view_the_issue_asks_for() -> None:
    rows = [p for p in dashboard()["panels"] if p["type"] == "row"]
    (target_row,) = [r for r in rows if r.get("repeat") == "target"]
    target_var = variables()["target"]
    assert target_var["multi"] and target_var["includeAll"]
    # Every panel below the repeated row belongs to it: each must filter on the target.
    below = [p for p in panels() if p["gridPos"]["y"] > target_row["gridPos"]["y"]]
    for panel in below:
        for target in panel["targets"]:
            assert 'target=~"$target"' in target["expr"], panel["title"]
    text = " ".join(t["expr"] for p in below for t in p["targets"])
    for metric in (
        "elasticd_observed_demand",  # demand
        "elasticd_forecast_peak",  # forecast
        "elasticd_ready_units",  # ready capacity
        "elasticd_desired_units",  # desired
        "elasticd_short_steps_total",  # the shortfall
        "elasticd_decision_reason",  # reasons of decisions
        "elasticd_source_errors_total",  # errors
        "elasticd_actuator_errors_total",
        "elasticd_model_age_seconds",  # model age
    ):
        assert metric in text, metric


def test_every_alert_query_can_be_checked() -> None:
    queries = [alert_query(rule["expr"]) for rule in alerts()]
    assert all("elasticd_" in q for q in queries)


# -- live ---------------------------------------------------------------------------------------


@dataclass
class Live:
    prometheus: PrometheusServer
    daemons: list[DaemonProcess]
    started: float

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.prometheus.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[Obj]:
        result: list[Obj] = self.get("/api/v1/query", query=promql)["result"]
        return result

    def wait(self, check: Callable[[], list[str]], what: str) -> None:
        """Poll ``check`` (what is still missing) until it is empty or the deadline passes."""
        deadline = self.started + DATA_TIMEOUT_S
        missing = check()
        while missing and time.monotonic() < deadline:
            for daemon in self.daemons:
                assert daemon.process.poll() is None, f"elasticd exited:\n{daemon.tail()}"
            time.sleep(0.5)
            missing = check()
        assert not missing, f"{what} after {DATA_TIMEOUT_S:.0f}s:\n" + "\n".join(missing)


def _daemon_config(
    tmp: Path, prometheus_url: str, kubeconfig: Path, port: int, down_port: int
) -> Path:
    kube_target = {
        "kind": "deployment",
        "namespace": "shop",
        "unit_capacity": 50,
        "lead_time": "5m",
        "min_units": 1,
        "max_units": 20,
        "mode": "forecast-only",
    }
    body = {
        "interval": "1s",
        "state_dir": str(tmp / "state"),
        "log_format": "json",
        "telemetry": {"enabled": True, "host": "127.0.0.1", "port": port},
        "training": {"cadence": "10m", "history_window": "7d"},
        "kubernetes": {"kubeconfig": str(kubeconfig), "in_cluster": False},
        "sources": {
            # config/local.yaml's simulator: two minutes of trace per second, from a morning
            # rise, so scale-ups (and their time to ready) happen within the test.
            "sim": {
                "type": "simulator",
                "generate": {"days": 14, "step": "5m", "seed": 42},
                "speedup": 120,
                "start": replay_start(),
            },
            "prom": {"type": "prometheus", "url": prometheus_url, "timeout": "2s"},
            # Nothing listens there: every read fails (transient).
            "down": {"type": "prometheus", "url": f"http://127.0.0.1:{down_port}", "timeout": "1s"},
        },
        "targets": [
            {
                "name": "checkout",
                "kind": "simulator",
                "source": "sim",
                "unit_capacity": 50,
                # 1 s of wall time: a forecast's horizon passes (its error is known) and a
                # scale-up's units become ready (its time to ready is known) within seconds.
                "lead_time": "2m",
                "max_demand_age": "15m",
                "min_units": 2,
                "max_units": 40,
                "mode": "active",
            },
            {
                **kube_target,
                "name": "idle",
                "workload": "web",
                "source": "prom",
                "query": "elasticd_test_series_that_does_not_exist",
            },
            {
                **kube_target,
                "name": "ghost",
                "workload": "ghost",
                "source": "down",
                "query": "sum(rate(http_requests_total[2m]))",
            },
        ],
    }
    path = tmp / "elasticd.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _sharded_config(tmp: Path, kubeconfig: Path, port: int) -> Path:
    """One member of a sharded installation, sizing one simulator target."""
    body = {
        "interval": "1s",
        "state_dir": str(tmp / "sharded-state"),
        "log_format": "json",
        "telemetry": {"enabled": True, "host": "127.0.0.1", "port": port},
        "training": {"cadence": "10m", "history_window": "7d"},
        "kubernetes": {"kubeconfig": str(kubeconfig), "in_cluster": False},
        "sharding": {"enabled": True, "namespace": "shop", "identity": "member-1"},
        "sources": {
            "sim": {
                "type": "simulator",
                "generate": {"days": 14, "step": "5m", "seed": 7},
                "speedup": 120,
            }
        },
        "targets": [
            {
                "name": "orders",
                "kind": "simulator",
                "source": "sim",
                "unit_capacity": 50,
                "lead_time": "10m",
                "max_demand_age": "15m",
                "min_units": 2,
                "max_units": 40,
                "mode": "active",
            }
        ],
    }
    path = tmp / "sharded.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if not Path(PROMETHEUS).exists():
        pytest.skip("needs the prometheus binary: run tests/install-servers.sh")
    tmp = tmp_path_factory.mktemp("dashboard")
    seed = tmp / "objects.yaml"
    seed.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"replicas": 3},
            }
        )
    )
    kube = FakeKubeProcess.spawn(seed_file=seed)
    prometheus: PrometheusServer | None = None
    daemons: list[DaemonProcess] = []
    try:
        prometheus = start_prometheus()
        port, sharded_port = free_port(), free_port()
        # The helper starts Prometheus with no scrape targets; point it at the daemons and
        # the rules, and reload (SIGHUP) rather than restart.
        (prometheus.workdir / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": job,
                            "static_configs": [{"targets": [f"127.0.0.1:{job_port}"]}],
                        }
                        for job, job_port in (
                            ("elasticd", port),
                            ("elasticd-sharded", sharded_port),
                        )
                    ],
                }
            )
        )
        prometheus.process.send_signal(signal.SIGHUP)
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", kube.url)
        config = _daemon_config(tmp, prometheus.url, kubeconfig, port, free_port())
        started = time.monotonic()
        daemons.append(DaemonProcess(config))
        daemons.append(DaemonProcess(_sharded_config(tmp, kubeconfig, sharded_port)))
        yield Live(prometheus, daemons, started)
    finally:
        for daemon in daemons:
            daemon.kill()  # their shutdown is tested elsewhere; this saves seconds
        if prometheus is not None:
            prometheus.stop()
        kube.stop()


def test_every_dashboard_query_returns_data(live: Live) -> None:
    queries = panel_queries()
    assert len(queries) >= 15

    def missing() -> list[str]:
        return [f"{name}: {expr}" for name, expr in queries if not live.query(expand(expr))]

    live.wait(missing, "dashboard queries returned no data")


def test_the_template_variables_list_the_job_and_the_targets(live: Live) -> None:
    def values(name: str) -> set[str]:
        query = variables()[name]["query"]["query"]
        match = re.fullmatch(r"label_values\((?P<match>.+),\s*(?P<label>\w+)\)", query)
        assert match, query
        found = live.get(
            f"/api/v1/label/{match['label']}/values", **{"match[]": expand(match["match"])}
        )
        return set(found)

    def missing() -> list[str]:
        wanted = {"job": {"elasticd", "elasticd-sharded"}, "target": {"checkout", "idle", "orders"}}
        return [
            f"{name}: {sorted(want - values(name))}"
            for name, want in wanted.items()
            if want - values(name)
        ]

    live.wait(missing, "template variables lack values")


def test_every_alert_query_returns_data(live: Live) -> None:
    queries = [(rule["alert"], alert_query(rule["expr"])) for rule in alerts()]

    def missing() -> list[str]:
        return [f"{name}: {query}" for name, query in queries if not live.query(query)]

    live.wait(missing, "alert queries returned no data")


def test_the_rules_evaluate_and_the_broken_targets_alerts_are_pending(live: Live) -> None:
    def unhealthy() -> list[str]:
        groups = live.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if len(rules) != len(alerts()):
            return [f"{len(rules)} rules loaded, {len(alerts())} in the file"]
        return [
            f"{rule['name']}: {rule['health']} {rule.get('lastError', '')}"
            for rule in rules
            if rule["health"] != "ok"
        ]

    live.wait(unhealthy, "rules did not evaluate cleanly")

    # The labels the rules match on (kind values, target names) are the ones elasticd emits.
    expected = {
        ("ElasticdSourceFailing", "ghost"),
        ("ElasticdActuatorFailing", "ghost"),
        ("ElasticdDemandStale", "idle"),
    }

    def active() -> set[tuple[str, str]]:
        found = live.get("/api/v1/alerts")["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("target", "")) for a in found}

    live.wait(lambda: [str(pair) for pair in sorted(expected - active())], "alerts not pending")
    for name, target in active():
        # The simulator target is healthy: none of these may concern it.
        assert target != "checkout" or name not in {n for n, _ in expected}, (name, target)
