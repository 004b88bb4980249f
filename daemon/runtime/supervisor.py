"""The daemon's lifecycle: start the agents, reload on SIGHUP, stop in stages on SIGTERM.

Agents (asyncio tasks, named so logs and dumps read well): ``leader_elector``, one
``target:<name>`` per target (its ``model_trainer`` then its ``reconciler``),
``health_server``, ``readiness_notifier``, ``watchdog_pinger``. Shutdown order: stop
advertising readiness, tell systemd STOPPING=1, stop starting ticks, give in-flight ticks (and
their writes) a grace period, release the Lease (no write can follow it), close adapters,
then the clients the targets shared (``ClientPool``) and the audit log's writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import client

from daemon import sdnotify
from daemon.audit import AuditLog
from daemon.errors import ConfigError, ElasticdError
from daemon.leader import AlwaysLeader, LeaderElector, Leadership, resolve_lease_namespace
from daemon.private_dir import ensure_private_dir
from daemon.runtime.app import Shared, TargetFactory, fingerprint, open_kube_client
from daemon.runtime.config_watch import DEFAULT_INTERVAL_S, ConfigWatcher
from daemon.runtime.janitor import run_idle_janitor
from daemon.runtime.logging import configure_logging
from daemon.runtime.signals import LastResort, SignalFlags
from daemon.runtime.target import TargetRuntime
from daemon.settings import Settings, load_settings
from daemon.sharding.member import ShardMember
from daemon.sharding.wiring import JANITOR_KEY, open_member, shard_keys
from daemon.telemetry import HealthState, Telemetry, TelemetryServer

__all__ = ["OnePass", "Supervisor"]

T = TypeVar("T")
# One pass over the built targets and the targets that could not be built (``run_pass``).
OnePass = Callable[
    [Mapping[str, TargetRuntime], Mapping[str, ElasticdError]], Coroutine[Any, Any, T]
]

log = logging.getLogger("elasticd.supervisor")

# An in-flight tick may be finishing a write; give it this long before cancelling it.
GRACE_S = 10.0
# Beyond the grace period, closing clients gets this long before the process is ended.
LAST_RESORT_S = GRACE_S + 5.0


class Supervisor:
    """Runs one daemon process for the configuration at ``config_path``."""

    def __init__(
        self,
        config_path: Path,
        settings: Settings,
        *,
        factory: Callable[[Shared], TargetFactory] = TargetFactory,
        grace_s: float = GRACE_S,
        watch_interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        """``watch_interval_s``: how often the file is checked for changes (0: never)."""
        self.config_path = config_path
        self.settings = settings
        self.grace_s = grace_s
        self.telemetry = Telemetry()
        self.health = HealthState()
        # Models, decision state and the audit say what runs where: owner-only from the start
        # (an existing directory, e.g. systemd's StateDirectory, keeps its own mode).
        ensure_private_dir(settings.state_dir)
        self.audit = _audit_log(settings)
        self.shared = Shared(self.audit, self.telemetry, self.health, asyncio.Semaphore(1))
        self._make_factory = factory
        self.factory = factory(self.shared)
        self.leadership: Leadership = self.shared.leadership
        self._elector_task: asyncio.Task[None] | None = None
        self._elector_client: client.ApiClient | None = None
        # With sharding.enabled: this process's membership; it runs only the targets it owns.
        self.shard: ShardMember | None = None
        # Reloads and ownership changes both rebuild targets: one at a time.
        self._apply_lock = asyncio.Lock()
        self._targets_stopped = False
        self.targets: dict[str, TargetRuntime] = {}
        self.flags = SignalFlags()
        self.server: TelemetryServer | None = None
        self.last_resort = LastResort(LAST_RESORT_S)
        # A changed file raises the same flag as SIGHUP: one reload path for both.
        self.watcher: ConfigWatcher | None = None
        if watch_interval_s > 0:
            self.watcher = ConfigWatcher(
                config_path, self.flags.reload.set, interval_s=watch_interval_s
            )
            self.watcher.prime()  # the version just loaded is not a change

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; 0 after a clean stop, 1 if start-up failed."""
        self.flags.install()
        agents: list[asyncio.Task[None]] = []
        try:
            try:
                await self._start_server()
                await self._start_leadership()
                async with self._apply_lock:
                    await self._apply(self.settings, initial=True)
            except (ElasticdError, OSError) as error:
                log.error("start-up failed: %s", error, extra=_error_fields(error))
                return 1
            agents.append(asyncio.create_task(self._notify_ready(), name="readiness_notifier"))
            interval = sdnotify.watchdog_interval_s()
            if interval is not None:
                agents.append(
                    asyncio.create_task(sdnotify.watchdog_pinger(interval), name="watchdog_pinger")
                )
            agents.append(asyncio.create_task(self._reloader(), name="config_reloader"))
            agents.append(
                asyncio.create_task(
                    run_idle_janitor(lambda: self.settings, self.shared, self.flags.stop),
                    name="idle_janitor",
                )
            )
            if self.watcher is not None:
                agents.append(asyncio.create_task(self.watcher.run(), name="config_watcher"))
            await self.flags.stop.wait()
            self.last_resort.arm()
            log.info("stopping", extra={"event": "stopping"})
            return 0
        finally:
            await self._shutdown(agents)

    async def run_pass(self, one_pass: OnePass[T]) -> T:
        """``elasticd once``: the same leadership and targets as ``run`` (built by the same
        factory, their agents not started), handed to ``one_pass``, then the same shutdown.

        A target that cannot be built is passed as its error, not fatal to the others.
        """
        try:
            await self._start_leadership()
            failed: dict[str, ElasticdError] = {}
            for index, target in enumerate(self.settings.targets):
                try:
                    self.targets[target.name] = await self.factory.build(self.settings, index)
                    if self.shard is not None:
                        # A pass writes only what this member owns and may write (after a
                        # first epoch's wait, nothing): never another member's targets.
                        gate = self.shard.gate(target.name)
                        self.targets[target.name].reconciler.leadership = gate
                except ElasticdError as error:
                    failed[target.name] = error
            self.health.set_targets(target.name for target in self.settings.targets)
            return await one_pass(self.targets, failed)
        finally:
            await self._shutdown([])

    # -- start and reload ---------------------------------------------------------------------

    async def _start_server(self) -> None:
        config = self.settings.telemetry
        if not config.enabled:
            return
        self.server = TelemetryServer(
            self.telemetry, self.health, host=config.host, port=config.port
        )
        await self.server.start()
        log.info(
            "telemetry at %s",
            self.server.url,
            extra={"event": "telemetry", "url": self.server.url, "port": self.server.port},
        )

    async def _start_leadership(self) -> None:
        """The election agent, before any target: every reconciler asks it before writing."""
        config = self.settings.leader_election
        if self.settings.sharding.enabled:
            # Each reconciler gets its target's gate (_apply); this is the process's own
            # membership, run and released where an election would be.
            self.shard = await open_member(
                self.settings, self.telemetry, self.audit, self._rebalance
            )
            self.leadership = self.shard
        elif not config.enabled:
            self.leadership = AlwaysLeader()
            self.telemetry.set_leader(True)
        else:
            # Its own client: targets come and go with reloads, the Lease stays for the
            # process's life, and it must outlive every target's writes at shutdown.
            namespace = resolve_lease_namespace(config.namespace)
            self._elector_client = await open_kube_client(self.settings)
            self.telemetry.set_leader(False)
            self.leadership = LeaderElector(
                self._elector_client,
                namespace=namespace,
                lease_name=config.lease_name,
                identity=config.identity,
                lease_duration=config.lease_duration,
                renew_deadline=config.renew_deadline,
                retry_period=config.retry_period,
                on_change=self.telemetry.set_leader,
            )
        # Sharded, what belongs to no target (the idle janitor) is written by one member: the
        # ring owner of its own key, with the same handoff rules as a target.
        shared_gate = self.shard.gate(JANITOR_KEY) if self.shard is not None else self.leadership
        self.shared = replace(self.shared, leadership=shared_gate)
        self.factory = self._make_factory(self.shared)
        self._elector_task = asyncio.create_task(self.leadership.run(), name="leader_elector")
        self._elector_task.add_done_callback(_report_elector_end)

    async def _apply(self, settings: Settings, *, initial: bool = False) -> None:
        """Make the running targets match ``settings``: build changed and new targets first
        (any failure leaves everything as it was), then swap them in."""
        built: dict[str, TargetRuntime] = {}
        if self.shard is not None:
            self.shard.track(shard_keys(settings))
        try:
            for index, target in enumerate(settings.targets):
                if not self._placed_here(target.name):
                    continue
                running = self.targets.get(target.name)
                if running is not None and running.fingerprint == fingerprint(settings, target):
                    continue
                built[target.name] = await self.factory.build(settings, index)
                if self.shard is not None:
                    built[target.name].reconciler.leadership = self.shard.gate(target.name)
        except BaseException:
            for runtime in built.values():
                await runtime.close()
            raise
        wanted = {target.name for target in settings.targets if self._placed_here(target.name)}
        retired = [
            runtime for name, runtime in self.targets.items() if name not in wanted or name in built
        ]
        for runtime in retired:
            await runtime.stop(self.grace_s)
            await runtime.close()
            del self.targets[runtime.name]
            if runtime.name not in wanted:
                self.telemetry.forget_target(runtime.name)
        self.settings = settings
        self.health.set_targets(wanted, none_is_ready=self.shard is not None)
        self.telemetry.status.configure(settings)
        for name, runtime in built.items():
            self.targets[name] = runtime
            runtime.start()
        if not initial:
            log.info(
                "configuration reloaded: %d target(s) restarted, %d removed, %d unchanged",
                len(built),
                len([r for r in retired if r.name not in wanted]),
                len(settings.targets) - len(built),
                extra={
                    "event": "reloaded",
                    "restarted": sorted(built),
                    "removed": sorted(r.name for r in retired if r.name not in wanted),
                },
            )

    def _placed_here(self, name: str) -> bool:
        """Whether this process runs the target: always, unless sharded to another member."""
        return self.shard is None or self.shard.owns(name)

    async def _rebalance(self) -> None:
        """The epoch changed: start the targets this member gained, stop those it lost
        (their gates closed already, the moment the epoch was adopted)."""
        async with self._apply_lock:
            if self._targets_stopped:
                return
            # Not a reload: nothing to announce beyond the member's own epoch log line.
            await self._apply(self.settings, initial=True)

    async def _reloader(self) -> None:
        while True:
            await self.flags.reload.wait()
            self.flags.reload.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Load the file again; a bad file is logged with its YAML path and changes nothing."""
        if self.watcher is not None:
            # The version about to be read is the one in force, however the reload was asked
            # for: a SIGHUP after an edit must not be followed by a second, watcher, reload.
            await asyncio.to_thread(self.watcher.prime)
        try:
            settings = await asyncio.to_thread(load_settings, self.config_path)
            if _needs_new_process(self.settings, settings):
                raise ConfigError(
                    "state_dir/audit/leader_election",
                    "changing them needs a restart; keeping the running ones",
                )
            previous_telemetry = self.settings.telemetry
            async with self._apply_lock:
                await self._apply(settings)
        except ElasticdError as error:
            self.telemetry.record_reload(False)
            log.error(
                "configuration reload failed, keeping the running configuration: %s",
                error,
                extra={"event": "reload_failed", **_error_fields(error)},
            )
            return False
        self.telemetry.record_reload(True)
        configure_logging(settings.log_format)
        if settings.telemetry != previous_telemetry:
            await self._restart_server()
        return True

    async def _restart_server(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        try:
            await self._start_server()
        except OSError as error:
            log.error("telemetry server not restarted: %s", error)

    async def _notify_ready(self) -> None:
        """READY=1 once every target's model is in place and its source has answered."""
        # HealthState has no event to await; polling ten times a second until ready is cheap.
        while not self.health.readiness().ready:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        sdnotify.ready()
        sdnotify.status(f"running {len(self.targets)} target(s)")
        log.info("ready", extra={"event": "ready", "targets": sorted(self.targets)})

    # -- stop ---------------------------------------------------------------------------------

    async def _shutdown(self, agents: list[asyncio.Task[None]]) -> None:
        self.health.set_stopping()
        sdnotify.stopping()
        # An ownership change being applied finishes first; none starts after this.
        async with self._apply_lock:
            self._targets_stopped = True
        for agent in agents:
            agent.cancel()
        # Every target gets the same grace period, at once, not one after another.
        await asyncio.gather(
            *(runtime.stop(self.grace_s) for runtime in self.targets.values()),
            return_exceptions=True,
        )
        # Only now, with no write in flight, hand the Lease over: a successor takes over on
        # its next poll instead of waiting out a whole lease duration.
        await self._stop_leadership()
        await asyncio.gather(
            *(runtime.close() for runtime in self.targets.values()), return_exceptions=True
        )
        # Each target released its hold on the shared clients; close whatever is left once.
        await self.shared.clients.close()
        for agent in agents:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await agent
        if self.server is not None:
            await self.server.stop()
        self.audit.close()
        self.flags.uninstall()
        log.info("stopped", extra={"event": "stopped"})

    async def _stop_leadership(self) -> None:
        await self.leadership.release()  # never raises; bounded by the renew deadline
        task = self._elector_task
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=self.grace_s)
            except (TimeoutError, asyncio.CancelledError, Exception):
                task.cancel()
        if self._elector_client is not None:
            with contextlib.suppress(Exception):
                await self._elector_client.close()
            self._elector_client = None


def _report_elector_end(task: asyncio.Task[None]) -> None:
    # The agent returns only after release(); anything else means no more renewals, so this
    # instance stops writing at its renew deadline (is_leader checks it) and says why here.
    if not task.cancelled() and task.exception() is not None:
        log.error("leader election agent died", exc_info=task.exception())


def _audit_log(settings: Settings) -> AuditLog:
    return AuditLog(
        settings.audit.path, max_bytes=settings.audit.max_bytes, backups=settings.audit.backups
    )


def _needs_new_process(old: Settings, new: Settings) -> bool:
    # The audit log is shared by every target and kept open; moving it under running
    # reconcilers would split one history across two files mid-flight. The Lease is held for
    # the process's life: moving it would let two instances lead at once.
    return (
        old.audit != new.audit
        or old.state_dir != new.state_dir
        or old.leader_election != new.leader_election
        or old.sharding != new.sharding
    )


def _error_fields(error: BaseException) -> dict[str, str]:
    if isinstance(error, ConfigError):
        return {"path": error.path, "reason": error.reason}
    return {"reason": str(error)}
