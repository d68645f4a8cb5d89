"""Replicas over real HTTP sharing a real redis-server (QLIK_MCP_REDIS_URL), requests alternating between them:
form confirmations, confirm tokens used once, human approvals, one rate budget, and Redis lost and back."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult

from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.server.transport import http_app
from tests.conftest import Harness, data, error_text, make_harness
from tests.http_server import Alternating, free_port, serving
from tests.redis_server import RedisServer, running_redis
from tests.test_approval import csrf_of, origin_of, post_decision

pytestmark = pytest.mark.anyio


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@asynccontextmanager
async def replicas(redis_url: str | None, **extra: Any) -> AsyncIterator[tuple[Harness, Harness, list[int]]]:
    """Two stateless replicas (their own gate, clients and sessions) over one sandbox tenant, served over HTTP."""
    ports = [free_port(), free_port()]
    shared = {"redis_url": redis_url} if redis_url else {}
    one = make_harness(transport="http", stateless=True, port=ports[0], **shared, **extra)
    two = make_harness(share_with=one, transport="http", stateless=True, port=ports[1], **shared, **extra)
    quiet = io.StringIO()
    async with AsyncExitStack() as stack:
        for harness, port in ((one, ports[0]), (two, ports[1])):
            await stack.enter_async_context(serving(http_app(harness.mcp, harness.settings, log=quiet), port=port))
        try:
            yield one, two, ports
        finally:
            await one.backend.aclose()
            await two.backend.aclose()


def alternating(ports: list[int], **kwargs: Any) -> tuple[Client, Alternating]:
    balancer = Alternating(ports)
    http = httpx2.AsyncClient(transport=balancer)
    return Client(streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http), **kwargs), balancer


def on(port: int, **kwargs: Any) -> Client:
    return Client(f"http://127.0.0.1:{port}/mcp", **kwargs)


def a_reload_task(h: Harness) -> str:
    return next(iter(h.sandbox.tables["reload_tasks"]))


def deletes(h: Harness, task_id: str) -> int:
    return sum(1 for x in h.recorder.exchanges if x.method == "DELETE" and x.path.endswith(task_id))


async def test_a_form_confirm_succeeds_when_the_answer_reaches_the_other_replica(redis: RedisServer) -> None:
    asked: list[str] = []

    async def yes(_context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    async with replicas(redis.url) as (one, _two, ports):
        task_id = a_reload_task(one)
        client, balancer = alternating(ports, elicitation_callback=yes)
        async with client:
            done = data(await client.call_tool("delete_reload_task", {"task_id": task_id}))
    assert done["status"] == "done" and len(asked) == 1
    calls = [port for port, method in balancer.sent if method == "tools/call"]
    # The question (and its sealed requestState) came from one replica, the answer went to the other.
    assert len(calls) == 2 and calls[0] != calls[1]
    assert task_id not in one.sandbox.tables["reload_tasks"] and deletes(one, task_id) == 1


async def test_a_confirm_token_used_on_one_replica_is_refused_on_the_other(redis: RedisServer) -> None:
    async with replicas(redis.url) as (one, _two, ports):
        task_id = a_reload_task(one)
        async with on(ports[0]) as a:
            preview = data(await a.call_tool("delete_reload_task", {"task_id": task_id}))
            args = {"task_id": task_id, "confirm_token": preview["confirm_token"]}
            # The token is spent on A by a call whose DELETE fails: the target is unchanged, so only the record
            # of its use stops it from acting again elsewhere.
            one.sandbox.faults.status_503, one.sandbox.faults.match_method = 10, "DELETE"
            assert "HTTP 503" in error_text(await a.call_tool("delete_reload_task", args))
            one.sandbox.faults.status_503 = 0
        async with on(ports[1]) as b:
            refused = error_text(await b.call_tool("delete_reload_task", args))
    assert "already used" in refused
    assert task_id in one.sandbox.tables["reload_tasks"]
    assert [x.status for x in one.recorder.exchanges if x.method == "DELETE"] == [503] * 4


async def test_an_approval_on_one_replicas_page_lets_the_call_on_the_other_act_once(redis: RedisServer) -> None:
    async with replicas(redis.url, approval="human") as (one, _two, ports):
        task_id = a_reload_task(one)
        args = {"task_id": task_id}
        async with on(ports[0]) as a:
            url = data(await a.call_tool("delete_reload_task", args))["approve_url"]
        assert url.startswith(f"http://127.0.0.1:{ports[0]}/approve/")
        async with httpx.AsyncClient() as web:
            csrf = csrf_of((await web.get(url)).text)
        approved = await post_decision(url, {"csrf": csrf, "decision": "approve"}, origin=origin_of(url))
        assert approved.status_code == 200 and "Approved" in approved.text
        async with on(ports[1]) as b, on(ports[0]) as a:
            done = data(await b.call_tool("delete_reload_task", args))
            assert done["status"] == "done"
            # Once only: the same call again, on either replica, acts no more.
            again = [await b.call_tool("delete_reload_task", args), await a.call_tool("delete_reload_task", args)]
    assert all(r.is_error or data(r)["status"] != "done" for r in again)
    assert deletes(one, task_id) == 1


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "alone"])
async def test_two_replicas_keep_to_one_tiers_budget(redis: RedisServer, shared: bool) -> None:
    budget = 6
    async with replicas(redis.url if shared else None) as (one, two, ports):
        for h in (one, two):
            h.backend.qlik.limiter._limits[Tier.T1] = budget
        client, _ = alternating(ports)
        errors: list[str] = []
        async with client:
            for _ in range(16):
                result = await client.call_tool("list_reload_tasks", {"limit": 1})
                if result.is_error:
                    errors.append(error_text(result))
    sent = [x for x in one.recorder.exchanges if x.tier == "1"]
    if shared:
        assert len(sent) == budget
    else:
        # The control: each replica spends the tier alone, twice the budget in all.
        assert len(sent) == 2 * budget
    assert errors and all("Rate limited" in e for e in errors)


async def test_redis_lost_fails_confirmations_closed_reads_go_on_and_its_return_heals(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qlik_tasks_mcp.client")
    async with replicas(redis.url) as (one, _two, ports):
        task_id = a_reload_task(one)
        client, _ = alternating(ports)
        async with client:
            preview = data(await client.call_tool("delete_reload_task", {"task_id": task_id}))
            args = {"task_id": task_id, "confirm_token": preview["confirm_token"]}
            redis.stop()
            lost = error_text(await client.call_tool("delete_reload_task", args))
            assert f"the shared store (Redis at 127.0.0.1:{redis.port}) does not answer" in lost
            assert "nothing was changed" in lost and "\n" not in lost
            assert task_id in one.sandbox.tables["reload_tasks"] and deletes(one, task_id) == 0
            # Reads keep working, paced by each process alone meanwhile (said once in the log).
            for _ in range(2):
                assert data(await client.call_tool("list_reload_tasks", {"limit": 1}))["tasks"]
            assert "paced by this process alone" in caplog.text
            async with httpx.AsyncClient() as web:
                ready = await web.get(f"http://127.0.0.1:{ports[0]}/readyz")
            assert ready.status_code == 503 and ready.json() == {
                "status": "not ready",
                "tenant": "ok",
                "store": "fails",
            }
            redis.start()
            done = data(await client.call_tool("delete_reload_task", args))
    assert done["status"] == "done" and deletes(one, task_id) == 1


async def test_health_and_readiness_need_no_token_and_reveal_nothing(redis: RedisServer) -> None:
    token = "probe-token-0123456789abcdef"
    async with replicas(redis.url, http_token=token) as (_one, _two, ports):
        async with httpx.AsyncClient() as web:
            health = await web.get(f"http://127.0.0.1:{ports[0]}/healthz")
            ready = await web.get(f"http://127.0.0.1:{ports[1]}/readyz", headers={"x-request-id": "lb-probe-1"})
            refused = await web.post(f"http://127.0.0.1:{ports[0]}/mcp", json={})
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "tenant": "ok", "store": "ok"}
    assert ready.headers["x-request-id"] == "lb-probe-1"
    assert refused.status_code == 401 and len(refused.headers["x-request-id"]) == 32


async def test_an_approval_page_with_redis_lost_decides_nothing_and_works_once_it_is_back(redis: RedisServer) -> None:
    async with replicas(redis.url, approval="human") as (one, _two, ports):
        task_id = a_reload_task(one)
        async with on(ports[0]) as a:
            url = data(await a.call_tool("delete_reload_task", {"task_id": task_id}))["approve_url"]
            redis.stop()
            async with httpx.AsyncClient() as web:
                page = await web.get(url)
            assert page.status_code == 503 and "nothing was decided" in page.text
            assert "does not answer" in error_text(await a.call_tool("delete_reload_task", {"task_id": task_id}))
            redis.start()  # a fresh server: the pending approval is gone with the old one's memory
            again = data(await a.call_tool("delete_reload_task", {"task_id": task_id}))
            assert again["status"] == "confirmation_required" and again["approve_url"] != url
            async with httpx.AsyncClient() as web:
                assert (await web.get(again["approve_url"])).status_code == 200
    assert task_id in one.sandbox.tables["reload_tasks"]


async def test_each_request_is_logged_once_with_its_request_id() -> None:
    h = make_harness(transport="http")
    log = io.StringIO()
    try:
        async with serving(http_app(h.mcp, h.settings, log=log)) as base:
            async with on(int(base.rsplit(":", 1)[1])) as client:
                await client.call_tool("list_reload_tasks", {"limit": 1})
            async with httpx.AsyncClient() as web:
                given = await web.get(f"{base}/healthz?probe=1", headers={"x-request-id": "lb-7"})
                odd = await web.get(f"{base}/healthz", headers={"x-request-id": "bad id\twith spaces"})
    finally:
        await h.backend.aclose()
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert all(line["event"] == "http_request" for line in lines)
    assert {line["method"] for line in lines} >= {"POST", "GET"}
    assert len({line["request_id"] for line in lines}) == len(lines)
    probe = next(line for line in lines if line["request_id"] == "lb-7")
    assert probe["path"] == "/healthz" and probe["status"] == 200 and given.headers["x-request-id"] == "lb-7"
    assert odd.headers["x-request-id"] != "bad id\twith spaces" and len(odd.headers["x-request-id"]) == 32
    assert all(set(line) == {"ts", "event", "request_id", "method", "path", "status", "ms"} for line in lines)


def test_a_shared_store_needs_the_shared_secret_and_a_redis_url() -> None:
    from pydantic import SecretStr, ValidationError

    from qlik_tasks_mcp.server.settings import Settings

    with pytest.raises(ValidationError, match="set QLIK_MCP_CONFIRM_SECRET too"):
        Settings(sandbox=True, redis_url=SecretStr("redis://127.0.0.1:6379/0"))
    with pytest.raises(ValidationError, match=r"redis://, rediss:// or unix://"):
        Settings(sandbox=True, confirm_secret=SecretStr("s" * 20), redis_url=SecretStr("http://user:pw@host/0"))
    with pytest.raises(ValidationError) as refused:
        Settings(sandbox=True, confirm_secret=SecretStr("s" * 20), redis_url=SecretStr("ftp://user:hunter2@h/0"))
    assert "hunter2" not in str(refused.value)


async def test_a_hold_after_a_429_on_one_replica_holds_the_tier_on_the_other(redis: RedisServer) -> None:
    from qlik_tasks_mcp.client.ratelimit import TierLimiter
    from qlik_tasks_mcp.client.store import RedisStore

    stores = [RedisStore(redis.url), RedisStore(redis.url)]
    one, two = (TierLimiter(store=store, scope="key-a") for store in stores)
    other_key = TierLimiter(store=stores[1], scope="key-b")
    try:
        assert await one.hold(Tier.T1, 86400) == 30
        held = await two.admit(Tier.T1)
        assert 28 < held.held <= 30 and not held.trial
        assert (await other_key.admit(Tier.T1)).held == 0  # another API key has its own budget
        assert (await two.admit(Tier.T2)).held == 0  # and another tier is free
        await one.release(Tier.T1)
        assert (await two.admit(Tier.T1)).held == 0
    finally:
        for store in stores:
            await store.aclose()


def test_the_open_file_limit_is_raised_to_fit_the_connection_cap_or_the_cap_lowered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import resource

    from qlik_tasks_mcp.server import transport
    from qlik_tasks_mcp.server.settings import Settings

    limits = {"soft": 256, "hard": 4096}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        if value[0] > limits["hard"]:
            raise ValueError("over the hard limit")
        limits["soft"] = value[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    fits = transport.descriptors_for(Settings(sandbox=True))
    assert fits.http_max_connections == 1000 and limits["soft"] == 1000 + transport.SPARE_DESCRIPTORS
    limits.update(soft=256, hard=512)
    lowered = transport.descriptors_for(Settings(sandbox=True))
    assert lowered.http_max_connections == 512 - transport.SPARE_DESCRIPTORS
    assert "allows 384 HTTP connections" in capsys.readouterr().err
