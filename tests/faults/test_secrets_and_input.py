"""Fault matrix, secrets and bad input: the real CLI and daemon as subprocesses.

- A Prometheus URL with ``user:password@`` and a token parameter never shows its secrets:
  not on stderr, in the audit, on /metrics or /readyz, whether Prometheus refuses the
  connection or hangs until the timeout, nor in the config errors of ``validate`` and ``run``.
- Every unusable input file (nested 100,000 deep, an alias bomb, binary, not UTF-8, empty, a
  directory, unreadable) is one line on stderr naming the file, with the documented status:
  ``validate`` 1, ``run`` 78 (EX_CONFIG), ``backtest`` 65 (EX_DATAERR) for a trace and 78 for
  its ``--config``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon import cli
from daemon.audit import AuditLog, AuditRecord
from daemon.commands import validate as validate_command
from daemon.errors import ConfigError, InputError
from daemon.redact import redact_text, redact_url, register_secret
from daemon.runtime.logging import JsonFormatter, TextFormatter
from tests.e2e.daemon_process import REPO, DaemonProcess
from tests.support.fake_kube import FakeKubeProcess, write_kubeconfig
from tests.support.fake_prometheus import FakePrometheus, Fault
from tests.support.moto_server import free_port

SECRETS = ("s3cret", "t0psecret")

# --- secrets --------------------------------------------------------------------------


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[FakeKubeProcess]:
    seed = tmp_path / "objects.yaml"
    seed.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"replicas": 3},
            }
        ),
        encoding="utf-8",
    )
    fake = FakeKubeProcess.spawn(seed_file=seed)
    yield fake
    fake.stop()


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


def _secret_url(port: int) -> str:
    return f"http://promuser:{SECRETS[0]}@127.0.0.1:{port}/prom?token={SECRETS[1]}"


def _daemon_config(tmp_path: Path, kubeconfig: Path, refused: int, hanging: int) -> Path:
    target = {
        "kind": "deployment",
        "namespace": "shop",
        "workload": "web",
        "query": "sum(rate(http_requests_total[5m]))",
        "unit_capacity": 10,
        "lead_time": "60s",
        "min_units": 1,
        "max_units": 10,
        "mode": "active",
    }
    config = {
        "interval": "1s",
        "state_dir": str(tmp_path / "state"),
        "log_format": "json",
        "telemetry": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "kubernetes": {"kubeconfig": str(kubeconfig), "in_cluster": False},
        "sources": {
            "refused": {"type": "prometheus", "url": _secret_url(refused), "timeout": "1s"},
            "hanging": {"type": "prometheus", "url": _secret_url(hanging), "timeout": "1s"},
        },
        "targets": [
            {"name": "web", "source": "refused", **target},
            {"name": "api", "source": "hanging", **target},
        ],
    }
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:  # /readyz answers 503 while a source is down
        return str(error.read().decode())


def test_a_password_in_the_prometheus_url_never_leaves_the_process(
    tmp_path: Path, fake_kube: FakeKubeProcess, hanging_port: int
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)
    config = _daemon_config(tmp_path, kubeconfig, free_port(), hanging_port)
    daemon = DaemonProcess(config)
    try:
        telemetry = daemon.wait_event("telemetry", timeout=60)
        base = str(telemetry["url"]).rstrip("/")
        # Both failure kinds have been logged: a refused connection and a timeout.
        daemon.wait_for(
            lambda: (
                "Connect call failed" in "".join(daemon.raw)
                or "Cannot connect" in "".join(daemon.raw)
            ),
            timeout=60,
            what="a refused-connection log line",
        )
        daemon.wait_for(
            lambda: "timed out" in "".join(daemon.raw), timeout=60, what="a timeout log line"
        )
        metrics = _get(f"{base}/metrics")
        ready = _get(f"{base}/readyz")
    finally:
        code, _ = daemon.stop(timeout=30)
    stderr = "".join(daemon.raw)
    audit_file = tmp_path / "state" / "decisions.jsonl"
    audit = audit_file.read_text(encoding="utf-8") if audit_file.exists() else ""
    # The URL is still shown, host and port, so the operator knows which one failed.
    assert f"promuser:***@127.0.0.1:{hanging_port}" in stderr
    assert "elasticd_" in metrics
    for secret in SECRETS:
        assert secret not in stderr
        assert secret not in audit
        assert secret not in metrics
        assert secret not in ready
    assert code == 0, daemon.tail()


def _cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return lines[0]


BAD_URL_CONFIG = f"""
sources:
  prom:
    type: prometheus
    url: htp://promuser:{SECRETS[0]}@127.0.0.1:9090/?token={SECRETS[1]}
