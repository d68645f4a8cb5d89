"""Sharing tasks through an MCP client: every tool, patch generation per path, the gate, recipient limits."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp.types import ElicitResult

from qlik_tasks_mcp.sandbox import sharing_tasks as sbx
from tests.conftest import Harness, data, error_text, fenced_once, first_error, make_harness
from tests.fake_clock import follow_on_sandbox_time

pytestmark = pytest.mark.anyio

WEEKLY = {"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=0;BYSECOND=0"], "time_zone": "Europe/Zurich"}


def table(h: Harness) -> Any:
    return sbx.tables(h.sandbox)


def tasks(h: Harness) -> dict[str, dict[str, Any]]:
    return table(h).tasks


def a_task(h: Harness, **want: Any) -> dict[str, Any]:
    """A seeded task of the caller's that is not being deleted, matching `want`."""
    for task in tasks(h).values():
        if task.get("statusCode") == "DELETING" or task.get("type") == "template-sharing":
            continue
        if all(task.get(k) == v for k, v in want.items()):
            return task
    raise AssertionError(f"no seeded sharing task with {want}")


def emails_of(task: dict[str, Any]) -> list[str]:
    return [e["value"] for e in (task.get("recipients") or {}).get("emailAddresses") or []]


def patches(h: Harness) -> list[list[dict[str, Any]]]:
    return [x.request_body for x in h.recorder.exchanges if x.method == "PATCH" and "/sharing-tasks/" in x.path]


def sent(h: Harness, method: str) -> int:
    return sum(1 for x in h.recorder.exchanges if x.method == method and x.path.startswith("/api/v1/sharing-tasks"))


def a_non_admin(h: Harness) -> str:
    return next(u.id for u in h.sandbox.users.values() if not u.admin)


# Reading ------------------------------------------------------------------------------------------


async def test_list_filters_sorts_and_pages_with_compact_rows(harness: Harness) -> None:
    async with harness.client() as client:
        first = data(await client.call_tool("list_sharing_tasks", {"limit": 5}))
        assert len(first["tasks"]) == 5 and first["next_cursor"]
        second = data(await client.call_tool("list_sharing_tasks", {"limit": 5, "cursor": first["next_cursor"]}))
        assert {t["id"] for t in first["tasks"]}.isdisjoint({t["id"] for t in second["tasks"]})
        names = [t["name"] for t in first["tasks"]]
        assert names == sorted(names, key=str.lower) or names == sorted(names)
        row = first["tasks"][0]
        # Names beside ids (issue 18), the schedule in words beside the next run (issue 19).
        assert set(row) <= {
            *("id", "name", "type", "app", "owner", "enabled", "status", "next_run", "last_run"),
            *("app_id", "owner_id", "owner_status", "schedule"),
        }
        assert {"app", "app_id", "owner", "owner_id", "schedule"} <= set(row)
        charts = data(await client.call_tool("list_sharing_tasks", {"types": ["chart-monitoring"], "limit": 100}))
        assert charts["tasks"] and {t["type"] for t in charts["tasks"]} == {"chart-monitoring"}
        app_id = a_task(harness)["appId"]
        of_app = data(await client.call_tool("list_sharing_tasks", {"app_id": app_id, "limit": 100}))
        expected = {
            t["id"] for t in tasks(harness).values() if t["appId"] == app_id and t.get("statusCode") != "DELETING"
        }
        assert {t["id"] for t in of_app["tasks"]} == expected
        everything = data(await client.call_tool("list_sharing_tasks", {"limit": 100, "exclude_deleting": False}))
        assert any(t.get("status") == "DELETING" for t in everything["tasks"])
        live = data(await client.call_tool("list_sharing_tasks", {"limit": 100}))
        assert not any(t.get("status") == "DELETING" for t in live["tasks"])
    listed = [x for x in harness.recorder.exchanges if x.path == "/api/v1/sharing-tasks" and x.method == "GET"]
    assert "type=chart-monitoring" in listed[2].query


