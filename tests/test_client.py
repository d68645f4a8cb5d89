"""client/: pagination safety, retries that never repeat a POST that may have acted, 429 handling, errors."""

from __future__ import annotations

import httpx
import pytest

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput, UnsafeLinkError, error_from_response
from qlik_tasks_mcp.client.http import RetryPolicy, retry_after_seconds
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier, TierLimiter

pytestmark = pytest.mark.anyio
BASE = "https://tenant.eu.qlikcloud.com"


def client_for(handler, **kwargs) -> QlikClient:
    qlik = QlikClient(BASE, "k" * 40, transport=httpx.MockTransport(handler), **kwargs)
    qlik.retry = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.002, max_wait=2)
    return qlik


@pytest.mark.parametrize(
    "href",
    [
        "https://evil.example.com/api/v1/reload-tasks?next=x",
        "http://tenant.eu.qlikcloud.com/api/v1/reload-tasks?next=x",
        "https://tenant.eu.qlikcloud.com:8443/api/v1/reload-tasks?next=x",
        "//evil.example.com/api/v1/reload-tasks?next=x",
    ],
)
async def test_next_link_to_another_origin_is_refused(href: str) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(
            200, json={"data": [{"id": "1"}], "links": {"self": {"href": "x"}, "next": {"href": href}}}
        )

    qlik = client_for(handler)
    with pytest.raises(UnsafeLinkError, match="not the configured tenant"):
        [item async for item in qlik.iterate("/api/v1/reload-tasks", tier=Tier.T1)]
    assert hosts == ["tenant.eu.qlikcloud.com"]


async def test_next_link_to_another_endpoint_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [], "links": {"next": {"href": f"{BASE}/api/v1/users?next=x"}}})

    with pytest.raises(UnsafeLinkError, match="/api/v1/users"):
        await client_for(handler).page("/api/v1/reload-tasks", tier=Tier.T1)


async def test_iterate_follows_relative_and_absolute_links_on_the_tenant() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        links: dict = {"self": {"href": str(request.url)}}
        if page == 1:
            links["next"] = {"href": "/api/v1/tasks?page=2"}
        elif page == 2:
            links["next"] = {"href": f"{BASE}/api/v1/tasks?page=3"}
        return httpx.Response(200, json={"data": [{"id": str(page)}], "links": links})

    items = [i["id"] async for i in client_for(handler).iterate("/api/v1/tasks", tier=Tier.SPECIAL)]
    assert items == ["1", "2", "3"]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_post_is_never_repeated_after_it_may_have_acted(status: int) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(status, json={"errors": [{"code": "X", "title": "boom"}]})

    qlik = client_for(handler)
    with pytest.raises(ApiError) as info:
        await qlik.json("POST", "/api/v1/reload-tasks", tier=Tier.T2, body={"a": 1})
    assert calls == ["POST"]
    assert info.value.status == status


async def test_post_is_not_repeated_after_a_read_timeout_and_says_it_may_have_acted() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ApiError, match="may have reached the service"):
        await client_for(handler).json("POST", "/api/v1/tasks/x/actions/start", tier=Tier.SPECIAL)
    assert calls == ["POST"]


async def test_post_is_retried_when_it_never_left() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"id": "new"})

    assert await client_for(handler).json("POST", "/api/v1/reload-tasks", tier=Tier.T2, body={}) == {"id": "new"}
    assert calls == ["POST"] * 3


async def test_get_is_retried_on_503_and_timeouts() -> None:
    answers = [httpx.Response(503), "timeout", httpx.Response(200, json={"ok": True})]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if answer == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        return answer

    assert await client_for(handler).json("GET", "/api/v1/reload-tasks/a", tier=Tier.T1) == {"ok": True}
    assert answers == []


