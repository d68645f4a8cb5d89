"""Qalyptus Cloud, the rest of the reference (issue 27), through a real MCP client on the sandbox: recipients, the
task e-mail, creating tasks, task reports, external events, owners, on-demand reports, and the ops tools' reach."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from qlik_tasks_mcp.client.qalyptus_paths import DEFAULTS, PathTable
from qlik_tasks_mcp.sandbox.qalyptus import QALYPTUS_HOST, QALYPTUS_SANDBOX_KEY, QALYPTUS_SANDBOX_URL, tables
from tests.conftest import Harness, data, error_text, first_error, make_harness
from tests.test_qalyptus import confirmed, fast, org, sent, task_named

pytestmark = pytest.mark.anyio

# Every operation issue 27 added, each in the one path table.
NEW_OPS = {
    "create_task",
    "change_owner",
    "task_email",
    "update_task_email",
    "update_recipients",
    "delete_recipients",
    "set_task_report",
    "delete_task_reports",
    "set_external_event",
    "delete_external_events",
    "generate_report",
    "request_statuses",
    "request_status",
    "request_log",
    "request_smtp_log",
    "delete_request",
    "download_report",
    "list_groups",
    "list_projects",
}


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = fast(make_harness(toolsets="qalyptus"))
    yield harness
    await harness.backend.aclose()
    assert not harness.recorder.problems, "\n".join(harness.recorder.problems)


def users(h: Harness) -> list[dict[str, Any]]:
    return org(h).users


def group_named(h: Harness, name: str) -> dict[str, Any]:
    return next(g for g in org(h).groups if g["name"] == name)


def test_every_new_path_is_in_the_one_table_with_its_source() -> None:
    table = PathTable()
    assert NEW_OPS <= set(DEFAULTS)
    for op in NEW_OPS:
        entry = table[op]
        assert entry.source in ("verified", "inferred"), op
        # Verified entries cite NOTES.md; inferred ones the reference operation they serve.
        assert entry.basis.startswith("NOTES.md" if entry.source == "verified" else 'reference "'), op
    assert {op for op in NEW_OPS if table[op].source == "verified"} == {"list_groups", "list_projects"}
    assert 'reference "Generate an on-demand report"' in (table["generate_report"].hint() or "")
    moved = PathTable('{"change_owner": "POST /tasks/{id}/change-owner/{ownerId}"}')["change_owner"]
    assert (moved.method, moved.source, moved.basis) == ("POST", "configured", "QALYPTUS_PATHS")


# Recipients ---------------------------------------------------------------------------------------------


async def test_recipients_with_names_and_changes_gated_only_when_removing_or_going_outside(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    group = group_named(h, "Sales managers")
    before = {r["id"] for r in org(h).recipients[task["id"]]}
    newcomer = next(u for u in users(h) if u["id"] not in before)
    async with h.client() as client:
        listed = data(await client.call_tool("get_qalyptus_task_recipients", {"task_id": task["id"]}))
        # The tenant lists the group without its name: the organization's groups name it.
        shown = {r["id"]: r for r in listed["recipients"]}
        assert shown[group["id"]] == {"id": group["id"], "type": "Group", "name": "Sales managers"}
        assert all(r.get("name") for r in listed["recipients"])
        # Adding a user of the organization (by e-mail) acts at once.
        added = data(
            await client.call_tool(
                "set_qalyptus_task_recipients", {"task_id": task["id"], "add": [newcomer["email"].upper()]}
            )
        )
        assert added["status"] == "done" and "confirm_token" not in added
        assert newcomer["id"] in {r["id"] for r in added["result"]["recipients"]}
        # Removing the group, or adding an address no user has, asks first and names each change.
        args = {"task_id": task["id"], "add": ["cfo@partner.example"], "remove": ["Sales managers"]}
        done = await confirmed(client, "set_qalyptus_task_recipients", args)
    assert "- Group 'Sales managers'" in done["changes"][0]
    assert done["changes"][1].startswith("+ cc cfo@partner.example: no user of this organization")
    assert group["id"] not in {r["id"] for r in org(h).recipients[task["id"]]}
    assert org(h).emails[task["id"]]["cc"] == "cfo@partner.example"
    assert done["result"]["cc"] == ["cfo@partner.example"]
    put = sent(h, "PUT", "/recipients")[0]
    # The whole list goes out as the reference's {id, type} items.
    assert all(set(item) == {"id", "type"} for item in put.request_body)
    assert sent(h, "DELETE", "/recipients")[0].request_body == [group["id"]]


async def test_recipient_words_that_match_nobody_are_refused_before_anything_is_sent(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    async with h.client() as client:
        nobody = error_text(
            await client.call_tool("set_qalyptus_task_recipients", {"task_id": task["id"], "add": ["Nobody Here"]})
        )
        absent = error_text(
            await client.call_tool("set_qalyptus_task_recipients", {"task_id": task["id"], "remove": ["x@y.example"]})
        )
        neither = error_text(await client.call_tool("set_qalyptus_task_recipients", {"task_id": task["id"]}))
    assert "is no user or group" in nobody and "does not receive" in absent and "give add or remove" in neither
    assert not [x for x in h.recorder.exchanges if x.method != "GET"]


async def test_recipients_degrade_when_groups_or_the_email_cannot_be_read(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    tables(h.sandbox).unserved |= {"/groups", "/tasks/{id}/email"}
    async with h.client() as client:
        listed = data(await client.call_tool("get_qalyptus_task_recipients", {"task_id": task["id"]}))
        outside = error_text(
            await client.call_tool(
                "set_qalyptus_task_recipients", {"task_id": task["id"], "add": ["a@partner.example"]}
            )
        )
    group = next(r for r in listed["recipients"] if r["type"] == "Group")
    assert "name" not in group and "cc" not in listed
    assert "groups could not be read (HTTP 404)" in listed["note"] and "e-mail could not be read" in listed["note"]
    assert "would be copied through the task's e-mail" in outside
    assert not [x for x in h.recorder.exchanges if x.method != "GET"]


# The e-mail ---------------------------------------------------------------------------------------------


async def test_email_shows_subject_message_and_attachments_and_switching_it_off_asks(h: Harness) -> None:
    task = task_named(h, "Daily Finance Pack")
    async with h.client() as client:
        got = data(await client.call_tool("get_qalyptus_task_email", {"task_id": task["id"]}))
        assert got["subject"] == "Monthly P&L: your copy" and got["active"] is True
        assert got["reports"][0]["format"] == "XLSX" and got["reports"][0]["attached"] is True
        assert got["text"].count("BEGIN UNTRUSTED Qalyptus e-mail") == 1 and "Please find attached" in got["text"]
        changed = data(
            await client.call_tool(
                "update_qalyptus_task_email", {"task_id": task["id"], "subject": "Board pack", "message": "Hi all"}
            )
        )
        assert changed["status"] == "done" and changed["result"]["subject"] == "Board pack"
        off = await confirmed(client, "update_qalyptus_task_email", {"task_id": task["id"], "active": False})
    assert "no longer mailed" in " ".join(off["notes"])
    body = sent(h, "PUT", "/email")[0].request_body
    # The whole e-mail, field by field as the reference names them.
    assert list(body) == [
        "from",
        "ccBcc",
        "cc",
        "bcc",
        "ccQlikVariable",
        "bccQlikVariable",
        "subject",
        "message",
        "isActive",
        "oneToAll",
    ]
    assert org(h).emails[task["id"]]["isActive"] is False


# Creating a task and its reports -----------------------------------------------------------------------


async def test_create_a_task_with_a_report_recipients_and_a_schedule(h: Harness) -> None:
    people = users(h)[:2]
    args = {
        "name": "Weekly Sales Pack",
        "project": "sales",
        "reports": [{"report": "Sales by Region", "format": "docx"}],
        "recipients": [people[0]["email"], "Finance managers"],
        "schedule": {"frequency": "once", "time_zone": "Europe/Zurich", "start": "2031-01-06T07:00:00"},
    }
    async with h.client() as client:
        made = data(await client.call_tool("create_qalyptus_task", args))
    assert made["status"] == "done", made
    result = made["result"]
    task_id = result["task"]["id"]
    assert result["task"]["name"] == "Weekly Sales Pack" and result["task"]["project"] == "Sales"
    assert (
        result["task"]["reports"][0]["name"] == "Sales by Region" and result["task"]["reports"][0]["format"] == "DOCX"
    )
    assert result["task"]["triggers"][0]["when"].startswith("Once")
    assert {r["name"] for r in result["recipients"]["recipients"]} == {people[0]["name"], "Finance managers"}
    assert sent(h, "POST", "/tasks")[0].request_body == {
        "name": "Weekly Sales Pack",
        "description": None,
        "projectID": next(p["id"] for p in org(h).projects.values() if p["name"] == "Sales"),
    }
    report_body = sent(h, "POST", "/reports")[0].request_body
    assert report_body["format"] == "DOCX" and report_body["emailAttachment"] is True
    assert len(org(h).triggers[task_id]) == 1


async def test_creating_a_task_that_sends_at_once_asks_first_and_a_failed_step_leaves_nothing(h: Harness) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    args = {
        "name": "Right now",
        "project": "Sales",
        "reports": [{"report": "Sales by Region", "format": "PDF"}],
        "schedule": {"frequency": "once", "time_zone": "UTC", "start": soon},
    }
    count = len(org(h).tasks)
    async with h.client() as client:
        preview = data(await client.call_tool("create_qalyptus_task", args))
        assert preview["status"] == "confirmation_required" and "sends reports at once" in preview["notes"][0]
        assert len(org(h).tasks) == count
        bad_format = error_text(
            await client.call_tool(
                "create_qalyptus_task", args | {"reports": [{"report": "Sales by Region", "format": "XLSX"}]}
            )
        )
        assert "generated as PDF, DOCX" in bad_format
        # A step the tenant refuses after the task was made: the task is deleted again.
        tables(h.sandbox).unserved.add("/tasks/{id}/schedules")
        # Without a schedule nothing unserved is needed: made whole, at once.
        whole = data(await client.call_tool("create_qalyptus_task", args | {"schedule": None}))
        assert whole["status"] == "done" and "triggers" not in whole["result"]["task"]
        broken = error_text(
            await client.call_tool(
                "create_qalyptus_task",
                args | {"schedule": {"frequency": "once", "time_zone": "UTC", "start": "2031-01-01T00:00:00"}},
            )
        )
    assert "Setting up the new task failed" in broken and "deleted again" in broken
    assert {t["name"] for t in org(h).tasks.values()} >= {"Right now"}
    assert sum(t["name"] == "Right now" for t in org(h).tasks.values()) == 1


async def test_task_reports_added_changed_and_removed_with_a_preview(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    async with h.client() as client:
        added = data(
            await client.call_tool(
                "set_qalyptus_task_report", {"task_id": task["id"], "report": "Monthly P&L", "format": "pdf"}
            )
        )
        new_id = added["report"]["id"]
        assert added["report"]["format"] == "PDF" and added["report"]["attached"] is True
        changed = data(
            await client.call_tool(
                "set_qalyptus_task_report",
                {"task_id": task["id"], "task_report_id": new_id, "format": "XLSX", "embed": True},
            )
        )
        assert changed["report"]["format"] == "XLSX" and changed["report"]["embedded"] is True
        refused = error_text(
            await client.call_tool(
                "set_qalyptus_task_report", {"task_id": task["id"], "task_report_id": new_id, "format": "DOCX"}
            )
        )
        assert "generated as XLSX, PDF" in refused
        removed = await confirmed(
            client, "delete_qalyptus_task_reports", {"task_id": task["id"], "task_report_ids": [new_id]}
        )
    assert removed["changes"] == [f"'Monthly P&L' as XLSX ({new_id})"]
    assert [r["reportName"] for r in org(h).task_reports[task["id"]]] == ["Sales by Region"]
    update = sent(h, "POST", "/reports")[1]
    assert update.query == f"taskReportID={new_id}" and update.request_body["emailEmbedment"] is True


# Triggers and owners ------------------------------------------------------------------------------------


async def test_an_external_event_is_added_shown_in_words_changed_and_deleted(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    app = next(iter(h.sandbox.apps.values()))
    async with h.client() as client:
        added = data(await client.call_tool("set_qalyptus_task_event", {"task_id": task["id"], "app_id": app.id}))
        event = added["event"]
        assert event["when"] == f"When Qlik '{app.name}' (app {app.id}) reloads successfully"
        listed = data(await client.call_tool("list_qalyptus_task_triggers", {"task_id": task["id"]}))["triggers"]
        assert [t["type"] for t in listed] == ["Schedule", "QlikEvent"]
        assert listed[0]["when"] == "Monthly on day 1 at 06:30 (Europe/Zurich)" and listed[1]["when"] == event["when"]
        changed = data(
            await client.call_tool(
                "set_qalyptus_task_event", {"task_id": task["id"], "event_id": event["id"], "on": "failure"}
            )
        )
        assert changed["event"]["when"].endswith("fails to reload") and changed["event"]["id"] == event["id"]
        refused = error_text(
            await client.call_tool("set_qalyptus_task_event", {"task_id": task["id"], "app_id": "no-such-app"})
        )
        assert "HTTP 200: Qlik app not found" in refused and "isSuccess: false" in refused
        deleted = await confirmed(
            client, "delete_qalyptus_task_triggers", {"task_id": task["id"], "trigger_ids": [event["id"]]}
        )
    assert deleted["changes"][0].endswith("fails to reload")
    body = sent(h, "POST", "/external-events")[0].request_body
    assert list(body) == ["name", "execution", "priority", "description", "appID", "qlikEvent", "timeZone"]
    assert body["appID"] == app.id and body["qlikEvent"] == "app.reload.succeeded"
    assert sent(h, "DELETE", "/external-events")[0].request_body == [event["id"]]
    assert [t["type"] for t in org(h).triggers[task["id"]]] == ["Schedule"]


async def test_change_owner_previews_both_owners(h: Harness) -> None:
    task = task_named(h, "Weekly Ops Scorecard")
    heir = next(u for u in users(h) if u["id"] != task["owner"])
    async with h.client() as client:
        done = await confirmed(client, "change_qalyptus_task_owner", {"task_id": task["id"], "owner": heir["name"]})
        same = error_text(
            await client.call_tool("change_qalyptus_task_owner", {"task_id": task["id"], "owner": heir["email"]})
        )
    assert f"from '{task['ownerName']}'" in done["action"] or f"'{task['ownerName']}'" in done["action"]
    assert f"to '{heir['name']}' (Qalyptus user {heir['id']})" in done["action"]
    assert done["result"]["owner"] == heir["name"] and "already owns" in same
    assert sent(h, "PUT", f"/owner/{heir['id']}")


# On-demand reports --------------------------------------------------------------------------------------


async def test_generate_a_report_with_selections_follow_it_read_its_log_and_get_the_link(h: Harness) -> None:
    fast(h, queue=0.2, run=1.0)
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    args = {"report": "Sales by Region", "output_format": "pdf", "selections": {"Region": ["Nordics", "DACH"]}}
    async with h.client() as client:
        result = data(await client.call_tool("generate_qalyptus_report", args, progress_callback=on_progress))
        request = result["request"]
        log = data(await client.call_tool("get_qalyptus_task_log", {"request_id": request["id"], "grep": "Selection"}))
        listed = data(await client.call_tool("list_qalyptus_requests", {"report": "sales"}))
        again = data(await client.call_tool("get_qalyptus_request", {"request_id": request["id"]}))
        both = error_text(
            await client.call_tool("get_qalyptus_task_log", {"request_id": request["id"], "task_id": "x"})
        )
        deleted = await confirmed(client, "delete_qalyptus_request", {"request_id": request["id"]})
    assert result["wait_ended"] == "finished" and request["status"] == "Completed"
    assert request["report"] == "Sales by Region" and request["format"] == "PDF" and request["by"] == "OnDemand"
    url = f"https://files.{QALYPTUS_HOST}/reports/{request['id']}/sales_by_region.pdf"
    assert result["download"] == {"url": url} and again["download"] == {"url": url}
    assert len(seen) >= 3 and all(b[0] > a[0] for a, b in pairwise(seen))
    assert any("Running" in (m or "") for _, m in seen)
    assert "Selection Region=Nordics,DACH" in log["log"] and log["request_id"] == request["id"]
    assert [r["id"] for r in listed["requests"]] == [request["id"]]
    assert "not both" in both
    assert "its log and its report file are deleted" in deleted["changes"][0]
    assert request["id"] not in tables(h.sandbox).org().requests
    body = sent(h, "POST", "/generate/PDF")[0].request_body
    assert body == {
        "selections": [{"fieldName": "Region", "values": ["Nordics", "DACH"]}],
        "appId": None,
        "bookmarkId": None,
    }


async def test_a_failed_on_demand_report_comes_back_with_its_log_and_reaches_find_failures() -> None:
    h = fast(make_harness(toolsets="qalyptus,ops"))
    try:
        async with h.client() as client:
            result = data(
                await client.call_tool(
                    "generate_qalyptus_report",
                    {"report": "Ops Scorecard", "output_format": "PDF", "bookmark_id": "bm-1"},
                )
            )
            failures = data(await client.call_tool("find_failures", {"hours": 1, "kinds": ["qalyptus"]}))
            refused = error_text(
                await client.call_tool(
                    "generate_qalyptus_report", {"report": "Ops Scorecard", "output_format": "PDF", "app_id": "gone"}
                )
            )
    finally:
        await h.backend.aclose()
    assert result["request"]["status"] == "Failed" and "download" not in result
    assert " ERROR " in result["log_tail"] and "request_id" in result["note"]
    group = next(g for g in failures["groups"] if g["name"].startswith("on-demand"))
    assert group["name"] == "on-demand Ops Scorecard as PDF" and "kpi-07" in first_error(failures, group)
    assert "HTTP 200: Qlik app not found" in refused


async def test_explain_schedule_says_a_task_runs_when_a_qlik_app_reloads() -> None:
    h = fast(make_harness(toolsets="qalyptus,ops"))
    try:
        task = task_named(h, "Daily Finance Pack")
        event = next(t for t in tables(h.sandbox).org().triggers[task["id"]] if t["type"] == "QlikEvent")
        app = h.sandbox.apps[event["appId"]]
        async with h.client() as client:
            explained = data(await client.call_tool("explain_schedule", {"kind": "qalyptus", "task_id": task["id"]}))
    finally:
        await h.backend.aclose()
    assert explained["description"] == "every day at 06:30 America/New_York"
    assert f"Also runs when Qlik '{app.name}' (app {app.id}) reloads successfully." in explained["note"]


async def test_a_bulk_change_of_an_app_reaches_the_qalyptus_tasks_its_reloads_start() -> None:
    h = fast(make_harness(toolsets="qalyptus,ops"))
    try:
        task = task_named(h, "Daily Finance Pack")
        event = next(t for t in tables(h.sandbox).org().triggers[task["id"]] if t["type"] == "QlikEvent")
        args = {"enabled": False, "app_id": event["appId"], "kinds_filter": ["qalyptus"]}
        async with h.client() as client:
            preview = data(await client.call_tool("set_tasks_enabled", args))
            done = data(await client.call_tool("set_tasks_enabled", args | {"confirm_token": preview["confirm_token"]}))
    finally:
        await h.backend.aclose()
    started = {
        t["id"]
        for t in tables(h.sandbox).org().tasks.values()
        if any(
            e.get("appId") == event["appId"]
            for e in tables(h.sandbox).org().triggers[t["id"]]
            if e["type"] == "QlikEvent"
        )
    }
    assert task["id"] in started and any(task["id"] in line for line in preview["changes"])
    assert done["status"] == "done" and done["result"]["changed"] == len(started)
    assert all(tables(h.sandbox).org().tasks[i]["isActive"] is False for i in started)


async def test_the_sandbox_answers_the_new_operations_in_the_envelope_refusals_included(h: Harness) -> None:
    """Straight to the sandbox: bodies off the reference's DTOs are refused with 400, and what a tenant refuses
    for its own reasons comes back as isSuccess false on HTTP 200."""
    task = task_named(h, "Monthly Sales Distribution")
    pdf_only = next(r for r in org(h).reports.values() if r["name"] == "Ops Scorecard")
    headers = {"Authorization": f"Bearer {QALYPTUS_SANDBOX_KEY}"}
    async with httpx.AsyncClient(transport=h.transport.inner, base_url=QALYPTUS_SANDBOX_URL, headers=headers) as http:
        no_type = await http.put(f"/tasks/{task['id']}/recipients", json=[{"id": users(h)[0]["id"]}])
        wrong_format = await http.post(f"/reports/{pdf_only['id']}/generate/XLSX", json={})
        stranger = await http.put(f"/tasks/{task['id']}/owner/{'f' * 32}")
        groups = await http.get("/groups")
        unknown = await http.get("/status/requests/00000000-0000-4000-a000-000000000000")
    assert no_type.status_code == 400 and no_type.json()["isSuccess"] is False
    assert "type" in no_type.json()["errorDetails"]
    for refused, error in ((wrong_format, "Invalid output format"), (stranger, "User not found")):
        assert refused.status_code == 200 and refused.json() | {"errorDetails": None} == {
            "data": None,
            "isSuccess": False,
            "error": error,
            "errorDetails": None,
        }
    assert groups.json()["isSuccess"] is True and {g["name"] for g in groups.json()["data"]} >= {"Sales managers"}
    assert unknown.status_code == 404 and unknown.json()["error"] == "Request not found"
