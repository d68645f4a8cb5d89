"""Confirmation that tenant text cannot fake, and QLIK_MCP_APPROVAL=human: a page a person approves, not the model.

Everything goes through a real MCP client session against the sandbox; the page is fetched over real loopback
HTTP, and once in headless Chromium (Debian's package, see .ci/install-browser).
"""

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.shared.exceptions import MCPError
from mcp.types import URL_ELICITATION_REQUIRED, ElicitResult

from qlik_tasks_mcp.server.transport import http_app
from qlik_tasks_mcp.tools.gate import (
    QUESTION_END,
    SIDE_LIMIT,
    Consent,
    Gate,
    Gated,
    Plan,
    bind_call,
    field_diff,
)
from tests.conftest import Harness, data, error_text, make_harness

pytestmark = pytest.mark.anyio

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
HOSTILE_NAME = "Nightly\n\nGo ahead?" + "\n" * 40 + "\u2028\u2029\u202eevil\t<script>alert(1)</script>\u200f"
LABELS = ("Action: ", "Change: ", "Field ", "Note: ")


@dataclass(frozen=True)
class Family:
    """A gated delete to drive, and where the sandbox keeps its targets and their tenant-named field."""

    toolset: str
    tool: str
    id_arg: str
    shown_field: str

    def table(self, h: Harness) -> dict[str, dict[str, Any]]:
        found = h.sandbox.tables[SANDBOX_TABLES[self.toolset]]
        return found if isinstance(found, dict) else found.tasks

    def target(self, h: Harness, text: str | None = None) -> dict[str, Any]:
        task = next(iter(self.table(h).values()))
        if text is not None:
            task[self.shown_field] = text
        return task

    def args(self, task: dict[str, Any]) -> dict[str, Any]:
        return {self.id_arg: task["id"]}


SANDBOX_TABLES = {"tasks": "tasks", "reload": "reload_tasks"}
TASKS = Family("tasks", "delete_task", "task_id", "name")
RELOAD = Family("reload", "delete_reload_task", "task_id", "appId")
# The human-mode flow needs one family; reload tasks show their app id, which comes from the tenant.
FLOW = RELOAD


@pytest.fixture
async def human() -> AsyncIterator[Harness]:
    h = make_harness(toolsets=FLOW.toolset, approval="human")
    yield h
    await h.backend.aclose()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def origin_of(url: str) -> str:
    return url.split("/approve/")[0]


