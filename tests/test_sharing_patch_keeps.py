"""A sharing-task patch changes what it names and keeps the rest: schedule bounds, recipients' switches,
distribution lists, channels; and a yes given to one change never covers another."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult

from qlik_tasks_mcp.sandbox import sharing_tasks as sbx
from tests.conftest import Harness, data, error_text

pytestmark = pytest.mark.anyio

DAILY = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0"], "time_zone": "Europe/Zurich"}


def tasks(h: Harness) -> dict[str, dict[str, Any]]:
    return sbx.tables(h.sandbox).tasks


def scheduled_task(h: Harness) -> dict[str, Any]:
    return next(
        t
        for t in tasks(h).values()
        if t["type"] == "sheet-sharing" and t.get("statusCode") == "VALID" and t.get("enabledByUser") is not False
    )


def patches(h: Harness) -> list[list[dict[str, Any]]]:
    return [x.request_body for x in h.recorder.exchanges if x.method == "PATCH" and "/sharing-tasks/" in x.path]


async def test_schedule_patch_keeps_start_and_end_unless_given(harness: Harness) -> None:
    task = scheduled_task(harness)
    task["scheduleOptions"] |= {"startDateTime": "2026-01-05T07:00:00", "endDateTime": "2027-06-30T00:00:00"}
    async with harness.client() as client:
        moved = data(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "schedule": DAILY}))
        stored = tasks(harness)[task["id"]]["scheduleOptions"]
        assert stored["recurrence"] == DAILY["recurrence"]
        assert (stored["startDateTime"], stored["endDateTime"]) == ("2026-01-05T07:00:00", "2027-06-30T00:00:00")
        assert "until 2027-06-30T00:00:00" in moved["changes"][0]
        # A new start past the kept end says which end is in the way, and changes nothing.
        late = error_text(
            await client.call_tool(
                "patch_sharing_task", {"task_id": task["id"], "schedule": DAILY | {"start": "2028-01-01T00:00:00"}}
            )
        )
        assert "the current end" in late and "must be after the start" in late
        cleared = data(
            await client.call_tool("patch_sharing_task", {"task_id": task["id"], "schedule": DAILY | {"end": ""}})
        )
    assert "until never" in cleared["changes"][0]
    assert tasks(harness)[task["id"]]["scheduleOptions"]["endDateTime"] == ""
    assert len(patches(harness)) == 2


async def test_recipient_replacement_keeps_switches_and_distribution_list(harness: Harness) -> None:
    task = scheduled_task(harness)
    users = list(harness.sandbox.users)[:2]
    task["recipients"] = {
        "userIds": [
            {"value": users[0], "enabledByUser": False, "enabledBySystem": True, "subscribed": True, "groups": []},
            {"value": users[1], "enabledByUser": True, "enabledBySystem": True, "subscribed": False, "groups": []},
        ],
        "groupIds": [],
        "emailAddresses": [{"value": "kept@example.com", "enabled": True}],
        "DLUsers": [{"value": "dl-user-1"}],
        "DLGroups": [{"value": "dl-group-1"}],
    }
    args = {
        "task_id": task["id"],
        "recipients": {"user_ids": users, "emails": ["kept@example.com", "added@example.com"]},
    }
    async with harness.client() as client:
        shown = data(await client.call_tool("get_sharing_task", {"task_id": task["id"]}))["task"]["recipients"]
        assert {(r["kind"], r["value"]) for r in shown} >= {("list-user", "dl-user-1"), ("list-group", "dl-group-1")}
        done = data(await client.call_tool("patch_sharing_task", args))
    assert done["status"] == "done"
    stored = tasks(harness)[task["id"]]["recipients"]
    assert [(u["value"], u["enabledByUser"], u["subscribed"]) for u in stored["userIds"]] == [
        (users[0], False, True),
        (users[1], True, False),
    ]
    assert stored["DLUsers"] == [{"value": "dl-user-1"}] and stored["DLGroups"] == [{"value": "dl-group-1"}]
    assert [e["value"] for e in stored["emailAddresses"]] == ["kept@example.com", "added@example.com"]


async def test_replacing_recipients_says_when_it_switches_an_address_back_on(harness: Harness) -> None:
    task = scheduled_task(harness)
    task["recipients"] = {"emailAddresses": [{"value": "quiet@example.com", "enabled": False}]}
    args = {"task_id": task["id"], "recipients": {"emails": ["quiet@example.com", "new@example.com"]}}
    async with harness.client() as client:
        preview = data(await client.call_tool("patch_sharing_task", args))
        assert preview["status"] == "confirmation_required"
        assert any("quiet@example.com" in n for n in preview["notes"]) and not patches(harness)
        done = data(await client.call_tool("patch_sharing_task", args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done"


async def test_dropping_email_needs_a_yes_and_sharepoint_is_checked_as_it_will_be(harness: Harness) -> None:
    task = scheduled_task(harness)
    task |= {"transportChannels": ["email", "sharepoint"], "sharePointFolder": "/Reports", "dataConnectionID": "dc1"}
    before = copy.deepcopy(task)
    async with harness.client() as client:
        no_folder = error_text(
            await client.call_tool("patch_sharing_task", {"task_id": task["id"], "sharepoint_folder": ""})
        )
        assert "sharepoint needs sharepoint_folder" in no_folder
        swap = error_text(
            await client.call_tool(
                "patch_sharing_task", {"task_id": task["id"], "transport": ["sharepoint"], "data_connection_id": ""}
            )
        )
        assert "data_connection_id" in swap
        assert tasks(harness)[task["id"]] == before and not patches(harness)
        args = {"task_id": task["id"], "transport": ["sharepoint"]}
        preview = data(await client.call_tool("patch_sharing_task", args))
        assert preview["status"] == "confirmation_required"
        assert any("stops delivery by email" in n for n in preview["notes"])
        done = data(await client.call_tool("patch_sharing_task", args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done"
    assert tasks(harness)[task["id"]]["transportChannels"] == ["sharepoint"]


async def test_a_task_the_system_paused_can_still_be_switched_off_and_on(harness: Harness) -> None:
    task = next(t for t in tasks(harness).values() if t.get("enabledBySystem") is False)
    assert task.get("enabledByUser", True) is True
    off = {"task_id": task["id"], "enabled": False}
    async with harness.client() as client:
        preview = data(await client.call_tool("patch_sharing_task", off))
        assert preview["status"] == "confirmation_required"
        assert "paused by the system" in preview["changes"][0]
        data(await client.call_tool("patch_sharing_task", off | {"confirm_token": preview["confirm_token"]}))
        assert tasks(harness)[task["id"]]["enabledByUser"] is False
        on = data(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "enabled": True}))
    assert on["status"] == "done" and on["result"]["task"]["enabled"] is True


async def test_app_reload_trigger_shows_beside_a_schedule(harness: Harness) -> None:
    task = scheduled_task(harness)
    task["trigger"] = task.get("trigger", {}) | {"executeOnAppReload": True}
    async with harness.client() as client:
        got = data(await client.call_tool("get_sharing_task", {"task_id": task["id"]}))["task"]
        page = data(await client.call_tool("list_sharing_tasks", {"limit": 5}))
    assert got["on_app_reload"] is True and got["recurrence"]
    visible = [t for t in tasks(harness).values() if t.get("statusCode") != "DELETING"]
    assert page["total"] == len(visible)


def yes_while_it_changes(h: Harness, mode: str) -> tuple[Client, list[str], dict[str, Any], dict[str, Any]]:
    """A patch that removes b@ from a task, and a client that says yes to every question but, the first time it
    is asked, adds c@ to the task behind the question's back."""
    task = scheduled_task(h)
    task["recipients"] = {"emailAddresses": [{"value": "a@example.com"}, {"value": "b@example.com"}]}
    asked: list[str] = []

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        if len(asked) == 1:
            task["recipients"]["emailAddresses"].append({"value": "c@example.com"})
        return ElicitResult(action="accept", content={"confirm": True})

    args = {"task_id": task["id"], "recipients": {"emails": ["a@example.com"]}}
    return Client(h.mcp, elicitation_callback=answer, mode=mode), asked, task, args


