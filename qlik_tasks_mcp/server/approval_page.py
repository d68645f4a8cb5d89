"""The approval page of QLIK_MCP_APPROVAL=human, and the loopback listener that serves it under stdio.

GET /approve/<id> shows the whole preview (tenant text escaped as HTML) with Approve and Reject; a POST
decides it once. The page refuses what a cross-site or guessing attacker could send: the id is 256 random
bits and dies when decided or expired, a decision needs the page's own CSRF token, a same-origin Origin (or
Referer) and the expected Host (DNS rebinding), and the page cannot be framed, cached or run scripts.
"""

from __future__ import annotations

import html
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from mcp.server import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.client.store import StoreUnavailable
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools.approval import APPROVE_PATH, Approvals, Pending
from qlik_tasks_mcp.tools.gate import Gate

MAX_FORM_BYTES = 4096
STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}"
    "code,.v{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #bbb;padding:.3rem;vertical-align:top}"
    ".warn{background:#fff4d6;padding:.5rem;border-left:4px solid #c90}"
    "button{font-size:1rem;padding:.5rem 1.5rem;margin-right:1rem}#approve{background:#b00020;color:#fff}"
)


class People(Protocol):
    """Who is at the browser, when people sign in (QLIK_MCP_AUTH=oauth): only who asked may decide."""

    def browser_person(self, request: Request) -> str | None:
        """The id of the person signed in on this browser (for the page), or None."""
        ...

    async def browser_sign_in(self, return_to: str) -> Response:
        """Send the browser to sign in to the tenant, then back to `return_to`."""
        ...


class SameServer:
    """The HTTP transport serves the page itself, on its own address (loopback, or the public URL with oauth)."""

    def __init__(self, base: str) -> None:
        self._base = base

    def base_url(self) -> str:
        return self._base

    def close(self) -> None:
        return None


class LoopbackListener:
    """Under stdio: a small HTTP server on 127.0.0.1 and an ephemeral port, started on the first preview.

    It runs in its own thread and event loop, so the page answers however busy the MCP session is.
    """

    def __init__(self, approvals: Approvals) -> None:
        self._approvals = approvals
        self._base: str | None = None
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def base_url(self) -> str:
        with self._lock:
            if self._base is None:
                self._base = self._start()
            return self._base

    def _start(self) -> str:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        # Listening before the thread starts: the first browser request queues instead of being refused.
        sock.listen(16)
        port = sock.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        app = Starlette(routes=approval_routes(self._approvals, lambda: base))
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", limit_concurrency=32, timeout_keep_alive=5, access_log=False
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        return base

    def close(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = self._base = None
        if server is not None and thread is not None:
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=5)


def install_approval(settings: Settings, mcp: MCPServer, gate: Gate, people: People | None = None) -> None:
    """QLIK_MCP_APPROVAL=human: give the gate its store and serve the page where this process can. With `people`
    (QLIK_MCP_AUTH=oauth) the page is this server's, wherever it is bound: only the person who asked decides."""
    if settings.approval != "human":
        return
    approvals = Approvals(gate.ttl_seconds, store=gate.store)
    if settings.transport == "http" and (settings.loopback() or people is not None):
        host = SameServer(settings.base_url())
        for route in approval_routes(approvals, host.base_url, people):
            mcp.custom_route(route.path, methods=["GET", "POST"])(route.endpoint)
        approvals.host = host
    else:
        # Beyond loopback the page stays on this machine: whoever can reach the URL can approve.
        approvals.host = LoopbackListener(approvals)
    gate.approvals = approvals


def approval_routes(approvals: Approvals, base_url: Callable[[], str], people: People | None = None) -> list[Route]:
    """GET shows, POST decides; `base_url` gives the one origin the page answers for; with `people`, only to the
    person who asked (signed in on this browser)."""

    async def endpoint(request: Request) -> Response:
        expected = base_url()
        if request.headers.get("host", "") != urlsplit(expected).netloc:
            return page("Wrong host", "<p>This page answers only on its own address.</p>", status=421)
        approval_id = request.path_params["approval_id"]
        try:
            if people is not None:
                refused = await not_the_asker(request, approvals, approval_id, people, expected)
                if refused is not None:
                    return refused
            if request.method == "POST":
                return await decide(request, approvals, approval_id, expected)
            entry = await approvals.page(approval_id)
        except StoreUnavailable:
            # Fails closed: nothing is decided without the shared store; the page says no more than that.
            body = "<p>The approval store does not answer right now, so nothing was decided. Try again shortly.</p>"
            return page("Not available", body, status=503)
        if entry is None:
            return gone()
        return preview_page(entry, expected)

    return [Route(APPROVE_PATH + "{approval_id}", endpoint, methods=["GET", "POST"])]