async def test_get_is_plain_and_leaves_internal_fields_out(harness: Harness) -> None:
    task = a_task(harness)
    async with harness.client() as client:
        got = data(await client.call_tool("get_sharing_task", {"task_id": task["id"]}))["task"]
    blob = json.dumps(got)
    for internal in ("encryptedState", "byokMigrationId", "thumbnail", "insightID", "cipher", "tenant"):
        assert internal not in blob, internal
    assert got["id"] == task["id"] and got["name"] == task["name"]
    assert got["recipients"] and {r["kind"] for r in got["recipients"]} <= {"user", "group", "email"}
    if task.get("scheduleOptions", {}).get("recurrence"):
        assert got["schedule"] and got["time_zone"]
    assert got["templates"]


async def test_unknown_and_hostile_ids_are_clear_errors(harness: Harness) -> None:
    async with harness.client() as client:
        missing = error_text(await client.call_tool("get_sharing_task", {"task_id": "0" * 24}))
        hostile = error_text(await client.call_tool("get_sharing_task", {"task_id": "../settings"}))
    assert "404" in missing
    assert "not a valid id" in hostile


# Creating -----------------------------------------------------------------------------------------


def sheet_task(h: Harness, **extra: Any) -> dict[str, Any]:
    app = next(iter(h.sandbox.apps))
    users = list(h.sandbox.users)
    return {
        "name": "Weekly sales pack",
        "type": "sheet-sharing",
        "content": {"app_id": app, "sheet_ids": ["sheet-1", "sheet-2"], "format": "pdf"},
        "recipients": {"user_ids": users[:2], "group_ids": ["sales-managers"], "emails": ["cfo@example.com"]},
        "schedule": WEEKLY,
        "email_subject": "Sales this week",
    } | extra


async def test_create_sheet_sharing_and_chart_monitoring(harness: Harness) -> None:
    app = next(iter(harness.sandbox.apps))
    async with harness.client() as client:
        created = data(await client.call_tool("create_sharing_task", sheet_task(harness)))
        assert created["status"] == "done"
        made = created["result"]["task"]
        chart = data(
            await client.call_tool(
                "create_sharing_task",
                {
                    "name": "Churn watch",
                    "type": "chart-monitoring",
                    "content": {"app_id": app, "chart": {"sheet_id": "s1", "object_id": "o1"}},
                    "recipients": {"emails": ["ops@example.com"]},
                    "on_app_reload": True,
                },
            )
        )["result"]["task"]
    stored = tasks(harness)[made["id"]]
    assert stored["type"] == "sheet-sharing" and stored["scheduleOptions"]["timezone"] == "Europe/Zurich"
    assert made["schedule"].startswith("every")
    assert {r["kind"] for r in made["recipients"]} == {"user", "group", "email"}
    monitoring = tasks(harness)[chart["id"]]
    assert monitoring["retentionPolicy"]["historySize"] == 10
    assert monitoring["trigger"]["executeOnAppReload"] is True
    posts = [x.request_body for x in harness.recorder.exchanges if x.method == "POST" and x.path == sbx.BASE]
    assert posts[0]["templates"][0]["type"] == "multi-sheet"
    assert posts[0]["executeOnCreation"] is False


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"type": "template-sharing"}, "read-only"),
        ({"recipients": {"emails": ["not-an-address"]}}, "not email addresses"),
        ({"recipients": {}}, "recipients is empty"),
        ({"schedule": None}, "on_app_reload"),
        ({"schedule": WEEKLY | {"recurrence": ["RRULE:FREQ=DAILY;UNTIL=20270101T000000Z"]}}, "UNTIL"),
        ({"schedule": WEEKLY | {"recurrence": ["RRULE:FREQ=DAILY"] * 6}}, "recurrence"),
        ({"schedule": WEEKLY | {"time_zone": "Mars/Olympus"}}, "IANA"),
        ({"transport": ["sharepoint"]}, "sharepoint_folder"),
        ({"type": "chart-monitoring", "history_size": 20}, "exactly 10"),
        # An app id (a UUID), not a name: a name is looked up, and "a" names many apps.
        (
            {
                "content": {
                    "app_id": "00000000-0000-4000-a000-000000000000",
                    "chart": {"sheet_id": "s", "object_id": "o"},
                }
            },
            "sheet_ids",
        ),
    ],
)
async def test_create_refuses_bad_input_before_sending(harness: Harness, change: dict[str, Any], says: str) -> None:
    before = copy.deepcopy(tasks(harness))
    async with harness.client() as client:
        text = error_text(await client.call_tool("create_sharing_task", sheet_task(harness, **change)))
    assert says in text
    assert sent(harness, "POST") == 0
    assert tasks(harness) == before


