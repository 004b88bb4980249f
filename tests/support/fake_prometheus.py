"""A small fake of Prometheus's query API on loopback that can demand credentials and TLS.

The real Prometheus (``prometheus_server.py``) has no auth of its own; this fake answers
``/api/v1/query`` and ``/api/v1/query_range`` with one constant series, and can require a bearer
token or basic auth, serve https with a self-signed CA, and answer scripted faults (a status,
a ``Retry-After``). Every request is recorded, so tests assert what was actually sent.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.support.moto_server import free_port


@dataclass
class Seen:
    """One request as the fake received it; ``at`` is ``time.monotonic()`` (the same clock
    in every process of the machine) and ``status`` what the fake answered."""

    path: str
    authorization: str | None
    at: float = 0.0
    status: int = 200


@dataclass
class Fault:
    """An answer to give instead of data: ``status`` with optional ``Retry-After``."""

    status: int
    retry_after: str | None = None


@dataclass
class FakePrometheus:
    """Set ``bearer`` (a callable, so a test can rotate it) or ``basic`` to require auth."""

    value: float = 42.0
    bearer: Callable[[], str] | None = None
    basic: tuple[str, str] | None = None
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_route("*", "/api/v1/{endpoint}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, host, port, ssl_context=tls).start()
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorised(self, header: str | None) -> bool:
        if self.bearer is not None:
            return header == f"Bearer {self.bearer()}"
        if self.basic is not None:
            user, password = self.basic
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return header == f"Basic {token}"
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        seen = Seen(request.path, header, time.monotonic())
        self.seen.append(seen)
        if not self._authorised(header):
            seen.status = 401
            return web.json_response(
                {"status": "error", "errorType": "unauthorized", "error": "bad credentials"},
                status=401,
            )
        if self.faults:
            fault = self.faults.pop(0)
            seen.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.json_response(
                {"status": "error", "errorType": "unavailable", "error": "slow down"},
                status=fault.status,
                headers=headers,
            )
        form = await request.post()
        endpoint = request.match_info["endpoint"]
        if endpoint == "query":
            at = float(str(form.get("time", "0")))
            data = {
                "resultType": "vector",
                "result": [{"metric": {}, "value": [at, str(self.value)]}],
            }
        else:
            start, end = float(str(form["start"])), float(str(form["end"]))
            step = float(str(form["step"]))
            points = []
            moment = start
            while moment <= end + 1e-9:
                points.append([moment, str(self.value)])
                moment += step
            data = {"resultType": "matrix", "result": [{"metric": {}, "values": points}]}
        return web.json_response({"status": "success", "data": data})


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed CA and a server certificate it signed, for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a CA and a server certificate with ``cryptography`` (already a test dependency
    through moto), so no ``openssl`` binary is needed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elasticd test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
