"""Serve an ASGI app with uvicorn on a free loopback port inside the test's event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
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