async def test_recipient_limit_of_the_tenant_is_checked_first(harness: Harness) -> None:
    table(harness).max_recipients = 3
    async with harness.client() as client:
        text = error_text(await client.call_tool("create_sharing_task", sheet_task(harness)))
        settings = data(await client.call_tool("get_sharing_settings", {}))
    assert "4 recipients" in text and "(3)" in text and "remove 1" in text
    assert sent(harness, "POST") == 0
    assert settings["max_recipients"] == 3


# Patching -----------------------------------------------------------------------------------------

SAFE_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"name": "Renamed"}, "/name"),
    ({"description": "For the board"}, "/description"),
    ({"tags": ["finance", "weekly"]}, "/tags"),
    ({"schedule": WEEKLY}, "/scheduleOptions"),
    (
        {"transport": ["email", "sharepoint"], "sharepoint_folder": "/Reports", "data_connection_id": "dc1"},
        "/transportChannels",
    ),
    ({"sharepoint_folder": "/Reports/Weekly"}, "/sharePointFolder"),
    ({"data_connection_id": "dc-42"}, "/dataConnectionID"),
]


@pytest.mark.parametrize(("fields", "path"), SAFE_PATCHES)
async def test_patch_that_takes_nothing_away_acts_at_once(harness: Harness, fields: dict[str, Any], path: str) -> None:
    task = a_task(harness, type="sheet-sharing")
    async with harness.client() as client:
        done = data(await client.call_tool("patch_sharing_task", {"task_id": task["id"]} | fields))
    assert done["status"] == "done"
    body = patches(harness)[-1]
    assert path in [op["path"] for op in body]
    assert all(op["op"] in ("replace", "remove") for op in body)


async def test_patch_content_and_added_recipients_and_removals_of_text(harness: Harness) -> None:
    task = a_task(harness, type="sheet-sharing")
    current = task["recipients"]
    users = [u["value"] for u in current.get("userIds") or []]
    groups = [g["value"] for g in current.get("groupIds") or []]
    async with harness.client() as client:
        content = {"app_id": task["appId"], "sheet_ids": ["s9"], "format": "pptx"}
        await confirmed(client, {"task_id": task["id"], "content": content})
        recipients = {"user_ids": users, "group_ids": groups, "emails": [*emails_of(task), "new@example.com"]}
        added = await confirmed(client, {"task_id": task["id"], "recipients": recipients})
        data(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "description": "x"}))
        removed = data(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "description": ""}))
    assert added["status"] == "done" and "new@example.com" in " ".join(added["changes"])
    assert tasks(harness)[task["id"]]["templates"][0]["subType"] == "pptx"
    assert removed["status"] == "done"
    assert patches(harness)[-1] == [{"op": "remove", "path": "/description"}]
    assert not tasks(harness)[task["id"]].get("description")


