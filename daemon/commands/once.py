"""``elasticd once --config FILE``: one reconcile pass over every target, then exit.

For a systemd timer, a Kubernetes CronJob or a scheduled job, where a long-running daemon does
not fit. Nothing here decides: the targets are built by the daemon's own factory
(``Supervisor.run_pass``) and each gets exactly one ``Reconciler.tick``, the code a running
daemon calls on every interval. The decision state under ``state_dir`` is loaded before the
tick and saved after it, as the daemon does, so runs a few minutes apart keep their
scale-down stabilisation window and calibration. A saved model younger than
``training.cadence`` is used as is (each run refitting would spend a core on every timer
tick); an older or missing one is fitted and saved, for the next run.

Exit status (also in ``elasticd once --help``):

- 0: every target decided and every write it needed succeeded (a target that was not written
  because another instance holds the Lease, or because it is in forecast-only mode, is fine);
- 1: at least one target failed: it could not be built, its size could not be read, its write
  failed, its demand could not be read (it then held its size), or its pass crashed; or an
  ``idle_release`` check or stop failed; the others still had their pass, and the printed
  lines say which one failed and why;
- 2: the command line (or ``$ELASTICD_LOG_LEVEL``) is wrong;
- 78: the configuration file cannot be used (EX_CONFIG, as ``elasticd run``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.commands.run import load_for_daemon
from daemon.conventions import CONFIG_ENV, DEFAULT_CONFIG, resolve_config
from daemon.errors import ElasticdError
from daemon.runtime.janitor import IdleOutcome, idle_pass
from daemon.runtime.reconciler import TickReport
from daemon.runtime.supervisor import Supervisor
from daemon.runtime.target import TargetRuntime
from daemon.settings import Settings
from daemon.sources.policy import Rule

if TYPE_CHECKING:
    from daemon.commands import SubParsers

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "TargetOutcome", "once", "register"]

log = logging.getLogger("elasticd.once")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78

_EXIT_HELP = (
    "exit status: 0 every target decided and every needed write succeeded; 1 at least one "
    "target failed (not built, size or demand unreadable, write failed) or an idle_release "
    "check or stop failed; 2 bad command line; 78 unusable configuration"
)
# Demand rules under which the decision used the demand it read.
_USABLE = frozenset({Rule.OK.value, Rule.NEGATIVE_CLAMPED.value})


@dataclass(frozen=True, slots=True)
class TargetOutcome:
    """What one target's pass decided and did, as printed."""

    target: str
    ok: bool
    current: int | None = None
    desired: int | None = None
    reason: str | None = None
    written: bool = False
    skipped: str | None = None
    demand: float | None = None
    forecast: float | None = None
    error: str | None = None

    def line(self) -> str:
        """One human-readable line: ``web: 4 -> 6 (forecast) written``."""
        if self.desired is None:
            return f"{self.target}: FAILED {self.error}"
        action = "written" if self.written else "unchanged"
        if self.skipped is not None:
            action = f"not written ({self.skipped})"
        elif self.desired != self.current and not self.written and self.error is None:
            action = "not written (mode is not active)"
        text = f"{self.target}: {self.current} -> {self.desired} ({self.reason}) {action}"
        return text if self.ok else f"{text}; FAILED {self.error}"


def register(subparsers: SubParsers) -> None:
    """Add the ``once`` sub-command."""
    parser = subparsers.add_parser(
        "once",
        help="run one reconcile pass over every target and exit",
        description="Decide and act once for every target, exactly as one tick of "
        "`elasticd run`, print what was decided and exit; for a systemd timer or a "
        "Kubernetes CronJob. The decision state under state_dir carries over between runs.",
        epilog=_EXIT_HELP,
    )
    where = f"(default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})"
    parser.add_argument(
        "--config", "-c", dest="config_option", metavar="FILE", help=f"YAML file {where}"
    )
    parser.add_argument("config", nargs="?", metavar="FILE", help="YAML file (or use --config)")
    parser.add_argument(
        "--output",
        "-o",
        choices=("text", "json"),
        default="text",
        help="text: one line per target; json: one JSON object per target (default: text)",
    )
    parser.set_defaults(handler=run_once_command)


def run_once_command(args: argparse.Namespace) -> int:
    location = resolve_config(args.config_option or args.config)
    name = str(location.path)
    settings = load_for_daemon(location)
    if settings is None:
        return EXIT_CONFIG
    try:
        outcomes, released = asyncio.run(once(Path(name), settings))
    except (ElasticdError, OSError) as error:
        # Only what every target needs can end the pass: the state directory, the Lease.
        log.error("pass failed: %s", error, extra={"event": "once_failed"})
        return EXIT_FAILED
    for outcome in outcomes:
        if args.output == "json":
            print(json.dumps(asdict(outcome), sort_keys=True))
        else:
            print(outcome.line())
    for idle in released:
        if args.output == "json":
            print(json.dumps({"idle_release": asdict(idle)}, sort_keys=True))
        else:
            print(f"idle release {idle.line()}")
    if any(idle.action == "failed" for idle in released):
        return EXIT_FAILED
    return exit_status(outcomes)


