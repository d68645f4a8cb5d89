"""The in-process link to the sandbox, behaving like a network peer: timeouts fire, drops are transport errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from qlik_tasks_mcp.sandbox.faults import ConnectionDropped

if TYPE_CHECKING:
    from qlik_tasks_mcp.sandbox.core import Sandbox

BuildTenant = Callable[[], tuple["Sandbox", ASGIApp]]


def default_tenant(profile: str = "admin", *, history: bool = False) -> tuple[Sandbox, ASGIApp]:
    # Imported on first use, not with this module: the simulated tenant's modules, its seed data and its spec
    # validators (jsonschema) are most of a `--sandbox` start, and tools/list needs none of them.
    from qlik_tasks_mcp.sandbox.app import build_sandbox

    return build_sandbox(profile=profile, history=history)


class OnDemandTenant:
    """The sandbox tenant, built by `build` the first time a request reaches it (or its state is asked for).

    An ASGI app itself, so it goes wherever the built one would."""

    def __init__(self, build: BuildTenant = default_tenant) -> None:
        self._build = build
        self._built: tuple[Sandbox, ASGIApp] | None = None
        self.builds = 0

    @property
    def built(self) -> bool:
        return self._built is not None

    def tenant(self) -> tuple[Sandbox, ASGIApp]:
        if self._built is None:
            self._built = self._build()
            self.builds += 1
        return self._built

    @property
    def sandbox(self) -> Sandbox:
        return self.tenant()[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.tenant()[1](scope, receive, send)


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
