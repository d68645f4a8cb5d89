"""A sharing-task patch changes what it names and keeps the rest: schedule bounds, recipients' switches,
distribution lists, channels; and a yes given to one change never covers another."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

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
        # added@example.com is no tenant user's address: adding it sends the report out, so it asks first.
        preview = data(await client.call_tool("patch_sharing_task", args))
        assert preview["status"] == "confirmation_required" and not patches(harness)
        done = data(await client.call_tool("patch_sharing_task", args | {"confirm_token": preview["confirm_token"]}))
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


# What sends the report out, or silences it, asks first (issue 15) -----------------------------------------


def local_in(days: int, zone: str = "Europe/Zurich") -> str:
    moment = datetime.now(ZoneInfo(zone)) + timedelta(days=days)
    return moment.replace(hour=6, minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%S")


async def gated_then_done(h: Harness, client: Client, args: dict[str, Any], says: str) -> dict[str, Any]:
    """The preview asks, names why and changes nothing; the same call with its token acts."""
    task_id = args["task_id"]
    before, sent_before = copy.deepcopy(tasks(h)[task_id]), len(patches(h))
    preview = data(await client.call_tool("patch_sharing_task", args))
    assert preview["status"] == "confirmation_required", preview
    assert any(says in note for note in preview["notes"]), preview["notes"]
    assert tasks(h)[task_id] == before and len(patches(h)) == sent_before
    done = data(await client.call_tool("patch_sharing_task", args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done" and len(patches(h)) == sent_before + 1
    assert tasks(h)[task_id] != before
    return done


def users_asked(h: Harness) -> list[str]:
    return [x.query for x in h.recorder.exchanges if x.method == "GET" and x.path == "/api/v1/users"]


async def test_adding_an_outside_address_asks_but_a_tenant_users_address_does_not(harness: Harness) -> None:
    task = scheduled_task(harness)
    task["recipients"] = {"emailAddresses": [{"value": "kept@example.com"}]}
    colleague = next(u.email for u in harness.sandbox.users.values())
    inside = {"task_id": task["id"], "recipients": {"emails": ["kept@example.com", colleague.upper()]}}
    outside = {"task_id": task["id"], "recipients": {"emails": ["kept@example.com", colleague, "x@elsewhere.org"]}}
    async with harness.client() as client:
        done = data(await client.call_tool("patch_sharing_task", inside))
        assert done["status"] == "done" and not done.get("notes")
        finished = await gated_then_done(harness, client, outside, "outside the tenant to x@elsewhere.org")
    assert "kept@example.com" not in " ".join(finished["notes"])
    stored = [e["value"] for e in tasks(harness)[task["id"]]["recipients"]["emailAddresses"]]
    assert stored == ["kept@example.com", colleague, "x@elsewhere.org"]
    assert users_asked(harness) and all("filter=" in q for q in users_asked(harness))


async def test_moving_the_start_far_ahead_asks_a_near_one_does_not(harness: Harness) -> None:
    task = scheduled_task(harness)
    task["scheduleOptions"] |= {"startDateTime": "2026-01-05T07:00:00", "endDateTime": ""}
    async with harness.client() as client:
        near = data(
            await client.call_tool(
                "patch_sharing_task", {"task_id": task["id"], "schedule": DAILY | {"start": local_in(3)}}
            )
        )
        assert near["status"] == "done" and not near.get("notes")
        far = {"task_id": task["id"], "schedule": DAILY | {"start": local_in(60)}}
        await gated_then_done(harness, client, far, "nobody receives the report until then")
    assert tasks(harness)[task["id"]]["scheduleOptions"]["startDateTime"] == local_in(60)


async def test_ending_the_schedule_in_the_past_asks_as_disabling_does(harness: Harness) -> None:
    task = scheduled_task(harness)
    task["scheduleOptions"] |= {"startDateTime": "2026-01-05T07:00:00", "endDateTime": ""}
    async with harness.client() as client:
        later = data(
            await client.call_tool(
                "patch_sharing_task", {"task_id": task["id"], "schedule": DAILY | {"end": local_in(90)}}
            )
        )
        assert later["status"] == "done" and not later.get("notes")
        past = {"task_id": task["id"], "schedule": DAILY | {"end": local_in(-1)}}
        await gated_then_done(harness, client, past, "which is past: nobody receives the report any more")
    assert tasks(harness)[task["id"]]["scheduleOptions"]["endDateTime"] == local_in(-1)


async def test_a_start_close_to_the_next_planned_send_does_not_ask(harness: Harness) -> None:
    task = scheduled_task(harness)
    # The report is already quiet for 100 days: moving its start 5 days later silences nothing more.
    task["scheduleOptions"] |= {"startDateTime": local_in(100), "endDateTime": ""}
    async with harness.client() as client:
        moved = data(
            await client.call_tool(
                "patch_sharing_task", {"task_id": task["id"], "schedule": DAILY | {"start": local_in(105)}}
            )
        )
    assert moved["status"] == "done"


async def test_swapping_content_or_filter_asks(harness: Harness) -> None:
    task = scheduled_task(harness)
    task["bookmarkId"] = "bm-0"
    sheets = {"app_id": task["appId"], "sheet_ids": ["other-sheet"], "format": "pdf"}
    async with harness.client() as client:
        done = await gated_then_done(
            harness, client, {"task_id": task["id"], "content": sheets}, "recipients receive other sheets"
        )
        assert "other-sheet" in done["changes"][0]
        same = error_text(await client.call_tool("patch_sharing_task", {"task_id": task["id"], "content": sheets}))
        assert "nothing to change" in same
        await gated_then_done(harness, client, {"task_id": task["id"], "bookmark_id": "bm-9"}, "selection filter")
        await gated_then_done(harness, client, {"task_id": task["id"], "bookmark_id": ""}, "selection filter")
    assert "bookmarkId" not in tasks(harness)[task["id"]]


def created_args(h: Harness, emails: list[str], execute: bool) -> dict[str, Any]:
    return {
        "name": "Board pack",
        "type": "sheet-sharing",
        "content": {"app_id": next(iter(h.sandbox.apps)), "sheet_ids": ["s1"]},
        "recipients": {"emails": emails},
        "schedule": DAILY,
        "execute_on_creation": execute,
    }


def posted(h: Harness) -> list[Any]:
    return [x.request_body for x in h.recorder.exchanges if x.method == "POST" and x.path == sbx.BASE]


async def test_creating_to_outside_addresses_with_execute_on_creation_asks(harness: Harness) -> None:
    colleague = next(u.email for u in harness.sandbox.users.values())
    outside = created_args(harness, [colleague, "board@elsewhere.org"], execute=True)
    count = len(tasks(harness))
    async with harness.client() as client:
        inside = data(await client.call_tool("create_sharing_task", created_args(harness, [colleague], execute=True)))
        later = data(await client.call_tool("create_sharing_task", created_args(harness, ["x@elsewhere.org"], False)))
        assert inside["status"] == later["status"] == "done" and len(posted(harness)) == 2
        preview = data(await client.call_tool("create_sharing_task", outside))
        assert preview["status"] == "confirmation_required"
        assert any("board@elsewhere.org" in n and colleague not in n for n in preview["notes"])
        assert len(posted(harness)) == 2 and len(tasks(harness)) == count + 2
        done = data(
            await client.call_tool("create_sharing_task", outside | {"confirm_token": preview["confirm_token"]})
        )
    assert done["status"] == "done"
    made = done["result"]["task"]["id"]
    assert posted(harness)[-1]["executeOnCreation"] is True
    assert sbx.tables(harness.sandbox).executions.get(made)


async def test_annotations_say_what_sends_mail_and_takes_away(harness: Harness) -> None:
    async with harness.client() as client:
        tools = {t.name: t.annotations for t in (await client.list_tools()).tools}
    create, execute, patch = tools["create_sharing_task"], tools["execute_sharing_task"], tools["patch_sharing_task"]
    assert create and create.destructive_hint is True and create.idempotent_hint is False
    # Sending e-mails every recipient and cannot be called back: destructive, and never idempotent.
    assert execute and execute.destructive_hint is True and execute.idempotent_hint is False
    assert patch and patch.destructive_hint is True
