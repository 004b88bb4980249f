"""A loopback fake of the two EMR calls moto 5.2 lacks: Get/PutManagedScalingPolicy.

It speaks EMR's own wire protocol (JSON 1.1, ``X-Amz-Target: ElasticMapReduce.<Operation>``),
so the real aioboto3 client talks to it unchanged, and answers errors the way EMR does:
``InvalidRequestException`` (400) for an unknown cluster, ``ThrottlingException`` (400) with
the request refused, and a 5xx on demand. Everything it was sent is kept in ``calls``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.moto_server import free_port


@dataclass
class FakeEmr:
    policies: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """cluster id -> its ManagedScalingPolicy (None: a cluster without one)."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """operation -> (status, error code) answered to its next requests, one each, first first."""
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def writes(self) -> list[dict[str, Any]]:
        return [body for operation, body in self.calls if operation == "PutManagedScalingPolicy"]

    async def _handle(self, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        body: dict[str, Any] = json.loads(await request.read() or b"{}")
        self.calls.append((operation, body))
        pending = self.faults.get(operation)
        if pending:
            status, code = pending.pop(0)
            return _error(status, code, f"injected {code}")
        cluster = str(body.get("ClusterId", ""))
        if cluster not in self.policies:
            return _error(400, "InvalidRequestException", f"Cluster id '{cluster}' is not valid.")
        if operation == "GetManagedScalingPolicy":
            policy = self.policies[cluster]
            answer = {"ManagedScalingPolicy": copy.deepcopy(policy)} if policy else {}
            return _json(200, answer)
        if operation == "PutManagedScalingPolicy":
            limits = body["ManagedScalingPolicy"]["ComputeLimits"]
            if int(limits["MinimumCapacityUnits"]) > int(limits["MaximumCapacityUnits"]):
                return _error(400, "ValidationException", "minimum above maximum")
            self.policies[cluster] = copy.deepcopy(body["ManagedScalingPolicy"])
            return _json(200, {})
        return _error(400, "UnknownOperationException", operation)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/x-amz-json-1.1"
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"__type": code, "message": message})
