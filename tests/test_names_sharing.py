"""Names in the sharing and Qalyptus families, sharing tasks by recipient, and find_orphans over every kind,
through an MCP client against the sandbox (issues 18 and 19)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from qlik_tasks_mcp.sandbox import qalyptus as sandbox_qalyptus
from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.sandbox.core import User
from tests.conftest import Harness, data, error_text

pytestmark = pytest.mark.anyio

SHORT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\dZ$")


def sharing(h: Harness) -> dict[str, dict[str, Any]]:
    return sandbox_sharing.tables(h.sandbox).tasks


def user_named(h: Harness, name: str) -> User:
    return next(u for u in h.sandbox.users.values() if u.name == name)


def requests_to(h: Harness, prefix: str, since: int) -> list[Any]:
    return [x for x in h.recorder.exchanges[since:] if x.path.startswith(prefix)]


def received_by(h: Harness, user: User) -> set[str]:
    """The live tasks whose recipients hold the user or their address, as stored in the sandbox."""
    found = set()
    for task_id, task in sharing(h).items():
        recipients = task.get("recipients") or {}
        users = {r["value"] for r in (recipients.get("userIds") or []) + (recipients.get("DLUsers") or [])}
        emails = {r["value"].lower() for r in recipients.get("emailAddresses") or []}
        if task.get("statusCode") != "DELETING" and (user.id in users or user.email in emails):
            found.add(task_id)
    return found


async def test_sharing_rows_name_apps_and_owners_in_one_lookup_per_page(harness: Harness) -> None:
    gone = {u.id: u for u in harness.sandbox.users.values() if u.status != "active"}
    async with harness.client() as client:
        start = len(harness.recorder.exchanges)
        page = data(await client.call_tool("list_sharing_tasks", {"limit": 100}))
        lookups = requests_to(harness, "/api/v1/users/actions/filter", start)
        apps = requests_to(harness, "/api/v1/items", start)
        again = len(harness.recorder.exchanges)
        await client.call_tool("list_sharing_tasks", {"limit": 100})
        cached = requests_to(harness, "/api/v1/users", again)
    rows = page["tasks"]
    assert len(rows) >= 25 and len(lookups) == 1 and len(apps) <= 1 and cached == []
    for row in rows:
        stored = sharing(harness)[row["id"]]
        owner = harness.sandbox.users[stored["owner"]]
        assert row["app_id"] == stored["appId"] and row["app"] == stored["appName"]
        assert row["owner_id"] == owner.id and row["owner"].startswith(owner.name)
        if owner.id in gone:
            assert row["owner"] == f"{owner.name} ({owner.status})"
    assert any(r["owner_id"] in gone for r in rows)
    assert "owner" in page["note"] and "app" in page["note"] and "never instructions" in page["note"]


async def test_rows_read_short_and_whole_tasks_keep_the_raw_schedule(harness: Harness) -> None:
    task_id, stored = next((i, t) for i, t in sharing(harness).items() if t["scheduleOptions"].get("recurrence"))
    async with harness.client() as client:
        rows = data(await client.call_tool("list_sharing_tasks", {"limit": 100}))["tasks"]
        whole = data(await client.call_tool("get_sharing_task", {"task_id": task_id}))["task"]
    row = next(r for r in rows if r["id"] == task_id)
    # A row: the schedule in words beside a short next run; no raw RRULE, no false or empty fields.
    assert row["schedule"].startswith("every") and "RRULE" not in row["schedule"]
    assert SHORT_TIME.match(row["next_run"]) and SHORT_TIME.match(row["last_run"])
    assert not {"recurrence", "time_zone", "recipients"} & set(row)
    assert all(v not in (False, None, [], "") for k, v in row.items() if k != "enabled")
    # Fetched whole: the raw lines and the tenant's own times.
    assert whole["recurrence"] == stored["scheduleOptions"]["recurrence"] and "T" in whole["next_run"]
    assert "on_app_reload" not in whole
    monitoring = next(r for r in rows if r["type"] == "chart-monitoring")
    assert monitoring["schedule"] == "after each app reload"


async def test_recipients_and_deliveries_carry_user_names(harness: Harness) -> None:
    task_id, stored = max(
        sharing(harness).items(), key=lambda item: len(sandbox_sharing.tables(harness.sandbox).executions[item[0]])
    )
    users = {u["value"] for u in stored["recipients"]["userIds"]}
    async with harness.client() as client:
        whole = data(await client.call_tool("get_sharing_task", {"task_id": task_id}))
        start = len(harness.recorder.exchanges)
        page = data(await client.call_tool("list_sharing_task_executions", {"task_id": task_id, "limit": 50}))
        lookups = requests_to(harness, "/api/v1/users/actions/filter", start)
    named = {r["value"]: r["name"] for r in whole["task"]["recipients"] if r["kind"] == "user"}
    assert set(named) == users
    assert all(named[i].startswith(harness.sandbox.users[i].name) for i in users)
    assert "recipient names" in whole["note"]
    to_users = [e for e in page["executions"] if e["recipient"].startswith("user:")]
    assert to_users and all(
        e["recipient_name"].startswith(harness.sandbox.users[e["recipient"][5:]].name) for e in to_users
    )
    assert all(SHORT_TIME.match(e["started"]) for e in page["executions"])
    # The users were named by get_sharing_task a moment ago: the cache answers, at most one lookup per page.
    assert len(lookups) <= 1 and "recipient_name" in page["note"]


async def test_which_reports_does_a_user_receive(harness: Harness) -> None:
    ben = user_named(harness, "Ben Builder")
    expected = received_by(harness, ben)
    assert expected
    async with harness.client() as client:
        by_email = data(await client.call_tool("list_sharing_tasks", {"recipient": ben.email, "limit": 100}))
        by_name = data(await client.call_tool("list_sharing_tasks", {"recipient": "ben builder", "limit": 100}))
        by_id = data(await client.call_tool("list_sharing_tasks", {"recipient": ben.id, "limit": 2}))
        outside = data(
            await client.call_tool("list_sharing_tasks", {"recipient": "cfo@partner-example.com", "limit": 100})
        )
        ambiguous = await client.call_tool("list_sharing_tasks", {"recipient": "e"})
        nobody = await client.call_tool("list_sharing_tasks", {"recipient": "Zed Nobody"})
        paged = await client.call_tool("list_sharing_tasks", {"recipient": ben.id, "cursor": "abc"})
    assert {t["id"] for t in by_email["tasks"]} == expected == {t["id"] for t in by_name["tasks"]}
    assert all("user" in t["receives_as"] for t in by_email["tasks"])
    assert (
        ben.id in by_email["note"] and "Ben Builder" in by_email["note"] and "groups are not known" in by_email["note"]
    )
    assert len(by_id["tasks"]) == 2 and by_id["total"] == len(expected) and "more tasks match" in by_id["note"]
    partners = {
        i
        for i, t in sharing(harness).items()
        if t.get("statusCode") != "DELETING"
        and "cfo@partner-example.com" in {e["value"] for e in t["recipients"].get("emailAddresses") or []}
    }
    assert partners and {t["id"] for t in outside["tasks"]} == partners
    assert all(t["receives_as"] == ["e-mail address"] for t in outside["tasks"])
    assert "address only" in outside["note"]
    assert "users match" in error_text(ambiguous) and "give the e-mail or the user id" in error_text(ambiguous)
    assert "find_users" in error_text(nobody)
    assert "cursor does not combine with recipient" in error_text(paged)


async def test_sharing_previews_name_the_app_and_the_owner(harness: Harness) -> None:
    task_id, stored = next((i, t) for i, t in sharing(harness).items() if t.get("statusCode") != "DELETING")
    owner = harness.sandbox.users[stored["owner"]]
    heir = next(u for u in harness.sandbox.users.values() if u.id != owner.id and u.status == "active")
    async with harness.client() as client:
        delete = data(await client.call_tool("delete_sharing_task", {"task_id": task_id}))
        hand_over = data(await client.call_tool("patch_sharing_task", {"task_id": task_id, "owner_id": heir.id}))
    for preview in (delete, hand_over):
        assert preview["status"] == "confirmation_required"
        assert f"'{stored['appName']}' (app {stored['appId']})" in preview["action"]
        assert f"owner '{owner.name}' (user {owner.id}" in preview["action"]
    moved = next(line for line in hand_over["changes"] if line.startswith("owner:"))
    assert f"'{owner.name}' (user {owner.id}" in moved and f"'{heir.name}' (user {heir.id})" in moved
    assert any(f"to '{heir.name}'" in n for n in hand_over["notes"])


async def test_qalyptus_previews_name_the_owner_and_project(harness: Harness) -> None:
    org = sandbox_qalyptus.tables(harness.sandbox).org()
    task = next(t for t in org.tasks.values() if t.get("ownerName"))
    schedules = [s["id"] for s in org.triggers[task["id"]] if s["type"] == "Schedule"]
    async with harness.client() as client:
        delete = data(await client.call_tool("delete_qalyptus_task", {"task_id": task["id"]}))
        update = data(await client.call_tool("update_qalyptus_task", {"task_id": task["id"], "is_active": False}))
        unschedule = data(
            await client.call_tool(
                "delete_qalyptus_task_triggers", {"task_id": task["id"], "trigger_ids": schedules[:1]}
            )
        )
    for preview in (delete, update) + ((unschedule,) if schedules else ()):
        assert preview["status"] == "confirmation_required"
        assert f"owner '{task['ownerName']}' (Qalyptus user {task['owner']})" in preview["action"]
        assert f"of project '{task['project']['name']}'" in preview["action"]


async def test_find_orphans_reads_sharing_and_qalyptus_whole_and_judges_qalyptus_owners(harness: Harness) -> None:
    long_gone = next(t for t in sharing(harness).values() if t["appId"] not in harness.sandbox.apps)
    # The default harness serves the sandbox's main organization.
    org = sandbox_qalyptus.tables(harness.sandbox).org()
    left = {task_id for task_id, t in org.tasks.items() if t["owner"] not in {u["id"] for u in org.users}}
    assert left, "the seed leaves Qalyptus tasks to people who are no longer Qalyptus users"
    async with harness.client() as client:
        start = len(harness.recorder.exchanges)
        report = data(await client.call_tool("find_orphans", {}))
    listings = [x for x in requests_to(harness, "/api/v1/sharing-tasks", start) if x.method == "GET"]
    # Sharing tasks are listed whole (a page of 100 per request), not app by app.
    assert 1 <= len(listings) <= 1 + len(sharing(harness)) // 100
    assert all("appid" not in x.query for x in listings)
    found = {(o["kind"], o["id"]): o for o in report["orphans"]}
    gone_app = found[("sharing", long_gone["id"])]
    assert "no longer exists" in gone_app["problem"] and long_gone["appId"] in gone_app["app"]
    assert {i for k, i in found if k == "qalyptus"} == left
    assert report["checked"]["qalyptus"] == len(org.tasks)
    assert report["checked"]["sharing"] == len(sharing(harness))
    assert "GET /users" in report["note"] and "inferred" in report["note"]


async def test_qalyptus_rows_read_short(harness: Harness) -> None:
    async with harness.client() as client:
        runs = data(await client.call_tool("list_qalyptus_task_statuses", {"limit": 100}))["statuses"]
        tasks = data(await client.call_tool("list_qalyptus_tasks", {"limit": 100}))["tasks"]
        one = data(await client.call_tool("get_qalyptus_task_status", {"task_id": runs[0]["task_id"]}))["status"]
    ended = [r for r in runs if r.get("ended_at")]
    assert ended and all(SHORT_TIME.match(r["ended_at"]) and SHORT_TIME.match(r["started_at"]) for r in ended)
    assert SHORT_TIME.match(one["started_at"])
    assert all(t.get("scheduled") in (True, None) for t in tasks) and any("scheduled" not in t for t in tasks)
    assert any(SHORT_TIME.match(t.get("last_execution") or "") for t in tasks)
