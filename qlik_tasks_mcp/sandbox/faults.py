"""Fault injection for the sandbox tenant: the misbehaviour a real tenant and network can show.

Switches are counters: each matching request consumes one, so a test says exactly how many answers go
wrong. `match` narrows them to paths containing a string and/or one method. `hostile(...)` turns switches
on for every request: a hostile tenant rather than a glitch.

The hostile tenant's switches: `echo_key` (an error that echoes the caller's API key in its code, traceId,
detail, meta and x-request-id header), `redirect` (a 3xx to `redirect_location`, or to the request's own URL),
`huge_page` (a list answer whose rows are copied to `huge_page_rows`), and `retry_after` (say 86400) with
`status_429` / `status_503` storms.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ConnectionDropped(Exception):
    """The server acted, then the connection broke before the answer was sent."""


@dataclass
class Faults:
    status_429: int = 0
    retry_after: int = 1
    status_503: int = 0
    slow: int = 0
    slow_seconds: float = 5.0
    drop_after_action: int = 0
    malformed_json: int = 0
    foreign_next_link: int = 0
    echo_key: int = 0
    redirect: int = 0
    redirect_status: int = 302
    # None: the request's own URL (following it once reaches the real answer); else absolute or relative.
    redirect_location: str | None = None
    huge_page: int = 0
    huge_page_rows: int = 100_000
    # A list answered from its first page whatever cursor is asked, with a next link that is new every time: a
    # listing that never ends (only a budget stops it; identical pages give it away to a careful pager).
    looping_next_link: int = 0
    # Also sent with 503 answers when set (a 429 always carries `retry_after`).
    retry_after_503: int | None = None
    match_path: str | None = None
    match_method: str | None = None
    injected: int = 0
    # Every request that reached the tenant, faulted or not: what tests count sends by.
    arrived: list[tuple[str, str]] = field(default_factory=list)

    def applies(self, scope: Scope) -> bool:
        if self.match_path and self.match_path not in scope.get("path", ""):
            return False
        return not (self.match_method and scope.get("method") != self.match_method)

    def hostile(self, *names: str) -> None:
        """Switch the named faults on for every matching request, until set back to 0."""
        for name in names:
            if not isinstance(getattr(self, name), int) or name in ("retry_after", "redirect_status"):
                raise ValueError(f"{name} is not a fault switch")
            setattr(self, name, sys.maxsize)

    def take(self, name: str) -> bool:
        left = getattr(self, name)
        if left <= 0:
            return False
        setattr(self, name, left - 1)
        self.injected += 1
        return True


def _error_body(path: str, status: int, title: str) -> bytes:
    # The tasks API uses integer codes; the other Qlik families use strings.
    code: int | str = status if path.startswith("/api/v1/tasks") else f"SANDBOX-{status}"
    return json.dumps({"errors": [{"code": code, "title": title}], "traceId": "fault0000000000"}).encode()


class FaultInjector:
    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.faults
        if scope["type"] == "http":
            faults.arrived.append((scope.get("method", ""), scope.get("path", "")))
        if scope["type"] != "http" or not faults.applies(scope):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if faults.take("status_429"):
            await _answer(
                send,
                429,
                _error_body(path, 429, "Too Many Requests"),
                [(b"retry-after", str(faults.retry_after).encode())],
            )
            return
        if faults.take("status_503"):
            later = [(b"retry-after", str(faults.retry_after_503).encode())] if faults.retry_after_503 else []
            await _answer(send, 503, _error_body(path, 503, "Service Unavailable"), later)
            return
        if faults.take("echo_key"):
            await _echo_key(scope, send)
            return
        if faults.take("redirect"):
            await _redirect(scope, send, faults.redirect_status, faults.redirect_location)
            return
        if faults.take("slow"):
            await anyio.sleep(faults.slow_seconds)
        if faults.take("drop_after_action"):
            await self.app(scope, receive, _discard)
            raise ConnectionDropped(f"{scope.get('method')} {path}")
        if faults.take("malformed_json"):
            await self._rewrite(scope, receive, send, lambda body: body[: max(1, len(body) // 2)])
            return
        if faults.take("foreign_next_link"):
            await self._rewrite(scope, receive, send, _foreign_links)
            return
        if faults.take("looping_next_link"):
            first = _without_cursor(scope)
            count = faults.injected
            await self._rewrite(first, receive, send, lambda body: _looping_links(body, first, count))
            return
        if faults.take("huge_page"):
            rows = faults.huge_page_rows
            await self._rewrite(scope, receive, send, lambda body: _huge_page(body, rows))
            return
        await self.app(scope, receive, send)

    async def _rewrite(self, scope: Scope, receive: Receive, send: Send, change: object) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = change(b"".join(chunks))  # type: ignore[operator]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        await _answer(send, start.get("status", 200), body, headers)


def _foreign_links(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    links = data.get("links") if isinstance(data, dict) else None
    if isinstance(links, dict):
        links["next"] = {"href": "https://attacker.example.com/api/v1/steal?next=1"}
    return json.dumps(data).encode()


def _without_cursor(scope: Scope) -> Scope:
    query: str = scope.get("query_string", b"").decode("latin-1")
    kept = "&".join(p for p in query.split("&") if p and p.split("=", 1)[0] not in ("next", "page"))
    return dict(scope, query_string=kept.encode("latin-1"))


def _looping_links(body: bytes, scope: Scope, count: int) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    links = data.get("links") if isinstance(data, dict) else None
    if isinstance(links, dict):
        query = scope.get("query_string", b"").decode("latin-1")
        links["next"] = {"href": f"{scope.get('path', '')}?{query}{'&' if query else ''}next=loop{count}"}
    return json.dumps(data).encode()


def _huge_page(body: bytes, rows: int) -> bytes:
    """The list of the answer (the first list-valued key) with its first row copied `rows` times."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, list) and value:
                data[key] = [value[0]] * rows
                break
    return json.dumps(data).encode()


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            return value.decode("latin-1").removeprefix("Bearer ").strip()
    return ""


async def _echo_key(scope: Scope, send: Send) -> None:
    """A 400 that echoes the caller's key in every field, and across the point where text used to be cut."""
    key = _bearer(scope)
    error: dict[str, Any] = {
        "code": f"AUTH-{key}",
        "title": "Bad request",
        "detail": "rejected token " + "x" * 280 + key,
        "meta": {"token": key},
    }
    body = json.dumps({"errors": [error], "traceId": key}).encode()
    await _answer(send, 400, body, [(b"x-request-id", key.encode("latin-1"))])


async def _redirect(scope: Scope, send: Send, status: int, location: str | None) -> None:
    query: str = scope.get("query_string", b"").decode("latin-1")
    own: str = str(scope.get("path", "/")) + (f"?{query}" if query else "")
    target = own if location is None else location
    await _answer(send, status, b"", [(b"location", target.encode("latin-1"))])


async def _discard(message: Message) -> None:
    return None


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    # Marked, so the spec recorder in the tests knows this answer is a deliberate fault, not the sandbox's.
    base = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-sandbox-fault", b"1"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": base + (headers or [])})
    await send({"type": "http.response.body", "body": body})
