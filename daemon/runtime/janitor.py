"""The ``idle_janitor`` agent: stops EC2 instances whose metrics say nobody uses them.

Each ``idle_release`` rule is checked on its own interval: the rule's running instances (minus
those with its exclusion tag), one CloudWatch read for all their metrics over the window, the
verdict of ``daemon.core.idle.idle_verdict`` per instance, and for an idle one a stop (or, in
``dry_run``, only the log line and the audit record saying it would have been). Every stop or
would-be stop names the numbers that decided it. Only the leader stops anything; a follower
logs what it would do. An instance stopped here stays stopped until an instance schedule's
window or a person starts it.

Not a target: a target decides a *number* of units from demand; this decides *which*
instances are unused from each one's own metrics, so it runs beside the targets, not through
the planner. The agent reads the settings in force at every check, so a reload applies to the
next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemon.audit import AuditLog, AuditRecord
from daemon.core.idle import IdlePolicy, IdleVerdict, MetricRule, idle_verdict
from daemon.errors import ElasticdError
from daemon.leader import Leadership
from daemon.runtime.app import Shared, aws_region
from daemon.settings import Settings
from daemon.settings.idle import IdleReleaseConfig
from daemon.sources.base import MetricQuery
from daemon.sources.cloudwatch_specs import CloudWatchMetric

if TYPE_CHECKING:
    from daemon.actuators.idle_instances import IdleInstances
    from daemon.sources.cloudwatch import CloudWatchSource
    from daemon.sources.cloudwatch_specs import CloudWatchQuery

__all__ = ["IdleOutcome", "check_rule", "idle_pass", "run_idle_janitor"]

log = logging.getLogger("elasticd.idle")

Clock = Callable[[], float]
# With no rule due, the agent still looks again this often, so a reload's new rules start.
IDLE_POLL_S = 60.0
# A stop already sent is allowed to finish; only a hung connection is cut off.
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class IdleOutcome:
    """What one check did with one instance: ``stopped``, ``would_stop`` (dry run),
    ``not_leader``, ``kept`` (in use, or not enough data), ``excluded`` or ``failed``."""

    rule: str
    instance: str
    action: str
    reason: str
    error: str | None = None

    def line(self) -> str:
        text = f"{self.rule}/{self.instance}: {self.action} ({self.reason})"
        return text if self.error is None else f"{text}; FAILED {self.error}"


def policy_of(rule: IdleReleaseConfig) -> IdlePolicy:
    return IdlePolicy(
        window_s=rule.window,
        period_s=rule.period,
        metrics=tuple(MetricRule(m.metric_name, m.below) for m in rule.metrics),
        min_coverage=rule.min_coverage,
    )


async def check_rule(
    rule: IdleReleaseConfig,
    *,
    instances: IdleInstances,
    metrics: CloudWatchSource,
    audit: AuditLog,
    leadership: Leadership,
    clock: Clock = time.time,
) -> list[IdleOutcome]:
    """One check of one rule. ``ElasticdError`` if the instances or their metrics cannot be
    read (nothing is stopped then)."""
    candidates = await instances.candidates()
    period = int(rule.period)
    end = math.floor(clock() / period) * period
    queries: list[CloudWatchQuery] = [
        MetricQuery(
            f"{instance}/{metric.metric_name}",
            CloudWatchMetric(
                namespace=metric.namespace,
                metric_name=metric.metric_name,
                dimensions=(("InstanceId", instance),),
                stat=metric.statistic,
                period_s=period,
            ),
        )
        for instance in candidates.checked
        for metric in rule.metrics
    ]
    series = await metrics.history_many(queries, end - rule.window, end, period) if queries else {}
    policy = policy_of(rule)
    outcomes = [
        IdleOutcome(rule.name, i, "excluded", rule.exclude_tag) for i in candidates.excluded
    ]
    for instance in candidates.checked:
        points = {
            metric.metric_name: list(
                zip(
                    series[f"{instance}/{metric.metric_name}"].timestamps.tolist(),
                    series[f"{instance}/{metric.metric_name}"].values.tolist(),
                    strict=True,
                )
            )
            for metric in rule.metrics
        }
        verdict = idle_verdict(policy, points, end)
        if not verdict.idle:
            log.debug("%s kept: %s", instance, verdict.reason, extra={"rule": rule.name})
            outcomes.append(IdleOutcome(rule.name, instance, "kept", verdict.reason))
            continue
        outcomes.append(await _release(rule, instance, verdict, instances, audit, leadership, end))
    return outcomes


async def _release(
    rule: IdleReleaseConfig,
    instance: str,
    verdict: IdleVerdict,
    instances: IdleInstances,
    audit: AuditLog,
    leadership: Leadership,
    now: float,
) -> IdleOutcome:
    error: str | None = None
    if rule.dry_run:
        action = "would_stop"
    elif not leadership.is_leader:
        action = "not_leader"
    else:
        action = "stopped"
        deadline = leadership.write_deadline()
        try:
            await asyncio.wait_for(
                instances.stop(instance, deadline=deadline), timeout=STOP_TIMEOUT_S
            )
        except (ElasticdError, TimeoutError) as failure:
            action, error = "failed", str(failure) or type(failure).__name__
    numbers = {
        m.name: {"peak": m.peak, "below": m.below, "points": m.points, "periods": m.periods}
        for m in verdict.metrics
    }
    level = logging.ERROR if error else logging.WARNING
    log.log(
        level,
        "%s %s: %s for %.0fs%s",
        {"stopped": "stopped", "would_stop": "would stop (dry run)"}.get(
            action, f"not stopped ({action})"
        ),
        instance,
        verdict.reason,
        rule.window,
        f": {error}" if error else "",
        extra={
            "event": f"idle_{action}",
            "rule": rule.name,
            "instance": instance,
            "metrics": numbers,
            "window_s": rule.window,
        },
    )
    try:
        await audit.append_async(
            AuditRecord(
                target=rule.name,
                reason=f"idle_{action}",
                inputs={
                    "now": now,
                    "instance": instance,
                    "window_s": rule.window,
                    "metrics": numbers,
                    "dry_run": rule.dry_run,
                },
                written=action == "stopped",
                error=error,
            )
        )
    except OSError as failure:
        log.error("audit log write failed: %s", failure, extra={"rule": rule.name})
    return IdleOutcome(rule.name, instance, action, verdict.reason, error)


async def idle_pass(
    settings: Settings, shared: Shared, *, rules: tuple[IdleReleaseConfig, ...] | None = None
) -> list[IdleOutcome]:
    """One check of each rule (all of ``settings.idle_release`` unless ``rules``), each with
    its own clients, closed after it; a rule that cannot be read is one ``failed`` outcome."""
    chosen = settings.idle_release if rules is None else rules
    if not chosen:
        return []
    # The AWS SDK is imported only where a rule needs it: a daemon without AWS targets or
    # rules does not carry it (7 MB resident, 0.2 s of start-up).
    import aioboto3

    from daemon.actuators.idle_instances import IdleInstances
    from daemon.sources.cloudwatch import CloudWatchSource

    outcomes: list[IdleOutcome] = []
    aws = settings.aws
    for rule in chosen:
        where = f"idle_release.{rule.name}"
        try:
            region = aws_region(aws.region, "aws.region")
            instances = IdleInstances(
                rule.name,
                rule.ec2_tags,
                rule.exclude_tag,
                region=region,
                endpoint_url=aws.endpoint_url,
                session=aioboto3.Session(profile_name=aws.profile) if aws.profile else None,
            )
            metrics = CloudWatchSource(region, endpoint_url=aws.endpoint_url, profile=aws.profile)
            try:
                outcomes += await check_rule(
                    rule,
                    instances=instances,
                    metrics=metrics,
                    audit=shared.audit,
                    leadership=shared.leadership,
                )
            finally:
                await instances.close()
                await metrics.close()
        except ElasticdError as error:
            log.error("%s: check failed: %s", where, error, extra={"rule": rule.name})
            outcomes.append(IdleOutcome(rule.name, "-", "failed", "check failed", str(error)))
    return outcomes


def _names(settings: Settings) -> set[str]:
    return {rule.name for rule in settings.idle_release}


async def run_idle_janitor(
    settings: Callable[[], Settings], shared: Shared, stopping: asyncio.Event
) -> None:
    """Check each rule of the settings in force every ``interval`` until ``stopping``."""
    loop = asyncio.get_running_loop()
    due: dict[str, float] = {}
    while not stopping.is_set():
        current = settings()
        now = loop.time()
        # A rule a reload removed is forgotten; one it added is checked at once.
        due = {name: at for name, at in due.items() if name in _names(current)}
        ready = tuple(rule for rule in current.idle_release if due.get(rule.name, now) <= now)
        for rule in ready:
            due[rule.name] = now + rule.interval
        if ready:
            try:
                await idle_pass(current, shared, rules=ready)
            except Exception:
                log.exception("idle check failed unexpectedly")
        wait = min([IDLE_POLL_S, *(at - loop.time() for at in due.values())])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=max(wait, 0.0))
