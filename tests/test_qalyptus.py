"""Qalyptus Cloud tools through a real MCP client session against the sandbox's Qalyptus organizations.

Qalyptus publishes no OpenAPI spec, so its exchanges are recorded but not validated (recorder.unvalidated);
what the sandbox accepts is the seed's bodies and the confirmed field names.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import ElicitResult
from pydantic import SecretStr, ValidationError

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import QalyptusClient
from qlik_tasks_mcp.client.qalyptus_orgs import parse_orgs
from qlik_tasks_mcp.client.qalyptus_paths import DEFAULTS, PathTable
from qlik_tasks_mcp.sandbox import build_sandbox
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.sandbox.qalyptus import (
    EU_HOST,
    EU_KEY,
    EU_URL,
    QALYPTUS_HOST,
    QALYPTUS_SANDBOX_URL,
    Org,
    latest_run,
    tables,
)
from qlik_tasks_mcp.sandbox.transport import SandboxTransport
from qlik_tasks_mcp.server.app import build_server
from qlik_tasks_mcp.server.settings import Settings
from qlik_tasks_mcp.tools.qalyptus import models as qalyptus_model
from tests.conftest import Harness, data, error_text, make_harness
from tests.fake_clock import FakeClock, follow_on_sandbox_time
from tests.spec_check import SpecRecorder, ValidatingTransport
from tests.test_stdio import ROOT, command

pytestmark = pytest.mark.anyio
SECRET = "test-secret-0123456789abcdef"
UNTRUSTED = "BEGIN UNTRUSTED Qalyptus"
READS = {
    "list_qalyptus_tasks",
    "get_qalyptus_task",
    "list_qalyptus_reports",
    "list_qalyptus_task_triggers",
    "get_qalyptus_task_status",
    "list_qalyptus_task_statuses",
    "get_qalyptus_task_log",
    "get_qalyptus_task_recipients",
    "get_qalyptus_task_email",
    "get_qalyptus_request",
    "list_qalyptus_requests",
}
WRITES = {
    "duplicate_qalyptus_task",
    "run_qalyptus_task",
    "set_qalyptus_task_report",
    "set_qalyptus_task_event",
    "generate_qalyptus_report",
}
# Gated, some only for some arguments (removing recipients, switching the e-mail off, creating a task that sends).
GATED = {
    "update_qalyptus_task",
    "delete_qalyptus_task",
    "set_qalyptus_task_schedule",
    "delete_qalyptus_task_triggers",
    "stop_qalyptus_task",
    "create_qalyptus_task",
    "change_qalyptus_task_owner",
    "set_qalyptus_task_recipients",
    "update_qalyptus_task_email",
    "delete_qalyptus_task_reports",
    "delete_qalyptus_request",
}


def fast(h: Harness, queue: float = 0.05, run: float = 0.3) -> Harness:
    qt = tables(h.sandbox)
    qt.queue_seconds, qt.run_seconds = queue, run
    return h


async def finish(h: Harness) -> None:
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)
    qalyptus = [x for x in h.recorder.exchanges if x.host in {QALYPTUS_HOST, EU_HOST}]
    # The only Qlik requests: app names for Qlik events in words (validated against Qlik's specs).
    assert all(x.method == "GET" and x.path == "/api/v1/items" for x in h.recorder.exchanges if x not in qalyptus)
    assert len(h.recorder.unvalidated) == len(qalyptus)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = fast(make_harness(toolsets="qalyptus"))
    yield harness
    await finish(harness)


def org(h: Harness) -> Org:
    return tables(h.sandbox).org()


def task_named(h: Harness, name: str) -> dict[str, Any]:
    return next(t for t in org(h).tasks.values() if t["name"] == name)


def schedules_of(h: Harness, task_id: str) -> list[dict[str, Any]]:
    return [t for t in org(h).triggers[task_id] if t["type"] == "Schedule"]


def sent(h: Harness, method: str, suffix: str) -> list[Any]:
    return [x for x in h.recorder.exchanges if x.method == method and x.path.endswith(suffix)]


async def confirmed(client: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    preview = data(await client.call_tool(tool, args))
    assert preview["status"] == "confirmation_required", preview
    done = data(await client.call_tool(tool, args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done", done
    return done


# Catalogue ---------------------------------------------------------------------------------------------


async def test_catalogue_annotations_are_honest(h: Harness) -> None:
    async with h.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == READS | WRITES | GATED
    for name, tool in tools.items():
        ann = tool.annotations
        assert ann is not None and tool.output_schema is not None
        assert ann.read_only_hint is (name in READS), name
        assert ann.destructive_hint is (name in GATED), name
        assert len(tool.description or "") < 120, name
        assert "organization" in tool.input_schema["properties"], name
        if name in GATED:
            assert "confirm_token" in tool.input_schema["properties"]
            assert "consent" not in tool.input_schema["properties"]


async def test_read_only_mode_serves_only_the_reads() -> None:
    h = make_harness(toolsets="qalyptus", read_only=True)
    async with h.client() as client:
        assert {t.name for t in (await client.list_tools()).tools} == READS
    await finish(h)


def test_every_path_is_in_one_table_marked_verified_or_inferred() -> None:
    table = PathTable()
    verified = {e.op for e in table.entries() if e.source == "verified"}
    assert verified == {
        "list_tasks",
        "list_reports",
        "list_users",
        "list_groups",
        "list_projects",
        "task_recipients",
        "task_reports",
        "task_triggers",
    }
    assert {e.source for e in table.entries()} == {"verified", "inferred"}
    assert table["list_tasks"].hint() is None
    assert "QALYPTUS_PATHS" in (table["run_task"].hint() or "")


# Tasks and reports -------------------------------------------------------------------------------------


async def test_list_cuts_the_whole_list_client_side_and_says_how_to_get_more(h: Harness) -> None:
    async with h.client() as client:
        first = data(await client.call_tool("list_qalyptus_tasks", {"limit": 4}))
        assert first["total"] == len(org(h).tasks) == 6 and len(first["tasks"]) == 4
        assert first["next_offset"] == 4 and "pass offset=4" in first["note"]
        rest = data(await client.call_tool("list_qalyptus_tasks", {"limit": 4, "offset": 4}))
        assert len(rest["tasks"]) == 2 and "next_offset" not in rest
        names = [t["name"] for t in first["tasks"] + rest["tasks"]]
        assert names == sorted(names, key=str.lower)
        assert {t["name"] for t in first["tasks"] + rest["tasks"]} == {t["name"] for t in org(h).tasks.values()}
        inactive = data(await client.call_tool("list_qalyptus_tasks", {"active": False}))["tasks"]
        assert [t["name"] for t in inactive] == ["Inventory Aging (paused)"] and inactive[0]["active"] is False
        kpis = data(await client.call_tool("list_qalyptus_tasks", {"name": "kpis"}))["tasks"]
        assert kpis[0]["test_mode"] is True and kpis[0]["scheduled"] is True
        past = data(await client.call_tool("list_qalyptus_tasks", {"offset": 50}))
        assert past["tasks"] == [] and "past the end" in past["note"]
        reports = data(await client.call_tool("list_qalyptus_reports", {"limit": 2}))
        assert reports["total"] == 6 and reports["next_offset"] == 2
        sales = data(await client.call_tool("list_qalyptus_reports", {"name": "SALES"}))["reports"]
        assert sales == [
            {
                "id": sales[0]["id"],
                "name": "Sales by Region",
                "type": "Word",
                "formats": ["PDF", "DOCX"],
                "iteration": True,
                "template": "sales_by_region.docx",
                "project": "Sales",
            }
        ]
    # Lists come whole: one request per list call, no paging parameters sent.
    assert all(x.query == "" for x in sent(h, "GET", "/tasks"))


async def test_get_shows_notifications_reports_recipients_and_triggers(h: Harness) -> None:
    task = task_named(h, "Daily Finance Pack")
    async with h.client() as client:
        got = data(await client.call_tool("get_qalyptus_task", {"task_id": task["id"]}))
    assert got["organization"] == "sandbox"
    detail = got["task"]
    assert detail["notifications"] == {
        "send": True,
        "on_success": False,
        "on_warning": True,
        "on_error": True,
        "to": "ada.admin@example.com",
    }
    assert detail["reports"][0]["name"] == "Monthly P&L" and detail["reports"][0]["format"] == "XLSX"
    assert {r["type"] for r in detail["recipients"]} == {"User", "Group"}
    schedule, event = detail["triggers"]
    assert schedule["when"] == "Daily at 06:30 (America/New_York)" and schedule["next_run"].endswith("Z")
    app = h.sandbox.apps[org(h).triggers[task["id"]][1]["appId"]]
    assert event["type"] == "QlikEvent" and event["event"] == "app.reload.succeeded"
    assert event["when"] == f"When Qlik '{app.name}' (app {app.id}) reloads successfully"
    paths = {x.path for x in h.recorder.exchanges if x.host == QALYPTUS_HOST}
    base = f"/api/v1/tasks/{task['id']}"
    assert paths == {base, base + "/reports", base + "/recipients", base + "/triggers"}


async def test_unknown_and_malformed_ids(h: Harness) -> None:
    async with h.client() as client:
        missing = error_text(
            await client.call_tool("get_qalyptus_task", {"task_id": "00000000-0000-4000-a000-000000000000"})
        )
        bad = error_text(await client.call_tool("get_qalyptus_task", {"task_id": "../reports"}))
    # A 404 on an inferred path cannot tell a wrong id from a wrong path: the error names both.
    assert "HTTP 404: Task not found" in missing and "is inferred" in missing and "QALYPTUS_PATHS" in missing
    assert "not a valid id" in bad
    assert len(h.recorder.exchanges) == 1


async def test_update_previews_every_field_change_and_sends_the_whole_task(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    args = {
        "task_id": task["id"],
        "is_active": False,
        "notify_on_success": True,
        "notification_cc": "cleo.controller@example.com; dan.data@example.com",
        "test_mode": True,
        "test_mode_recipients": "ada.admin@example.com",
    }
    async with h.client() as client:
        preview = data(await client.call_tool("update_qalyptus_task", args))
        assert preview["changes"] == [
            "isActive: true -> false",
            "notifyIfSuccess: false -> true",
            "notificationCc: (none) -> cleo.controller@example.com; dan.data@example.com",
            "testMode: false -> true",
            "testModeRecipients: (none) -> ada.admin@example.com",
        ]
        assert any("test mode" in n for n in preview["notes"]) and any("inactive" in n for n in preview["notes"])
        assert task["isActive"] is True and not sent(h, "PUT", task["id"])
        done = data(await client.call_tool("update_qalyptus_task", args | {"confirm_token": preview["confirm_token"]}))
        assert done["status"] == "done" and done["result"]["active"] is False and done["result"]["test_mode"] is True
        again = error_text(await client.call_tool("update_qalyptus_task", args))
        assert "nothing to change" in again
        for bad, why in (
            ({"test_mode": True, "test_mode_recipients": ""}, "test_mode_recipients"),
            ({"notification_recipients": "not-an-address"}, "is not an e-mail address"),
            ({}, "give at least one of"),
        ):
            text = error_text(await client.call_tool("update_qalyptus_task", {"task_id": task["id"]} | bad))
            assert why in text, text
    (put,) = sent(h, "PUT", task["id"])
    assert put.request_body["name"] == "Monthly Sales Distribution"
    assert put.request_body["sendNotifications"] is True and put.request_body["notificationRecipients"]
    assert task["isActive"] is False and task["testModeRecipients"] == "ada.admin@example.com"
    assert [line["outcome"] for line in h.audit_lines()] == ["confirmation_required", "done", "error"] + ["error"] * 3


async def test_a_token_dies_when_the_task_changes_in_between(h: Harness) -> None:
    task = task_named(h, "Weekly Ops Scorecard")
    args = {"task_id": task["id"], "is_active": False}
    async with h.client() as client:
        preview = data(await client.call_tool("update_qalyptus_task", args))
        task["notificationBcc"] = "audit@example.com"
        stale = await client.call_tool("update_qalyptus_task", args | {"confirm_token": preview["confirm_token"]})
    assert "does not match this action" in error_text(stale)
    assert task["isActive"] is True


async def test_duplicate_then_delete_the_copy(h: Harness) -> None:
    source = task_named(h, "Weekly Ops Scorecard")
    async with h.client() as client:
        copy = data(await client.call_tool("duplicate_qalyptus_task", {"task_id": source["id"]}))
        assert copy["source_id"] == source["id"] and copy["task"]["name"] == "Weekly Ops Scorecard - Copy"
        assert copy["task"]["active"] is False
        copy_id = copy["task"]["id"]
        assert len(schedules_of(h, copy_id)) == 1
        preview = data(await client.call_tool("delete_qalyptus_task", {"task_id": copy_id}))
        assert "Delete Qalyptus task 'Weekly Ops Scorecard - Copy'" in preview["action"]
        assert "1 trigger " in preview["changes"][0]
        assert copy_id in org(h).tasks
        done = data(
            await client.call_tool(
                "delete_qalyptus_task", {"task_id": copy_id, "confirm_token": preview["confirm_token"]}
            )
        )
    assert done["result"] == {"id": copy_id, "deleted": True}
    assert copy_id not in org(h).tasks and source["id"] in org(h).tasks


async def test_duplicates_of_one_task_are_bounded_and_the_refusal_says_when_to_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fake clock, so the test can follow the refusal's own advice and retry without waiting a minute.
    clock = FakeClock()
    monkeypatch.setattr(qalyptus_model, "COPY_CLOCK", clock.now)
    h = fast(make_harness(toolsets="qalyptus"))
    task = task_named(h, "Weekly Ops Scorecard")
    args = {"task_id": task["id"]}
    async with h.client() as client:
        for _ in range(qalyptus_model.COPIES_PER_TASK):
            assert data(await client.call_tool("duplicate_qalyptus_task", args))["task"]["name"].endswith(" - Copy")
        refused = await client.call_tool("duplicate_qalyptus_task", args)
        text = error_text(refused)
        assert f"Not duplicated: 3 copies of task {task['id']} were made in the last 60 s" in text
        match = re.search(r"Retry in (\d+) s \(after \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", text)
        assert match is not None, text
        assert len(sent(h, "POST", "/duplicate")) == 3
        # Another task is not held back by this one's copies.
        other = task_named(h, "Daily Finance Pack")
        assert data(await client.call_tool("duplicate_qalyptus_task", {"task_id": other["id"]}))["task"]
        clock.time += int(match.group(1))
        again = data(await client.call_tool("duplicate_qalyptus_task", args))
    assert again["task"]["name"] == "Weekly Ops Scorecard - Copy"
    assert len(sent(h, "POST", "/duplicate")) == 5
    copies = [t for t in org(h).tasks.values() if t["name"] == "Weekly Ops Scorecard - Copy"]
    assert len(copies) == 4
    outcomes = [line["outcome"] for line in h.audit_lines() if line["tool"] == "duplicate_qalyptus_task"]
    assert outcomes == ["done"] * 3 + ["refused"] + ["done"] * 2
    await finish(h)


async def test_duplicates_in_one_organization_are_bounded_and_refused_ids_do_not_count(h: Harness) -> None:
    ids = sorted(org(h).tasks)
    missing = "00000000-0000-4000-a000-000000000000"
    async with h.client() as client:
        # The tenant refused these: nothing was copied, so they do not count against the bound.
        for _ in range(qalyptus_model.COPIES_PER_TASK + 1):
            assert "HTTP 404" in error_text(await client.call_tool("duplicate_qalyptus_task", {"task_id": missing}))
        made = 0
        for task_id in ids:
            for _ in range(2):
                if made < qalyptus_model.COPIES_PER_ORGANIZATION:
                    data(await client.call_tool("duplicate_qalyptus_task", {"task_id": task_id}))
                    made += 1
        # Six tasks, two copies each until ten: the last task has none, yet its first copy is refused.
        text = error_text(await client.call_tool("duplicate_qalyptus_task", {"task_id": ids[-1]}))
    assert made == 10 and "copies in organization sandbox were made in the last 60 s" in text and "Retry in" in text
    assert len(sent(h, "POST", "/duplicate")) == 4 + 10
    assert len(org(h).tasks) == len(ids) + 10


async def test_delete_with_elicitation_acts_only_on_yes(h: Harness) -> None:
    task = task_named(h, "HR Headcount Yearly")
    h.elicit_answers += [ElicitResult(action="decline"), ElicitResult(action="accept", content={"confirm": True})]
    async with h.client(elicitation=True) as client:
        declined = data(await client.call_tool("delete_qalyptus_task", {"task_id": task["id"]}))
        assert declined["status"] == "cancelled" and task["id"] in org(h).tasks
        done = data(await client.call_tool("delete_qalyptus_task", {"task_id": task["id"]}))
    assert done["status"] == "done" and "confirm_token" not in done
    assert task["id"] not in org(h).tasks
    assert all("HR Headcount Yearly" in m and "Go ahead?" in m for m in h.elicit_messages)


# Schedules ---------------------------------------------------------------------------------------------


async def test_add_a_weekly_schedule_then_update_its_time(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    weekly = {
        "frequency": "weekly",
        "time_zone": "Europe/Zurich",
        "at": "07:15",
        "weekdays": ["fri", "Monday", "MON"],
        "start": "2026-01-05T00:00:00",
        "end": "2030-12-31T23:00:00",
    }
    async with h.client() as client:
        done = await confirmed(client, "set_qalyptus_task_schedule", {"task_id": task["id"], "schedule": weekly})
        added = done["result"]["schedule"]
        assert added["when"] == "Weekly on Monday,Friday at 07:15 (Europe/Zurich)" and added["active"] is True
        (post,) = sent(h, "POST", "/schedules")
        body = post.request_body
        assert body["frequency"] == "Weekly" and body["weeklyDays"] == "Monday,Friday"
        assert (body["atHour"], body["atMinut"], body["timeZone"]) == (7, 15, "Europe/Zurich")
        assert body["startDate"] == "2026-01-05T00:00:00+01:00" and body["endDate"] == "2030-12-31T23:00:00+01:00"
        assert post.query == ""
        listed = data(await client.call_tool("list_qalyptus_task_triggers", {"task_id": task["id"]}))["triggers"]
        assert [s["id"] for s in listed] == [s["id"] for s in schedules_of(h, task["id"])]
        assert listed[-1]["next_run"] and listed[-1]["time_zone"] == "Europe/Zurich"
        args = {"task_id": task["id"], "schedule_id": added["id"], "schedule": {"at": "18:45"}}
        preview = data(await client.call_tool("set_qalyptus_task_schedule", args))
        assert preview["changes"] == ["atHour: 7 -> 18", "atMinut: 15 -> 45"]
        assert "07:15" in preview["action"] and "18:45" in preview["action"]
        assert preview["notes"][0].startswith("Next runs: ")
        await client.call_tool("set_qalyptus_task_schedule", args | {"confirm_token": preview["confirm_token"]})
    update = sent(h, "POST", "/schedules")[-1]
    assert update.query == f"taskScheduleID={added['id']}"
    stored = next(s for s in schedules_of(h, task["id"]) if s["id"] == added["id"])
    assert (stored["atHour"], stored["atMinut"], stored["weeklyDays"]) == (18, 45, "Monday,Friday")


async def test_changing_the_frequency_clears_what_the_new_one_does_not_use(h: Harness) -> None:
    task = task_named(h, "Daily Finance Pack")
    daily = schedules_of(h, task["id"])[0]
    args = {
        "task_id": task["id"],
        "schedule_id": daily["id"],
        "schedule": {"frequency": "hourly", "every_hours": 3, "from_time": "07:00", "to_time": "19:30"},
    }
    async with h.client() as client:
        preview = data(await client.call_tool("set_qalyptus_task_schedule", args))
        assert "atHour: 6 -> (none)" in preview["changes"] and "frequency: Daily -> Hourly" in preview["changes"]
        await client.call_tool("set_qalyptus_task_schedule", args | {"confirm_token": preview["confirm_token"]})
    stored = schedules_of(h, task["id"])[0]
    assert stored["frequency"] == "Hourly" and stored["atHour"] is None and stored["everyHours"] == 3
    assert (stored["fromHour"], stored["toHour"], stored["toMinut"]) == (7, 19, 30)


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ({"frequency": "daily", "time_zone": "Mars/Olympus", "at": "06:00"}, "not an IANA time zone"),
        ({"frequency": "daily", "at": "06:00"}, "time_zone is required"),
        ({"time_zone": "UTC", "at": "06:00"}, "frequency is required"),
        ({"frequency": "hourly", "time_zone": "UTC", "at": "06:00"}, "at does not apply to a hourly schedule"),
        ({"frequency": "hourly", "time_zone": "UTC"}, "needs every_hours"),
        ({"frequency": "hourly", "time_zone": "UTC", "every_hours": 2, "from_time": "08:00"}, "together"),
        (
            {"frequency": "hourly", "time_zone": "UTC", "every_hours": 2, "from_time": "18:00", "to_time": "08:00"},
            "end",
        ),
        ({"frequency": "weekly", "time_zone": "UTC", "at": "06:00"}, "needs weekdays"),
        ({"frequency": "weekly", "time_zone": "UTC", "at": "06:00", "weekdays": ["Funday"]}, "not a day name"),
        ({"frequency": "daily", "time_zone": "UTC", "at": "25:00"}, "HH:MM"),
        (
            {"frequency": "yearly", "time_zone": "UTC", "at": "06:00", "day": 30, "month": 2},
            "does not exist in February",
        ),
        ({"frequency": "monthly", "time_zone": "UTC", "at": "06:00"}, "needs day"),
        ({"frequency": "once", "time_zone": "UTC"}, "needs start"),
        ({"frequency": "daily", "time_zone": "UTC", "at": "06:00", "start": "2026-02-01"}, "local date-time"),
        (
            {
                "frequency": "daily",
                "time_zone": "UTC",
                "at": "06:00",
                "start": "2026-05-01T00:00:00",
                "end": "2026-04-01T00:00:00",
            },
            "endDate must be after startDate",
        ),
    ],
)
async def test_bad_schedules_are_refused_before_anything_is_sent(
    h: Harness, schedule: dict[str, Any], why: str
) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    before = json.dumps(org(h).triggers, sort_keys=True, default=str)
    async with h.client() as client:
        text = error_text(
            await client.call_tool("set_qalyptus_task_schedule", {"task_id": task["id"], "schedule": schedule})
        )
    assert why in text, text
    assert not sent(h, "POST", "/schedules")
    assert json.dumps(org(h).triggers, sort_keys=True, default=str) == before


async def test_unknown_schedule_id_names_the_task_schedules(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    own = schedules_of(h, task["id"])[0]
    async with h.client() as client:
        text = error_text(
            await client.call_tool(
                "set_qalyptus_task_schedule",
                {"task_id": task["id"], "schedule_id": "nope", "schedule": {"at": "05:00"}},
            )
        )
        gone = error_text(
            await client.call_tool("delete_qalyptus_task_triggers", {"task_id": task["id"], "trigger_ids": ["nope"]})
        )
    assert "has no schedule nope" in text and "has no trigger nope" in gone
    for message in (text, gone):
        assert own["id"] in message and "First of the month" in message


async def test_delete_schedules_previews_each_one_and_warns_when_none_is_left(h: Harness) -> None:
    task = task_named(h, "Weekly Ops Scorecard")
    (only,) = schedules_of(h, task["id"])
    args = {"task_id": task["id"], "trigger_ids": [only["id"], only["id"]]}
    async with h.client() as client:
        preview = data(await client.call_tool("delete_qalyptus_task_triggers", args))
        assert preview["changes"] == [f"Mon and Thu ({only['id']}): Weekly on Monday,Thursday at 06:30 (Europe/London)"]
        assert any("no schedule" in n for n in preview["notes"])
        done = data(
            await client.call_tool("delete_qalyptus_task_triggers", args | {"confirm_token": preview["confirm_token"]})
        )
    assert done["result"] == {"task_id": task["id"], "deleted": [only["id"]]}
    (delete,) = sent(h, "DELETE", "/schedules")
    assert delete.request_body == [only["id"]]
    assert schedules_of(h, task["id"]) == []


# Runs, status, logs ------------------------------------------------------------------------------------


async def test_run_and_wait_reports_progress_until_completed(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    follow_on_sandbox_time(h.sandbox, monkeypatch)  # waits on the sandbox's time, in no real time
    fast(h, queue=0.2, run=1.0)
    task = task_named(h, "Monthly Sales Distribution")
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with h.client() as client:
        args = {"task_id": task["id"], "wait": True, "timeout_seconds": 20}
        result = data(await client.call_tool("run_qalyptus_task", args, progress_callback=on_progress))
    assert result["started"] is True and result["wait_ended"] == "finished"
    assert result["status"]["status"] == "Completed" and result["status"]["by"] == "Manual"
    assert "log_tail" not in result
    assert len(seen) >= 3 and all(b[0] > a[0] for a, b in pairwise(seen))
    assert all(total == 20 for _, total, _ in seen)
    assert any("Running" in (m or "") for _, _, m in seen) and "Completed" in (seen[-1][2] or "")
    assert len(sent(h, "POST", "/run")) == 1


@pytest.mark.parametrize(
    ("name", "status", "line"), [("Weekly Ops Scorecard", "Failed", "ERROR"), ("Daily Finance Pack", "Warning", "WARN")]
)
async def test_a_failed_or_warning_run_comes_back_with_its_log_tail(
    h: Harness, name: str, status: str, line: str
) -> None:
    task = task_named(h, name)
    async with h.client() as client:
        result = data(await client.call_tool("run_qalyptus_task", {"task_id": task["id"], "wait": True}))
    assert result["status"]["status"] == status and result["wait_ended"] == "finished"
    assert result["log_tail"].startswith(f"======== {UNTRUSTED} log") and f" {line} " in result["log_tail"]
    assert "get_qalyptus_task_log" in result["note"]
    # The run's message stays on one line in the row, and is fenced once in the result.
    assert result["status"]["message"] and result["status"]["message"] in result["messages"]
    assert result["messages"].count("BEGIN UNTRUSTED Qalyptus messages") == 1


async def test_ending_the_wait_never_stops_the_run_and_a_second_run_is_refused(h: Harness) -> None:
    fast(h, queue=0.05, run=30)
    task = task_named(h, "Executive KPIs Hourly")
    async with h.client() as client:
        timed_out = data(
            await client.call_tool("run_qalyptus_task", {"task_id": task["id"], "wait": True, "timeout_seconds": 1})
        )
        assert timed_out["wait_ended"] == "timeout" and "NOT stopped" in timed_out["note"]
        assert timed_out["status"]["status"] == "Running"
        with anyio.move_on_after(0.3):
            await client.call_tool("run_qalyptus_task", {"task_id": task["id"], "wait": True, "timeout_seconds": 30})
        still = data(await client.call_tool("get_qalyptus_task_status", {"task_id": task["id"]}))["status"]
        assert still["status"] == "Running" and still["id"] == timed_out["status"]["id"]
        again = error_text(await client.call_tool("run_qalyptus_task", {"task_id": task["id"]}))
    # isSuccess false on HTTP 200 is an error, and says what Qalyptus said.
    assert "HTTP 200: The task is already queued or running" in again and "isSuccess: false" in again
    assert not sent(h, "POST", "/stop")
    assert len(sent(h, "POST", "/run")) == 3


async def test_run_without_wait_names_the_new_run(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    before = latest_run(org(h), task["id"])
    async with h.client() as client:
        result = data(await client.call_tool("run_qalyptus_task", {"task_id": task["id"]}))
    assert result["status"]["status"] in ("Queued", "Running") and "wait_ended" not in result
    assert before is not None and result["status"]["id"] != before["id"]


async def test_stop_a_running_task_is_gated_and_refused_when_nothing_runs(h: Harness) -> None:
    fast(h, queue=0.05, run=60)
    task = task_named(h, "HR Headcount Yearly")
    async with h.client() as client:
        idle = error_text(await client.call_tool("stop_qalyptus_task", {"task_id": task["id"]}))
        assert "not queued or running (last status: Completed)" in idle
        data(await client.call_tool("run_qalyptus_task", {"task_id": task["id"]}))
        preview = data(await client.call_tool("stop_qalyptus_task", {"task_id": task["id"]}))
        assert "run" in preview["action"] and "HR Headcount Yearly" in preview["action"]
        assert not sent(h, "POST", "/stop")
        # Queued -> running between preview and yes is the same run: the token still fits.
        h.sandbox.clock.advance(timedelta(seconds=1))
        done = data(
            await client.call_tool(
                "stop_qalyptus_task", {"task_id": task["id"], "confirm_token": preview["confirm_token"]}
            )
        )
        assert done["result"]["status"]["status"] == "Aborted" and done["result"]["stop_requested"] is True
        log = data(await client.call_tool("get_qalyptus_task_log", {"task_id": task["id"]}))
        assert "Task stopped by a user" in log["log"]
    assert [x.path for x in sent(h, "POST", "/stop")] == [f"/api/v1/status/{task['id']}/stop"]


async def test_statuses_newest_first_filtered_and_paged(h: Harness) -> None:
    failing = task_named(h, "Weekly Ops Scorecard")
    async with h.client() as client:
        everything = data(await client.call_tool("list_qalyptus_task_statuses", {"limit": 100}))
        assert everything["total"] == len(org(h).executions) == 10
        times = [s["started_at"] for s in everything["statuses"]]
        assert times == sorted(times, reverse=True)
        failed_page = data(await client.call_tool("list_qalyptus_task_statuses", {"status": "FAILED"}))
        failed = failed_page["statuses"]
        assert failed and {s["task_id"] for s in failed} == {failing["id"]}
        # One fence per result: each row's message on one line, all of them fenced once in `messages`.
        assert all("kpi-07" in s["message"] and s["message"] in failed_page["messages"] for s in failed)
        assert failed_page["messages"].count("BEGIN UNTRUSTED Qalyptus messages") == 1
        mine = data(await client.call_tool("list_qalyptus_task_statuses", {"task_id": failing["id"], "limit": 1}))
        assert mine["total"] == 2 and mine["next_offset"] == 1 and "pass offset=1" in mine["note"]
        one = data(await client.call_tool("get_qalyptus_task_status", {"task_id": failing["id"]}))
        assert one["status"] == failed[0] and one["status"]["seconds"] > 0
        new = data(await client.call_tool("duplicate_qalyptus_task", {"task_id": failing["id"]}))["task"]
        never = data(await client.call_tool("get_qalyptus_task_status", {"task_id": new["id"]}))
        assert "status" not in never and never["note"] == "The task has not run yet."


async def test_logs_tail_offset_grep_and_smtp(h: Harness) -> None:
    warning = task_named(h, "Daily Finance Pack")
    failed = task_named(h, "Weekly Ops Scorecard")
    async with h.client() as client:
        tail = data(await client.call_tool("get_qalyptus_task_log", {"task_id": warning["id"], "lines": 3}))
        total = tail["total_lines"]
        assert tail["returned"] == f"lines {total - 2}-{total} of {total} (tail; pass offset to read from another line)"
        assert (
            tail["log"].startswith(f"======== {UNTRUSTED} log (data from the tenant") and "Task finished" in tail["log"]
        )
        head = data(
            await client.call_tool("get_qalyptus_task_log", {"task_id": warning["id"], "lines": 2, "offset": 0})
        )
        assert head["first_line"] == 1 and head["next_offset"] == 2 and "queued" in head["log"]
        found = data(
            await client.call_tool("get_qalyptus_task_log", {"task_id": warning["id"], "grep": "REGION=(north|south)"})
        )
        assert found["matches"] == 2 and "matching /REGION=(north|south)/i" in found["returned"]
        smtp = data(
            await client.call_tool(
                "get_qalyptus_task_log", {"task_id": warning["id"], "log_kind": "smtp", "grep": "^.* < 5\\d\\d"}
            )
        )
        assert smtp["matches"] == 1 and "Recipient address rejected" in smtp["log"]
        assert smtp["log"].startswith(f"======== {UNTRUSTED} SMTP log")
        no_mail = error_text(
            await client.call_tool("get_qalyptus_task_log", {"task_id": failed["id"], "log_kind": "smtp"})
        )
        assert "HTTP 404: No SMTP log file" in no_mail and "last execution sent no e-mail" in no_mail
        for grep, why in (
            ("(a+)+$", "simplify it"),
            ("[unclosed", "not a valid regular expression"),
            ("x" * 201, "at most"),
        ):
            text = error_text(await client.call_tool("get_qalyptus_task_log", {"task_id": warning["id"], "grep": grep}))
            assert why in text
    assert len(sent(h, "GET", "/log")) + len(sent(h, "GET", "/smtp-log")) == 5


# Paths, envelope, organizations, settings -------------------------------------------------------------


async def test_a_path_override_from_settings_is_honoured() -> None:
    overrides = {"task_triggers": "GET /tasks/{id}/schedules", "task_status": "/status/scheduled/{id}"}
    h = fast(make_harness(toolsets="qalyptus", qalyptus_paths=json.dumps(overrides)))
    task = task_named(h, "Daily Finance Pack")
    async with h.client() as client:
        listed = data(await client.call_tool("list_qalyptus_task_triggers", {"task_id": task["id"]}))
        wrong = error_text(await client.call_tool("get_qalyptus_task_status", {"task_id": task["id"]}))
    # The schedules route answers schedules only: the request went where the setting said.
    assert [s["type"] for s in listed["triggers"]] == ["Schedule"]
    assert h.recorder.exchanges[0].path == f"/api/v1/tasks/{task['id']}/schedules"
    assert not sent(h, "GET", "/triggers")
    assert "HTTP 404" in wrong and "comes from QALYPTUS_PATHS" in wrong
    assert h.recorder.exchanges[-1].path == f"/api/v1/status/scheduled/{task['id']}"
    await finish(h)


async def test_an_inferred_path_answering_404_or_405_says_how_to_override_it(h: Harness) -> None:
    task = task_named(h, "Daily Finance Pack")
    tables(h.sandbox).unserved.add("/status/tasks/{id}/smtp-log")
    async with h.client() as client:
        text = error_text(await client.call_tool("get_qalyptus_task_log", {"task_id": task["id"], "log_kind": "smtp"}))
    assert "HTTP 404: Not Found" in text
    assert "The path of 'task_smtp_log' (GET /status/tasks/{id}/smtp-log) is inferred" in text
    assert 'QALYPTUS_PATHS=\'{"task_smtp_log": "GET /status/tasks/{id}/smtp-log"}\'' in text
    h2 = fast(make_harness(toolsets="qalyptus", qalyptus_paths='{"run_task": "PATCH /tasks/{id}"}'))
    async with h2.client() as client:
        refused = error_text(
            await client.call_tool("run_qalyptus_task", {"task_id": task_named(h2, "Daily Finance Pack")["id"]})
        )
    assert "HTTP 405" in refused and "comes from QALYPTUS_PATHS" in refused
    await finish(h2)


@pytest.mark.parametrize(
    ("paths", "why"),
    [
        ("not json", "must be a JSON object"),
        ('{"run": "POST /x/{id}"}', "unknown operations ['run']"),
        ('{"run_task": "POST /tasks/{taskId}/run"}', "exactly these placeholders: {id}"),
        ('{"run_task": "FETCH /tasks/{id}/run"}', "is not one of GET"),
        ('{"run_task": "POST tasks/{id}/run"}', "absolute path"),
        ('{"run_task": "POST /tasks/../{id}"}', "without '..'"),
        ('{"run_task": "POST /tasks/{id}/run?x=1"}', "absolute path"),
    ],
)
def test_bad_path_overrides_are_refused_at_startup(paths: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why.replace("[", r"\[").replace("?", r"\?")):
        Settings.model_validate({"sandbox": True, "qalyptus_paths": paths})


def org_harness(orgs: dict[str, Any]) -> Harness:
    """A server outside sandbox mode, configured with Qalyptus organizations, over the sandbox's transport."""
    sandbox, app = build_sandbox()
    recorder = SpecRecorder()
    transport = ValidatingTransport(SandboxTransport(app), recorder)
    config = Settings.model_validate(
        {
            "tenant_url": SANDBOX_URL,
            "api_key": SANDBOX_API_KEY,
            "confirm_secret": SECRET,
            "toolsets": "qalyptus",
            "qalyptus_orgs": json.dumps(orgs),
        }
    )
    mcp, backend = build_server(config, transport=transport)
    audit = io.StringIO()
    backend.audit.redirect(audit)
    return fast(Harness(mcp, backend, sandbox, recorder, audit, config, transport))


