"""Ops tools across every kind, on a sandbox with hundreds of tasks and some failures; prompts."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import ElicitResult, GetPromptResult, TextContent

from qlik_tasks_mcp.client.schedule import ExpansionBudget
from qlik_tasks_mcp.client.workflow import repeating_interval, scheduled_reload
from qlik_tasks_mcp.sandbox import reloads as sandbox_reloads
from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL
from qlik_tasks_mcp.tools.ops import selection
from qlik_tasks_mcp.tools.ops import tools as ops_module
from tests.conftest import Harness, data, error_text, fenced_once, first_error, make_harness

pytestmark = pytest.mark.anyio
APPS = 150


def scale_up(h: Harness) -> None:
    """A Qlik task per app besides the seeded ones, and a failed run on every tenth of them."""
    st = sandbox_tasks.tables(h.sandbox)
    now = h.sandbox.clock.now()
    for index, app in enumerate(list(h.sandbox.apps.values())[8:]):
        body = scheduled_reload(
            name=f"nightly-{index}",
            app_id=app.id,
            partial=False,
            interval=repeating_interval("R/2026-01-01T03:00:00/P1D"),
            time_zone="Europe/Zurich",
            end=None,
            enabled=index % 9 != 4,
            description=None,
        )
        task = sandbox_tasks.build_task(h.sandbox, body, h.sandbox.hex_id(), app.owner_id, "2026-01-01T00:00:00Z")
        st.tasks[task["id"]] = task
        if index % 10 == 0:
            st.failing_apps.add(app.id)
            sandbox_tasks.start_run(
                h.sandbox, task, at=now - timedelta(hours=3), triggered_by="time-schedule", seconds=60
            )
    # A sharing task per app too; every tenth sends to a dead address, and did two hours ago.
    sharing = sandbox_sharing.tables(h.sandbox)
    model = next(t for t in sharing.tasks.values() if t["type"] == "sheet-sharing" and t["statusCode"] == "VALID")
    for index, app in enumerate(h.sandbox.apps.values()):
        task: dict[str, Any] = copy.deepcopy(model) | {"id": h.sandbox.hex_id(), "name": f"{app.name} pack"}
        task["appId"] = app.id
        sharing.tasks[task["id"]] = task
        if index % 10 == 5:
            task["recipients"]["emailAddresses"].append({"value": f"gone{index}@bounce.invalid", "enabled": True})
            sandbox_sharing.start_execution(h.sandbox, task, at=now - timedelta(hours=2), seconds=30)


def failed_sharing_since(h: Harness, since: str) -> set[str]:
    sharing = sandbox_sharing.tables(h.sandbox)
    return {
        task["id"]
        for task in sharing.tasks.values()
        if any(
            e["status"] == "failed" and e["failedTime"] >= since
            for e in sandbox_sharing.public_executions(h.sandbox, task)
        )
    }


@pytest.fixture
async def big() -> AsyncIterator[Harness]:
    h = make_harness(sandbox_options={"app_count": APPS})
    scale_up(h)
    yield h
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)


def prompt_text(result: GetPromptResult) -> str:
    content = result.messages[0].content
    assert isinstance(content, TextContent)
    return content.text


def failing_reloads(h: Harness) -> set[str]:
    return {
        t["id"] for t in h.sandbox.tables["reload_tasks"].values() if t.get("disabledCode") == "CONSECUTIVE-FAILURES"
    }


async def test_find_failures_across_kinds_on_a_big_tenant(big: Harness) -> None:
    assert len(big.sandbox.tables["reload_tasks"]) == APPS
    assert len(sandbox_sharing.tables(big.sandbox).tasks) > APPS
    assert len(sandbox_tasks.tables(big.sandbox).tasks) > APPS
    async with big.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 24}))
    assert report["stopped_early"] is False
    # Tasks are read from tenant-wide queries (failing tasks, failed reloads), not app by app (issue 17).
    assert report["checked"]["reload"] == APPS and report["checked"]["task apps"] == 0
    assert not [x for x in big.recorder.exchanges if "/resources/" in x.path]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for group in report["groups"]:
        by_kind.setdefault(group["kind"], []).append(group)
    since = (big.sandbox.clock.now() - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = {
        t["id"]
        for t in big.sandbox.tables["reload_tasks"].values()
        if t.get("disabledCode") == "CONSECUTIVE-FAILURES" and t["lastExecutionTime"] >= since
    }
    assert recent and len(recent) < len(failing_reloads(big))
    # Every failed run counts: a reload task's failed reloads in the window (each names it) too (issue 17).
    cutoff = big.sandbox.clock.now() - timedelta(hours=24)
    failed_runs = Counter(
        r["resourceId"]
        for r in sandbox_reloads.tables(big.sandbox).reloads.values()
        if r.get("resourceType") == "reload-tasks"
        and r["_outcome"] == "FAILED"
        and sandbox_reloads.finished_at(r) >= cutoff
    )
    assert {g["task_id"] for g in by_kind["reload"]} == recent | set(failed_runs)
    assert all(g["failures"] == failed_runs.get(g["task_id"], 1) for g in by_kind["reload"])
    sharing_failed = failed_sharing_since(big, since)
    assert len(sharing_failed) >= APPS // 10
    assert {g["task_id"] for g in by_kind["sharing"]} == sharing_failed
    assert all(fenced_once(report, g) for g in by_kind["sharing"])
    assert sum(".invalid" in first_error(report, g) for g in by_kind["sharing"]) >= APPS // 10
    failed_tasks = by_kind["task"]
    assert len(failed_tasks) >= 14
    for group in failed_tasks:
        assert group["ref"]
        assert fenced_once(report, group) and "error" in first_error(report, group).lower()
    # Newest first.
    stamps = [g.get("last_failed_at") or "" for g in report["groups"]]
    assert stamps == sorted(stamps, reverse=True)


async def test_find_failures_says_when_it_stopped_early(big: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_module, "SCAN_REQUESTS", 10)
    async with big.client() as client:
        report = data(await client.call_tool("find_failures", {}))
    assert report["stopped_early"] is True
    assert report["not_checked"] and "narrow" in report["note"]
    task_requests = [x for x in big.recorder.exchanges if x.path.startswith("/api/v1/tasks")]
    assert len(task_requests) <= 10


async def test_find_failures_checks_extra_apps_and_stays_bounded(harness: Harness) -> None:
    async with harness.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 1, "app_ids": ["not-an-app"]}))
    # The named app is read one by one; the tenant's other apps are covered by its tenant-wide queries.
    assert report["checked"]["task apps"] == 1
    runs = [x.path for x in harness.recorder.exchanges if x.path.endswith("/runs")]
    assert runs == ["/api/scheduling/tasks/resources/not-an-app/runs"]
    assert all(g["kind"] != "task" for g in report["groups"])


@pytest.mark.parametrize(
    ("args", "expected_utc"),
    [
        # Europe/Zurich springs forward on 2027-03-28: 02:30 does not exist that day and is skipped.
        (
            {
                "recurrence": ["RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0"],
                "time_zone": "Europe/Zurich",
                "start": "2027-03-26T02:30:00",
                "count": 4,
            },
            ["2027-03-26T01:30:00Z", "2027-03-27T01:30:00Z", "2027-03-29T00:30:00Z", "2027-03-30T00:30:00Z"],
        ),
        # ... and falls back on 2027-10-31: 02:30 happens twice, the task runs once.
        (
            {
                "recurrence": ["RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0"],
                "time_zone": "Europe/Zurich",
                "start": "2027-10-30T02:30:00",
                "count": 3,
            },
            ["2027-10-30T00:30:00Z", "2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"],
        ),
        # An ISO 8601 daily interval keeps its wall-clock time across New York's change on 2027-03-14.
        (
            {"interval": "R/2027-03-13T06:00:00/P1D", "time_zone": "America/New_York", "count": 3},
            ["2027-03-13T11:00:00Z", "2027-03-14T10:00:00Z", "2027-03-15T10:00:00Z"],
        ),
        (
            {
                "recurrence": ["RRULE:FREQ=MONTHLY;BYMONTHDAY=31;BYHOUR=23;BYMINUTE=0"],
                "time_zone": "Asia/Tokyo",
                "start": "2027-01-01T00:00:00",
                "count": 3,
            },
            ["2027-01-31T14:00:00Z", "2027-03-31T14:00:00Z", "2027-05-31T14:00:00Z"],
        ),
    ],
)
async def test_explain_schedule_known_cases(harness: Harness, args: dict[str, Any], expected_utc: list[str]) -> None:
    async with harness.client() as client:
        explained = data(await client.call_tool("explain_schedule", args))
    assert [r["utc"] for r in explained["next_runs"]] == expected_utc
    assert explained["time_zone"] == args["time_zone"]


async def test_explain_schedule_describes_in_one_line(harness: Harness) -> None:
    args = {
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=6;BYMINUTE=0;BYSECOND=0"],
        "time_zone": "Europe/Zurich",
        "end": "2027-12-31T00:00:00",
        "count": 2,
    }
    async with harness.client() as client:
        explained = data(await client.call_tool("explain_schedule", args))
        assert explained["description"] == "every weekday at 06:00 Europe/Zurich, until 2027-12-31"
        assert explained["next_runs"][0]["local"].endswith(("(Mon)", "(Tue)", "(Wed)", "(Thu)", "(Fri)"))
        for bad, message in (
            ({"recurrence": ["RRULE:FREQ=NEVER"]}, "not a valid RRULE"),
            ({"interval": "every day"}, "ISO 8601 repeating interval"),
            ({"interval": "R/2027-01-01T00:00:00/P1D", "time_zone": "Moon/Base"}, "IANA"),
            ({"recurrence": args["recurrence"], "interval": "R/2027-01-01T00:00:00/P1D"}, "not both"),
            ({}, "give task_id with kind"),
            ({"task_id": "abc"}, "give the kind"),
            (
                {"recurrence": args["recurrence"], "start": "2027-02-01T00:00:00", "end": "2027-01-01T00:00:00"},
                "must be after start",
            ),
        ):
            assert message in error_text(await client.call_tool("explain_schedule", bad))


async def test_explain_schedule_says_where_a_missing_minute_comes_from(harness: Harness) -> None:
    # RFC 5545: without BYMINUTE the minute is the start's; the description must match the runs.
    args = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6"], "time_zone": "Europe/Zurich", "count": 2}
    async with harness.client() as client:
        given = data(await client.call_tool("explain_schedule", args | {"start": "2027-01-01T05:45:00"}))
        defaulted = data(await client.call_tool("explain_schedule", args))
        exact = data(
            await client.call_tool("explain_schedule", args | {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0"]})
        )
        lower = data(
            await client.call_tool("explain_schedule", args | {"recurrence": ["rrule:freq=daily;byhour=6;byminute=0"]})
        )
    assert given["description"] == "every day at 06:45 Europe/Zurich"
    assert [r["utc"] for r in given["next_runs"]] == ["2027-01-01T05:45:00Z", "2027-01-02T05:45:00Z"]
    assert "start's minute (45)" in given["note"] and "BYMINUTE=0" in given["note"]
    # With no start the schedule would start now, so the minute is now's: description and runs agree on it.
    minute = defaulted["next_runs"][0]["local"][14:16]
    assert defaulted["description"] == f"every day at 06:{minute} Europe/Zurich"
    assert f"({minute})" in defaulted["note"]
    assert exact["description"] == "every day at 06:00 Europe/Zurich" and "note" not in exact
    # RFC 5545 names and values are case-insensitive: a lower-case line reads and runs the same.
    assert lower["description"] == exact["description"] and lower["next_runs"] == exact["next_runs"]


async def test_explain_schedule_of_existing_tasks(harness: Harness) -> None:
    reload_task = next(t for t in harness.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")
    disabled = next(t for t in harness.sandbox.tables["reload_tasks"].values() if t["state"] == "Disabled")
    scheduled = next(t for t in sandbox_tasks.tables(harness.sandbox).tasks.values() if "start" in t)
    chained = next(t for t in sandbox_tasks.tables(harness.sandbox).tasks.values() if t.get("events"))
    async with harness.client() as client:
        one = data(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": reload_task["id"]}))
        assert one["time_zone"] == reload_task["timeZone"] and len(one["next_runs"]) == 5
        off = data(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": disabled["id"]}))
        assert "disabled" in off["note"]
        two = data(await client.call_tool("explain_schedule", {"kind": "task", "task_id": scheduled["id"], "count": 2}))
        assert two["description"].startswith("every day at ") and len(two["next_runs"]) == 2
        three = data(await client.call_tool("explain_schedule", {"kind": "task", "task_id": chained["id"]}))
        assert three["next_runs"] == [] and "another task ends" in three["description"]


async def test_set_tasks_enabled_previews_every_task_then_changes_them(harness: Harness) -> None:
    app_id = next(iter(harness.sandbox.apps))
    reload_ids = [t["id"] for t in harness.sandbox.tables["reload_tasks"].values() if t["appId"] == app_id]
    task_ids = [t["id"] for t in sandbox_tasks.tables(harness.sandbox).tasks.values() if t["resourceId"] == app_id]
    sharing = sandbox_sharing.tables(harness.sandbox).tasks
    sharing_ids = [i for i, t in sharing.items() if t["appId"] == app_id and t["enabled"]]
    assert reload_ids and task_ids and sharing_ids
    before = copy.deepcopy(harness.sandbox.tables)
    async with harness.client() as client:
        preview = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "app_id": app_id}))
        assert preview["status"] == "confirmation_required"
        listed = " ".join(preview["changes"])
        assert all(i in listed for i in reload_ids + task_ids + sharing_ids)
        # Reload tasks and tasks are changed by PUT, which makes the caller their owner: the preview says so.
        owners = {harness.sandbox.tables["reload_tasks"][i]["userId"] for i in reload_ids}
        owner_note = next(n for n in preview["notes"] if "owner" in n)
        assert owner_note.startswith(f"{len(reload_ids) + len(task_ids)} reload tasks/tasks")
        assert all(o in owner_note for o in owners)
        assert harness.sandbox.tables == before
        done = data(
            await client.call_tool(
                "set_tasks_enabled", {"enabled": False, "app_id": app_id, "confirm_token": preview["confirm_token"]}
            )
        )
    assert done["status"] == "done"
    assert done["result"]["changed"] == len(reload_ids) + len(task_ids) + len(sharing_ids)
    assert not any(sharing[i]["enabled"] for i in sharing_ids)
    assert all(harness.sandbox.tables["reload_tasks"][i]["state"] == "Disabled" for i in reload_ids)
    assert all(not sandbox_tasks.tables(harness.sandbox).tasks[i]["enabled"] for i in task_ids)
    # Schedules survive the toggle.
    assert all(
        harness.sandbox.tables["reload_tasks"][i]["recurrence"] == before["reload_tasks"][i]["recurrence"]
        for i in reload_ids
    )


async def test_set_tasks_enabled_reports_partial_failure(harness: Harness) -> None:
    targets = [t for t in harness.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled"][:3]
    refs = [{"kind": "reload", "id": t["id"]} for t in targets]
    harness.backend.qlik.retry.base_delay = 0.001
    async with harness.client() as client:
        preview = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs}))
        faults = harness.sandbox.faults
        faults.match_path, faults.match_method, faults.status_503 = targets[1]["id"], "PUT", 10
        done = data(
            await client.call_tool(
                "set_tasks_enabled", {"enabled": False, "tasks": refs, "confirm_token": preview["confirm_token"]}
            )
        )
    result = done["result"]
    assert result["changed"] == 2
    assert [f["id"] for f in result["failed"]] == [targets[1]["id"]] and "503" in result["failed"][0]["error"]
    states = [harness.sandbox.tables["reload_tasks"][t["id"]]["state"] for t in targets]
    assert states == ["Disabled", "Enabled", "Disabled"]


async def test_set_tasks_enabled_refuses_unknown_ids_and_no_ops(harness: Harness) -> None:
    enabled = next(t for t in harness.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")
    before = copy.deepcopy(harness.sandbox.tables)
    async with harness.client() as client:
        unknown = await client.call_tool(
            "set_tasks_enabled",
            {"enabled": False, "tasks": [{"kind": "reload", "id": enabled["id"]}, {"kind": "reload", "id": "ffff"}]},
        )
        assert "HTTP 404" in error_text(unknown)
        same = await client.call_tool(
            "set_tasks_enabled", {"enabled": True, "tasks": [{"kind": "reload", "id": enabled["id"]}]}
        )
        assert "already enabled" in error_text(same)
        both = await client.call_tool("set_tasks_enabled", {"enabled": True})
        assert "either tasks" in error_text(both)
    assert harness.sandbox.tables == before


async def test_set_tasks_enabled_in_bulk_reads_lists_not_one_get_per_task(big: Harness) -> None:
    refs = [{"kind": "reload", "id": t["id"]} for t in big.sandbox.tables["reload_tasks"].values()]
    async with big.client() as client:
        preview = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs}))
    gets = [x for x in big.recorder.exchanges if x.method == "GET"]
    task_reads = [x for x in gets if x.path.startswith("/api/v1/reload-tasks")]
    assert len(task_reads) == 2  # two pages of 100: not 150 single reads
    # Besides: the preview's names (one items lookup for the listed apps) and the caller (users/me, a 301).
    assert [x.path.rsplit("/", 1)[-1] if "users" in x.path else x.path for x in gets if x not in task_reads] == [
        "/api/v1/items",
        "me",
        big.sandbox.caller_id,
    ]
    enabled = sum(1 for t in big.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")
    assert preview["action"].startswith(f"Disable {enabled} tasks")
    assert len(preview["changes"]) == min(enabled, 100) + (1 if enabled > 100 else 0)


async def test_set_tasks_enabled_with_elicitation(harness: Harness) -> None:
    app_id = next(iter(harness.sandbox.apps))
    harness.elicit_answers.append(ElicitResult(action="accept", content={"confirm": True}))
    async with harness.client(elicitation=True) as client:
        done = data(
            await client.call_tool(
                "set_tasks_enabled", {"enabled": False, "app_id": app_id, "kinds_filter": ["reload"]}
            )
        )
    assert done["status"] == "done" and done["result"]["changed"] == 1
    assert "Disable 1 tasks" in harness.elicit_messages[0]


async def test_app_overview_shows_schedules_chains_and_disabled(harness: Harness) -> None:
    st = sandbox_tasks.tables(harness.sandbox)
    chained = next(t for t in st.tasks.values() if t.get("events"))
    trigger_id = chained["events"][0]["correlation"][0]["contextAttributeValue"]
    trigger_app = st.tasks[trigger_id]["resourceId"]
    async with harness.client() as client:
        first = data(await client.call_tool("get_app_schedule_overview", {"app_id": trigger_app}))
        follower = data(await client.call_tool("get_app_schedule_overview", {"app_id": chained["resourceId"]}))
        empty = data(await client.call_tool("get_app_schedule_overview", {"app_id": "no-such-app"}))
    kinds = {i["kind"] for i in first["items"]}
    assert kinds == {"reload", "task", "sharing"}
    trigger_item = next(i for i in first["items"] if i["id"] == trigger_id)
    assert any(chained["id"] in s and "succeeds" in s for s in trigger_item["starts"])
    assert all(len(i["next_runs"]) == 3 for i in first["items"] if i["enabled"] and i.get("schedule"))
    follower_item = next(i for i in follower["items"] if i["id"] == chained["id"])
    assert follower_item["after"] == [f"task {trigger_id} succeeds"]
    assert empty["items"] == [] and "Nothing is scheduled" in empty["note"]


async def test_prompts_render_with_their_arguments(harness: Harness) -> None:
    async with harness.client() as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(prompts) == {
            "diagnose_failed_reload",
            "setup_report_distribution",
            "maintenance_window",
            "daily_ops_review",
            "migrate_off_reload_tasks",
        }
        tool_names = {t.name for t in (await client.list_tools()).tools}
        cases = {
            "diagnose_failed_reload": {"target": "app-123"},
            "setup_report_distribution": {
                "app_id": "app-9",
                "recipients": "a@example.com",
                "schedule": "weekdays 07:00",
            },
            "maintenance_window": {
                "app_id": "app-7",
                "start": "2027-01-05 20:00 Europe/Zurich",
                "end": "2027-01-06 02:00 Europe/Zurich",
            },
            "daily_ops_review": {"hours": "12"},
            "migrate_off_reload_tasks": {"app": "Sales"},
        }
        for name, args in cases.items():
            text = prompt_text(await client.get_prompt(name, args))
            for value in args.values():
                assert value in text
            named = {word.strip("[],.") for word in text.split() if word.strip("[],.") in tool_names}
            assert named, name
            mentioned = {w.strip("[],.") for w in text.replace(",", " ").split() if "_" in w and w.islower()}
            assert {m for m in mentioned if m.endswith(("_task", "_tasks", "_log", "_failures", "_overview"))} <= (
                tool_names | {"confirm_token", "disabled_code"}
            )
        assert "confirm" in prompt_text(await client.get_prompt("maintenance_window", cases["maintenance_window"]))


async def test_read_only_prompts_name_no_writing_tool() -> None:
    h = make_harness(read_only=True)
    try:
        async with h.client() as client:
            text = await client.get_prompt("maintenance_window", {"app_id": "a", "start": "s", "end": "e"})
            body = prompt_text(text)
        assert "set_tasks_enabled" not in body
    finally:
        await h.backend.aclose()


async def test_ops_cover_qalyptus_tasks(harness: Harness) -> None:
    since = (harness.sandbox.clock.now() - timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%S")
    async with harness.client() as client:
        statuses = data(await client.call_tool("list_qalyptus_task_statuses", {"limit": 100}))["statuses"]
        failed = {s["task_id"] for s in statuses if s["status"] == "Failed" and s["ended_at"] >= since}
        assert failed
        report = data(await client.call_tool("find_failures", {"hours": 72}))
        groups = [g for g in report["groups"] if g["kind"] == "qalyptus"]
        assert {g["task_id"] for g in groups} == failed
        assert report["checked"]["qalyptus"] >= len(statuses)
        assert all(fenced_once(report, g) for g in groups)
        task_id = groups[0]["task_id"]
        explained = data(await client.call_tool("explain_schedule", {"kind": "qalyptus", "task_id": task_id}))
        assert explained["task"].startswith("qalyptus ")
        preview = data(
            await client.call_tool(
                "set_tasks_enabled", {"enabled": False, "tasks": [{"kind": "qalyptus", "id": task_id}]}
            )
        )
        done = data(
            await client.call_tool(
                "set_tasks_enabled",
                {
                    "enabled": False,
                    "tasks": [{"kind": "qalyptus", "id": task_id}],
                    "confirm_token": preview["confirm_token"],
                },
            )
        )
        assert done["result"]["changed"] == 1
        task = data(await client.call_tool("get_qalyptus_task", {"task_id": task_id}))
    assert task["task"]["active"] is False


# Bounded work (issue 15): recurrences expanded off the event loop within a work budget, listings within their
# request budget.
IMPOSSIBLE = [
    "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
    "RRULE:FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31",
    "RRULE:FREQ=HOURLY;BYMONTH=6;BYMONTHDAY=31",
    "RRULE:FREQ=DAILY;BYMONTH=9;BYMONTHDAY=31",
    "RRULE:FREQ=DAILY;BYMONTH=11;BYMONTHDAY=31",
]


class ExpansionThreads:
    """The thread each recurrence expansion ran on: on the event loop's, every other session would wait for it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[int] = []
        original = ExpansionBudget.measured

        def measured(budget: ExpansionBudget) -> AbstractContextManager[None]:
            self.threads.append(threading.get_ident())
            return original(budget)

        monkeypatch.setattr(ExpansionBudget, "measured", measured)