async def confirmed(client: Any, args: dict[str, Any]) -> dict[str, Any]:
    """A gated patch: the preview first (it must ask), then the same call with its token."""
    preview = data(await client.call_tool("patch_sharing_task", args))
    assert preview["status"] == "confirmation_required", preview
    done = data(await client.call_tool("patch_sharing_task", args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done"
    return done


RISKY_PATCHES: list[tuple[str, str]] = [
    ("enabled", "/enabled"),
    ("owner", "/ownerId"),
    ("recipients", "/recipients"),
    ("bookmark", "/bookmarkId"),
]


@pytest.mark.parametrize(("what", "path"), RISKY_PATCHES)
async def test_patch_that_takes_something_away_needs_a_yes(harness: Harness, what: str, path: str) -> None:
    task = a_task(harness, type="sheet-sharing", enabled=True)
    fields: dict[str, Any] = {
        "enabled": {"enabled": False},
        "owner": {"owner_id": next(u for u in harness.sandbox.users if u != task["owner"])},
        "recipients": {"recipients": {"emails": ["only-one@example.com"]}},
        "bookmark": {"bookmark_id": "bm-1"},
    }[what]
    args = {"task_id": task["id"]} | fields
    before = copy.deepcopy(tasks(harness)[task["id"]])
    async with harness.client() as client:
        preview = data(await client.call_tool("patch_sharing_task", args))
        assert preview["status"] == "confirmation_required" and preview["notes"]
        assert tasks(harness)[task["id"]] == before and not patches(harness)
        done = data(await client.call_tool("patch_sharing_task", args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done"
    assert [op["path"] for op in patches(harness)[-1]] == [path]
    assert tasks(harness)[task["id"]] != before


async def test_patch_gate_with_elicitation_declined_changes_nothing(harness: Harness) -> None:
    task = a_task(harness, type="sheet-sharing", enabled=True)
    harness.elicit_answers.append(ElicitResult(action="decline"))
    async with harness.client(elicitation=True) as client:
        result = data(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "enabled": False}))
    assert result["status"] == "cancelled"
    assert "disables the task" in harness.elicit_messages[0]
    assert not patches(harness)


async def test_patch_with_nothing_to_change_and_template_sharing_content_are_clear(harness: Harness) -> None:
    task = a_task(harness)
    template = next(t for t in tasks(harness).values() if t["type"] == "template-sharing")
    async with harness.client() as client:
        same = error_text(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "name": task["name"]}))
        content = {"app_id": template["appId"], "sheet_ids": ["s"]}
        tmpl = error_text(await client.call_tool("patch_sharing_task", {"task_id": template["id"], "content": content}))
    assert "nothing to change" in same
    assert "read-only" in tmpl
    assert not patches(harness)


async def test_patch_recipients_over_the_limit_is_refused(harness: Harness) -> None:
    task = a_task(harness, type="sheet-sharing")
    table(harness).max_recipients = 2
    emails = ["a@example.com", "b@example.com", "c@example.com"]
    async with harness.client() as client:
        text = error_text(
            await client.call_tool("patch_sharing_task", {"task_id": task["id"], "recipients": {"emails": emails}})
        )
    assert "(2)" in text and not patches(harness)


async def test_non_owner_gets_the_tenants_refusal(harness: Harness) -> None:
    task = a_task(harness, type="sheet-sharing")
    harness.sandbox.caller_id = next(
        u.id for u in harness.sandbox.users.values() if not u.admin and u.id != task["owner"]
    )
    async with harness.client() as client:
        text = error_text(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "name": "Mine now"}))
    assert "403" in text
    assert tasks(harness)[task["id"]]["name"] == task["name"]


# Delete, execute, cancel, executions ------------------------------------------------------------


async def test_delete_is_gated(harness: Harness) -> None:
    task = a_task(harness)
    async with harness.client() as client:
        preview = data(await client.call_tool("delete_sharing_task", {"task_id": task["id"]}))
        assert preview["status"] == "confirmation_required" and task["id"] in tasks(harness)
        args = {"task_id": task["id"], "confirm_token": preview["confirm_token"]}
        done = data(await client.call_tool("delete_sharing_task", args))
        again = error_text(await client.call_tool("delete_sharing_task", args))
    assert done["status"] == "done" and task["id"] not in tasks(harness)
    assert "404" in again


