"""A tiny sd_notify client: tells systemd (``Type=notify``) about readiness and liveness.

Speaks the datagram protocol over ``$NOTIFY_SOCKET`` directly rather than through libsystemd:
it is a dozen lines and keeps the daemon free of native dependencies. Every call is a no-op
returning ``False`` when the variable is unset (not started by systemd, e.g. in a container or a
test), so callers never need to check where they run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

_log = logging.getLogger(__name__)

__all__ = [
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval_s",
    "watchdog_pinger",
]


def _socket_address(raw: str) -> str | bytes:
    # '@' marks a Linux abstract socket: the kernel name starts with a NUL byte instead.
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def notify(state: str) -> bool:
    """Send ``state`` (newline-separated ``KEY=value`` pairs) to systemd.

    Returns ``True`` if the datagram was sent, ``False`` if there is no ``NOTIFY_SOCKET`` or the
    send failed. Failures are logged, never raised: a lost notification must not crash the
    daemon (the watchdog will catch a daemon that is really stuck).
    """
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Non-blocking: if systemd's queue is full we drop this message rather than stall
            # the event loop; the next watchdog ping comes soon enough.
            sock.setblocking(False)
            sock.connect(_socket_address(raw))
            sock.send(state.encode())
    except OSError as exc:
        _log.warning("sd_notify to %s failed: %s", raw, exc)
        return False
    return True


def ready() -> bool:
    """Tell systemd start-up is complete (``READY=1``)."""
    return notify("READY=1")


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun (``STOPPING=1``)."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """Ping the service watchdog (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """Set the one-line status shown by ``systemctl status``."""
    # The protocol is line based: a newline in the text would start a bogus assignment.
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_interval_s() -> float | None:
    """How often to ping the watchdog, in seconds: half of ``WatchdogSec``, or ``None`` if off.

    Half the interval leaves one missed ping of slack before systemd acts. ``WATCHDOG_PID``, when
    set, names the process the watchdog is meant for; a child that inherited the environment
    must not ping on its parent's behalf.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2


async def watchdog_pinger(interval_s: float) -> None:
    """Ping the watchdog every ``interval_s`` seconds until cancelled.

    Runs as a task on the daemon's own event loop on purpose: if the loop is blocked (a stuck
    fit, a synchronous call that never returns) the pings stop and systemd restarts the daemon.
    A thread would keep pinging and hide the hang.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    while True:
        # The send is a non-blocking local datagram, so it is safe to call on the loop.
        watchdog()
        await asyncio.sleep(interval_s)