async def test_organizations_are_chosen_by_name_each_with_its_own_key(capfd: pytest.CaptureFixture[str]) -> None:
    h = org_harness(
        {
            "main": {"url": QALYPTUS_SANDBOX_URL, "api_key": SANDBOX_API_KEY},
            "eu": {"url": EU_URL, "api_key": EU_KEY},
        }
    )
    outputs: list[str] = []
    async with h.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert (
            "default: the first"
            in tools["list_qalyptus_tasks"].input_schema["properties"]["organization"]["description"]
        )
        default = await client.call_tool("list_qalyptus_tasks", {})
        eu = await client.call_tool("list_qalyptus_tasks", {"organization": "EU"})
        unknown = await client.call_tool("list_qalyptus_tasks", {"organization": "apac"})
        eu_task = next(t["id"] for t in data(eu)["tasks"] if t["name"] == "EU Sales Digest")
        got = await client.call_tool("get_qalyptus_task", {"task_id": eu_task, "organization": "eu"})
        elsewhere = await client.call_tool("get_qalyptus_task", {"task_id": eu_task})
        run = await client.call_tool("run_qalyptus_task", {"task_id": eu_task, "organization": "eu", "wait": True})
        outputs += [json.dumps(r.model_dump(mode="json")) for r in (default, eu, unknown, got, elsewhere, run)]
    assert len(data(default)["tasks"]) == 6
    assert {t["name"] for t in data(eu)["tasks"]} == {"EU Sales Digest", "EU Compliance Pack"}
    assert "unknown Qalyptus organization 'apac': configured are main, eu (omit it for main)" in error_text(unknown)
    assert data(got)["organization"] == "eu" and "HTTP 404" in error_text(elsewhere)
    assert data(run)["status"]["status"] == "Completed" and data(run)["organization"] == "eu"
    hosts = [x.host for x in h.recorder.exchanges]
    assert hosts.count(EU_HOST) >= 5 and QALYPTUS_HOST in hosts
    await finish(h)
    captured = capfd.readouterr()
    blob = "".join(outputs) + h.audit.getvalue() + captured.out + captured.err
    assert SANDBOX_API_KEY not in blob and EU_KEY not in blob and SECRET not in blob


