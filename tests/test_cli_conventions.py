"""The conventions a user reaches for: --version, --log-level / ELASTICD_LOG_LEVEL,
ELASTICD_CONFIG and the default config path, shell completion."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.conventions import DEFAULT_CONFIG, resolve_config, resolve_watch_interval
from daemon.runtime.logging import configure_logging, set_default_level

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "config" / "local.yaml"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    set_default_level(logging.INFO)
    root.handlers[:] = handlers
    root.setLevel(level)


def printed(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What ``elasticd ARGS`` prints before exiting 0 (--version, --print-completion)."""
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    assert stopped.value.code in (0, None)
    return capsys.readouterr().out


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert printed(capsys, "--version").strip() == f"elasticd {version('elasticd')}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "validate", str(LOCAL)],
        ["validate", "--log-level", "DEBUG", str(LOCAL)],
    ],
)
def test_log_level_flag_before_or_after_the_command(argv: list[str]) -> None:
    assert main(argv) == 0
    assert logging.getLogger().level == logging.DEBUG


def test_log_level_from_the_environment_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ELASTICD_LOG_LEVEL", "warning")
    assert main(["validate", str(LOCAL)]) == 0
    assert logging.getLogger().level == logging.WARNING
    assert main(["validate", "--log-level", "error", str(LOCAL)]) == 0
    assert logging.getLogger().level == logging.ERROR


def test_a_bad_log_level_in_the_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ELASTICD_LOG_LEVEL", "loud")
    assert main(["validate", str(LOCAL)]) == 2
    assert "ELASTICD_LOG_LEVEL: unknown level 'loud'" in capsys.readouterr().err


def test_the_chosen_level_survives_a_reload_reconfiguring_the_logs() -> None:
    set_default_level(logging.DEBUG)
    configure_logging("json")  # what a reload calls
    assert logging.getLogger().level == logging.DEBUG


def test_config_path_flag_then_environment_then_default() -> None:
    assert resolve_config("a.yaml", {"ELASTICD_CONFIG": "b.yaml"}).path == Path("a.yaml")
    assert resolve_config(None, {"ELASTICD_CONFIG": "b.yaml"}).path == Path("b.yaml")
    assert resolve_config(None, {}).path == Path("/etc/elasticd/elasticd.yaml")


def test_run_names_the_missing_config_and_where_the_path_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.yaml"
    monkeypatch.setenv("ELASTICD_CONFIG", str(missing))
    assert main(["run"]) == 78
    err = capsys.readouterr().err
    assert f"{missing}: no such file" in err
    assert "$ELASTICD_CONFIG" in err


def test_validate_and_explain_read_the_file_run_would_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``validate`` then ``run`` must check the same file: without one named, both take
    ``$ELASTICD_CONFIG`` (then the default path), and so does ``explain``."""
    monkeypatch.setenv("ELASTICD_CONFIG", str(LOCAL))
    assert main(["validate"]) == 0
    assert f"{LOCAL}: ok" in capsys.readouterr().out
    assert main(["explain", "--target", "no-such-target"]) == 2
    assert "no target 'no-such-target'" in capsys.readouterr().err  # the file was read
    missing = tmp_path / "nowhere.yaml"
    monkeypatch.setenv("ELASTICD_CONFIG", str(missing))
    assert main(["validate"]) == 1
    assert "$ELASTICD_CONFIG" in capsys.readouterr().err
    assert main(["explain", "--target", "web"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "$ELASTICD_CONFIG" in err


@pytest.mark.skipif(DEFAULT_CONFIG.exists(), reason=f"{DEFAULT_CONFIG} exists on this machine")
def test_run_without_a_config_reads_the_default_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ELASTICD_CONFIG", raising=False)
    assert main(["run"]) == 78
    err = capsys.readouterr().err
    assert "/etc/elasticd/elasticd.yaml: no such file (the default path" in err


def test_watch_interval_takes_a_duration_and_refuses_a_bad_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert resolve_watch_interval("1m30s", {}) == 90.0
    assert resolve_watch_interval(None, {"ELASTICD_CONFIG_WATCH_INTERVAL": "0"}) == 0.0
    assert main(["run", "--watch-interval", "soon", str(LOCAL)]) == 2
    assert "--watch-interval: invalid duration 'soon'" in capsys.readouterr().err


def test_bash_completion_is_valid_and_knows_the_commands_and_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = printed(capsys, "--print-completion", "bash")
    script = tmp_path / "elasticd.bash"
    script.write_text(text, encoding="utf-8")
    for word in ("backtest", "validate", "run", "explain", "--log-level", "--watch-interval"):
        assert word in text
    # Sourced into a real bash, it registers a completion function for the command.
    shown = subprocess.run(
        ["bash", "-c", f"source {script} && complete -p elasticd"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "elasticd" in shown.stdout


def test_zsh_completion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = printed(capsys, "--print-completion", "zsh")
    assert text.startswith("#compdef elasticd")
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh not installed: the script was generated but not parsed")
    script = tmp_path / "_elasticd"
    script.write_text(text, encoding="utf-8")
    parsed = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True, check=False)
    assert parsed.returncode == 0, parsed.stderr