async def test_429_honours_retry_after_for_any_method_and_paces_the_tier() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            return httpx.Response(
                429, headers={"Retry-After": "1"}, json={"errors": [{"code": "429", "title": "slow"}]}
            )
        return httpx.Response(201, json={"id": "x"})

    qlik = client_for(handler)
    assert await qlik.json("POST", "/api/v1/reload-tasks", tier=Tier.T2, body={}) == {"id": "x"}
    assert calls == ["POST", "POST"]
    assert qlik.throttled == 1
    assert qlik.limiter.waited_seconds >= 0.9


async def test_long_retry_after_ends_with_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3600"}, json={"errors": [{"code": "429", "title": "slow"}]})

    with pytest.raises(ApiError, match="retry after 3600 s"):
        await client_for(handler).json("GET", "/api/v1/reload-tasks", tier=Tier.T1)


def test_retry_after_parses_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert retry_after_seconds("soon") is None


async def test_sliding_window_never_exceeds_the_tier() -> None:
    now = [0.0]
    limiter = TierLimiter({tier: 3 for tier in Tier}, window=60, clock=lambda: now[0])
    for _ in range(3):
        await limiter.acquire(Tier.T2)
    assert len(limiter._sent[Tier.T2]) == 3
    now[0] = 59.9
    # The fourth send must wait for the first to leave the window; a token bucket would let it through.
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    import anyio

    original = anyio.sleep
    anyio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        await limiter.acquire(Tier.T2)
    finally:
        anyio.sleep = original  # type: ignore[assignment]
    assert waits and abs(waits[0] - 0.1) < 1e-6


def _response(status: int, body: object) -> httpx.Response:
    request = httpx.Request("GET", f"{BASE}/api/v1/x")
    return httpx.Response(status, json=body, request=request)


def test_error_mapper_reads_every_shape() -> None:
    reload = error_from_response(
        _response(404, {"errors": [{"code": "RT-1", "title": "Not found", "detail": "no task"}], "traceId": "t1"})
    )
    assert (reload.status, reload.code, reload.title, reload.detail, reload.trace_id) == (
        404,
        "RT-1",
        "Not found",
        "no task",
        "t1",
    )
    sharing = error_from_response(
        _response(
            400,
            {
                "errors": [{"code": "HTTP-1", "title": "Bad", "details": "why", "meta": {"httpCode": 400}}],
                "traceId": "t2",
            },
        )
    )
    assert (sharing.code, sharing.detail) == ("HTTP-1", "why")
    tasks = error_from_response(
        _response(
            400,
            {"errors": [{"code": 400, "context": "GetTasks", "timestamp": "2023-07-17T12:00:00Z"}], "traceId": "t3"},
        )
    )
    assert (tasks.code, tasks.detail, tasks.trace_id) == ("400", "GetTasks", "t3")
    qalyptus = error_from_response(
        _response(200, {"data": None, "isSuccess": False, "error": "Task not found", "errorDetails": "id 9"})
    )
    assert (qalyptus.title, qalyptus.detail) == ("Task not found", "id 9")
    text = error_from_response(httpx.Response(502, text="<html>bad gateway</html>", request=httpx.Request("GET", BASE)))
    assert text.detail == "<html>bad gateway</html>"


def test_error_text_never_carries_the_key() -> None:
    key = "secret-key-abcdefghijklmnop"
    QlikClient(BASE, key)
    error = error_from_response(_response(401, {"errors": [{"code": "A", "title": f"bad token {key}"}]}))
    assert key not in str(error)


@pytest.mark.parametrize("value", ["", ".", "..", "../x", "a/b", "a?b", "a#b", "a%2Fb", "a b", "a\nb", "é"])
def test_path_segment_refuses_what_could_leave_the_endpoint(value: str) -> None:
    with pytest.raises(InvalidInput):
        path_segment(value, "task_id")


def test_path_segment_keeps_real_ids() -> None:
    for value in ("5be59decca62aa00097268a4", "116dbfae-7fb9-4983-8e23-5ccd8c508722", "report.pdf", "a:b"):
        assert path_segment(value) == value.replace(":", "%3A")
