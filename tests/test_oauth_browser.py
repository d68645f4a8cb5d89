"""QLIK_MCP_AUTH=oauth in a real browser: headless Chromium follows the MCP client's authorization URL, the sandbox
tenant's sign-in page is shown, the person is clicked, and the browser lands on the MCP client's loopback callback,
as a desktop MCP client's flow goes. Two people sign in; each changes a task and owns it after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.auth import AuthorizationCodeResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from qlik_tasks_mcp.sandbox.tasks import tables
from tests.conftest import data
from tests.http_server import free_port, serving
from tests.test_approval import ARTIFACTS, DevTools, browser_or_skip
from tests.test_oauth import Memory, audit_lines, oauth_servers, signed_in_client, update, user_id, visible_task

pytestmark = pytest.mark.anyio


class LoopbackCallback:
    """The MCP client's redirect URI: a loopback page that takes the code and state the browser brings."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: list[dict[str, str]] = []
        self.event = anyio.Event()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def page(self, request: Request) -> HTMLResponse:
        self.arrived.append(dict(request.query_params))
        self.event.set()
        return HTMLResponse("<!doctype html><title>Signed in</title><p id='done'>Signed in. Close this tab.</p>")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/callback", self.page)])

    async def returned(self) -> AuthorizationCodeResult:
        with anyio.fail_after(30):
            await self.event.wait()
        self.event = anyio.Event()
        found = self.arrived[-1]
        return AuthorizationCodeResult(code=found["code"], state=found.get("state"))


class ChromiumSignIn:
    """Opens the authorization URL in headless Chromium and clicks `email`'s button on the tenant's sign-in page."""

    def __init__(self, email: str, workdir: Path, callback: LoopbackCallback) -> None:
        self.email = email
        self.workdir = workdir
        self.callback = callback
        self.pages: list[str] = []

    def _sign_in(self, url: str) -> None:
        browser = DevTools(self.workdir / f"profile-{self.email}")
        try:
            browser.open(url)
            self.pages.append(browser.text("body"))
            ARTIFACTS.mkdir(exist_ok=True)
            browser.screenshot(ARTIFACTS / "oauth-sign-in-page.png")
            browser.click_and_wait(f"button[data-email='{self.email}']")
            self.pages.append(browser.text("body"))
        finally:
            browser.close()

    async def open(self, url: str) -> None:
        await anyio.to_thread.run_sync(self._sign_in, url)


@asynccontextmanager
async def callback_server() -> AsyncIterator[LoopbackCallback]:
    callback = LoopbackCallback()
    async with serving(callback.app(), port=callback.port):
        yield callback


async def test_two_people_sign_in_in_chromium_and_each_owns_what_they_changed(tmp_path: Path) -> None:
    browser_or_skip()
    people = {"Ben Builder": "ben.builder@example.com", "Ada Admin": "ada.admin@example.com"}
    async with oauth_servers() as ([h], [url]), callback_server() as callback:
        chosen = {name: visible_task(h, name) for name in people}
        done: dict[str, dict[str, Any]] = {}
        browsers: dict[str, ChromiumSignIn] = {}
        for name, email in people.items():
            browsers[name] = ChromiumSignIn(email, tmp_path, callback)
            client = signed_in_client(url, browsers[name].open, callback.returned, Memory(), redirect_uri=callback.uri)
            async with client:
                done[name] = await update(client, chosen[name]["id"], f"changed by {name}")
    for name, browser in browsers.items():
        # The sign-in page listed the tenant's active people; the browser ended on the MCP client's own page.
        assert all(person in browser.pages[0] for person in people) and "Eve Exited" not in browser.pages[0]
        assert browser.pages[-1].startswith("Signed in.")
        task = tables(h.sandbox).tasks[chosen[name]["id"]]
        assert task["metadata"]["ownerId"] == user_id(h, name) and task["description"] == f"changed by {name}"
        assert done[name]["done"]["status"] == "done"
    named = {line["args"]["task_id"]: line["person"]["name"] for line in audit_lines(h) if line["outcome"] == "done"}
    assert named == {chosen[name]["id"]: name for name in people}
    assert (ARTIFACTS / "oauth-sign-in-page.png").read_bytes().startswith(b"\x89PNG")


def approve_as(url: str, email: str, workdir: Path) -> tuple[str, str]:
    """Open an approval link in a fresh browser: sign in to the tenant as `email`, then Approve; the page's preview
    and outcome texts."""
    browser = DevTools(workdir / f"approver-{email}")
    try:
        browser.open(url)
        browser.click_and_wait(f"button[data-email='{email}']")
        preview = browser.text("#preview")
        browser.click_and_wait("#approve")
        return preview, browser.text("#outcome")
    finally:
        browser.close()


async def test_in_human_mode_the_person_who_asked_approves_in_chromium(tmp_path: Path) -> None:
    browser_or_skip()
    async with oauth_servers(approval="human") as ([h], [url]), callback_server() as callback:
        task = visible_task(h, "Ben Builder")
        signing_in = ChromiumSignIn("ben.builder@example.com", tmp_path, callback)
        ben = signed_in_client(url, signing_in.open, callback.returned, Memory(), redirect_uri=callback.uri)
        args = {"task_id": task["id"], "description": "approved in Chromium"}
        async with ben:
            preview = data(await ben.call_tool("update_task", args))
            shown, outcome = await anyio.to_thread.run_sync(
                approve_as, preview["approve_url"], "ben.builder@example.com", tmp_path
            )
            done = data(await ben.call_tool("update_task", args))
    assert "Done as Ben Builder" in shown and outcome.startswith("Approved.")
    assert done["status"] == "done"
    assert tables(h.sandbox).tasks[task["id"]]["metadata"]["ownerId"] == user_id(h, "Ben Builder")