def exit_status(outcomes: list[TargetOutcome]) -> int:
    """0 if every target's pass succeeded, else 1."""
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED


async def once(
    config_path: Path, settings: Settings
) -> tuple[list[TargetOutcome], list[IdleOutcome]]:
    """One pass over every target of ``settings``, in the order configured, then one check of
    each ``idle_release`` rule (as the daemon's idle janitor makes it)."""
    # No file watch, no telemetry server: the process lives for one pass.
    supervisor = Supervisor(config_path, settings, watch_interval_s=0)

    async def one_pass(
        built: Mapping[str, TargetRuntime], failed: Mapping[str, ElasticdError]
    ) -> tuple[list[TargetOutcome], list[IdleOutcome]]:
        await _await_leadership(supervisor, settings)
        # Further metrics' companions first: their targets read what they post this pass
        # (a target without its companions' posts holds, as on any missing metric).
        companion = {name: settings.target(name).metric_of is not None for name in built}
        done: dict[str, TargetOutcome] = {}
        for wave in ([n for n in built if companion[n]], [n for n in built if not companion[n]]):
            passes = await asyncio.gather(*(_target_pass(settings, built[n]) for n in wave))
            done.update(zip(wave, passes, strict=True))
        for name, error in failed.items():
            log.error(
                "target not built: %s", error, extra={"target": name, "event": "build_failed"}
            )
            done[name] = TargetOutcome(name, ok=False, error=f"not built: {error}")
        released = await idle_pass(settings, supervisor.shared)
        return [done[target.name] for target in settings.targets], released

    return await supervisor.run_pass(one_pass)


async def _await_leadership(supervisor: Supervisor, settings: Settings) -> None:
    """With leader election on, one chance to take a free Lease before the pass: held by a
    running daemon, the pass decides but does not write (its ticks see ``not leader``)."""
    election = settings.leader_election
    if not election.enabled:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(supervisor.leadership.leading.wait(), 2 * election.retry_period)
    if not supervisor.leadership.is_leader:
        log.warning(
            "another instance holds the lease: deciding without writing",
            extra={"event": "not_leader"},
        )


async def _target_pass(settings: Settings, runtime: TargetRuntime) -> TargetOutcome:
    """A model in place (as the target's agent starts), one tick, the state saved."""
    trainer = runtime.trainer
    if _saved_model_is_fresh(trainer.model_dir, runtime.name, settings.training.cadence):
        trainer.training = trainer.training.model_copy(update={"retrain_on_start": False})
    try:
        await trainer.start()
    except Exception:
        # As in the daemon: the forecaster keeps its fallback, the tick still decides.
        log.exception(
            "model start-up failed; continuing with the fallback forecaster",
            extra={"target": runtime.name},
        )
    try:
        report = await runtime.reconciler.tick()
    except Exception as error:
        log.exception("tick failed unexpectedly", extra={"target": runtime.name})
        return TargetOutcome(runtime.name, ok=False, error=f"tick crashed: {error!r}")
    finally:
        # The daemon saves the tournament's scores when its loop ends; so does a pass.
        runtime.reconciler._save_tournament()
    return outcome_of(runtime.name, report)


def outcome_of(name: str, report: TickReport) -> TargetOutcome:
    """A tick's report as a pass outcome: failed on any error, or on unusable demand."""
    result = report.result
    if result is None or report.capacity is None:
        return TargetOutcome(name, ok=False, demand=report.demand, error=report.error)
    decision = result.decision
    error = report.error
    if error is None and report.demand_rule not in _USABLE:
        error = f"demand unusable ({report.demand_rule}): size held"
    return TargetOutcome(
        name,
        ok=error is None,
        current=decision.current,
        desired=decision.desired,
        reason=decision.reason,
        written=report.scaled is not None and report.scaled.written,
        skipped=report.skipped,
        demand=report.demand,
        forecast=result.forecast,
        error=error,
    )


def _saved_model_is_fresh(model_dir: Path, name: str, cadence_s: float) -> bool:
    """A saved model of ``name`` written less than ``cadence_s`` ago (wall time, as the
    cadence is): a running daemon would not have refitted it yet either."""
    for ext in (".json", ".pkl"):
        try:
            age = time.time() - (model_dir / f"{name}{ext}").stat().st_mtime
        except OSError:
            continue
        return 0.0 <= age < cadence_s
    return False
