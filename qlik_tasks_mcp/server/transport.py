"""Streamable HTTP, safe by default: loopback bind, Host/Origin checks, bearer token beyond loopback."""

from __future__ import annotations

import asyncio
import hmac
import json
import resource
import sys
from typing import Any, TextIO

import h11
import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from qlik_tasks_mcp.client.redact import register_secret
from qlik_tasks_mcp.server.app import TaskServer
from qlik_tasks_mcp.server.probes import Probes, RequestLog
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools.approval import APPROVE_PATH

MCP_PATH = "/mcp"
# Longer than clients keep an idle connection in their pool (httpx: 5 s), so the client ends an idle connection,
# never the server: a request sent on a connection the server is closing at that moment fails with a read error,
# which 200 busy sessions met a few times at 5 s. (The header timeout still bounds an idle one.)
KEEP_ALIVE_SECONDS = 15
# The most a request line plus headers may take; h11 answers 400 past it.
HEADER_LIMIT_BYTES = 16 * 1024
LOOPBACK_ORIGIN_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def allowed_origins(settings: Settings) -> list[str]:
    """The configured origins and, on loopback, this server's own (its port only: another local page is foreign)."""
    origins = _split(settings.allowed_origins)
    if settings.loopback():
        origins += [f"http://{host}:{settings.port}" for host in LOOPBACK_ORIGIN_HOSTS]
    return origins


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the Host and Origin values this deployment expects get through."""
    hosts = _split(settings.allowed_hosts)
    origins = allowed_origins(settings)
    if settings.loopback():
        hosts += ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    if not hosts:
        # Bound beyond loopback with no host list: the Host header is whatever name clients use, so only the
        # bearer token guards the door (it is required there, and a rebinding page cannot know it).
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class OriginGuard:
    """Refuses MCP requests from a browser page of any origin but the allowed ones, whatever the Host check does.

    A request without Origin (a non-browser client, or same-origin navigation) passes. Only the MCP endpoint is
    guarded here: other routes (the approval page) check their own requests.
    """

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self._origins = {origin.encode() for origin in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = dict(scope.get("headers") or []).get(b"origin") if scope["type"] == "http" else None
        if origin is None or origin in self._origins or not scope.get("path", "").startswith(MCP_PATH):
            await self.app(scope, receive, send)
            return
        body = b"Invalid Origin header"
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """Refuses every HTTP request without the configured bearer token before it reaches the MCP app."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The approval page is for a browser, which has no bearer token; its own id and CSRF checks guard it.
        if scope["type"] != "http" or scope.get("path", "").startswith(APPROVE_PATH):
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


def http_app(mcp: MCPServer, settings: Settings, *, log: TextIO | None = None) -> Any:
    """The ASGI app: request log, then the probes (no token), then the Origin, token and Host checks and MCP.
    `log`: where the request lines go (stderr by default)."""
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
    backend = mcp.backend if isinstance(mcp, TaskServer) else None
    return RequestLog(Probes(OriginGuard(app, allowed_origins(settings)), backend), log)


BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with two bounds it lacks: connections beyond a limit are answered 503 and closed
    at once, and a connection that has not sent a complete request head within the header timeout is closed.
    uvicorn's keep-alive timer alone is cancelled by any byte, so a client trickling a header never ends."""

    header_timeout: float = 10.0
    max_connections: int = 100
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(BUSY)
            transport.close()
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._close_if_still_waiting)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _close_if_still_waiting(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedH11]:
    class Configured(GuardedH11):
        header_timeout = settings.http_header_timeout_seconds
        max_connections = settings.http_max_connections

    return Configured


def uvicorn_config(app: Any, settings: Settings, *, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    """uvicorn with every bound set: idle keep-alive, header size and time, connections and concurrent requests."""
    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level="warning",
        lifespan="on",
        http=guarded_protocol(settings),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=HEADER_LIMIT_BYTES,
        # uvicorn counts the asking connection too, so one more than the connections GuardedH11 admits.
        limit_concurrency=settings.http_max_connections + 1,
    )


def listen_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{MCP_PATH}"


class AnnouncingServer(uvicorn.Server):
    """Says where it listens once the socket is bound (not before: a port in use must not be announced)."""

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            url = listen_url(self.config.host, self.config.port)
            print(f"qlik-tasks-mcp: listening on {url} (streamable HTTP)", file=sys.stderr, flush=True)


# Besides the connections: the tenant's and the store's sockets, log files, the interpreter's own.
SPARE_DESCRIPTORS = 128


def descriptors_for(settings: Settings) -> Settings:
    """Raise this process's open-file limit to what the connection cap needs (up to the hard limit); if the hard
    limit is lower, lower the cap to fit and say so, rather than fail on accept() under load."""
    needed = settings.http_max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        fitting = max(4, soft - SPARE_DESCRIPTORS)
        print(
            f"qlik-tasks-mcp: the open-file limit ({soft}) allows {fitting} HTTP connections, not "
            f"QLIK_MCP_HTTP_MAX_CONNECTIONS={settings.http_max_connections}; serving at most {fitting} "
            "(raise it with ulimit -n)",
            file=sys.stderr,
            flush=True,
        )
        return settings.model_copy(update={"http_max_connections": fitting})
    return settings


def run_http(mcp: MCPServer, settings: Settings) -> None:
    settings = descriptors_for(settings)
    AnnouncingServer(uvicorn_config(http_app(mcp, settings), settings)).run()
