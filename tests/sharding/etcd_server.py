"""A real etcd (Debian's etcd-server) on 127.0.0.1, on free ports, in a temporary directory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def etcd_binary() -> str | None:
    return shutil.which("etcd")


@dataclass
class EtcdServer:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> EtcdServer:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("etcd is not installed (tests/install-servers.sh installs it)")
        data_dir = Path(tempfile.mkdtemp(prefix="elasticd-etcd-"))
        client, peer = free_port(), free_port()
        process = subprocess.Popen(
            [
                binary,
                "--name=test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=test=http://127.0.0.1:{peer}",
                "--log-level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(process, client, data_dir)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"etcd exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", client), timeout=0.2):
                    return server
            except OSError:
                time.sleep(0.05)
        server.stop()
        raise RuntimeError("etcd did not listen within 20 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
