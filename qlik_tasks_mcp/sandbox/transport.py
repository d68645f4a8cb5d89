"""The in-process link to the sandbox, behaving like a network peer: timeouts fire, drops are transport errors."""

from __future__ import annotations

import anyio
import httpx
from starlette.types import ASGIApp

from qlik_tasks_mcp.sandbox.faults import ConnectionDropped


class SandboxTransport(httpx.AsyncBaseTransport):
    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        read = timeout.get("read") if isinstance(timeout, dict) else None
        try:
            with anyio.fail_after(read if read is not None else None):
                response = await self._inner.handle_async_request(request)
                await response.aread()
                return response
        except TimeoutError:
            raise httpx.ReadTimeout("sandbox answered too slowly", request=request) from None
        except ConnectionDropped:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request) from None

    async def aclose(self) -> None:
        await self._inner.aclose()
