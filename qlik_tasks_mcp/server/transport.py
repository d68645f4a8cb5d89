"""Streamable HTTP, safe by default: loopback bind, Host/Origin checks, bearer token beyond loopback."""

from __future__ import annotations

import hmac
import json
from typing import Any

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from qlik_tasks_mcp.client.redact import register_secret
from qlik_tasks_mcp.server.settings import Settings

MCP_PATH = "/mcp"


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the Host and Origin values this deployment expects get through."""
    hosts = _split(settings.allowed_hosts)
    origins = _split(settings.allowed_origins)
    if settings.loopback():
        hosts += ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        origins += ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if not hosts:
        # Bound beyond loopback with no host list: the Host header is whatever name clients use, so only the
        # bearer token guards the door (it is required there, and a rebinding page cannot know it).
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class BearerAuth:
    """Refuses every HTTP request without the configured bearer token before it reaches the MCP app."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "Unauthorized: bearer token required"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="qlik-tasks-mcp"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def http_app(mcp: MCPServer, settings: Settings) -> Any:
    settings.check_http()
    app: ASGIApp = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=settings.stateless,
        transport_security=transport_security(settings),
        host=settings.host,
    )
    if settings.http_token is not None:
        token = settings.http_token.get_secret_value()
        register_secret(token)
        app = BearerAuth(app, token)
    return app


def run_http(mcp: MCPServer, settings: Settings) -> None:
    import uvicorn

    uvicorn.run(http_app(mcp, settings), host=settings.host, port=settings.port, log_level="warning")
