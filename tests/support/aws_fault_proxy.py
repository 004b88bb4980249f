"""A loopback proxy in front of moto that answers chosen AWS operations with an error (or a
canned answer).

moto never throttles and rarely fails, so the proxy stands in for AWS's answers in the two
protocols moto serves ECS and EC2 with: JSON 1.1 (``X-Amz-Target: ...UpdateService``, error
``{"__type": code, "message": ...}``) and EC2 Query (``Action=ModifySpotFleetRequest``, error
``<Response><Errors><Error><Code>...``), with ``Retry-After`` when asked. Everything else is
forwarded to moto unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

__all__ = ["AwsFaultProxy", "fault_proxy"]

HOP_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection"}


@dataclass
class _Fault:
    operation: str
    status: int
    code: str
    retry_after: str | None
    remaining: int
    body: str | None = None


@dataclass
class AwsFaultProxy:
    """Forwards to ``upstream`` except the operations ``fail`` named; ``answered`` lists the
    errors it sent (``"ThrottlingException 400"``)."""

    upstream: str
    url: str = ""
    faults: list[_Fault] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)

    def fail(
        self,
        operation: str,
        *,
        status: int = 400,
        code: str = "ThrottlingException",
        retry_after: float | None = None,
        count: int = 1,
    ) -> None:
        """The next ``count`` calls of ``operation`` (``UpdateService``) get this error."""
        after = f"{retry_after:g}" if retry_after is not None else None
        self.faults.append(_Fault(operation, status, code, after, count))

    def answer(self, operation: str, body: str, *, count: int = 1) -> None:
        """The next ``count`` calls of ``operation`` get ``body`` with 200: a state moto
        cannot produce (a fleet ``modifying``, an on-demand part)."""
        self.faults.append(_Fault(operation, 200, "", None, count, body))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1] if target else _query_action(body)
        for fault in self.faults:
            if fault.remaining > 0 and fault.operation == operation:
                fault.remaining -= 1
                self.answered.append(f"{fault.code or operation} {fault.status}")
                if fault.body is not None:
                    kind = "application/x-amz-json-1.1" if target else "text/xml"
                    return web.Response(status=200, text=fault.body, content_type=kind)
                return _error(fault, json_protocol=bool(target))
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"{self.upstream}{request.path_qs}",
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                data=body,
            ) as answer,
        ):
            payload = await answer.read()
            headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=answer.status, body=payload, headers=headers)


def _query_action(body: bytes) -> str:
    for pair in body.decode(errors="replace").split("&"):
        key, _, value = pair.partition("=")
        if key == "Action":
            return value
    return ""


def _error(fault: _Fault, *, json_protocol: bool) -> web.Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    if json_protocol:
        return web.Response(
            status=fault.status,
            text=json.dumps({"__type": fault.code, "message": "Rate exceeded"}),
            content_type="application/x-amz-json-1.1",
            headers=headers,
        )
    body = (
        f"<Response><Errors><Error><Code>{fault.code}</Code>"
        "<Message>Request limit exceeded.</Message></Error></Errors>"
        "<RequestID>r-1</RequestID></Response>"
    )
    return web.Response(status=fault.status, text=body, content_type="text/xml", headers=headers)


@asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[AwsFaultProxy]:
    """A proxy to ``upstream`` on a free loopback port, for the duration of the block."""
    proxy = AwsFaultProxy(upstream)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()
