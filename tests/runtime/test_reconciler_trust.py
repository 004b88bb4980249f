"""The reconciler never acts wrongly on its own (issue 9, defects 1, 3 and 4).

Real kubernetes-asyncio client, the in-repo fake API server, a scripted demand source and a
fake clock; each test fails on the code before the fix.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from daemon.actuators.events import KubernetesEventRecorder
from daemon.actuators.kubernetes import KubernetesScaleActuator
from daemon.core.tournament import Switch
from daemon.runtime.decision_state import DecisionStateStore
from daemon.runtime.reconciler import Reconciler, ScaleEvents
from daemon.settings import KubernetesWorkloadTarget
from tests.runtime.test_reconciler import (
    SCALE_PATH,
    FakeKube,
    Harness,
    ScriptedSource,
    actuator,
    deployment,
    fake_kube,
    harness,
    web_target,
)

__all__ = ["actuator", "fake_kube", "harness"]  # fixtures, imported to be found by pytest

MINUTE = 60.0


def build(
    harness: Harness,
    target: KubernetesWorkloadTarget,
    source: Any,
    actuator: Any,
    *,
    level: float,
    store: DecisionStateStore | None = None,
    events: ScaleEvents | None = None,
) -> Reconciler:
    return harness.reconciler(
        target, source, actuator, level=level, state_store=store, events=events
    )


def replicas(fake_kube: FakeKube) -> int:
    return int(fake_kube.get("Deployment", "shop", "web")["spec"]["replicas"])


async def test_a_controller_resetting_replicas_does_not_inflate_the_forecast(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    # Steady demand 1000 needs 10 replicas; a GitOps controller puts 5 back after every write.
    fake_kube.seed(deployment(5))
    reconciler = build(harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0)

    written: list[int] = []
    for _ in range(30):
        report = await reconciler.tick()
        if report.scaled is not None and report.scaled.written:
            written.append(report.scaled.applied)
        fake_kube.update("Deployment", "shop", "web", {"spec": {"replicas": 5}})
        harness.clock.now += MINUTE

    # Before: every tick short on ready capacity pushed the quantile up (10 -> 27 in 90 s).
    assert written and max(written) <= 11, written
    assert reconciler.state.calibration.integral <= 0.0
    assert harness.counter("elasticd_not_applied_steps_total") >= 25
    assert harness.counter("elasticd_external_overrides_total") >= 25
    overrides = [line for line in harness.audit_lines() if "external_override" in line["inputs"]]
    assert overrides[0]["inputs"]["external_override"] == {"expected": written[0], "found": 5}
    assert all(line["inputs"].get("not_applied") for line in harness.audit_lines()[2:])


async def test_writes_refused_by_the_api_do_not_inflate_the_forecast(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    reconciler = build(harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0)
    # 429, 500, 409 and 403 in turn: none of the writes lands.
    for status in (429, 500, 409, 403) * 5:
        fake_kube.inject_fault(SCALE_PATH, status, method="PATCH")
    for _ in range(20):
        await reconciler.tick()
        harness.clock.now += MINUTE
    fake_kube.clear_faults()
    assert replicas(fake_kube) == 2

    report = await reconciler.tick()

    assert report.result is not None
    # Once writes work again it asks for what the demand needs, not 18, 29, 47 or 49.
    assert report.result.decision.desired <= 11
    assert reconciler.state.calibration.integral <= 0.0
    assert harness.counter("elasticd_not_applied_steps_total") >= 15


async def test_an_override_is_reported_once_as_a_warning_event(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator, tmp_path: Path
) -> None:
    from kubernetes_asyncio import client as kube_client  # noqa: F401  (the real client)

    fake_kube.seed(deployment(2))
    recorder = KubernetesEventRecorder(actuator._client, "shop")
    events = ScaleEvents(recorder, "Deployment", "web", floor=False)
    reconciler = build(
        harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0, events=events
    )
    await reconciler.tick()
    harness.clock.now += MINUTE
    fake_kube.update("Deployment", "shop", "web", {"spec": {"replicas": 4}})
    await reconciler.tick()
    harness.clock.now += MINUTE
    await reconciler.tick()

    assert harness.counter("elasticd_external_overrides_total") == 1
    created = [
        w.body
        for w in fake_kube.writes
        if w.verb == "POST" and w.path.endswith("/events") and isinstance(w.body, dict)
    ]
    reasons = [(body.get("reason"), body.get("type")) for body in created]
    assert ("ExternalOverride", "Warning") in reasons


async def test_one_zero_or_negative_sample_does_not_drop_capacity(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    # Default settings (stabilisation 300 s, like the HPA): a glitch cannot drop capacity.
    fake_kube.seed(deployment(10))
    source = ScriptedSource(1000.0, 1000.0, 1000.0, 0.0, -5.0, 1000.0)
    reconciler = build(harness, web_target(), source, actuator, level=1000.0)

    desired = []
    for _ in range(6):
        report = await reconciler.tick()
        assert report.result is not None
        desired.append(report.result.decision.desired)
        harness.clock.now += MINUTE

    assert desired == [10] * 6
    assert replicas(fake_kube) == 10
    # -5 is an invalid sample, counted as a source error (it used to be clamped to 0).
    assert harness.counter("elasticd_source_errors_total", kind="negative_missing") == 1


async def test_a_restart_inside_the_window_keeps_it(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator, tmp_path: Path
) -> None:
    store = DecisionStateStore(tmp_path / "targets")
    fake_kube.seed(deployment(20))
    first = build(
        harness, web_target(), ScriptedSource(2000.0), actuator, level=2000.0, store=store
    )
    await first.tick()
    assert replicas(fake_kube) == 20
    saved = first.state
    # Killed a minute into the 300 s window: the restart reads the next minute's sample.
    harness.clock.now += 60.0

    # Restarted on a quiet level: without the window it would scale 20 -> 10 at once.
    second = build(
        harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0, store=store
    )
    report = await second.tick()

    assert report.result is not None
    assert report.result.decision.desired == 20
    assert report.result.decision.reason == "stabilised"
    assert second.state.calibration.observed_steps == saved.calibration.observed_steps + 1
    assert replicas(fake_kube) == 20

    # A reload that edits the target (a new maximum) keeps the window as well.
    harness.clock.now += 20.0
    third = build(
        harness,
        web_target(max_units=30),
        ScriptedSource(1000.0),
        actuator,
        level=1000.0,
        store=store,
    )
    report = await third.tick()
    assert report.result is not None and report.result.decision.desired == 20

    # Once the window has passed, the scale-down happens.
    harness.clock.now += 300.0
    report = await third.tick()
    assert report.result is not None and report.result.decision.desired == 10


async def test_no_write_starts_after_stopping(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    reconciler = build(harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0)
    stopping = asyncio.Event()
    stopping.set()
    reconciler._stopping = stopping  # as run() sets it; SIGTERM came during the reads

    report = await reconciler.tick()

    assert report.skipped == "stopping"
    assert fake_kube.writes_to(SCALE_PATH, verb="PATCH") == []


async def test_time_to_ready_is_measured_and_a_slow_one_is_said(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator, caplog: Any
) -> None:
    # Pods that take 7 minutes to be ready behind a 5-minute lead time.
    fake_kube.instant_rollout = False
    fake_kube.seed(deployment(2))
    fake_kube.update("Deployment", "shop", "web", {"status": {"replicas": 2, "readyReplicas": 2}})
    reconciler = build(harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0)
    first = await reconciler.tick()
    assert first.scaled is not None and first.scaled.written
    size = first.scaled.applied
    for _ in range(6):
        harness.clock.now += MINUTE
        await reconciler.tick()
    assert (
        harness.registry.get_sample_value("elasticd_time_to_ready_seconds", {"target": "web"})
        is None
    )
    fake_kube.update(
        "Deployment", "shop", "web", {"status": {"replicas": size, "readyReplicas": size}}
    )
    harness.clock.now += MINUTE
    await reconciler.tick()

    seconds = harness.registry.get_sample_value("elasticd_time_to_ready_seconds", {"target": "web"})
    assert seconds is not None and 420.0 <= seconds <= 421.0
    assert harness.audit_lines()[-1]["inputs"]["time_to_ready_s"] == seconds
    assert any("raise lead_time" in record.getMessage() for record in caplog.records)


async def test_decisions_go_through_the_tournament_and_its_scores_survive_a_restart(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator, tmp_path: Path
) -> None:
    store = DecisionStateStore(tmp_path / "targets")
    fake_kube.seed(deployment(10))
    first = build(
        harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0, store=store
    )
    for _ in range(20):
        report = await first.tick()
        harness.clock.now += MINUTE
    assert report.result is not None
    # The acting policy is named in every decision, as in `elasticd backtest`.
    assert report.result.decision.reasons[-1] == "policy=model"
    stopping = asyncio.Event()
    stopping.set()
    await first.run(stopping)  # returns at once, saving the tournament on its way out
    observed = {
        name: c.tick_state.calibration.observed_steps
        for name, c in first.tournament.candidates.items()
    }
    assert set(observed) == {"model", "reactive", "seasonal_naive"}
    assert observed["model"] >= 15
    assert store.tournament_path("web").exists()

    second = build(
        harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0, store=store
    )
    await second.tick()
    restored = {
        name: c.tick_state.calibration.observed_steps
        for name, c in second.tournament.candidates.items()
    }
    # Each shadow carried on from its saved state (one sample more), not from zero.
    assert restored == {name: steps + 1 for name, steps in observed.items()}


async def test_a_policy_switch_is_logged_audited_counted_and_an_event(
    harness: Harness, fake_kube: FakeKube, actuator: KubernetesScaleActuator
) -> None:
    fake_kube.seed(deployment(2))
    recorder = KubernetesEventRecorder(actuator._client, "shop")
    events = ScaleEvents(recorder, "Deployment", "web", floor=False)
    reconciler = build(
        harness, web_target(), ScriptedSource(1000.0), actuator, level=1000.0, events=events
    )
    switch = Switch(
        at=harness.clock.now,
        kind="switch",
        from_policy="model",
        to_policy="reactive",
        explanation="reactive scored 12% lower for 24h",
    )

    await reconciler._report_switch(switch)

    assert harness.counter("elasticd_policy_switches_total", kind="switch") == 1
    line = harness.audit_lines()[-1]
    assert line["reason"] == "policy_switch"
    assert line["inputs"]["to"] == "reactive"
    posted = [w.body for w in fake_kube.writes if w.verb == "POST" and w.path.endswith("/events")]
    assert posted[-1]["reason"] == "PolicySwitch"
    assert "reactive scored 12% lower" in posted[-1]["message"]
