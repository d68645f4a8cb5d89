"""Reload-task tools through a real MCP client session against the sandbox."""

from __future__ import annotations

import json

import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitResult

from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY
from tests.conftest import Harness, data, error_text, make_harness

pytestmark = pytest.mark.anyio

DAILY = {"recurrence": ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=0;BYSECOND=0"], "time_zone": "Europe/Zurich"}


def table(h: Harness) -> dict:
    return h.sandbox.tables["reload_tasks"]


def some_task(h: Harness, state: str = "Enabled") -> dict:
    return next(t for t in table(h).values() if t["state"] == state)


async def test_catalogue_annotations_are_honest(harness: Harness) -> None:
    async with harness.client() as client:
        # Other toolsets are served too; this test is about the reload toolset's catalogue.
        tools = {t.name: t for t in (await client.list_tools()).tools if "reload_task" in t.name}
    assert set(tools) == {
        "list_reload_tasks",
        "get_reload_task",
        "create_reload_task",
        "update_reload_task",
        "delete_reload_task",
        "migrate_reload_tasks",
    }
    hints = {name: tool.annotations for name, tool in tools.items()}

    def flags(name: str) -> tuple[bool | None, bool | None, bool | None, bool | None]:
        ann = hints[name]
        assert ann is not None
        return ann.read_only_hint, ann.destructive_hint, ann.idempotent_hint, ann.open_world_hint

    assert flags("list_reload_tasks") == flags("get_reload_task") == (True, False, True, True)
    assert flags("create_reload_task") == (False, False, False, True)
    assert flags("update_reload_task") == flags("delete_reload_task") == (False, True, True, True)
    assert flags("migrate_reload_tasks") == (False, True, True, True)
    for name in ("update_reload_task", "delete_reload_task", "migrate_reload_tasks"):
        assert "confirm_token" in tools[name].input_schema["properties"]
        assert "consent" not in tools[name].input_schema["properties"]
    for tool in tools.values():
        assert tool.output_schema is not None
        assert len(tool.description or "") < 120


async def test_list_pages_through_everything_and_filters(harness: Harness) -> None:
    seen: list[str] = []
    async with harness.client() as client:
        cursor = None
        while True:
            args = {"limit": 5} | ({"cursor": cursor} if cursor else {})
            page = data(await client.call_tool("list_reload_tasks", args))
            seen += [t["id"] for t in page["tasks"]]
            assert "deprecated" in page["note"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert sorted(seen) == sorted(table(harness))
        app_id = next(iter(harness.sandbox.apps))
        only = data(await client.call_tool("list_reload_tasks", {"app_id": app_id}))
        assert only["tasks"] and all(t["app_id"] == app_id for t in only["tasks"])
        bad = await client.call_tool("list_reload_tasks", {"cursor": "https://evil.example/x?next=1"})
        assert "cursor is not one this server returned" in error_text(bad)


async def test_get_shows_why_a_task_is_disabled(harness: Harness) -> None:
    disabled = next(t for t in table(harness).values() if t.get("disabledCode") == "CONSECUTIVE-FAILURES")
    async with harness.client() as client:
        task = data(await client.call_tool("get_reload_task", {"task_id": disabled["id"]}))["task"]
        assert task["state"] == "Disabled"
        assert task["disabled_code"] == "CONSECUTIVE-FAILURES"
        assert "consecutive reload failures" in task["disabled_reason"]
        assert "next_run" not in task
        missing = await client.call_tool("get_reload_task", {"task_id": "0123456789abcdef01234567"})
        assert "HTTP 404" in error_text(missing)


@pytest.mark.parametrize("bad_id", ["../users", "a/b", "x?y=1", "a#b", "%2e%2e", "..", "id with space", "x" * 129])
async def test_malicious_ids_never_reach_another_endpoint(harness: Harness, bad_id: str) -> None:
    async with harness.client() as client:
        for tool, args in (
            ("get_reload_task", {"task_id": bad_id}),
            ("delete_reload_task", {"task_id": bad_id}),
            ("update_reload_task", {"task_id": bad_id, "enabled": False}),
        ):
            result = await client.call_tool(tool, args)
            text = error_text(result)
            assert "not a valid id" in text or "at most 128 characters" in text
    assert harness.recorder.exchanges == []


async def test_create_validates_then_creates(harness: Harness) -> None:
    app_id = next(iter(harness.sandbox.apps))
    before = len(table(harness))
    async with harness.client() as client:
        created = data(
            await client.call_tool(
                "create_reload_task",
                {"app_id": app_id, "schedule": DAILY | {"start": "2026-01-01T06:00:00", "end": "2027-12-31T23:00:00"}},
            )
        )["task"]
    assert created["state"] == "Enabled"
    assert created["next_run"].endswith(("05:00:00Z", "04:00:00Z"))  # 06:00 Zurich in winter or summer
    assert created["end"] == "2027-12-31T23:00:00"
    assert len(table(harness)) == before + 1
    assert table(harness)[created["id"]]["recurrence"] == DAILY["recurrence"]
    assert harness.audit_lines()[-1]["outcome"] == "done"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"recurrence": ["RRULE:FREQ=SOMETIMES"], "time_zone": "UTC"}, "is not a valid RRULE"),
        ({"recurrence": ["FREQ=DAILY"], "time_zone": "UTC"}, "must start with 'RRULE:'"),
        ({"recurrence": ["DTSTART:20260101T000000"], "time_zone": "UTC"}, "DTSTART/DTEND lines are not allowed"),
        ({"recurrence": DAILY["recurrence"], "time_zone": "Mars/Olympus"}, "not an IANA time zone"),
        (
            {"recurrence": DAILY["recurrence"], "time_zone": "UTC", "start": "2026-01-01T06:00:00+01:00"},
            "without offset",
        ),
        ({"recurrence": DAILY["recurrence"], "time_zone": "UTC", "start": "2026-02-30T06:00:00"}, "not a real"),
        (
            {
                "recurrence": DAILY["recurrence"],
                "time_zone": "UTC",
                "start": "2026-05-01T00:00:00",
                "end": "2026-04-01T00:00:00",
            },
            "must be after the start",
        ),
        ({"recurrence": [], "time_zone": "UTC"}, "at least 1 item"),
    ],
)
async def test_create_rejects_bad_schedules_before_sending(harness: Harness, schedule: dict, message: str) -> None:
    app_id = next(iter(harness.sandbox.apps))
    before = dict(table(harness))
    async with harness.client() as client:
        result = await client.call_tool("create_reload_task", {"app_id": app_id, "schedule": schedule})
    assert message in error_text(result)
    assert not [x for x in harness.recorder.exchanges if x.method == "POST"]
    assert table(harness) == before