async def not_the_asker(
    request: Request, approvals: Approvals, approval_id: str, people: People, origin: str
) -> Response | None:
    """None when the browser's signed-in person asked for this approval; else the sign-in (a GET) or a refusal."""
    entry = await approvals.page(approval_id)
    if entry is None:
        return gone()
    asker = entry.person
    if asker is None:
        return page("Refused", "<p>Nobody signed in asked for this approval.</p>", status=403)
    present = people.browser_person(request)
    if present is None:
        if request.method == "GET":
            return await people.browser_sign_in(origin + APPROVE_PATH + approval_id)
        return page("Refused", "<p>Sign in first: open this page's link again.</p>", status=403)
    if not secrets.compare_digest(present.encode(), asker["id"].encode()):
        body = f"<p>Only {html.escape(asker['name'])}, who asked for this action, may decide it.</p>"
        return page("Refused", body, status=403)
    return None


async def decide(request: Request, approvals: Approvals, approval_id: str, expected: str) -> Response:
    if not same_origin(request, expected):
        return page("Refused", "<p>A decision must come from this page itself.</p>", status=403)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return page("Refused", "<p>Send the form from this page.</p>", status=415)
    if int(request.headers.get("content-length") or MAX_FORM_BYTES + 1) > MAX_FORM_BYTES:
        return page("Refused", "<p>The form is too large.</p>", status=413)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    decision = (form.get("decision") or [""])[0]
    if decision not in ("approve", "reject"):
        return page("Refused", "<p>Choose Approve or Reject.</p>", status=400)
    outcome = await approvals.decide(approval_id, (form.get("csrf") or [""])[0], decision == "approve")
    if outcome == "gone":
        return gone()
    if outcome == "forbidden":
        return page("Refused", "<p>This form is not the one this page gave out.</p>", status=403)
    if outcome == "approved":
        body = (
            "<p id='outcome'>Approved. Nothing has run yet: the action runs once when the assistant repeats "
            "the same call. You can close this page.</p>"
        )
        return page("Approved", body)
    return page("Rejected", "<p id='outcome'>Rejected. Nothing was changed. You can close this page.</p>")


def same_origin(request: Request, expected: str) -> bool:
    """Browsers send Origin on a form POST; Referer stands in where a policy dropped it."""
    given = request.headers.get("origin")
    if given is not None and given != "null":
        return secrets.compare_digest(given.encode(), expected.encode())
    referer = request.headers.get("referer", "")
    return referer.startswith(expected + APPROVE_PATH)


def gone() -> Response:
    return page("Not available", "<p>This approval link is unknown, already used or expired.</p>", status=404)


def preview_page(entry: Pending, origin: str) -> Response:
    p = entry.preview
    e = html.escape
    items = "".join(f"<li class='v'>{e(c)}</li>" for c in p.changes)
    notes = "".join(f"<li class='v'>{e(n)}</li>" for n in p.notes)
    rows = "".join(
        f"<tr><td class='v'>{e(f)}</td><td class='v'>{e(b)}</td><td class='v'>{e(a)}</td></tr>" for f, b, a in p.diff
    )
    expires = datetime.fromtimestamp(entry.expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = f"""<p class="warn">An assistant asks to run a destructive action through qlik-tasks-mcp. Text from the
Qlik tenant and the assistant's arguments are shown escaped, one line per item; read them as data, not as
instructions. Approve only if this is what you want.</p>
<section id="preview">
<h2>Action</h2><p id="action" class="v">{e(p.action)}</p>
{"<h2>Changes</h2><ul id='changes'>" + items + "</ul>" if items else ""}
{
        "<h2>Changed fields</h2><table id='diff'><tr><th>Field</th><th>Before</th><th>After</th></tr>"
        + rows
        + "</table>"
        if rows
        else ""
    }
{"<h2>Notes</h2><ul id='notes'>" + notes + "</ul>" if notes else ""}
<h2>Call</h2><p>Tool <code id="tool">{e(p.tool)}</code> with arguments <code id="arguments">{e(p.arguments)}</code></p>
</section>
<p>This link expires at {e(expires)} and works once.</p>
<form method="post" action="{e(origin + APPROVE_PATH + entry.id)}">
<input type="hidden" name="csrf" value="{e(entry.csrf)}">
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="reject" id="reject">Reject</button>
</form>"""
    return page("Approve this action?", body)


def page(title: str, body: str, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    document = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)} - qlik-tasks-mcp"
        f"</title><style nonce='{nonce}'>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        # Same-origin keeps Origin/Referer on our own POST and sends nothing to any other site.
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    return HTMLResponse(document, status_code=status, headers=headers)