async def test_execute_and_wait_reports_the_failed_recipient(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    follow_on_sandbox_time(harness.sandbox, monkeypatch)  # waits on the sandbox's time, in no real time
    table(harness).run_seconds = 0.3
    task = next(
        t
        for t in tasks(harness).values()
        if any(e.endswith(".invalid") for e in emails_of(t)) and t.get("enabled") and t.get("statusCode") != "DELETING"
    )
    bad = next(e for e in emails_of(task) if e.endswith(".invalid"))
    seen: list[str] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with harness.client() as client:
        result = data(
            await client.call_tool(
                "execute_sharing_task",
                {"task_id": task["id"], "wait": True, "timeout_seconds": 20},
                progress_callback=progress,
            )
        )
        assert result["status"] == "done"
        result = result["result"]
        failed = [e for e in result["executions"] if e["status"] == "failed"]
        assert result["wait_ended"] == "finished" and failed and seen
        assert failed[0]["recipient"] == f"email:{bad}"
        detail = data(
            await client.call_tool(
                "get_sharing_task_execution", {"task_id": task["id"], "execution_id": failed[0]["id"]}
            )
        )
        only_failed = data(
            await client.call_tool("list_sharing_task_executions", {"task_id": task["id"], "status": "failed"})
        )
    assert bad in detail["errors"] and "UNTRUSTED" in detail["errors"]
    assert {e["status"] for e in only_failed["executions"]} == {"failed"}
    assert sent(harness, "POST") == 1


async def test_a_first_send_acts_at_once_and_a_repeat_within_the_hour_asks_first(harness: Harness) -> None:
    table(harness).run_seconds = 0.2
    task = a_task(harness, enabled=True)
    task.pop("lastExecutionDate", None)
    task.pop("lastRun", None)
    async with harness.client() as client:
        first = data(await client.call_tool("execute_sharing_task", {"task_id": task["id"]}))
        assert first["status"] == "done" and first["result"]["started"] is True
        again = data(await client.call_tool("execute_sharing_task", {"task_id": task["id"]}))
        assert again["status"] == "confirmation_required"
        assert any("every recipient gets the report again" in n for n in again["notes"])
        assert sent(harness, "POST") == 1
        args = {"task_id": task["id"], "confirm_token": again["confirm_token"]}
        done = data(await client.call_tool("execute_sharing_task", args))
    assert done["status"] == "done" and sent(harness, "POST") == 2


async def test_a_send_the_tenant_shows_within_the_hour_also_asks(harness: Harness) -> None:
    task = a_task(harness, enabled=True)
    task["lastExecutionDate"] = task["lastRun"] = (datetime.now(UTC) - timedelta(minutes=20)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    async with harness.client() as client:
        preview = data(await client.call_tool("execute_sharing_task", {"task_id": task["id"]}))
    assert preview["status"] == "confirmation_required" and sent(harness, "POST") == 0


async def test_executions_page_and_list_files(harness: Harness) -> None:
    task = max(tasks(harness).values(), key=lambda t: len(table(harness).executions.get(t["id"], [])))
    async with harness.client() as client:
        page = data(await client.call_tool("list_sharing_task_executions", {"task_id": task["id"], "limit": 2}))
        assert len(page["executions"]) == 2 and page["next_cursor"]
        more = data(
            await client.call_tool(
                "list_sharing_task_executions", {"task_id": task["id"], "limit": 2, "cursor": page["next_cursor"]}
            )
        )
        ok = next(e for e in page["executions"] + more["executions"] if e["status"] == "successful")
        detail = data(
            await client.call_tool("get_sharing_task_execution", {"task_id": task["id"], "execution_id": ok["id"]})
        )
    starts = [e["started"] for e in page["executions"] + more["executions"]]
    assert starts == sorted(starts, reverse=True)
    assert detail["files"] and detail["files"][0]["alias"]


async def test_cancel_is_gated_and_refused_when_nothing_runs(harness: Harness) -> None:
    table(harness).run_seconds = 600
    task = a_task(harness, enabled=True)
    async with harness.client() as client:
        idle = error_text(await client.call_tool("cancel_sharing_task", {"task_id": task["id"]}))
        data(await client.call_tool("execute_sharing_task", {"task_id": task["id"]}))
        preview = data(await client.call_tool("cancel_sharing_task", {"task_id": task["id"]}))
        assert preview["status"] == "confirmation_required"
        args = {"task_id": task["id"], "confirm_token": preview["confirm_token"]}
        done = data(await client.call_tool("cancel_sharing_task", args))
        after = data(await client.call_tool("list_sharing_task_executions", {"task_id": task["id"], "limit": 5}))
    assert "nothing to cancel" in idle
    assert done["status"] == "done"
    assert after["executions"][0]["status"] in ("cancelled", "cancelling")


# Settings -----------------------------------------------------------------------------------------


async def test_settings_update_is_gated_and_admin_only(harness: Harness) -> None:
    async with harness.client() as client:
        settings = data(await client.call_tool("get_sharing_settings", {}))
        assert settings["sharing_enabled"] is True
        args = {"report_subscription_enabled": False}
        preview = data(await client.call_tool("update_sharing_settings", args))
        assert preview["status"] == "confirmation_required" and "every user" in " ".join(preview["notes"])
        done = data(
            await client.call_tool("update_sharing_settings", args | {"confirm_token": preview["confirm_token"]})
        )
        assert done["result"]["report_subscription_enabled"] is False
        same = error_text(await client.call_tool("update_sharing_settings", args))
        harness.sandbox.caller_id = a_non_admin(harness)
        preview = data(await client.call_tool("update_sharing_settings", {"sharing_enabled": False}))
        refused = error_text(
            await client.call_tool(
                "update_sharing_settings", {"sharing_enabled": False, "confirm_token": preview["confirm_token"]}
            )
        )
    assert "nothing to change" in same
    assert "403" in refused
    assert table(harness).settings["enable-sharing"] is True
    bodies = [
        x.request_body for x in harness.recorder.exchanges if x.method == "PATCH" and x.path.endswith("/settings")
    ]
    assert bodies[0] == [{"op": "replace", "path": "/enable-report-subscription", "value": False}]


async def test_sharing_disabled_on_the_tenant_is_said_before_creating(harness: Harness) -> None:
    table(harness).settings["enable-sharing"] = False
    async with harness.client() as client:
        text = error_text(await client.call_tool("create_sharing_task", sheet_task(harness)))
    assert "enable-sharing" in text and sent(harness, "POST") == 0


# Across kinds ---------------------------------------------------------------------------------


async def test_ops_tools_cover_sharing_tasks() -> None:
    h = make_harness()
    try:
        table(h).run_seconds = 0.2
        task = next(
            t
            for t in tasks(h).values()
            if any(e.endswith(".invalid") for e in emails_of(t))
            and t.get("enabled")
            and t.get("statusCode") != "DELETING"
        )
        async with h.client() as client:
            data(await client.call_tool("execute_sharing_task", {"task_id": task["id"], "wait": True}))
            failures = data(await client.call_tool("find_failures", {"hours": 1}))
            overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": task["appId"]}))
            preview = data(
                await client.call_tool(
                    "set_tasks_enabled",
                    {"enabled": False, "app_id": task["appId"], "kinds_filter": ["sharing"]},
                )
            )
            args = {"enabled": False, "app_id": task["appId"], "kinds_filter": ["sharing"]}
            done = data(await client.call_tool("set_tasks_enabled", args | {"confirm_token": preview["confirm_token"]}))
            explained = data(
                await client.call_tool(
                    "explain_schedule",
                    {"kind": "sharing", "task_id": a_task(h, type="sheet-sharing")["id"], "count": 2},
                )
            )
        group = next(g for g in failures["groups"] if g["kind"] == "sharing" and g["task_id"] == task["id"])
        assert fenced_once(failures, group) and ".invalid" in first_error(failures, group)
        assert failures["checked"]["sharing"] >= 1
        assert any(i["kind"] == "sharing" and i["id"] == task["id"] for i in overview["items"])
        assert done["status"] == "done"
        of_app = [t for t in tasks(h).values() if t["appId"] == task["appId"] and t.get("statusCode") != "DELETING"]
        assert of_app and all(t.get("enabled") is False for t in of_app)
        assert len(explained["next_runs"]) == 2 and explained["description"], explained
    finally:
        await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)
