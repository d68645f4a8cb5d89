"""What a load balancer and an operator need from the HTTP transport: /healthz and /readyz, and one JSON line per
request on stderr with a request id.

The probes need no bearer token and say nothing but ok/fails: no tenant URL, no error text, no version.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.store import StoreUnavailable

if TYPE_CHECKING:
    from qlik_tasks_mcp.server.app import Backend

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
# A load balancer asks every few seconds: the tenant is asked at most this often (it costs a request of tier 1).
READY_CACHE_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 5.0
# A caller's X-Request-Id is kept only when it is short and plain (it goes into a log line as is).
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


async def _json(send: Send, status: int, body: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Probes:
    """Answers GET /healthz (the process serves) and GET /readyz (the tenant and the store answer) before the
    bearer-token check; every other request goes on to `app`."""

    def __init__(self, app: ASGIApp, backend: Backend | None) -> None:
        self.app = app
        self.backend = backend
        self._ready: tuple[float, int, dict[str, str]] | None = None
        self._lock = anyio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path not in (HEALTH_PATH, READY_PATH):
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _json(send, 405, {"status": "method not allowed"})
            return
        if path == HEALTH_PATH:
            await _json(send, 200, {"status": "ok"})
            return
        status, body = await self.readiness()
        await _json(send, status, body)

    async def readiness(self) -> tuple[int, dict[str, str]]:
        async with self._lock:
            now = time.monotonic()
            if self._ready is None or now - self._ready[0] >= READY_CACHE_SECONDS:
                tenant, store = await self._tenant(), await self._store()
                ready = tenant == "ok" and store == "ok"
                body = {"status": "ready" if ready else "not ready", "tenant": tenant, "store": store}
                self._ready = (time.monotonic(), 200 if ready else 503, body)
            return self._ready[1], self._ready[2]

    async def _tenant(self) -> str:
        if self.backend is None:
            return "fails"
        with anyio.move_on_after(PROBE_TIMEOUT_SECONDS):
            # With QLIK_MCP_AUTH=oauth nobody is signed in here: the tenant's 401 to no token is its answer (asked
            # of the spaces list, whose spec declares that 401).
            anonymous = self.backend.sign_in is not None
            try:
                if anonymous:
                    await self.backend.qlik.json(
                        "GET", "/api/v1/spaces", tier=Tier.T1, params={"limit": 1}, headers={"Authorization": "Bearer"}
                    )
                else:
                    await self.backend.qlik.json("GET", "/api/v1/users/me", tier=Tier.T1)
            except ApiError as exc:
                # A refusal for the rate tier is an answer: the tenant is there, only busy.
                return "ok" if exc.status == 429 or (anonymous and exc.status == 401) else "fails"
            return "ok"
        return "fails"

    async def _store(self) -> str:
        if self.backend is None:
            return "fails"
        with anyio.move_on_after(PROBE_TIMEOUT_SECONDS):
            try:
                await self.backend.store.ping()
            except StoreUnavailable:
                return "fails"
            return "ok"
        return "fails"


class RequestLog:
    """One JSON line per HTTP request on stderr when it ends: time, request id (the caller's X-Request-Id when
    plain, else a new one; sent back as X-Request-Id), method, path (no query), status, milliseconds."""

    def __init__(self, app: ASGIApp, stream: TextIO | None = None) -> None:
        self.app = app
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status = [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._write(
                {
                    "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
                    "event": "http_request",
                    "request_id": request_id,
                    "method": scope.get("method", ""),
                    "path": scope.get("path", "")[:200],
                    "status": status[0],
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )

    def _write(self, line: dict[str, Any]) -> None:
        stream = self.stream or sys.stderr
        try:
            stream.write(json.dumps(line, ensure_ascii=True) + "\n")
            stream.flush()
        except (OSError, ValueError):
            return  # a closed stderr must not fail the request