async def test_a_yes_covers_only_the_change_that_was_shown_legacy(harness: Harness) -> None:
    client, asked, task, args = yes_while_it_changes(harness, "legacy")
    async with client:
        refused = error_text(await client.call_tool("patch_sharing_task", args))
    assert "changed between the question and the answer" in refused
    assert "b@example.com" in asked[0] and "c@example.com" not in asked[0]
    assert not patches(harness)
    assert len(tasks(harness)[task["id"]]["recipients"]["emailAddresses"]) == 3


async def test_a_yes_covers_only_the_change_that_was_shown(harness: Harness) -> None:
    client, asked, task, args = yes_while_it_changes(harness, "auto")
    async with client:
        assert client.protocol_version >= "2026"
        done = data(await client.call_tool("patch_sharing_task", args))
    # The question changed, so the user was asked again, and the yes that acted is the one to the new question.
    assert len(asked) == 2 and "c@example.com" in asked[1]
    assert done["status"] == "done"
    assert [e["value"] for e in tasks(harness)[task["id"]]["recipients"]["emailAddresses"]] == ["a@example.com"]


async def test_non_admin_listing_by_app_shows_only_their_tasks(harness: Harness) -> None:
    owner_id = next(t["owner"] for t in tasks(harness).values() if not harness.sandbox.users[t["owner"]].admin)
    harness.sandbox.caller_id = owner_id
    async with harness.client() as client:
        for app_id in harness.sandbox.apps:
            listed = data(await client.call_tool("list_sharing_tasks", {"app_id": app_id, "limit": 100}))["tasks"]
            for row in listed:
                stored = tasks(harness)[row["id"]]
                users = {u["value"] for u in stored["recipients"].get("userIds") or []}
                assert stored["owner"] == owner_id or owner_id in users, row
