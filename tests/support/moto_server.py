"""moto in server mode on loopback, reached over HTTP by the real aioboto3 client."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass
from typing import Any

from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    server: Any
    url: str

    @classmethod
    def start(cls) -> MotoServer:
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return cls(server=server, url=f"http://127.0.0.1:{port}")

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        self.server.stop()