def test_organization_settings_are_checked_and_never_echo_a_key() -> None:
    key = SecretStr("k" * 40)
    (single,) = parse_orgs("https://acme.qalyptus.net/api/v1/", key, None)
    assert (single.name, single.url) == ("acme", "https://acme.qalyptus.net/api/v1")
    both = parse_orgs(
        "https://acme.qalyptus.net/api/v1", key, SecretStr(json.dumps({"beta": {"url": EU_URL, "api_key": "b" * 20}}))
    )
    assert [o.name for o in both] == ["acme", "beta"]
    bad_cases = [
        (("http://acme.qalyptus.net/api/v1", key, None), "https URL"),
        (("https://acme.qalyptus.net", key, None), "ending in /api/v1"),
        (("https://acme.qalyptus.net/api/v1", None, None), "QALYPTUS_API_KEY"),
        ((None, None, SecretStr("[1]")), "must be a JSON object"),
        ((None, None, SecretStr('{"a b": {"url": "x", "api_key": "y"}}')), "organization name"),
        ((None, None, SecretStr('{"x": {"url": "https://x.qalyptus.net/api/v1"}}')), 'exactly "url" and "api_key"'),
        ((None, None, SecretStr('{"x": {"url": "https://x.qalyptus.net/api/v1", "api_key": "short"}}')), "at least 8"),
        (
            (
                "https://acme.qalyptus.net/api/v1",
                key,
                SecretStr(json.dumps({"ACME": {"url": EU_URL, "api_key": "c" * 20}})),
            ),
            "twice",
        ),
    ]
    for args, why in bad_cases:
        with pytest.raises(InvalidInput, match=why) as caught:
            parse_orgs(*args)
        assert "k" * 40 not in str(caught.value) and "c" * 20 not in str(caught.value)
    with pytest.raises(ValidationError, match="QALYPTUS_URL must be an https URL") as refused:
        Settings.model_validate(
            {"sandbox": True, "qalyptus_url": "http://acme.qalyptus.net/api/v1", "qalyptus_api_key": key}
        )
    assert "k" * 40 not in str(refused.value)
    assert set(DEFAULTS) >= {"run_task", "stop", "task_log", "task_smtp_log"}