targets:
  - name: web
    kind: deployment
    namespace: shop
    workload: web
    source: prom
    query: sum(up)
    unit_capacity: 10
    lead_time: 60s
"""


def test_config_errors_do_not_show_the_password(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_URL_CONFIG, encoding="utf-8")
    validate = _cli("validate", str(path))
    run = _cli("run", "--config", str(path))
    assert validate.returncode == 1
    assert run.returncode == 78
    for result in (validate, run):
        line = _one_line(result)
        assert str(path) in line and "sources.prom.url" in line and "promuser:***@" in line
        for secret in SECRETS:
            assert secret not in result.stderr + result.stdout


# --- bad input files ------------------------------------------------------------------


def _deep(path: Path) -> None:
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")


def _bomb(path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    # Anchors first (an alias must follow its anchor), then one use: 9**10 values expanded.
    lines.append("targets:\n  - name: web\n    x: *a9")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def _latin1(path: Path) -> None:
    path.write_bytes("timestamp,value\n2026-01-01T00:00:00Z,1 # caf\xe9\n".encode("latin-1"))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _directory(path: Path) -> None:
    path.mkdir()


def _unreadable(path: Path) -> None:
    path.write_text("targets: []\n", encoding="utf-8")
    path.chmod(0)


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "deep": (_deep, "nested more than"),
    "bomb": (_bomb, "aliases expand to more than"),
    "binary": (_binary, "binary file"),
    "latin1": (_latin1, "not UTF-8"),
    "empty": (_empty, "no settings"),
    "directory": (_directory, "is a directory"),
    "unreadable": (_unreadable, "permission denied"),
}


def _prefix(case: str) -> tuple[str, ...]:
    """Root reads any file: drop the capabilities that let it, so 0000 is unreadable."""
    if case != "unreadable" or os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    caps = "-dac_override,-dac_read_search"
    return (setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}")


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_config_file_is_one_line_and_the_config_status(tmp_path: Path, case: str) -> None:
    make, reason = BAD_FILES[case]
    path = tmp_path / f"{case}.yaml"
    make(path)
    prefix = _prefix(case)
    validate = _cli("validate", str(path), prefix=prefix)
    assert validate.returncode == 1
    line = _one_line(validate)
    assert str(path) in line and reason in line
    run = _cli("run", "--config", str(path), prefix=prefix)
    assert run.returncode == 78
    record = json.loads(_one_line(run))
    assert record["event"] == "config_error" and record["file"] == str(path)
    assert reason in record["message"]


TRACE_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "binary": (_binary, "not UTF-8"),
    "latin1": (_latin1, "not UTF-8"),
    "empty": (_empty, "empty file"),
    "directory": (_directory, "is a directory"),
    "unreadable": (_unreadable, "permission denied"),
}


def _backtest(trace: Path, tmp_path: Path, *extra: str, prefix: tuple[str, ...] = ()) -> Any:
    return _cli(
        "backtest",
        str(trace),
        "--unit-capacity",
        "1",
        "--lead-time",
        "5m",
        "--warmup",
        "1h",
        "--decisions-out",
        str(tmp_path / "d.csv"),
        *extra,
        prefix=prefix,
    )


@pytest.mark.parametrize("case", sorted(TRACE_CASES))
def test_a_bad_trace_is_one_line_and_the_data_status(tmp_path: Path, case: str) -> None:
    make, reason = TRACE_CASES[case]
    path = tmp_path / f"{case}.csv"
    make(path)
    result = _backtest(path, tmp_path, prefix=_prefix(case))
    assert result.returncode == 65
    line = _one_line(result)
    assert str(path) in line and reason in line


def test_a_trace_with_a_nul_byte_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"timestamp,value\n2026-01-01T00:00:00Z,1\x00\n")
    result = _backtest(path, tmp_path)
    assert result.returncode == 65
    assert str(path) in _one_line(result)


@pytest.mark.parametrize("case", ["deep", "bomb", "binary"])
def test_a_bad_backtest_config_is_one_line_and_the_config_status(tmp_path: Path, case: str) -> None:
    make, reason = BAD_FILES[case]
    config = tmp_path / f"{case}.yaml"
    make(config)
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,value\n2026-01-01T00:00:00Z,1\n2026-01-01T00:05:00Z,2\n")
    result = _backtest(trace, tmp_path, "--config", str(config))
    assert result.returncode == 78
    line = _one_line(result)
    assert str(config) in line and reason in line


# --- the redaction itself -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@prom:9090/x", "http://user:***@prom:9090/x"),
        ("https://t0psecret@prom/x", "https://***@prom/x"),
        ("http://prom/x?token=s3cret&q=up", "http://prom/x?token=***&q=up"),
        (
            "https://b/k?X-Amz-Signature=s3cret&X-Amz-Date=1",
            "https://b/k?X-Amz-Signature=***&X-Amz-Date=1",
        ),
        ("http://u:p%40ss@[::1]:9090/", "http://u:***@[::1]:9090/"),
        ("http://prom:9090/api/v1/query", "http://prom:9090/api/v1/query"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_secrets_inside_messages() -> None:
    register_secret("registered-secret-value")
    text = (
        "timed out: http://user:s3cret@prom:9090/api/v1/query; "
        "repr URL('https://t0psecret@prom/'); header Authorization: Bearer abc.def-ghi; "
        "form password=s3cret&api_key=t0psecret; file said registered-secret-value"
    )
    shown = redact_text(text)
    for secret in (*SECRETS, "abc.def-ghi", "registered-secret-value"):
        assert secret not in shown
    assert "http://user:***@prom:9090/api/v1/query" in shown


def test_redact_text_leaves_config_errors_readable() -> None:
    message = "sources.prom.basic_auth.password: must be set; password_file: no such file"
    assert redact_text(message) == message


def test_log_formatters_redact_messages_fields_and_tracebacks() -> None:
    try:
        raise ValueError("connect to http://user:s3cret@prom:9090 failed")
    except ValueError:
        record = logging.LogRecord(
            "elasticd", logging.ERROR, __file__, 1, "read %s failed", (_secret_url(1),), None
        )
        record.exc_info = sys.exc_info()
    record.url = "http://user:s3cret@prom:9090"
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert "user:***@" in line and "ValueError" in line
        for secret in SECRETS:
            assert secret not in line


def test_the_audit_redacts_reasons_and_errors(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "decisions.jsonl")
    record = AuditRecord(
        target="web",
        reason="source error: http://user:s3cret@prom:9090",
        error=f"read failed: {_secret_url(9090)}",
    )
    line = json.loads(audit.encode(record))
    assert "user:***@prom" in line["reason"] and "token=***" in line["error"]
    for secret in SECRETS:
        assert secret not in json.dumps(line)


@pytest.mark.parametrize(
    ("error", "status"),
    [(ConfigError("targets[0].x", "bad"), 78), (InputError("t.csv: not UTF-8 text"), 65)],
)
def test_main_turns_an_input_error_any_command_lets_through_into_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    status: int,
) -> None:
    def failing(args: object) -> int:
        raise error

    monkeypatch.setattr(validate_command, "run", failing)
    assert cli.main(["validate", "x.yaml"]) == status
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"elasticd validate: {'invalid configuration: ' if status == 78 else ''}{error}"
    ]


# --- the daemon authenticates, and follows a rotated token ----------------------------


async def test_the_daemon_sends_the_token_file_and_follows_its_rotation(
    tmp_path: Path, fake_kube: FakeKubeProcess
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    current = {"token": "first-token"}
    prometheus = FakePrometheus(bearer=lambda: current["token"])
    url = await prometheus.start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)
    config = yaml.safe_load(_daemon_config(tmp_path, kubeconfig, 1, 1).read_text())
    config["sources"] = {
        "prom": {"type": "prometheus", "url": url, "bearer_token_file": str(token_file)}
    }
    config["targets"] = [{**config["targets"][0], "source": "prom", "mode": "forecast-only"}]
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    def answered(token: str) -> bool:
        return any(seen.authorization == f"Bearer {token}" for seen in prometheus.seen)

    daemon = DaemonProcess(path, env={"PROMETHEUS_BEARER_TOKEN": "env-token-unused"})
    try:
        await _until(lambda: answered("first-token"), daemon, "a request with the first token")
        staged = tmp_path / "token.new"
        staged.write_text("second-token\n")
        os.replace(staged, token_file)
        current["token"] = "second-token"
        await _until(lambda: answered("second-token"), daemon, "a request with the new token")
    finally:
        # In a thread: this loop serves the fake Prometheus the daemon reads while it stops.
        code, _ = await asyncio.to_thread(daemon.stop, 30)
        await prometheus.stop()
    assert not any(seen.authorization == "Bearer env-token-unused" for seen in prometheus.seen)
    assert code == 0, daemon.tail()
    stderr = "".join(daemon.raw)
    assert "first-token" not in stderr and "second-token" not in stderr


async def _until(predicate: Callable[[], bool], daemon: DaemonProcess, what: str) -> None:
    # Polls on the loop, which serves the fake Prometheus meanwhile; bounded, not timed.
    for _ in range(1200):
        if predicate():
            return
        assert daemon.process.poll() is None, daemon.tail()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not seen in 60 s; log tail:\n{daemon.tail()}")


async def test_the_daemon_sends_nothing_to_prometheus_until_retry_after_passes(
    tmp_path: Path, fake_kube: FakeKubeProcess
) -> None:
    prometheus = FakePrometheus()
    url = await prometheus.start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_kube.url)
    config = yaml.safe_load(_daemon_config(tmp_path, kubeconfig, 1, 1).read_text())
    config["sources"] = {"prom": {"type": "prometheus", "url": url}}
    # Two targets on one Prometheus: the hold applies to both.
    config["targets"] = [
        {**target, "source": "prom", "mode": "forecast-only"} for target in config["targets"]
    ]
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    hold = 4.0

    def served(status: int) -> list[float]:
        return [seen.at for seen in prometheus.seen if seen.status == status]

    daemon = DaemonProcess(path)
    try:
        # Steady state first: both targets have trained and tick every second.
        await _until(lambda: len(daemon.events("trained")) >= 2, daemon, "two trained targets")
        await _until(lambda: len(served(200)) >= 10, daemon, "ten answered queries")
        prometheus.faults.append(Fault(429, f"{hold:g}"))
        await _until(lambda: bool(served(429)), daemon, "the 429")
        throttled_at = served(429)[0]
        await _until(
            lambda: any(at > throttled_at + hold for at in served(200)),
            daemon,
            "a query after the hold",
        )
    finally:
        code, _ = await asyncio.to_thread(daemon.stop, 30)
        await prometheus.stop()
    during = [seen.at for seen in prometheus.seen if throttled_at < seen.at < throttled_at + hold]
    assert during == [], f"{len(during)} requests inside the {hold:g} s Retry-After"
    assert code == 0, daemon.tail()
    assert "retry after" in "".join(daemon.raw)