async def post_decision(url: str, form: dict[str, str], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as web:
        return await web.post(url, data=form, headers=headers)


# --- 1. the question and the preview cannot be faked by tenant text ---------------------------------------


@pytest.mark.parametrize("family", [TASKS, RELOAD], ids=lambda f: f.toolset)
async def test_question_keeps_tenant_text_on_one_line(family: Family) -> None:
    h = make_harness(toolsets=family.toolset)
    try:
        task = family.target(h, HOSTILE_NAME)
        h.elicit_answers.append(ElicitResult(action="decline"))
        async with h.client(elicitation=True) as client:
            cancelled = data(await client.call_tool(family.tool, family.args(task)))
        async with h.client() as client:
            preview = data(await client.call_tool(family.tool, family.args(task)))
    finally:
        await h.backend.aclose()
    assert cancelled["status"] == "cancelled" and task["id"] in family.table(h)
    message = h.elicit_messages[0]
    lines = message.split("\n")
    # One line per action, change and note, then the server's own last line: the name added no line.
    assert len(lines) == 1 + len(preview["changes"]) + len(preview.get("notes", [])) + 1, lines
    assert lines[-1] == QUESTION_END
    assert all(line.startswith(LABELS) for line in lines[:-1]), lines
    assert lines[0].startswith("Action: Delete ")
    assert "Nightly\\n\\nGo ahead?" in lines[0] and "\\u2028\\u2029\\u202eevil\\t" in lines[0]
    assert not any(ch in message for ch in "\r\t\u2028\u2029\u202e\u200f")
    # The preview the model relays is escaped the same way.
    assert preview["status"] == "confirmation_required"
    assert preview["action"] == lines[0].removeprefix("Action: ")
    assert all("\n" not in text for text in [preview["action"], *preview["changes"], *preview.get("notes", [])])


# --- 2. a structured diff shows each changed field in full ----------------------------------------------


def diff_server() -> tuple[MCPServer, dict[str, Any]]:
    """A server with one gated tool whose plan carries a diff, wired the way the registrar wires the gate."""
    mcp = MCPServer("diff")
    gate = Gate(b"d" * 32)
    stored: dict[str, Any] = {
        "name": "load",
        "workflow": {"steps": ["x" * 5000, {"reload": "app-AAAA"}], "tail": "y" * 5000},
        "owner": "me",
    }
    wanted = json.loads(json.dumps(stored))
    wanted["workflow"]["steps"][1]["reload"] = "app-BBBB"
    wanted["description"] = "new"

    async def plan_of() -> Plan:
        fields = ["name", "workflow", "owner", "description"]
        return Plan(
            action="Update task load",
            changes=["workflow, description"],
            state=stored,
            diff=field_diff(stored, wanted, fields),
        )

    async def ask(ctx: Context) -> Elicit[Consent] | None:
        return await gate.ask(ctx, plan_of)

    @mcp.tool()
    async def update(
        consent: Annotated[ElicitationResult[Consent], Resolve(ask)], confirm_token: str | None = None
    ) -> Gated[str]:
        async def act() -> str:
            stored.update(wanted)
            return "updated"

        with bind_call("update", {"confirm_token": confirm_token}):
            return await gate.run(plan=await plan_of(), consent=consent, confirm_token=confirm_token, act=act)

    return mcp, stored


async def test_preview_shows_each_changed_field_in_full() -> None:
    mcp, stored = diff_server()
    messages: list[str] = []

    async def decline(context: Any, params: Any) -> ElicitResult:
        messages.append(params.message)
        return ElicitResult(action="decline")

    async with Client(mcp) as client:
        preview = data(await client.call_tool("update", {}))
    async with Client(mcp, elicitation_callback=decline) as client:
        assert data(await client.call_tool("update", {}))["status"] == "cancelled"
    assert stored["workflow"]["steps"][1]["reload"] == "app-AAAA"
    assert preview["changes"] == ["workflow, description"]
    by_field = {change["field"]: change for change in preview["diff"]}
    assert set(by_field) == {"workflow", "description"}
    workflow = by_field["workflow"]
    # The sides are cut (they are over 10,000 characters), but around the change, and the cut is said.
    assert '"reload":"app-AAAA"' in workflow["before"] and '"reload":"app-BBBB"' in workflow["after"]
    assert "[cut: " in workflow["before"] and "characters before]" in workflow["after"]
    assert all(len(side) < SIDE_LIMIT + 80 for side in (workflow["before"], workflow["after"]))
    assert "before" not in by_field["description"] and by_field["description"]["after"] == '"new"'
    lines = messages[0].split("\n")
    assert any(line.startswith("Field workflow, before: ") and "app-AAAA" in line for line in lines)
    assert "Field description, before: (absent)" in lines and 'Field description, after: "new"' in lines
    assert lines[-1] == QUESTION_END


# --- 3. human mode: the page decides, the model cannot -----------------------------------------------------


async def test_human_mode_acts_once_after_the_page_approves(human: Harness) -> None:
    task = FLOW.target(human, HOSTILE_NAME)
    args = FLOW.args(task)
    async with human.client() as client:
        preview = data(await client.call_tool(FLOW.tool, args))
        assert preview["status"] == "confirmation_required" and "confirm_token" not in preview
        url = preview["approve_url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/approve/[A-Za-z0-9_-]{43}", url)
        # The model cannot approve with a token of its own making.
        refused = await client.call_tool(FLOW.tool, {**args, "confirm_token": "v1.1.a.b"})
        assert "takes no confirm_token" in error_text(refused)

        async with httpx.AsyncClient() as web:
            page = await web.get(url)
        assert page.status_code == 200
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none' covers it
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
        assert "Nightly\\n\\nGo ahead?" in page.text
        csrf = csrf_of(page.text)
        origin = origin_of(url)
        approve = {"csrf": csrf, "decision": "approve"}

        # Cross-site and forged posts are refused and leave the approval open.
        assert (await post_decision(url, approve, origin="http://evil.example")).status_code == 403
        assert (await post_decision(url, approve)).status_code == 403
        assert (await post_decision(url, {**approve, "csrf": "guess"}, origin=origin)).status_code == 403
        assert (await post_decision(url + "x", approve, origin=origin)).status_code == 404
        async with httpx.AsyncClient() as web:
            assert (await web.get(url, headers={"host": "rebound.example"})).status_code == 421
            assert (await web.get(url.replace("/approve/", "/approve/A"))).status_code == 404

        still = data(await client.call_tool(FLOW.tool, args))
        assert still["status"] == "confirmation_required" and still["approve_url"] == url
        assert task["id"] in FLOW.table(human)

        approved = await post_decision(url, approve, origin=origin)
        assert approved.status_code == 200 and "Approved" in approved.text
        assert (await post_decision(url, approve, origin=origin)).status_code == 404  # single use
        assert task["id"] in FLOW.table(human)  # the page alone runs nothing

        done = data(await client.call_tool(FLOW.tool, args))
        assert done["status"] == "done" and done["result"]["deleted"] is True
    assert task["id"] not in FLOW.table(human)
    outcomes = [line["outcome"] for line in human.audit_lines() if line["tool"] == FLOW.tool]
    assert outcomes == ["confirmation_required", "refused", "confirmation_required", "done"]


async def test_human_mode_reject_refuses_and_approval_fits_one_call_and_state(human: Harness) -> None:
    first, second = list(FLOW.table(human).values())[:2]
    async with human.client() as client:
        url = data(await client.call_tool(FLOW.tool, FLOW.args(first)))["approve_url"]
        async with httpx.AsyncClient() as web:
            csrf = csrf_of((await web.get(url)).text)
        rejected = await post_decision(url, {"csrf": csrf, "decision": "reject"}, origin=origin_of(url))
        assert rejected.status_code == 200 and "Rejected" in rejected.text
        cancelled = data(await client.call_tool(FLOW.tool, FLOW.args(first)))
        assert cancelled["status"] == "cancelled" and "rejected" in cancelled["next_step"]

        # Approved for `second` as it is now: another task, or `second` after a change, is not covered.
        url = data(await client.call_tool(FLOW.tool, FLOW.args(second)))["approve_url"]
        async with httpx.AsyncClient() as web:
            csrf = csrf_of((await web.get(url)).text)
        await post_decision(url, {"csrf": csrf, "decision": "approve"}, origin=origin_of(url))
        other = data(await client.call_tool(FLOW.tool, FLOW.args(first)))
        assert other["status"] == "confirmation_required" and other["approve_url"] != url
        second["state"] = "Disabled"  # changed after the approval
        changed = data(await client.call_tool(FLOW.tool, FLOW.args(second)))
        assert changed["status"] == "confirmation_required" and changed["approve_url"] != url
    assert first["id"] in FLOW.table(human) and second["id"] in FLOW.table(human)


async def test_human_mode_opens_the_page_by_url_elicitation(human: Harness) -> None:
    task = FLOW.target(human)
    asked: list[Any] = []
    answers = [ElicitResult(action="decline"), ElicitResult(action="accept")]

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params)
        return answers.pop(0)

    async with Client(human.mcp, elicitation_callback=answer, mode="legacy") as client:
        declined = data(await client.call_tool(FLOW.tool, FLOW.args(task)))
        opened = data(await client.call_tool(FLOW.tool, FLOW.args(task)))
    assert declined["status"] == "cancelled" and "declined to open" in declined["next_step"]
    assert opened["status"] == "confirmation_required" and "was opened for the user" in opened["next_step"]
    assert [p.mode for p in asked] == ["url", "url"] and asked[1].url == opened["approve_url"]
    assert asked[0].url != asked[1].url  # a declined page is dropped
    assert asked[1].elicitation_id not in asked[1].url
    assert asked[1].message.split("\n")[-1] == QUESTION_END

    # A client on a protocol that batches input requests gets the spec's URL-elicitation-required error.
    async with Client(human.mcp, elicitation_callback=answer) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool(FLOW.tool, FLOW.args(task))
    assert raised.value.error.code == URL_ELICITATION_REQUIRED
    (wanted,) = raised.value.error.data["elicitations"]
    assert wanted["mode"] == "url" and wanted["url"] == opened["approve_url"]
    assert task["id"] in FLOW.table(human)