def run_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("QLIK_", "QALYPTUS_"))} | env
    return subprocess.run(
        command(),
        capture_output=True,
        text=True,
        env=clean,
        cwd=ROOT,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_without_an_organization_the_toolset_is_off_and_the_server_says_so() -> None:
    tenant = {"QLIK_TENANT_URL": "https://tenant.example.com", "QLIK_API_KEY": "abcdefghijklmnop"}
    done = run_cli(tenant)
    assert "no Qalyptus organization configured, so the qalyptus tools are off" in done.stderr
    assert "list_reload_tasks" in done.stderr and "qalyptus_task" not in done.stderr
    configured = run_cli(
        tenant | {"QALYPTUS_URL": "https://acme.qalyptus.net/api/v1", "QALYPTUS_API_KEY": "qalyptus-key-0123456789"}
    )
    assert "run_qalyptus_task" in configured.stderr and "no Qalyptus organization" not in configured.stderr
    assert "qalyptus-key-0123456789" not in configured.stderr
    refused = run_cli(tenant | {"QALYPTUS_PATHS": '{"run_task": "POST /tasks/{taskId}/run"}'})
    assert refused.returncode == 2 and "exactly these placeholders" in refused.stderr


async def test_update_and_schedule_ask_the_user_when_the_client_can(h: Harness) -> None:
    task = task_named(h, "Monthly Sales Distribution")
    h.elicit_answers += [
        ElicitResult(action="accept", content={"confirm": True}),
        ElicitResult(action="accept", content={"confirm": False}),
        ElicitResult(action="accept", content={"confirm": True}),
    ]
    once = {"frequency": "once", "time_zone": "Asia/Tokyo", "start": "2031-04-01T09:00:00", "name": "Board pack"}
    monthly = {"frequency": "monthly", "time_zone": "UTC", "day": 31, "at": "23:59"}
    async with h.client(elicitation=True) as client:
        updated = data(
            await client.call_tool("update_qalyptus_task", {"task_id": task["id"], "notify_on_error": False})
        )
        cancelled = data(
            await client.call_tool("set_qalyptus_task_schedule", {"task_id": task["id"], "schedule": once})
        )
        added = data(await client.call_tool("set_qalyptus_task_schedule", {"task_id": task["id"], "schedule": monthly}))
    assert updated["status"] == "done" and task["notifyIfError"] is False
    assert cancelled["status"] == "cancelled" and "Board pack" in h.elicit_messages[1]
    assert "Next runs: 2031-04-01T09:00+09:00 (2031-04-01T00:00:00Z)" in h.elicit_messages[1]
    assert added["status"] == "done" and added["result"]["schedule"]["when"] == "Monthly on day 31 at 23:59 (UTC)"
    assert "notifyIfError: true -> false" in h.elicit_messages[0]
    assert len(schedules_of(h, task["id"])) == 2


def envelope_client(answer: httpx.Response) -> QalyptusClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return answer

    transport = httpx.MockTransport(handler)
    return QalyptusClient("t", QALYPTUS_SANDBOX_URL, "envelope-key-0123456789", paths=PathTable(), transport=transport)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (httpx.Response(200, json={"data": "line 1\nline 2", "isSuccess": True}), "line 1\nline 2"),
        (httpx.Response(200, json={"data": {"content": "a\nb"}, "isSuccess": True}), "a\nb"),
        (httpx.Response(200, text="plain\nlog", headers={"content-type": "application/octet-stream"}), "plain\nlog"),
        (httpx.Response(200, json={"data": "https://storage.example.com/x.log", "isSuccess": True}), "download link"),
        (
            httpx.Response(200, json={"data": None, "isSuccess": False, "error": "No access", "errorDetails": "key"}),
            "isSuccess",
        ),
        (httpx.Response(200, json={"log": "not the envelope"}), "without its {data, isSuccess} envelope"),
    ],
)
async def test_log_answers_in_any_shape_and_refusals_on_http_200(answer: httpx.Response, outcome: str) -> None:
    client = envelope_client(answer)
    try:
        text = await client.log("00000000-0000-4000-a000-000000000000")
    except ApiError as exc:
        text = str(exc)
        if outcome == "isSuccess":
            assert "HTTP 200: No access (key). Qalyptus refused the request (isSuccess: false)." in text
    finally:
        await client.aclose()
    assert outcome in text