def stored_reload_task(h: Harness, recurrence: list[str], *, state: str = "Enabled") -> str:
    """A reload task as a tenant may hold it (made in the UI, say): its rules never went through our checks."""
    table = h.sandbox.tables["reload_tasks"]
    model = next(t for t in table.values() if t["state"] == "Enabled")
    task = copy.deepcopy(model) | {"id": h.sandbox.hex_id(), "recurrence": recurrence, "state": state}
    table[task["id"]] = task
    return task["id"]


async def test_explain_schedule_refuses_impossible_rules_within_its_work_budget_off_the_event_loop(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking one such rule takes about 0.3 s of work: on the event loop, that would be every session's stall.
    The answer itself shows the bound held (past it, the error says the work took too long)."""
    expansions = ExpansionThreads(monkeypatch)
    # Disabled, so the sandbox (in this process) works out no next run: every expansion seen is the server's.
    task_id = stored_reload_task(harness, IMPOSSIBLE, state="Disabled")
    async with harness.client() as client:
        given = error_text(
            await client.call_tool("explain_schedule", {"recurrence": IMPOSSIBLE, "time_zone": "Europe/Zurich"})
        )
        stored = error_text(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": task_id}))
    assert "no occurrence in the next 40 years" in given and "BYMONTH=2;BYMONTHDAY=30" in given
    assert "this schedule has no occurrence in the next 40 years" in stored
    assert "took more than" not in given + stored
    assert len(expansions.threads) >= 2 and threading.get_ident() not in expansions.threads, expansions.threads


async def test_explain_schedule_says_a_schedule_that_really_ended_has_ended(harness: Harness) -> None:
    task_id = stored_reload_task(harness, ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;UNTIL=20200101T000000"])
    async with harness.client() as client:
        ended = data(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": task_id}))
    assert ended["next_runs"] == [] and "has ended" in ended["note"]


async def test_the_sandbox_reads_impossible_rules_within_a_bound(harness: Harness) -> None:
    """The sandbox works out nextExecutionTime itself: an impossible rule must not stall it (it took 32 s of work).
    Counted in this thread's CPU time (the sandbox answers on it), which a busy machine does not stretch."""
    task_id = stored_reload_task(harness, IMPOSSIBLE)
    headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    # Straight to the sandbox (not through the spec recorder, which checks the client's pacing).
    sandbox = harness.transport.inner
    async with httpx.AsyncClient(transport=sandbox, base_url=SANDBOX_URL, headers=headers) as http:
        began = time.thread_time()
        answer = await http.get(f"/api/v1/reload-tasks/{task_id}")
        work = time.thread_time() - began
    assert answer.status_code == 200 and "nextExecutionTime" not in answer.json()
    assert work < 3, work


async def test_app_overview_names_a_task_whose_runs_cannot_be_worked_out(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    expansions = ExpansionThreads(monkeypatch)
    task_id = stored_reload_task(harness, IMPOSSIBLE[:2])
    app_id = harness.sandbox.tables["reload_tasks"][task_id]["appId"]
    async with harness.client() as client:
        found = data(await client.call_tool("get_app_schedule_overview", {"app_id": app_id}))
    item = next(i for i in found["items"] if i["id"] == task_id)
    assert item["schedule"] and "next_runs" not in item
    assert f"No next runs shown for reload {task_id}: explain_schedule says why." in found["note"]
    assert all(i.get("next_runs") for i in found["items"] if i["id"] != task_id and i["enabled"] and i.get("schedule"))
    assert expansions.threads and threading.get_ident() not in expansions.threads


class LoopingListing(httpx.AsyncBaseTransport):
    """A tenant whose reload-task listing never ends: every page links to a next page with a new cursor, and
    every other page is empty, so neither a repeated cursor nor a page sent twice in a row gives it away."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.pages = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET" or request.url.path != "/api/v1/reload-tasks":
            return await self.inner.handle_async_request(request)
        params = [(k, v) for k, v in request.url.params.multi_items() if k != "next"]
        request.url = request.url.copy_with(params=params)
        answer = await self.inner.handle_async_request(request)
        body = json.loads(await answer.aread())
        self.pages += 1
        if self.pages % 2 == 0:
            body["data"] = []
        body["links"]["next"] = {"href": str(request.url.copy_merge_params({"next": f"loop{self.pages}"}))}
        headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() != "content-length"]
        return httpx.Response(answer.status_code, headers=headers, json=body, request=request)


def looping(h: Harness) -> LoopingListing:
    loop = LoopingListing(h.transport.inner)
    h.transport.inner = loop
    return loop


def huge(h: Harness, tasks: int, *, away_from: str | None = None) -> None:
    """A tenant with `tasks` more reload tasks, spread over its apps (but `away_from`)."""
    table = h.sandbox.tables["reload_tasks"]
    model = next(t for t in table.values() if t["state"] == "Enabled")
    apps = [a for a in h.sandbox.apps if a != away_from]
    for index in range(tasks):
        task = model | {"id": f"{index:024x}", "appId": apps[index % len(apps)]}
        table[task["id"]] = task


def reload_listings(h: Harness) -> int:
    return sum(1 for x in h.recorder.exchanges if x.method == "GET" and x.path == "/api/v1/reload-tasks")


@pytest.mark.parametrize("tenant", ["looping next link", "huge tenant"])
async def test_find_failures_reads_every_listing_page_within_its_budget(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tenant: str
) -> None:
    monkeypatch.setattr(ops_module, "SCAN_REQUESTS", 25)
    loop = looping(harness) if tenant == "looping next link" else huge(harness, 20_000)
    async with harness.client() as client:
        with anyio.fail_after(ops_module.SCAN_SECONDS):
            report = data(await client.call_tool("find_failures", {}))
    assert 0 < reload_listings(harness) <= 25
    if loop is not None:
        assert loop.pages == reload_listings(harness)
    assert (
        report["stopped_early"] is True and "Stopped early" in report["note"] and "within 25 requests" in report["note"]
    )
    assert any(what.startswith("/api/v1/reload-tasks page") for what in report["not_checked"])


@pytest.mark.parametrize("tenant", ["looping next link", "huge tenant"])
async def test_app_overview_reads_every_listing_page_within_its_budget(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tenant: str
) -> None:
    monkeypatch.setattr(ops_module, "OVERVIEW_REQUESTS", 25)
    app_id = next(t["appId"] for t in harness.sandbox.tables["reload_tasks"].values())
    if tenant == "looping next link":
        looping(harness)
    else:
        huge(harness, 20_000, away_from=app_id)
    async with harness.client() as client:
        with anyio.fail_after(ops_module.SCAN_SECONDS):
            overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": app_id}))
    assert 0 < reload_listings(harness) <= 25
    assert "Stopped early" in overview["note"] and "may miss tasks or chains" in overview["note"]
    ids = [(i["kind"], i["id"]) for i in overview["items"]]
    assert ids and len(ids) == len(set(ids)), "a looping listing repeats tasks; the overview shows each once"


async def test_app_overview_shows_recent_reloads_and_their_failure_rate(harness: Harness) -> None:
    st = sandbox_reloads.tables(harness.sandbox)
    app_id = next(iter(st.defects))
    async with harness.client() as client:
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": app_id}))
    history = overview["recent_reloads"]
    now = harness.sandbox.clock.now()
    newest = sorted((st.reloads[i] for i in st.by_app[app_id]), key=lambda r: r["_created"], reverse=True)[:10]
    statuses = [sandbox_reloads.status_at(r, now) for r in newest]
    assert [r["id"] for r in history["reloads"]] == [r["id"] for r in newest]
    assert history["failed"] == statuses.count("FAILED") > 0
    assert history["failure_rate"] == round(history["failed"] / history["ended"], 2)
    assert all(r["seconds"] for r in history["reloads"] if r["status"] != "QUEUED")
    reloads_read = [x for x in harness.recorder.exchanges if x.path == "/api/v1/reloads"]
    assert len(reloads_read) == 1


async def test_find_failures_names_the_apps_with_one_lookup(harness: Harness) -> None:
    async with harness.client() as client:
        before = len(harness.recorder.exchanges)
        report = data(await client.call_tool("find_failures", {"hours": 72}))
    items = [x for x in harness.recorder.exchanges[before:] if x.path.startswith("/api/v1/items")]
    apps = {a.id: a for a in harness.sandbox.apps.values() if not a.deleted}
    named = [g for g in report["groups"] if g.get("app_id") in apps]
    assert named and len(items) == 1
    for group in named:
        assert group["app"] == apps[group["app_id"]].name


# Sharing failures are read from what the task listing shows (sharing-tasks.json) -------------------------------


def sharing_view(h: Harness, task: dict[str, Any]) -> dict[str, Any]:
    """A task as the sandbox answers it: its deliveries' outcome shown the spec's way."""
    view = copy.deepcopy(task)
    history = sandbox_sharing.tables(h.sandbox).executions.get(task["id"], [])
    sandbox_sharing.show_deliveries(view, history, h.sandbox.clock.now())
    return view


def shows_failure(view: dict[str, Any]) -> bool:
    recipients = [r for entries in view["recipients"].values() if isinstance(entries, list) for r in entries]
    return bool(
        view["failedExecutionsCount"]
        or view.get("statusCode") not in ("VALID", "DELETING")
        or view.get("taskErrors")
        or any(r.get("taskRecipientErrors") or r.get("taskGroupRecipientErrors") for r in recipients)
    )


def sharing_executions_read(h: Harness, start: int = 0) -> set[str]:
    paths = [x.path for x in h.recorder.exchanges[start:] if x.method == "GET" and x.path.endswith("/executions")]
    return {p.split("/")[-2] for p in paths if p.startswith("/api/v1/sharing-tasks/")}


async def test_find_failures_reads_executions_only_of_sharing_tasks_showing_a_failure(big: Harness) -> None:
    async with big.client() as client:
        report = data(await client.call_tool("find_failures", {"hours": 24}))
        bounced = next(t for t in sandbox_sharing.tables(big.sandbox).tasks.values() if "bounce.invalid" in str(t))
        got = data(await client.call_tool("get_sharing_task", {"task_id": bounced["id"]}))["task"]
    assert report["stopped_early"] is False
    since = (big.sandbox.clock.now() - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tasks = sandbox_sharing.tables(big.sandbox).tasks.values()
    flagged = {t["id"] for t in tasks if t.get("lastRun", "") >= since and shows_failure(sharing_view(big, t))}
    read = sharing_executions_read(big)
    assert read == flagged and len(read) < len(tasks) // 5
    assert failed_sharing_since(big, since) <= read
    assert report["checked"]["sharing"] == len(tasks) and report["checked"]["sharing tasks read"] == len(read)
    assert "not read for executions" in report["note"] and "list_sharing_task_executions" in report["note"]
    # A bounced address fails that recipient alone: the task shows it on the recipient, not as a failed run.
    email = next(r for r in got["recipients"] if r["value"].endswith("@bounce.invalid"))
    assert email.get("errors") == ["GENERIC_EXECUTION_FAILURE"]
    assert not any(r.get("errors") for r in got["recipients"] if r is not email)
    assert got["status"] == "VALID" and "failed_executions_in_a_row" not in got


async def test_find_failures_finds_a_sharing_task_whose_only_failure_is_one_recipients(harness: Harness) -> None:
    sharing = sandbox_sharing.tables(harness.sandbox)
    task = next(
        t
        for t in sharing.tasks.values()
        if t["type"] == "sheet-sharing" and not shows_failure(sharing_view(harness, t)) and t["enabled"]
    )
    task["recipients"]["emailAddresses"].append({"value": "left@bounce.invalid", "enabled": True})
    now = harness.sandbox.clock.now()
    sandbox_sharing.start_execution(harness.sandbox, task, at=now - timedelta(hours=1), seconds=30)
    async with harness.client() as client:
        got = data(await client.call_tool("get_sharing_task", {"task_id": task["id"]}))["task"]
        start = len(harness.recorder.exchanges)
        report = data(await client.call_tool("find_failures", {"hours": 24, "kinds": ["sharing"]}))
    assert got["status"] == "VALID" and not got.get("task_errors") and "failed_executions_in_a_row" not in got
    assert [r.get("errors") for r in got["recipients"] if r.get("errors")] == [["GENERIC_EXECUTION_FAILURE"]]
    group = next(g for g in report["groups"] if g["task_id"] == task["id"])
    assert group["failures"] == 1 and "left@bounce.invalid" in first_error(report, group)
    assert task["id"] in sharing_executions_read(harness, start)


async def test_a_sharing_run_failed_for_everyone_shows_on_the_task_until_a_success(harness: Harness) -> None:
    sharing = sandbox_sharing.tables(harness.sandbox)
    task = next(t for t in sharing.tasks.values() if t["enabled"] and not shows_failure(sharing_view(harness, t)))
    now = harness.sandbox.clock.now()
    error = {"code": "REPORT-SEND-FAILED", "title": "Report delivery failed", "detail": "SMTP relay refused"}
    for hours in (3, 2):
        at = now - timedelta(hours=hours)
        sandbox_sharing.start_execution(harness.sandbox, task, at=at, seconds=30, error=error, every_delivery=True)
    async with harness.client() as client:
        failed = data(await client.call_tool("get_sharing_task", {"task_id": task["id"]}))["task"]
        sandbox_sharing.start_execution(harness.sandbox, task, at=now - timedelta(hours=1), seconds=30)
        cleared = data(await client.call_tool("get_sharing_task", {"task_id": task["id"]}))["task"]
    assert failed["status"] == "FAILED" and failed["status_label"] == "Report delivery failed"
    assert failed["failed_executions_in_a_row"] == 2
    users = [r for r in failed["recipients"] if r["kind"] in ("user", "email")]
    assert users and all(r.get("errors") == ["GENERIC_EXECUTION_FAILURE"] for r in users)
    # A run that reached its recipients resets the count and the status, and clears their delivery errors.
    assert cleared["status"] == "VALID" and "status_label" not in cleared
    assert "failed_executions_in_a_row" not in cleared and not any(r.get("errors") for r in cleared["recipients"])


async def test_set_tasks_enabled_previews_5000_scheduling_tasks_by_filter_or_ids_within_the_rate_tiers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """5,000 tasks on 5,012 apps: the filter pages the tenant-wide list with its SCIM filter (not app by app, which
    the budget refuses past 400 apps), and 5,000 ids are found in that list (not one GET each, which spends tier 1
    and earns a 429). The test counts requests, not seconds: the selection's time bound is lifted, as the spec
    check of every page here is slow on a busy machine."""
    from qlik_tasks_mcp.sandbox import large

    monkeypatch.setattr(selection, "SCAN_SECONDS", 3600.0)
    h = make_harness(toolsets="tasks,ops,directory", sandbox_options={"app_count": large.USUAL_APPS + 5000})
    try:
        store = sandbox_tasks.tables(h.sandbox).tasks
        nightly = sorted(i for i, t in store.items() if t["name"].startswith("nightly-"))
        assert len(nightly) == 5000
        chosen = {"kinds": ["task"], "name_contains": "nightly-", "enabled": True}
        async with h.client() as client:
            by_filter = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "filter": chosen}))
            assert by_filter["status"] == "confirmation_required", by_filter
            assert by_filter["action"] == "Disable 5000 tasks (5000 task)"
            listings = [x for x in h.recorder.exchanges if x.method == "GET" and x.path == "/api/scheduling/tasks"]
            # The tenant narrows by what its filter takes; the name is matched here (no operator but eq confirmed).
            assert {x.query for x in listings[1:]} >= {"sort=%2BcreatedAt&limit=100&filter=enabled+eq+true"}
            assert len(listings) <= 52
            seen = len(h.recorder.exchanges)
            refs = [{"kind": "task", "id": i} for i in nightly]
            by_ids = data(await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs}))
            assert by_ids["status"] == "confirmation_required" and by_ids["action"] == by_filter["action"]
        later = h.recorder.exchanges[seen:]
        assert not [x for x in later if x.path.startswith("/api/scheduling/tasks/")], "one GET per task"
        assert len([x for x in later if x.path == "/api/scheduling/tasks"]) <= 51
        assert all(x.tier == "1" for x in h.recorder.exchanges if x.path.startswith("/api/scheduling"))
        assert h.sandbox.throttled == 0 and h.backend.qlik.throttled == 0
        assert all(t["enabled"] for t in store.values() if t["name"].startswith("nightly-"))
    finally:
        await h.backend.aclose()


async def test_many_task_ids_are_found_in_the_list_and_only_the_missing_are_read_one_by_one(harness: Harness) -> None:
    real = list(sandbox_tasks.tables(harness.sandbox).tasks)
    fakes = [f"00000000-0000-4000-8000-{n:012d}" for n in range(21 - len(real))]
    refs = [{"kind": "task", "id": i} for i in real + fakes]
    async with harness.client() as client:
        text = error_text(await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs}))
        assert "no task task with id" in text and fakes[0] in text and "nothing was changed" in text
        reads = [
            x.path.rsplit("/", 1)[-1] for x in harness.recorder.exchanges if x.path.startswith("/api/scheduling/tasks/")
        ]
        # Only the ids the tenant-wide list lacked were asked for, and each answered 404.
        assert sorted(reads) == sorted(fakes)
        many = [{"kind": "task", "id": f"00000000-0000-4000-8000-{n:012d}"} for n in range(100, 130)]
        refused = error_text(await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs + many}))
    assert "not in the tenant's task list for this key" in refused and "nothing was changed" in refused


async def test_more_task_ids_than_v1_reads_are_refused_before_any_read() -> None:
    h = make_harness(tasks_api="v1")
    try:
        refs = [{"kind": "task", "id": f"{n:024x}"} for n in range(201)]
        async with h.client() as client:
            text = error_text(await client.call_tool("set_tasks_enabled", {"enabled": False, "tasks": refs}))
        assert "read one task at a time" in text and "app_id" in text
        assert not [x for x in h.recorder.exchanges if x.path.startswith("/api/v1/tasks/")]
    finally:
        await h.backend.aclose()