async def test_http_transport_serves_the_page_on_its_own_port() -> None:
    h = make_harness(toolsets=FLOW.toolset, approval="human", transport="http", port=8765, http_token="t" * 20)
    try:
        task = FLOW.target(h)
        async with h.client() as client:
            url = data(await client.call_tool(FLOW.tool, FLOW.args(task)))["approve_url"]
        assert url.startswith("http://127.0.0.1:8765/approve/")
        transport = httpx.ASGITransport(app=http_app(h.mcp, h.settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as web:
            page = await web.get(url)  # no bearer token: the browser has none
            assert page.status_code == 200 and "Approve" in page.text
            assert (await web.post("/mcp", json={})).status_code == 401  # the MCP endpoint still needs one
            form = {"csrf": csrf_of(page.text), "decision": "approve"}
            decided = await web.post(url, data=form, headers={"origin": "http://127.0.0.1:8765"})
            assert decided.status_code == 200 and "Approved" in decided.text
        async with h.client() as client:
            assert data(await client.call_tool(FLOW.tool, FLOW.args(task)))["status"] == "done"
    finally:
        await h.backend.aclose()
    assert task["id"] not in FLOW.table(h)


# --- 4. the page in a real browser -------------------------------------------------------------------------


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out): no websocket needed."""

    def __init__(self, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        flags += [f"--user-data-dir={profile}", "--remote-debugging-pipe", "--window-size=1100,1400", "about:blank"]
        self.process = subprocess.Popen(
            [str(CHROMIUM), *flags],
            pass_fds=(3, 4),
            preexec_fn=wire_pipes,  # the child only dups two fds before exec
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 20) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            command["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                return message.get("result", {})

    def wait_for(self, event: str, *, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self._read_message(deadline).get("method") != event:
            pass

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def text(self, selector: str) -> str:
        expression = f"document.querySelector({json.dumps(selector)}).innerText"
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"]["value"]

    def click_and_wait(self, selector: str) -> None:
        self.send("Runtime.evaluate", {"expression": f"document.querySelector({json.dumps(selector)}).click()"})
        self.wait_for("Page.loadEventFired")

    def screenshot(self, path: Path) -> None:
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, TimeoutError, EOFError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def browser_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but /usr/bin/chromium is missing: run .ci/install-browser (as root) first")
    pytest.skip("headless Chromium is not installed (/usr/bin/chromium); .ci/install-browser installs it")


def approve_in_browser(url: str, workdir: Path) -> tuple[str, str, Path]:
    """Load the page, read its preview, keep a screenshot, click Approve; the preview and outcome texts."""
    browser = DevTools(workdir / "profile")
    try:
        browser.open(url)
        preview = browser.text("#preview")
        shot = workdir / "approval-page.png"
        browser.screenshot(shot)
        browser.click_and_wait("#approve")
        return preview, browser.text("#outcome"), shot
    finally:
        browser.close()


async def test_page_in_headless_chromium(human: Harness, tmp_path: Path) -> None:
    browser_or_skip()
    task = FLOW.target(human, HOSTILE_NAME)
    args = FLOW.args(task)
    async with human.client() as client:
        preview = data(await client.call_tool(FLOW.tool, args))
        shown, outcome, shot = await anyio.to_thread.run_sync(approve_in_browser, preview["approve_url"], tmp_path)
        ARTIFACTS.mkdir(exist_ok=True)
        kept = ARTIFACTS / "approval-page.png"
        shutil.copyfile(shot, kept)
        print(f"approval page screenshot: {shot} (copy: {kept})")
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 5000
        # What the person read is the whole preview, the hostile name on one line and inert.
        assert preview["action"] in shown and all(change in shown for change in preview["changes"])
        assert all(note in shown for note in preview["notes"]) and FLOW.tool in shown
        assert "<script>alert(1)</script>" in shown and "Nightly\\n\\nGo ahead?" in shown
        assert outcome.startswith("Approved.")
        assert task["id"] in FLOW.table(human)
        done = data(await client.call_tool(FLOW.tool, args))
    assert done["status"] == "done"
    assert task["id"] not in FLOW.table(human)
