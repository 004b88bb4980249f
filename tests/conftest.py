"""Shared test set-up: capped native threads, loopback-only network, moto server."""

from __future__ import annotations

import os

# Cap native pools before numpy/scikit-learn load: on a busy 2-core machine an uncapped
# OpenMP pool turns a sub-second fit into minutes.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# botocore must never find real credentials or regions on the host.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)
os.environ.pop("AWS_PROFILE", None)

import ipaddress  # noqa: E402
import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from tests.support.moto_server import MotoServer  # noqa: E402
from tests.support.prometheus_data import PromData, running_prometheus  # noqa: E402

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_loopback(address: Any) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise RuntimeError(f"test tried to reach {address!r}: only loopback is allowed")
        except ValueError:
            if host not in ("localhost",):
                raise RuntimeError(
                    f"test tried to reach {address!r}: only loopback is allowed"
                ) from None


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_loopback(address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_loopback(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """Any accidental call beyond 127.0.0.1 fails loudly instead of hanging or leaking."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PromData]:
    """One real Prometheus per session, backfilled once (``tests/support/prometheus_data``);
    the source and backtest tests share it instead of starting one each."""
    yield from running_prometheus()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server per test session, on loopback; reset it between tests with ``reset()``."""
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server: MotoServer) -> str:
    """The URL of a freshly reset moto server."""
    moto_server.reset()
    return moto_server.url
