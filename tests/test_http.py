"""Streamable HTTP: loopback by default, bearer token, Host/Origin checks, stateless replicas sharing tokens."""

from __future__ import annotations

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from qlik_tasks_mcp.server.settings import ConfigError, Settings
from qlik_tasks_mcp.server.transport import http_app
from tests.conftest import data, make_harness
from tests.http_server import serving

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
