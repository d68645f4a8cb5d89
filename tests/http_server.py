"""Serve an ASGI app with uvicorn on a free loopback port inside the test's event loop."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import uvicorn

from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.server.transport import uvicorn_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serving(app: Any, port: int | None = None, settings: Settings | None = None) -> AsyncIterator[str]:
    """With the transport's own bounds (header timeout, connection limit) from `settings` (defaults if None)."""
    port = port or free_port()
    config = uvicorn_config(app, settings or Settings.model_validate({"sandbox": True}), host="127.0.0.1", port=port)
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


class Alternating(httpx2.AsyncBaseTransport):
    """A load balancer in one line: each request goes to the next replica in turn; `sent` says where each went and
    what it was (a JSON-RPC request's method, "batch", or, for a form such as an OAuth token request, its path)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.inner = httpx2.AsyncHTTPTransport()
        self.sent: list[tuple[int, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[len(self.sent) % len(self.ports)]
        self.sent.append((port, _what(request)))
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _what(request: httpx2.Request) -> str:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return request.url.path
    body = json.loads(request.content) if request.content else {}
    return body.get("method", request.method) if isinstance(body, dict) else "batch"