async def test_create_for_unknown_app_reports_the_tenant_error(harness: Harness) -> None:
    async with harness.client() as client:
        result = await client.call_tool("create_reload_task", {"app_id": "no-such-app", "schedule": DAILY})
    assert "HTTP 404" in error_text(result)
    assert harness.audit_lines()[-1]["outcome"] == "error"


async def test_update_preview_changes_nothing_then_token_applies_once(harness: Harness) -> None:
    task = some_task(harness)
    snapshot = dict(task)
    async with harness.client() as client:
        preview = data(await client.call_tool("update_reload_task", {"task_id": task["id"], "enabled": False}))
        assert preview["status"] == "confirmation_required"
        assert "state: 'Enabled' -> 'Disabled'" in preview["changes"]
        assert table(harness)[task["id"]] == snapshot
        assert not [x for x in harness.recorder.exchanges if x.method == "PUT"]

        args = {"task_id": task["id"], "enabled": False, "confirm_token": preview["confirm_token"]}
        done = data(await client.call_tool("update_reload_task", args))
        assert done["status"] == "done"
        assert done["result"]["state"] == "Disabled"
        assert table(harness)[task["id"]]["disabledCode"] == "MANUALLY"
        # Only the state changed: the schedule survived the PUT.
        assert table(harness)[task["id"]]["recurrence"] == snapshot["recurrence"]

        # A second use does nothing: the task is already disabled, and the token was spent.
        again = await client.call_tool("update_reload_task", args)
        assert "nothing to change" in error_text(again)
    outcomes = [line["outcome"] for line in harness.audit_lines()]
    assert outcomes == ["confirmation_required", "done", "error"]


