"""Streamable HTTP: loopback by default, bearer token, Host/Origin checks, stateless replicas sharing tokens,
bounds on slow and excess connections, JSON-RPC errors the spec requires."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import anyio
import anyio.abc
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from pydantic import SecretStr

from qlik_tasks_mcp.server.settings import ConfigError, Settings
from qlik_tasks_mcp.server.transport import http_app
from tests.conftest import data, make_harness
from tests.http_server import free_port, serving

pytestmark = pytest.mark.anyio
TOKEN = "http-token-0123456789abcdef"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def settings(**extra: object) -> Settings:
    return Settings(sandbox=True, transport="http", **extra)  # type: ignore[arg-type]


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="QLIK_MCP_HTTP_TOKEN"):
        settings(host="0.0.0.0").check_http()  # noqa: S104 - the refusal is what is tested
    with pytest.raises(ConfigError, match="at least 16"):
        settings(host="0.0.0.0", http_token=SecretStr("short")).check_http()  # noqa: S104
    settings(host="0.0.0.0", http_token=SecretStr(TOKEN)).check_http()  # noqa: S104
    settings().check_http()
    assert Settings.model_validate({}).host == "127.0.0.1"


async def test_loopback_serves_mcp_and_refuses_foreign_hosts_and_origins() -> None:
    h = make_harness()
    async with serving(http_app(h.mcp, settings())) as base:
        async with Client(f"{base}/mcp") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "list_reload_tasks" in names
        async with httpx.AsyncClient() as raw:
            rebound = await raw.post(f"{base}/mcp", json=INIT, headers=HEADERS | {"Host": "evil.example.com"})
            assert rebound.status_code in (400, 403, 421)
            cross = await raw.post(f"{base}/mcp", json=INIT, headers=HEADERS | {"Origin": "https://evil.example.com"})
            assert cross.status_code in (400, 403)
            same = await raw.post(f"{base}/mcp", json=INIT, headers=HEADERS)
            assert same.status_code == 200
    await h.backend.aclose()


async def test_token_is_required_and_no_tool_is_reached_without_it() -> None:
    h = make_harness()
    task_id = next(iter(h.sandbox.tables["reload_tasks"]))
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "delete_reload_task", "arguments": {"task_id": task_id}},
    }
    async with serving(http_app(h.mcp, settings(http_token=SecretStr(TOKEN)))) as base:
        async with httpx.AsyncClient() as raw:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
                for body in (INIT, call):
                    answer = await raw.post(f"{base}/mcp", json=body, headers=HEADERS | headers)
                    assert answer.status_code == 401
                    assert answer.headers["www-authenticate"].startswith("Bearer")
                    assert TOKEN not in answer.text
        assert h.audit_lines() == []
        assert h.recorder.exchanges == []
        authed = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
        async with Client(streamable_http_client(f"{base}/mcp", http_client=authed)) as client:
            result = await client.call_tool("list_reload_tasks", {"limit": 1})
            assert len(data(result)["tasks"]) == 1
    await h.backend.aclose()


async def test_two_stateless_replicas_share_one_confirm_token() -> None:
    # Two server processes' worth of state (separate gates, clients, sessions) over one tenant, as behind a
    # load balancer; they share only QLIK_MCP_CONFIRM_SECRET.
    one = make_harness()
    two = make_harness(share_with=one)
    task_id = next(iter(one.sandbox.tables["reload_tasks"]))
    stateless = settings(stateless=True)
    async with serving(http_app(one.mcp, stateless)) as a, serving(http_app(two.mcp, stateless)) as b:
        async with Client(f"{a}/mcp") as first:
            preview = data(await first.call_tool("delete_reload_task", {"task_id": task_id}))
        assert preview["status"] == "confirmation_required"
        async with Client(f"{b}/mcp") as second:
            args = {"task_id": task_id, "confirm_token": preview["confirm_token"]}
            done = data(await second.call_tool("delete_reload_task", args))
            assert done["status"] == "done"
            # The action changed the target, so the token is dead on every replica.
            again = await second.call_tool("delete_reload_task", args)
            assert again.is_error
        async with Client(f"{a}/mcp") as first:
            assert (await first.call_tool("delete_reload_task", args)).is_error
    assert task_id not in one.sandbox.tables["reload_tasks"]
    await one.backend.aclose()
    await two.backend.aclose()


async def test_only_this_servers_own_origins_and_configured_ones_pass() -> None:
    h = make_harness()
    port = free_port()
    extra = "https://app.example.com"
    async with serving(http_app(h.mcp, settings(port=port, allowed_origins=extra)), port=port) as base:
        async with httpx.AsyncClient() as raw:

            async def status(origin: str) -> int:
                return (await raw.post(f"{base}/mcp", json=INIT, headers=HEADERS | {"Origin": origin})).status_code

            # Another local page (a dev server, anything on another port) is a foreign origin.
            assert await status("http://localhost:9999") == 403
            assert await status("http://127.0.0.1:9999") == 403
            assert await status("null") == 403
            for own in (f"http://localhost:{port}", f"http://127.0.0.1:{port}", f"http://[::1]:{port}", extra):
                assert await status(own) == 200, own
    await h.backend.aclose()


async def test_unknown_tool_and_bad_prompt_get_json_rpc_invalid_params() -> None:
    h = make_harness()
    async with serving(http_app(h.mcp, settings())) as base, Client(f"{base}/mcp") as client:
        with pytest.raises(MCPError) as unknown_tool:
            await client.call_tool("no_such_tool", {})
        assert unknown_tool.value.code == INVALID_PARAMS and "Unknown tool: no_such_tool" in str(unknown_tool.value)
        with pytest.raises(MCPError) as unknown_prompt:
            await client.get_prompt("no_such_prompt")
        assert unknown_prompt.value.code == INVALID_PARAMS and "Unknown prompt" in str(unknown_prompt.value)
        with pytest.raises(MCPError) as missing:
            await client.get_prompt("diagnose_failed_reload", {})
        assert missing.value.code == INVALID_PARAMS and "target" in str(missing.value)
        # The same server still answers a known tool and a complete prompt.
        assert data(await client.call_tool("list_reload_tasks", {"limit": 1}))["tasks"]
        prompt = await client.get_prompt("diagnose_failed_reload", {"target": "app-1"})
        assert prompt.messages
    await h.backend.aclose()


async def open_slow_clients(base: str, count: int) -> list[anyio.abc.SocketStream]:
    """Connections that start a request and never finish its headers."""
    port = int(base.rsplit(":", 1)[1])
    streams = []
    for _ in range(count):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        streams.append(stream)
    return streams


async def closed_by_server(stream: anyio.abc.SocketStream) -> bytes:
    """What the server sent before closing (raises TimeoutError if it keeps the connection open)."""
    received = b""
    try:
        while True:
            received += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return received


async def test_slow_header_clients_are_dropped_and_a_normal_client_is_served() -> None:
    h = make_harness()
    bounded = settings(http_header_timeout_seconds=1.0)
    async with serving(http_app(h.mcp, bounded), settings=bounded) as base:
        started = anyio.current_time()
        slow = await open_slow_clients(base, 50)
        async with Client(f"{base}/mcp") as client:
            assert data(await client.call_tool("list_reload_tasks", {"limit": 1}))["tasks"]
        # A client trickling its header byte by byte (each byte used to restart uvicorn's idle timer).
        trickler = await anyio.connect_tcp("127.0.0.1", int(base.rsplit(":", 1)[1]))

        async def trickle() -> None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                for byte in b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                    await trickler.send(bytes([byte]))
                    await anyio.sleep(0.2)

        async with anyio.create_task_group() as group:
            group.start_soon(trickle)
            with anyio.fail_after(6):
                assert await closed_by_server(trickler) == b""
                for stream in slow:
                    assert await closed_by_server(stream) == b""
            group.cancel_scope.cancel()
        assert anyio.current_time() - started >= 0.9
        for stream in [*slow, trickler]:
            await stream.aclose()
    await h.backend.aclose()


async def test_connections_beyond_the_limit_are_refused_at_once() -> None:
    h = make_harness()
    bounded = settings(http_max_connections=10)
    async with serving(http_app(h.mcp, bounded), settings=bounded) as base:
        slow = await open_slow_clients(base, 15)
        with anyio.fail_after(3):
            refused = [await closed_by_server(stream) for stream in slow[10:]]
        assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused)
        for stream in slow[:10]:
            with anyio.move_on_after(0.1) as waiting:
                await stream.receive()
            assert waiting.cancelled_caught, "an admitted connection was closed"
        for stream in slow:
            await stream.aclose()
    await h.backend.aclose()


async def test_command_prints_the_url_it_listens_on() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QLIK_", "QALYPTUS_"))}
    cmd = [sys.executable, "-m", "qlik_tasks_mcp", "--sandbox", "--transport", "http", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/mcp"
    async with await anyio.open_process(cmd, env=env, stdin=subprocess.DEVNULL) as process:
        try:
            assert process.stderr is not None
            seen = b""
            with anyio.fail_after(60):
                while f"listening on {url}".encode() not in seen:
                    seen += await process.stderr.receive()
            async with Client(url) as client:
                assert data(await client.call_tool("list_reload_tasks", {"limit": 1}))["tasks"]
        finally:
            process.terminate()
            await process.wait()
