"""Names are enrichment; nothing is concluded from absence (issue 24): a key that may not list users, lookups that
fail or answer nothing, find_apps on a tenant that reads `name` as a whole name, and find_orphans on such keys,
on a tenant that retired reload tasks and on a listing whose next link never ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from qlik_tasks_mcp.sandbox import reloads as sandbox_reloads
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.tools.ops.orphans import SCAN_REQUESTS
from tests.conftest import Harness, data, make_harness, row_ids

pytestmark = pytest.mark.anyio

NOTE = "Names could not be read"


@pytest.fixture
async def user() -> AsyncIterator[Harness]:
    harness = make_harness(sandbox_profile="user")
    yield harness
    await harness.backend.aclose()
    assert not harness.recorder.problems, "\n".join(harness.recorder.problems)


def tasks_table(h: Harness) -> dict[str, dict[str, Any]]:
    return sandbox_tasks.tables(h.sandbox).tasks


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def since(h: Harness, start: int, prefix: str = "") -> list[Any]:
    return [x for x in h.recorder.exchanges[start:] if x.path.startswith(prefix)]


async def test_a_key_that_may_not_list_users_reads_and_previews_with_ids_and_one_note(user: Harness) -> None:
    # Someone else's task this key has access to (its app is in one of the key's spaces): listed, read, previewed.
    task = next(
        t
        for t in tasks_table(user).values()
        if t["metadata"]["ownerId"] != user.sandbox.caller_id and sandbox_tasks.accessible(user.sandbox, t)
    )
    # A task the key owns on an app outside its spaces: listed to it, its app's item not (no name to show).
    sandbox = user.sandbox
    mine = next(t for t in tasks_table(user).values() if not sandbox.sees_task(t["resourceId"], "", ""))
    mine["metadata"]["ownerId"] = sandbox.caller_id
    async with user.client() as client:
        listed = await client.call_tool("list_tasks", {"limit": 100})
        one = await client.call_tool("get_task", {"task_id": task["id"]})
        preview = data(await client.call_tool("delete_task", {"task_id": task["id"]}))
    rows = data(listed)["tasks"]
    assert rows and all(r["owner_id"] and "owner" not in r for r in rows)
    assert {r["id"] for r in rows} == {
        t["id"] for t in tasks_table(user).values() if sandbox_tasks.accessible(sandbox, t)
    }
    assert [r["app"] for r in rows if r["id"] == mine["id"]] == ["(not visible to this key)"]
    assert all(r["app"] != "(not visible to this key)" for r in rows if r["id"] != mine["id"])
    for result in (listed, one):
        assert text_of(result).count(NOTE) == 1
        assert "POST /api/v1/users/actions/filter -> HTTP 403" in data(result)["note"]
    # The preview names the owner by id only, and says once why.
    assert f"user {task['metadata']['ownerId']}" in preview["action"]
    assert sum(NOTE in n for n in preview["notes"]) == 1
    assert preview["status"] == "confirmation_required"


async def test_reload_app_reports_the_reload_it_started_when_names_cannot_be_read(user: Harness) -> None:
    app_id = next(a for a, app in user.sandbox.apps.items() if user.sandbox.sees(app.space_id, app.owner_id))
    before = len(sandbox_reloads.tables(user.sandbox).by_app.get(app_id, []))
    async with user.client() as client:
        result = await client.call_tool("reload_app", {"app_id": app_id})
    started = data(result)
    assert started["started"] is True and started["reload"]["app_id"] == app_id
    assert len(sandbox_reloads.tables(user.sandbox).by_app[app_id]) == before + 1
    assert text_of(result).count(NOTE) == 1 and "users" in started["note"]


@pytest.mark.parametrize("fault", ["status_503", "slow"])
async def test_a_failing_or_slow_lookup_leaves_ids_in_place(harness: Harness, fault: str) -> None:
    for http in (harness.backend.qlik,):
        http.retry.base_delay = 0.001
        http.retry.max_delay = 0.002
    harness.backend.qlik._http.timeout = harness.backend.qlik._http.timeout.__class__(0.2)
    faults = harness.sandbox.faults
    faults.match_path, faults.slow_seconds = "/api/v1/users/actions/filter", 1.0
    faults.hostile(fault)
    async with harness.client() as client:
        result = await client.call_tool("list_sharing_tasks", {"limit": 50})
    page = data(result)
    assert page["tasks"] and all(r["owner_id"] for r in page["tasks"])
    assert text_of(result).count(NOTE) == 1
    assert ("HTTP 503" if fault == "status_503" else "no HTTP answer") in page["note"]


async def test_a_users_filter_that_answers_no_rows_is_not_every_owner_gone(harness: Harness) -> None:
    # The filter answers, but with nobody: the owners are not judged, and nobody is called deleted.
    kept = harness.sandbox.users
    harness.sandbox.users = {harness.sandbox.caller_id: kept[harness.sandbox.caller_id]}
    faults = harness.sandbox.faults
    try:
        async with harness.client() as client:
            listed = data(await client.call_tool("list_tasks", {"limit": 100}))
            start = len(harness.recorder.exchanges)
            report = data(await client.call_tool("find_orphans", {}))
    finally:
        harness.sandbox.users = kept
    assert faults.injected == 0
    owners = {r["owner_id"] for r in row_ids(listed)} - {harness.sandbox.caller_id}
    assert owners and all("deleted" not in (r.get("owner") or "") for r in listed["tasks"])
    # An owner the filter left out is read directly; only its 404 makes it "no longer a user of the tenant".
    asked = {x.path.rsplit("/", 1)[1] for x in since(harness, start, "/api/v1/users/") if x.status == 404}
    for orphan in report["orphans"]:
        # Qalyptus owners are judged against Qalyptus's own users.
        if "owner" in orphan["problem"] and orphan["kind"] != "qalyptus":
            owner_id = orphan["owner"].split()[1]
            assert owner_id in asked and "no longer a user of the tenant" in orphan["problem"]


async def test_find_apps_finds_a_fragment_where_name_is_a_whole_name(harness: Harness) -> None:
    async with harness.client() as client:
        start = len(harness.recorder.exchanges)
        found = data(await client.call_tool("find_apps", {"name": "sales"}))
        fragment = since(harness, start, "/api/v1/items")
        start = len(harness.recorder.exchanges)
        exact = data(await client.call_tool("find_apps", {"name": "sales dashboard", "exact": True}))
        whole = since(harness, start, "/api/v1/items")
        part_as_whole = data(await client.call_tool("find_apps", {"name": "sales", "exact": True}))
    assert [a["name"] for a in found["apps"]] == ["Sales Dashboard"]
    assert "query=sales" in fragment[0].query and "name=" not in fragment[0].query
    assert [a["name"] for a in exact["apps"]] == ["Sales Dashboard"] and "name=sales" in whole[0].query
    # The sandbox reads `name` as Qlik's spec does: a whole name.
    assert part_as_whole["apps"] == [] and "shorter fragment" not in part_as_whole["note"]


async def test_find_apps_sees_only_the_keys_spaces(user: Harness) -> None:
    async with user.client() as client:
        found = data(await client.call_tool("find_apps", {"name": "a", "limit": 100}))
    visible = {a for a, app in user.sandbox.apps.items() if user.sandbox.sees(app.space_id, app.owner_id)}
    assert {a["id"] for a in found["apps"]} <= visible and found["apps"]
    assert len(visible) < len(user.sandbox.apps)


async def test_find_orphans_calls_no_hidden_app_gone_and_no_unread_owner_deleted(user: Harness) -> None:
    hidden = {a for a, app in user.sandbox.apps.items() if not user.sandbox.sees(app.space_id, app.owner_id)}
    deleted = {a for a, app in user.sandbox.apps.items() if app.deleted}
    async with user.client() as client:
        result = await client.call_tool("find_orphans", {})
    report = data(result)
    assert not any("owner" in o["problem"] for o in report["orphans"] if o["kind"] != "qalyptus")
    gone = [o for o in report["orphans"] if "app no longer exists" in o["problem"]]
    # The deleted app is gone for any key (its direct read answers 404); an app the key cannot see is not.
    assert gone and {a for a in deleted if any(a in o["app"] for o in gone)} == deleted
    for orphan in gone:
        assert not any(a in orphan["app"] for a in hidden - deleted)
        assert orphan["fix"].startswith("delete it (delete_")
    assert "not visible to this key" in report["note"] and "owners could not be read" in report["note"]
    assert text_of(result).count(NOTE) == 1


async def test_find_orphans_skips_a_retired_kind_with_a_note() -> None:
    harness = make_harness(sandbox_profile="retired")
    try:
        async with harness.client() as client:
            report = data(await client.call_tool("find_orphans", {}))
    finally:
        await harness.backend.aclose()
    assert report["checked"]["reload"] == 0 and "reload tasks skipped" in report["note"]
    assert report["orphans"] and report["checked"]["task"] > 0


async def test_find_orphans_stops_within_its_budget_on_a_looping_next_link(harness: Harness) -> None:
    faults = harness.sandbox.faults
    faults.hostile("looping_next_link")
    harness.sandbox.rate_limits = False
    async with harness.client() as client:
        start = len(harness.recorder.exchanges)
        report = data(await client.call_tool("find_orphans", {}))
    faults.looping_next_link = 0
    sent = len(since(harness, start))
    # The budget's reads, plus the few name lookups of the tasks read (batched by 100).
    assert report["stopped_early"] and sent <= SCAN_REQUESTS + 20


async def test_a_re_read_after_a_patch_that_fails_is_a_note_not_an_error(harness: Harness) -> None:
    from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing

    http = harness.backend.qlik
    http.retry.base_delay, http.retry.max_delay = 0.001, 0.002
    task_id = next(i for i, t in sandbox_sharing.tables(harness.sandbox).tasks.items() if t.get("enabled"))

    class DownAfterPatch(httpx.AsyncBaseTransport):
        """The tenant stops answering reads of the task once the patch has gone through."""

        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner, self.patched = inner, False

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "PATCH":
                self.patched = True
            elif self.patched and request.method == "GET" and task_id in request.url.path:
                raise httpx.ConnectError("connection refused", request=request)
            return await self.inner.handle_async_request(request)

    http._http._transport = DownAfterPatch(http._http._transport)
    async with harness.client() as client:
        result = await client.call_tool("patch_sharing_task", {"task_id": task_id, "name": "Renamed pack"})
    done = data(result)["result"]
    assert sandbox_sharing.tables(harness.sandbox).tasks[task_id]["name"] == "Renamed pack"
    assert done["ops"] == ["replace /name"] and "task" not in done
    assert "It was done" in done["note"] and "do not do it again" in done["note"]


async def test_tools_that_take_an_app_or_an_owner_take_its_name(harness: Harness) -> None:
    from tests.conftest import error_text

    sales = next(a for a in harness.sandbox.apps.values() if a.name == "Sales Dashboard")
    finance = next(a for a in harness.sandbox.apps.values() if a.name == "Finance P&L")
    ben = next(u for u in harness.sandbox.users.values() if u.name == "Ben Builder")
    harness.sandbox.rate_limits = False
    async with harness.client() as client:
        by_name = data(await client.call_tool("list_tasks", {"resource_id": "sales dash", "limit": 100}))
        by_id = data(await client.call_tool("list_tasks", {"resource_id": sales.id, "limit": 100}))
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": "finance p&l", "runs": 1}))
        many = error_text(await client.call_tool("list_reloads", {"app_id": "an"}))
        orphans = data(await client.call_tool("find_orphans", {"app_ids": ["Sales Dashboard", finance.id]}))
        owned = data(await client.call_tool("list_tasks", {"owner_id": ben.email, "resource_id": "Sales Dashboard"}))
        by_filter = {"enabled": False, "filter": {"app_id": "finance"}}
        bulk_by_name = data(await client.call_tool("set_tasks_enabled", by_filter))
        by_filter["filter"] = {"app_id": finance.id}
        bulk_by_id = data(await client.call_tool("set_tasks_enabled", by_filter))
    assert by_name["tasks"] and by_name == by_id
    assert overview["app_id"] == finance.id
    assert "apps match 'an'" in many and "give the whole name or the app id" in many and "(app " in many
    assert orphans["checked"]["apps"] == 2
    assert bulk_by_name["changes"] and bulk_by_name["changes"] == bulk_by_id["changes"]
    assert owned["tasks"] and all(t["owner_id"] == ben.id and t["app_id"] == sales.id for t in row_ids(owned))


async def test_sharing_tasks_by_recipient_with_a_key_that_may_not_filter_users(user: Harness) -> None:
    from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing

    caller = user.sandbox.caller()
    async with user.client() as client:
        start = len(user.recorder.exchanges)
        mine = data(await client.call_tool("list_sharing_tasks", {"recipient": caller.email, "limit": 50}))
    assert any(x.path == f"/api/v1/users/{caller.id}" for x in since(user, start))
    stored = sandbox_sharing.tables(user.sandbox).tasks
    for row in mine["tasks"]:
        recipients = stored[row["id"]].get("recipients") or {}
        users = {r["value"] for r in recipients.get("userIds") or []}
        emails = {r["value"].lower() for r in recipients.get("emailAddresses") or []}
        assert caller.id in users or caller.email in emails or recipients.get("groupIds")