async def test_update_schedule_keeps_other_fields(harness: Harness) -> None:
    task = some_task(harness)
    new = {
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=30;BYSECOND=0"],
        "time_zone": "Europe/Paris",
        "start": "2026-01-05T07:30:00",
    }
    async with harness.client() as client:
        preview = data(await client.call_tool("update_reload_task", {"task_id": task["id"], "schedule": new}))
        # The schedule change in words, zone included, never the raw RRULE.
        change = next(c for c in preview["changes"] if c.startswith("schedule:"))
        assert change.endswith("-> every week on Mon at 07:30 Europe/Paris") and "RRULE" not in change
        done = data(
            await client.call_tool(
                "update_reload_task",
                {"task_id": task["id"], "schedule": new, "confirm_token": preview["confirm_token"]},
            )
        )
    assert done["result"]["time_zone"] == "Europe/Paris"
    assert table(harness)[task["id"]]["state"] == "Enabled"
    assert table(harness)[task["id"]]["appId"] == task["appId"]


async def test_update_keeps_start_and_end_and_says_who_owns_it_after(harness: Harness) -> None:
    task = some_task(harness)
    stored = table(harness)[task["id"]]
    stored |= {"startDateTime": "2026-01-05T06:00:00", "endDateTime": "2027-12-31T00:00:00"}
    new = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0"], "time_zone": stored["timeZone"]}
    args = {"task_id": task["id"], "schedule": new}
    async with harness.client() as client:
        preview = data(await client.call_tool("update_reload_task", args))
        assert [c.split(":")[0] for c in preview["changes"]] == ["schedule"]
        assert any("owner" in n and stored["userId"] in n for n in preview["notes"])
        data(await client.call_tool("update_reload_task", args | {"confirm_token": preview["confirm_token"]}))
        after = table(harness)[task["id"]]
        assert (after["startDateTime"], after["endDateTime"]) == ("2026-01-05T06:00:00", "2027-12-31T00:00:00")
        cleared = data(await client.call_tool("update_reload_task", args | {"schedule": new | {"end": ""}}))
        assert cleared["changes"] == ["endDateTime: '2027-12-31T00:00:00' -> ''"]


async def test_update_with_nothing_to_change_is_refused(harness: Harness) -> None:
    task = some_task(harness)
    async with harness.client() as client:
        result = await client.call_tool("update_reload_task", {"task_id": task["id"], "enabled": True})
    assert "nothing to change" in error_text(result)


async def test_tokens_are_bound_to_tool_arguments_state_and_time(harness: Harness) -> None:
    a, b = [t for t in table(harness).values() if t["state"] == "Enabled"][:2]
    async with harness.client() as client:
        preview = data(await client.call_tool("update_reload_task", {"task_id": a["id"], "enabled": False}))
        token = preview["confirm_token"]

        # Other arguments, another task, another tool: refused, nothing changed.
        for tool, args in (
            ("update_reload_task", {"task_id": a["id"], "enabled": False, "partial": True}),
            ("update_reload_task", {"task_id": b["id"], "enabled": False}),
            ("delete_reload_task", {"task_id": a["id"]}),
        ):
            text = error_text(await client.call_tool(tool, args | {"confirm_token": token}))
            assert "does not match" in text
        version, expires, nonce, signature = token.split(".")
        forged = ".".join([version, str(int(expires) + 3600), nonce, signature])
        assert "does not match" in error_text(
            await client.call_tool(
                "update_reload_task", {"task_id": a["id"], "enabled": False, "confirm_token": forged}
            )
        )
        assert "malformed" in error_text(
            await client.call_tool("update_reload_task", {"task_id": a["id"], "enabled": False, "confirm_token": "x"})
        )

        # The target changed after the preview: the token dies with the state it was made for.
        table(harness)[a["id"]]["partial"] = not table(harness)[a["id"]].get("partial", False)
        assert "changed since the preview" in error_text(
            await client.call_tool("update_reload_task", {"task_id": a["id"], "enabled": False, "confirm_token": token})
        )

        fresh = data(await client.call_tool("update_reload_task", {"task_id": a["id"], "enabled": False}))
        harness.backend.gate._clock = lambda: float(int(fresh["confirm_token"].split(".")[1]) + 1)
        assert "expired" in error_text(
            await client.call_tool(
                "update_reload_task", {"task_id": a["id"], "enabled": False, "confirm_token": fresh["confirm_token"]}
            )
        )
    assert table(harness)[a["id"]]["state"] == "Enabled"
    assert table(harness)[b["id"]]["state"] == "Enabled"


