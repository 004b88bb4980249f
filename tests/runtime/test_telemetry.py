"""Telemetry over real HTTP: /metrics, /healthz and /readyz from a server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from daemon.telemetry import HealthState, Telemetry, TelemetryServer, health_server, serve_telemetry


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def telemetry(clock: FakeClock) -> Telemetry:
    return Telemetry(CollectorRegistry(), clock=clock)


@pytest.fixture
def monotonic() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def health(monotonic: FakeClock) -> HealthState:
    return HealthState(stale_after_s=30.0, max_lag_s=5.0, monotonic=monotonic)


@pytest.fixture
async def server(telemetry: Telemetry, health: HealthState) -> AsyncIterator[TelemetryServer]:
    # A heartbeat that never fires on its own: tests drive liveness through the fake clock.
    server = TelemetryServer(telemetry, health, host="127.0.0.1", port=0, heartbeat_interval_s=3600)
    await server.start()
    yield server
    await server.stop()


async def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_show_the_gauges_after_a_tick(
    server: TelemetryServer, telemetry: Telemetry, clock: FakeClock
) -> None:
    telemetry.record_tick(
        "web",
        demand=1234.5,
        forecast=1800.0,
        desired=19,
        current=15,
        ready=14,
        reason="forecast",
        duration_s=0.03,
    )
    status, content_type, text = await get(f"{server.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = parse(text)
    assert value(samples, "elasticd_observed_demand", target="web") == 1234.5
    assert value(samples, "elasticd_forecast_peak", target="web") == 1800.0
    assert value(samples, "elasticd_desired_units", target="web") == 19
    assert value(samples, "elasticd_current_units", target="web") == 15
    assert value(samples, "elasticd_ready_units", target="web") == 14
    assert value(samples, "elasticd_decision_reason", target="web", reason="forecast") == 1
    assert value(samples, "elasticd_decision_reason", target="web", reason="fallback") == 0
    assert value(samples, "elasticd_tick_duration_seconds_count", target="web") == 1
    assert value(samples, "elasticd_tick_duration_seconds_sum", target="web") == 0.03
    assert value(samples, "elasticd_last_tick_timestamp_seconds", target="web") == clock.t


async def test_the_reason_gauge_moves_to_the_new_reason(
    server: TelemetryServer, telemetry: Telemetry
) -> None:
    for reason in ("forecast", "stabilised", "a_reason_core_adds_later"):
        telemetry.record_tick(
            "web",
            demand=None,
            forecast=None,
            desired=3,
            current=3,
            ready=None,
            reason=reason,
            duration_s=0.01,
        )
    samples = parse((await get(f"{server.url}/metrics"))[2])
    reasons = {
        labels: v
        for (name, labels), v in samples.items()
        if name == "elasticd_decision_reason" and v == 1
    }
    assert reasons == {(("reason", "a_reason_core_adds_later"), ("target", "web")): 1}
    # Missing data is a gap on the dashboard, not the last value; unknown ready is -1.
    assert math.isnan(value(samples, "elasticd_observed_demand", target="web"))
    assert math.isnan(value(samples, "elasticd_forecast_peak", target="web"))
    assert value(samples, "elasticd_ready_units", target="web") == -1


async def test_counters_leader_reloads_training_and_model_age(
    server: TelemetryServer, telemetry: Telemetry, clock: FakeClock
) -> None:
    telemetry.record_source_error("web", "transient")
    telemetry.record_source_error("web", "transient")
    telemetry.record_source_error("web", "stale")
    telemetry.record_actuator_error("web", "conflict")
    telemetry.record_write("web")
    telemetry.record_short_step("web")
    telemetry.record_forecast_error("web", -0.12)
    telemetry.record_training("web", 4.2)
    telemetry.set_model_trained_at("api", clock.t - 7200.0)
    telemetry.set_leader(True)
    telemetry.record_reload(ok=True)
    telemetry.record_reload(ok=False)
    telemetry.record_reload(ok=False)
    clock.t += 90.0
    samples = parse((await get(f"{server.url}/metrics"))[2])
    assert value(samples, "elasticd_source_errors_total", target="web", kind="transient") == 2
    assert value(samples, "elasticd_source_errors_total", target="web", kind="stale") == 1
    assert value(samples, "elasticd_actuator_errors_total", target="web", kind="conflict") == 1
    assert value(samples, "elasticd_writes_total", target="web") == 1
    assert value(samples, "elasticd_short_steps_total", target="web") == 1
    assert value(samples, "elasticd_forecast_log_residual", target="web") == -0.12
    assert value(samples, "elasticd_training_duration_seconds_count", target="web") == 1
    assert value(samples, "elasticd_training_duration_seconds_sum", target="web") == 4.2
    # The age grows between scrapes without anyone setting it.
    assert value(samples, "elasticd_model_age_seconds", target="web") == 90.0
    assert value(samples, "elasticd_model_age_seconds", target="api") == 7290.0
    assert value(samples, "elasticd_leader") == 1
    assert value(samples, "elasticd_config_reloads_total", result="ok") == 1
    assert value(samples, "elasticd_config_reloads_total", result="failed") == 2
    telemetry.set_leader(False)
    samples = parse((await get(f"{server.url}/metrics"))[2])
    assert value(samples, "elasticd_leader") == 0


async def test_a_removed_target_disappears_from_metrics(
    server: TelemetryServer, telemetry: Telemetry
) -> None:
    for target in ("web", "api"):
        telemetry.record_tick(
            target,
            demand=1.0,
            forecast=2.0,
            desired=1,
            current=1,
            ready=1,
            reason="forecast",
            duration_s=0.01,
        )
        telemetry.record_source_error(target, "transient")
        telemetry.record_training(target, 1.0)
    telemetry.forget_target("web")
    samples = parse((await get(f"{server.url}/metrics"))[2])
    targets = {dict(labels).get("target") for _, labels in samples}
    assert "web" not in targets
    assert "api" in targets


async def test_openmetrics_when_the_scraper_asks(server: TelemetryServer) -> None:
    status, content_type, text = await get(
        f"{server.url}/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


async def get_json(url: str) -> tuple[int, str, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.json()


async def test_readyz_is_503_with_reasons_until_models_and_sources_are_there(
    server: TelemetryServer, health: HealthState
) -> None:
    status, content_type, body = await get_json(f"{server.url}/readyz")
    assert content_type.startswith("application/json")
    assert (status, body["ready"], body["reasons"]) == (503, False, ["no targets configured"])
    health.set_targets(["web", "api"])
    health.model_loaded("web")
    health.source_reached("web")
    health.source_reached("api")
    status, _, body = await get_json(f"{server.url}/readyz")
    assert (status, body["reasons"]) == (503, ["target api: no model loaded yet"])
    health.model_loaded("api")
    status, _, body = await get_json(f"{server.url}/readyz")
    assert (status, body["status"], body["reasons"]) == (200, "ready", [])
    assert set(body["targets"]) == {"web", "api"}
    health.set_stopping()
    status, _, body = await get_json(f"{server.url}/readyz")
    assert (status, body["reasons"]) == (503, ["shutting down"])


async def test_readyz_follows_decisions_once_targets_tick(
    server: TelemetryServer, health: HealthState, monotonic: FakeClock
) -> None:
    """Issue 9 defect 11: a target answering 404 stops deciding, and a daemon where no target
    decides is not ready, whatever its start-up checks said."""
    health.set_targets(["web", "api"])
    for target in ("web", "api"):
        health.model_loaded(target)
        health.source_reached(target)
    assert (await get_json(f"{server.url}/readyz"))[0] == 200
    # web decides every 5 s; api's target answers 404 from its first tick on.
    health.decided("web", 5.0)
    health.actuator_ok("web")
    health.actuator_failed("api", "capacity read failed (permanent): HTTP 404 Not Found")
    monotonic.t += 14.0
    status, _, body = await get_json(f"{server.url}/readyz")
    assert status == 200, body
    assert body["targets"]["web"]["deciding"] is True
    assert body["targets"]["api"]["deciding"] is False
    assert body["targets"]["api"]["actuator"] == {
        "ok": False,
        "error": "capacity read failed (permanent): HTTP 404 Not Found",
        "last_success_age_s": None,
    }
    # Three intervals of 5 s (15 s) without a decision anywhere: not ready, and says why.
    monotonic.t += 2.0
    status, _, body = await get_json(f"{server.url}/readyz")
    assert status == 503
    assert body["reasons"] == [
        "no target has decided within 3 intervals",
        "target web: last decision 16s ago (interval 5s)",
        "target api: no decision yet; actuator: capacity read failed (permanent): HTTP 404 "
        "Not Found",
    ]
    assert body["targets"]["web"]["last_decision_age_s"] == 16.0
    # One target deciding again is enough.
    health.decided("web", 5.0)
    assert (await get_json(f"{server.url}/readyz"))[0] == 200


def test_a_short_interval_gets_the_minimum_decision_window(monotonic: FakeClock) -> None:
    health = HealthState(monotonic=monotonic, min_decision_window_s=10.0)
    health.set_targets(["web"])
    health.decided("web", 1.0)
    monotonic.t += 9.5
    assert health.readiness().ready
    monotonic.t += 1.0
    assert not health.readiness().ready


def test_a_source_down_shows_in_the_report_but_a_deciding_target_keeps_readiness(
    monotonic: FakeClock, clock: FakeClock
) -> None:
    health = HealthState(monotonic=monotonic, clock=clock)
    health.set_targets(["web"])
    health.source_reached("web")
    health.model_state("web", "model", clock.t - 600.0, None)
    monotonic.t += 30.0
    health.source_failed("web", TimeoutError())
    health.model_state("web", "recent_peak", clock.t, "model failed to forecast: boom")
    health.decided("web", 15.0)
    monotonic.t += 5.0
    assert health.readiness().ready
    report = health.target_report("web")
    assert report["source"] == {"ok": False, "error": "TimeoutError", "last_success_age_s": 35.0}
    assert report["model"] == {
        "name": "recent_peak",
        "loaded": True,
        "age_s": 5.0,
        "error": "model failed to forecast: boom",
    }
    assert report["last_decision_age_s"] == 5.0 and report["interval_s"] == 15.0
    # The source answers again: the error clears, the age restarts.
    health.source_reached("web")
    assert health.target_report("web")["source"] == {
        "ok": True,
        "error": None,
        "last_success_age_s": 0.0,
    }


def test_a_model_age_reported_on_a_target_clock_keeps_growing(monotonic: FakeClock) -> None:
    health = HealthState(monotonic=monotonic)
    health.set_targets(["sim"])
    # A simulator's clock is far from the wall clock: the age is taken on its own clock.
    health.model_state("sim", "model", trained_at=1_000.0, now=1_060.0)
    monotonic.t += 30.0
    assert health.target_report("sim")["model"]["age_s"] == 90.0


def test_long_error_texts_are_cut() -> None:
    health = HealthState()
    health.set_targets(["web"])
    health.actuator_failed("web", "x" * 5_000)
    error = health.target_report("web")["actuator"]["error"]
    assert len(error) == 300 and error.endswith("...")


def test_error_texts_in_the_report_never_show_a_secret() -> None:
    health = HealthState()
    health.set_targets(["web"])
    health.source_failed("web", "Prometheus query timed out: http://ops:s3cret@prom:9090/api")
    report = json.dumps(health.report())
    assert "s3cret" not in report and "ops:***@prom:9090" in report


def test_a_removed_target_leaves_the_report() -> None:
    health = HealthState()
    health.set_targets(["web", "api"])
    health.decided("web", 5.0)
    health.actuator_failed("api", "gone")
    health.set_targets(["web"])
    assert set(health.report()["targets"]) == {"web"}
    health.set_targets(["web", "api"])
    assert health.target_report("api")["actuator"]["error"] is None


async def test_the_issue_9_counters(server: TelemetryServer, telemetry: Telemetry) -> None:
    telemetry.record_not_applied_step("web")
    telemetry.record_not_applied_step("web")
    telemetry.record_external_override("web")
    telemetry.record_fenced_write("web")
    telemetry.record_model_failure("web", "forecast")
    samples = parse((await get(f"{server.url}/metrics"))[2])
    assert value(samples, "elasticd_not_applied_steps_total", target="web") == 2
    assert value(samples, "elasticd_external_overrides_total", target="web") == 1
    assert value(samples, "elasticd_fenced_writes_total", target="web") == 1
    assert value(samples, "elasticd_model_failures_total", target="web", stage="forecast") == 1
    telemetry.forget_target("web")
    samples = parse((await get(f"{server.url}/metrics"))[2])
    assert not [key for key in samples if dict(key[1]).get("target") == "web"]


def test_a_reconfigured_target_must_be_reached_again() -> None:
    health = HealthState()
    health.set_targets(["web"])
    health.model_loaded("web")
    health.source_reached("web")
    assert health.readiness().ready
    health.set_targets(["api"])
    health.set_targets(["web", "api"])
    assert health.readiness().reasons == (
        "target web: no model loaded yet",
        "target api: no model loaded yet",
        "target web: metric source not reached yet",
        "target api: metric source not reached yet",
    )


async def test_healthz_is_200_while_the_heartbeat_is_fresh(
    server: TelemetryServer, health: HealthState, monotonic: FakeClock
) -> None:
    assert await get(f"{server.url}/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    health.beat(0.002)
    monotonic.t += 29.0
    assert (await get(f"{server.url}/healthz"))[0] == 200
    monotonic.t += 2.0
    status, _, text = await get(f"{server.url}/healthz")
    assert (status, text) == (503, "no event-loop heartbeat for 31.0s\n")
    health.beat(6.5)
    status, _, text = await get(f"{server.url}/healthz")
    assert (status, text) == (503, "event loop blocked for 6.5s\n")
    health.beat(0.001)
    assert (await get(f"{server.url}/healthz"))[0] == 200


async def test_the_servers_heartbeat_beats_on_the_real_loop(telemetry: Telemetry) -> None:
    health = HealthState(stale_after_s=1.0)
    server = TelemetryServer(telemetry, health, port=0, heartbeat_interval_s=0.01)
    await server.start()
    try:
        await asyncio.sleep(0.1)
        assert health.liveness().live
        assert (await get(f"{server.url}/healthz"))[0] == 200
    finally:
        await server.stop()
    await asyncio.sleep(1.1)
    # Stopped, the heartbeat no longer beats: a wedged daemon would look the same.
    assert not health.liveness().live


async def test_port_zero_binds_a_free_port_and_stop_releases_it(
    telemetry: Telemetry, health: HealthState
) -> None:
    server = await serve_telemetry(telemetry, health, "127.0.0.1", 0)
    port = server.port
    assert port > 0 and server.url == f"http://127.0.0.1:{port}"
    await server.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"http://127.0.0.1:{port}/healthz")


async def test_health_server_agent_serves_until_cancelled(
    telemetry: Telemetry, health: HealthState
) -> None:
    server = TelemetryServer(telemetry, health, port=0)
    task = asyncio.create_task(health_server(server), name="health_server")
    for _ in range(200):
        try:
            url = server.url
            break
        except RuntimeError:
            await asyncio.sleep(0.01)
    assert (await get(f"{url}/healthz"))[0] == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"{url}/healthz")


def test_the_default_registry_is_private_and_carries_process_metrics() -> None:
    first, second = Telemetry(), Telemetry()  # no clash: neither uses the global registry
    assert first.registry is not second.registry
    names = {family.name for family in first.registry.collect()}
    assert "elasticd_desired_units" in names
    assert "python_info" in names


def test_one_quick_target_does_not_make_the_daemon_ready_while_others_train() -> None:
    monotonic = [100.0]
    health = HealthState(monotonic=lambda: monotonic[0])
    health.set_targets(["web", "api"])
    health.model_loaded("web")
    health.source_reached("web")
    health.decided("web", 1.0)
    assert health.readiness().reasons == ("target api: no model loaded yet",)
    health.model_loaded("api")
    assert health.readiness().ready


def test_the_scoreboard_is_exported_per_policy_and_forgotten_with_its_target() -> None:
    from daemon.core.tournament import CandidateScore

    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    telemetry.record_policy_scores(
        "web",
        [
            CandidateScore("model", "model@x", 10.5, 10.0, 0.012, 900.0, True),
            CandidateScore("reactive", "", 11.0, 12.0, 0.004, 900.0, False),
        ],
    )
    value = registry.get_sample_value
    assert value("elasticd_policy_score", {"target": "web", "policy": "model"}) == 10.5
    assert value("elasticd_policy_short_share", {"target": "web", "policy": "reactive"}) == 0.004
    assert value("elasticd_policy_active", {"target": "web", "policy": "model"}) == 1.0
    assert value("elasticd_policy_active", {"target": "web", "policy": "reactive"}) == 0.0
    telemetry.record_policy_event("web", "switch")
    assert value("elasticd_policy_switches_total", {"target": "web", "kind": "switch"}) == 1.0
    telemetry.forget_target("web")
    assert value("elasticd_policy_score", {"target": "web", "policy": "model"}) is None
    assert value("elasticd_policy_switches_total", {"target": "web", "kind": "switch"}) is None


def test_a_sharded_member_with_no_target_now_is_ready_but_a_daemon_without_targets_is_not() -> None:
    standby = HealthState()
    standby.set_targets([], none_is_ready=True)
    assert standby.readiness().ready
    empty = HealthState()
    empty.set_targets([])
    readiness = empty.readiness()
    assert not readiness.ready and "no targets configured" in readiness.reasons
