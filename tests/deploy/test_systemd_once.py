"""The timer-driven units (``elasticd once``): verify is silent, the sandbox is the daemon's, and
the contract the command relies on holds (a oneshot that runs ``once``, in the daemon's state
directory, never beside the daemon). Offline: no running systemd is needed.

As in test_systemd.py, verify runs on a temp copy whose ExecStart names this venv's real
``elasticd`` (verify checks that the binary exists; /usr/bin/elasticd is not installed here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "systemd" / "elasticd-once.service"
TIMER = ROOT / "systemd" / "elasticd-once.timer"
DAEMON = ROOT / "systemd" / "elasticd.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
)
ELASTICD = Path(sys.executable).parent / "elasticd"
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
    )


def _section(path: Path, name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == f"[{name}]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@needs_systemd_analyze
def test_verify_prints_nothing(tmp_path: Path) -> None:
    assert ELASTICD.exists(), "install the project into the venv first (make install)"
    unit = SERVICE.read_text()
    assert "ExecStart=/usr/bin/elasticd once " in unit
    (tmp_path / SERVICE.name).write_text(
        unit.replace("ExecStart=/usr/bin/elasticd ", f"ExecStart={ELASTICD} ")
    )
    shutil.copy(TIMER, tmp_path / TIMER.name)

    result = _analyze("verify", "--man=no", f"./{SERVICE.name}", f"./{TIMER.name}", cwd=tmp_path)

    # Unknown keys and bad values only warn (exit 0): any output at all is a failure.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@needs_systemd_analyze
def test_security_exposure_is_at_most_two(tmp_path: Path) -> None:
    result = _analyze("security", "--offline=true", "--no-pager", str(SERVICE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"Overall exposure level for elasticd-once\.service: (\d+\.\d+)", result.stdout
    )
    assert match, result.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_pass_runs_once_in_the_daemons_state_and_sandbox() -> None:
    once, daemon = _section(SERVICE, "Service"), _section(DAEMON, "Service")
    assert once["Type"] == ["oneshot"]
    assert once["ExecStart"] == ["/usr/bin/elasticd once --config /etc/elasticd/elasticd.yaml"]
    # The daemon's own config, state (stabilisation window, models) and credentials file.
    assert daemon["ExecStart"] == [once["ExecStart"][0].replace(" once ", " run ")]
    for key in ("StateDirectory", "ConfigurationDirectory", "EnvironmentFile", "WorkingDirectory"):
        assert once[key] == daemon[key], key
    # Every hardening line of the daemon, unchanged: a pass does the same calls.
    lifecycle = {"Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "ExecStart"}
    lifecycle |= {"ExecReload", "TimeoutStopSec"}
    for key, value in daemon.items():
        if key not in lifecycle:
            assert once.get(key) == value, key
    # Two writers of one target undo each other's writes.
    assert _section(SERVICE, "Unit")["Conflicts"] == ["elasticd.service"]


def test_the_timer_starts_the_pass_periodically() -> None:
    timer = _section(TIMER, "Timer")
    assert "Unit" not in timer  # the default: the service of the same name
    assert timer["OnUnitActiveSec"] and timer["OnBootSec"]
    assert _section(TIMER, "Install")["WantedBy"] == ["timers.target"]