async def test_token_from_another_replica_with_the_same_secret_works() -> None:
    one = make_harness()
    two = make_harness(share_with=one)
    try:
        task = some_task(one)
        async with one.client() as c1, two.client() as c2:
            preview = data(await c1.call_tool("delete_reload_task", {"task_id": task["id"]}))
            # Replica two serves the same tenant; only the HMAC secret is shared.
            done = data(
                await c2.call_tool(
                    "delete_reload_task", {"task_id": task["id"], "confirm_token": preview["confirm_token"]}
                )
            )
        assert done["status"] == "done"
        assert task["id"] not in table(two)
    finally:
        await one.backend.aclose()
        await two.backend.aclose()


async def test_delete_with_elicitation_acts_only_on_yes(harness: Harness) -> None:
    keep, drop = [t for t in table(harness).values()][:2]
    harness.elicit_answers += [
        ElicitResult(action="decline"),
        ElicitResult(action="accept", content={"confirm": False}),
        ElicitResult(action="accept", content={"confirm": True}),
    ]
    async with harness.client(elicitation=True) as client:
        declined = data(await client.call_tool("delete_reload_task", {"task_id": keep["id"]}))
        unticked = data(await client.call_tool("delete_reload_task", {"task_id": keep["id"]}))
        assert declined["status"] == unticked["status"] == "cancelled"
        assert keep["id"] in table(harness)
        done = data(await client.call_tool("delete_reload_task", {"task_id": drop["id"]}))
    assert done["status"] == "done" and "confirm_token" not in done
    assert drop["id"] not in table(harness)
    assert all("Delete reload task" in m and "Go ahead?" in m for m in harness.elicit_messages)
    assert [line["outcome"] for line in harness.audit_lines()] == ["cancelled", "cancelled", "done"]


async def test_delete_with_legacy_elicitation_client(harness: Harness) -> None:
    task = some_task(harness)
    harness.elicit_answers.append(ElicitResult(action="accept", content={"confirm": True}))
    async with harness.client(elicitation=True, mode="legacy") as client:
        assert client.protocol_version < "2026"
        done = data(await client.call_tool("delete_reload_task", {"task_id": task["id"]}))
    assert done["status"] == "done"
    assert task["id"] not in table(harness)


async def test_read_only_mode_lists_no_writing_tool() -> None:
    h = make_harness(read_only=True, toolsets="reload")
    try:
        async with h.client() as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"list_reload_tasks", "get_reload_task"}
            task = some_task(h)
            # A tool that is not served is unknown: the JSON-RPC error the MCP spec requires (invalid params).
            with pytest.raises(MCPError) as refused:
                await client.call_tool("delete_reload_task", {"task_id": task["id"]})
            assert refused.value.error.code == -32602
        assert task["id"] in table(h)
    finally:
        await h.backend.aclose()


async def test_no_secret_in_any_output(harness: Harness, capfd: pytest.CaptureFixture[str]) -> None:
    task = some_task(harness)
    async with harness.client() as client:
        outputs = [
            await client.call_tool("list_reload_tasks", {}),
            await client.call_tool("get_reload_task", {"task_id": "nope"}),
            await client.call_tool("delete_reload_task", {"task_id": task["id"]}),
            await client.call_tool("delete_reload_task", {"task_id": task["id"], "confirm_token": "v1.1.a.b"}),
        ]
    captured = capfd.readouterr()
    everything = "".join(str(o.model_dump()) for o in outputs) + harness.audit.getvalue() + captured.err + captured.out
    assert SANDBOX_API_KEY not in everything
    assert "test-secret-0123456789abcdef" not in everything


async def test_qlik_deprecation_headers_reach_every_result_as_a_note(harness: Harness) -> None:
    """The sandbox sends Deprecation/Sunset/Link on /api/v1/reload-tasks (changelog 266); the result says so once,
    whatever its shape, under one key; a family not deprecated gets none."""
    said = (
        "Qlik Cloud marks /api/v1/reload-tasks deprecated (since 2026-06-26); it may be removed on or after 2026-09-29"
    )
    task_id = next(iter(harness.sandbox.tables["reload_tasks"]))
    async with harness.client() as client:
        listed = data(await client.call_tool("list_reload_tasks", {"limit": 2}))
        preview = data(await client.call_tool("delete_reload_task", {"task_id": task_id}))
        tasks = data(await client.call_tool("list_tasks", {"limit": 2}))
    assert [n.startswith(said) for n in listed["api_notes"]] == [True]
    # A preview's notes are what the user is asked about; the API's notice stands beside them.
    assert preview["status"] == "confirmation_required" and len(preview["api_notes"]) == 1
    assert not any(said in n for n in preview["notes"])
    assert "api_notes" not in tasks and said not in json.dumps(tasks)
