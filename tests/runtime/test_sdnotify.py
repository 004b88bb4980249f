"""sd_notify client against a real datagram socket bound where systemd would bind it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import sdnotify


def _receive_all(sock: socket.socket) -> list[str]:
    messages: list[str] = []
    sock.setblocking(False)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in a temp dir, advertised through NOTIFY_SOCKET like systemd does."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_no_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.watchdog() is False


def test_messages_arrive_in_order(notify_socket: socket.socket) -> None:
    assert sdnotify.ready()
    assert sdnotify.status("forecasting web\nsecond line")
    assert sdnotify.watchdog()
    assert sdnotify.stopping()
    assert _receive_all(notify_socket) == [
        "READY=1",
        "STATUS=forecasting web second line",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"elasticd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert _receive_all(sock) == ["READY=1"]


def test_missing_socket_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        ("0", None, None),
        ("junk", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            own = os.getpid()
            value = {"self": str(own), "other": str(own + 1)}.get(value, value)
            monkeypatch.setenv(name, value)
    assert sdnotify.watchdog_interval_s() == expected


async def test_pinger_pings_from_the_loop(notify_socket: socket.socket) -> None:
    task = asyncio.create_task(sdnotify.watchdog_pinger(0.02))
    await asyncio.sleep(0.11)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = _receive_all(notify_socket)
    assert set(pings) == {"WATCHDOG=1"}
    # Loose bounds: a busy 2-core CI host may delay a wake-up or two.
    assert 2 <= len(pings) <= 7


async def test_blocked_loop_stops_the_pings(notify_socket: socket.socket) -> None:
    """The reason the pinger lives on the loop: a blocked loop must go silent."""
    task = asyncio.create_task(sdnotify.watchdog_pinger(0.02))
    await asyncio.sleep(0)  # first ping
    _receive_all(notify_socket)
    # Deliberately block the loop, as a wedged daemon would: nothing else may run.
    time.sleep(0.2)  # noqa: ASYNC251
    during_block = _receive_all(notify_socket)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert during_block == []


async def test_pinger_rejects_nonpositive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await sdnotify.watchdog_pinger(0)
