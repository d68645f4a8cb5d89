"""Reload tasks after Qlik's deprecation, through real MCP client sessions: the retired API, migrated reload
tasks (shaped as Qlik's migration guide shows them) and migrate_reload_tasks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qlik_tasks_mcp.client.reload_tasks import MigratedReloadTask, ReloadTasksApi
from qlik_tasks_mcp.sandbox import reload_tasks as sandbox_reload_tasks
from tests.conftest import Harness, data, error_text, make_harness

pytestmark = pytest.mark.anyio

RETIRED = "reload tasks: API retired on this tenant"
DAILY = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0"], "time_zone": "Europe/Zurich"}
V1_NAME = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")


async def closing(h: Harness) -> AsyncIterator[Harness]:
    yield h
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)


@pytest.fixture
async def migrated() -> AsyncIterator[Harness]:
    """A tenant where two reload tasks were migrated as the guide does."""
    async for h in closing(make_harness(sandbox_options={"migrated_reload_tasks": 2})):
        yield h


def reload_table(h: Harness) -> dict[str, dict[str, Any]]:
    return h.sandbox.tables["reload_tasks"]


def store(h: Harness) -> dict[str, dict[str, Any]]:
    return h.sandbox.tables["tasks"].tasks


def tasks_of_app(h: Harness, app_id: str) -> list[dict[str, Any]]:
    return [t for t in store(h).values() if t["resourceId"] == app_id]


def plain_app(h: Harness) -> str:
    """An app whose tasks all have v1-style names: Qlik's UI-made example documents, which the store also holds
    for some apps, are the tasks toolset's to check against the specs."""
    for app_id in h.sandbox.apps:
        if all(V1_NAME.match(t["name"]) for t in tasks_of_app(h, app_id)):
            return app_id
    raise AssertionError("no app without UI-made tasks")


def migrated_ids(h: Harness) -> list[str]:
    return [t["id"] for t in reload_table(h).values() if t.get("migrated")]


def replacement(h: Harness, reload_task_id: str) -> dict[str, Any]:
    return next(t for t in store(h).values() if t["metadata"].get("migratedFrom") == reload_task_id)


def reload_puts(h: Harness) -> list[Any]:
    return [x for x in h.recorder.exchanges if x.method == "PUT" and x.path.startswith("/api/v1/reload-tasks")]


# The retired API --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
async def test_every_reload_tool_says_the_api_is_retired_and_names_its_replacements(status: int) -> None:
    async for h in closing(make_harness(sandbox_options={"reload_tasks_retired": status})):
        task_id = next(iter(reload_table(h)))
        app_id = next(iter(h.sandbox.apps))
        calls = {
            "list_reload_tasks": {},
            "get_reload_task": {"task_id": task_id},
            "create_reload_task": {"app_id": app_id, "schedule": DAILY},
            "update_reload_task": {"task_id": task_id, "enabled": False},
            "delete_reload_task": {"task_id": task_id},
            "migrate_reload_tasks": {"app_id": app_id},
        }
        async with h.client() as client:
            for tool, args in calls.items():
                text = error_text(await client.call_tool(tool, args))
                assert "this tenant has retired the Reload Tasks API" in text, (tool, text)
                assert "2026-09-29" in text
                assert all(name in text for name in ("list_tasks", "create_task", "update_task")), text
                assert "migrate_reload_tasks" in text
                assert f"HTTP {status}" in text
        assert task_id in reload_table(h)


async def test_a_missing_task_is_not_a_retired_api(harness: Harness) -> None:
    async with harness.client() as client:
        text = error_text(await client.call_tool("get_reload_task", {"task_id": "0123456789abcdef01234567"}))
    assert "HTTP 404" in text and "retired" not in text
    # The collection answered the question: one GET of the task, one of the list.
    assert [(x.method, x.path, x.status) for x in harness.recorder.exchanges] == [
        ("GET", "/api/v1/reload-tasks/0123456789abcdef01234567", 404),
        ("GET", "/api/v1/reload-tasks", 200),
    ]


async def test_every_ops_tool_still_answers_when_the_api_is_retired() -> None:
    async for h in closing(make_harness(sandbox_options={"reload_tasks_retired": 410})):
        app_id = next(a for a in h.sandbox.apps if tasks_of_app(h, a))
        task_id = next(iter(reload_table(h)))
        async with h.client() as client:
            report = data(await client.call_tool("find_failures", {"hours": 72}))
            assert RETIRED in report["not_checked"] and RETIRED in report["note"]
            assert "reload" not in report["checked"]

            overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": app_id}))
            assert overview["items"] and {i["kind"] for i in overview["items"]} <= {"task", "sharing", "qalyptus"}
            assert RETIRED in overview["note"]

            explained = data(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": task_id}))
            assert RETIRED in explained["description"] and explained["next_runs"] == []

            args: dict[str, Any] = {"enabled": False, "app_id": app_id}
            preview = data(await client.call_tool("set_tasks_enabled", args))
            assert f"{RETIRED}: skipped" in preview["notes"]
            done = data(await client.call_tool("set_tasks_enabled", args | {"confirm_token": preview["confirm_token"]}))
            assert done["status"] == "done" and done["result"]["changed"] >= 1 and not done["result"].get("failed")

            only_reload = {"enabled": False, "tasks": [{"kind": "reload", "id": task_id}]}
            text = error_text(await client.call_tool("set_tasks_enabled", only_reload))
            assert RETIRED in text and "nothing to change" in text
        assert not tasks_of_app(h, app_id) or not any(t["enabled"] for t in tasks_of_app(h, app_id))


async def test_the_switch_turns_the_api_off_and_on(harness: Harness) -> None:
    async with harness.client() as client:
        assert data(await client.call_tool("list_reload_tasks", {"limit": 1}))["tasks"]
        sandbox_reload_tasks.retire(harness.sandbox, 404)
        assert "retired" in error_text(await client.call_tool("list_reload_tasks", {"limit": 1}))
        sandbox_reload_tasks.retire(harness.sandbox, None)
        assert data(await client.call_tool("list_reload_tasks", {"limit": 1}))["tasks"]


# Migrated reload tasks ----------------------------------------------------------------------------------------


async def test_migrated_tasks_are_shaped_as_the_guide_shows_and_shown_with_their_task(migrated: Harness) -> None:
    ids = migrated_ids(migrated)
    assert len(ids) == 2
    for task_id in ids:
        stored = reload_table(migrated)[task_id]
        assert "state" not in stored and stored["migrated"] is True and stored["disabledCode"] == ""
    async with migrated.client() as client:
        listed = []
        cursor = None
        while True:
            args = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            page = data(await client.call_tool("list_reload_tasks", args))
            listed += page["tasks"]
            if not (cursor := page.get("next_cursor")):
                break
        shown = {t["id"]: t for t in listed if t.get("migrated")}
        assert set(shown) == set(ids)
        for task_id in ids:
            task = replacement(migrated, task_id)
            assert shown[task_id]["replaced_by"] == task["id"]
            assert "state" not in shown[task_id] and "next_run" not in shown[task_id]
            one = data(await client.call_tool("get_reload_task", {"task_id": task_id}))["task"]
            assert one["replaced_by"] == task["id"] and f"Migrated to task {task['id']}" in one["note"]
            explained = data(await client.call_tool("explain_schedule", {"kind": "reload", "task_id": task_id}))
            assert "migrated" in explained["description"] and explained["next_runs"] == []
        app_id = reload_table(migrated)[ids[0]]["appId"]
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": app_id}))
        item = next(i for i in overview["items"] if i["id"] == ids[0])
        assert item["enabled"] is False and "migrated" in item["disabled_reason"]


async def test_a_migrated_task_is_never_switched_back_on(migrated: Harness) -> None:
    task_id = migrated_ids(migrated)[0]
    app_id = reload_table(migrated)[task_id]["appId"]
    its_task = replacement(migrated, task_id)["id"]
    before = dict(reload_table(migrated)[task_id])
    async with migrated.client() as client:
        for args in ({"enabled": True}, {"enabled": False}, {"partial": True}, {"schedule": DAILY}):
            text = error_text(await client.call_tool("update_reload_task", {"task_id": task_id} | args))
            assert "was migrated" in text and its_task in text and "update_task" in text

        ref = {"tasks": [{"kind": "reload", "id": task_id}]}
        off = await client.call_tool("set_tasks_enabled", {"enabled": False} | ref)
        assert "already disabled" in error_text(off)

        on = {"enabled": True} | ref
        preview = data(await client.call_tool("set_tasks_enabled", on))
        done = data(await client.call_tool("set_tasks_enabled", on | {"confirm_token": preview["confirm_token"]}))
        assert done["result"]["changed"] == 0
        [failure] = done["result"]["failed"]
        assert failure["id"] == task_id and "was migrated" in failure["error"] and its_task in failure["error"]

        by_app = {"enabled": True, "app_id": app_id, "kinds_filter": ["reload"]}
        preview = data(await client.call_tool("set_tasks_enabled", by_app))
        done = data(await client.call_tool("set_tasks_enabled", by_app | {"confirm_token": preview["confirm_token"]}))
        assert [f["id"] for f in done["result"]["failed"]] == [task_id]
    assert reload_table(migrated)[task_id] == before
    assert all(x.path != f"/api/v1/reload-tasks/{task_id}" for x in reload_puts(migrated))
    # Nothing sent a state a task did not have.
    for put in reload_puts(migrated):
        assert "state" not in put.request_body or "state" in put.response_body


async def test_update_sends_only_the_state_the_task_has(harness: Harness) -> None:
    task = next(t for t in reload_table(harness).values() if t["state"] == "Disabled")
    async with harness.client() as client:
        preview = data(await client.call_tool("update_reload_task", {"task_id": task["id"], "partial": True}))
        args = {"task_id": task["id"], "partial": True, "confirm_token": preview["confirm_token"]}
        data(await client.call_tool("update_reload_task", args))
    [put] = reload_puts(harness)
    assert put.request_body["state"] == "Disabled" and reload_table(harness)[task["id"]]["state"] == "Disabled"


# migrate_reload_tasks -----------------------------------------------------------------------------------------


async def add_reload_tasks(client: Any, app_id: str, count: int) -> list[str]:
    made = []
    for _ in range(count):
        made.append(
            data(await client.call_tool("create_reload_task", {"app_id": app_id, "schedule": DAILY}))["task"]["id"]
        )
    return made


async def test_migrate_an_app_preview_then_yes(harness: Harness) -> None:
    app_id = plain_app(harness)
    async with harness.client() as client:
        await add_reload_tasks(client, app_id, 1)
        ours = [t["id"] for t in reload_table(harness).values() if t["appId"] == app_id]
        digest = harness.sandbox.digest()
        preview = data(await client.call_tool("migrate_reload_tasks", {"app_id": app_id}))
        assert preview["status"] == "confirmation_required"
        assert harness.sandbox.digest() == digest
        assert len(preview["changes"]) == len(ours)
        for line, task_id in zip(sorted(preview["changes"]), sorted(ours), strict=True):
            assert task_id in line and app_id in line and "every day at" in line
        assert any("changelog 135" in n and "stops running" in n for n in preview["notes"])

        args = {"app_id": app_id, "confirm_token": preview["confirm_token"]}
        done = data(await client.call_tool("migrate_reload_tasks", args))["result"]
        assert {m["reload_task_id"] for m in done["migrated"]} == set(ours) and done["failed"] == []
        again = error_text(await client.call_tool("migrate_reload_tasks", {"app_id": app_id}))
        assert "nothing to migrate" in again and "already migrated" in again
    for item in done["migrated"]:
        stored = reload_table(harness)[item["reload_task_id"]]
        assert stored["migrated"] is True and "state" not in stored
        assert replacement(harness, item["reload_task_id"])["id"] == item["task_id"]
    # As Qlik's client (qlik-api-ts scheduling/tasks createTask) migrates: the scheduling API, never v1 here.
    posts = [x for x in harness.recorder.exchanges if x.method == "POST" and x.path == "/api/scheduling/tasks"]
    assert len(posts) == len(ours)
    assert not [x for x in harness.recorder.exchanges if x.method == "POST" and x.path == "/api/v1/tasks"]
    for post in posts:
        source = post.query.removeprefix("migrateFrom=")
        body = post.request_body
        assert source in ours and body["enabled"] is True and body["specVersion"]
        # Only the guide's fields: no event of our own making in `events`.
        assert set(body) == {"name", "specVersion", "enabled", "metadata", "start", "states"}
        assert set(body["metadata"]) == {"spaceId", "usage"}
        assert body["start"]["stateName"] == body["states"][0]["name"]
        assert body["start"]["schedule"]["recurrence"] == reload_table(harness)[source]["recurrence"][0]
        action = body["states"][0]["onEvents"][0]["actions"][0]["functionRef"]
        assert action["refName"] == "app.reload" and action["arguments"] == {"appId": app_id, "partial": False}


async def test_migration_uses_v1_only_where_the_scheduling_api_is_missing(harness: Harness) -> None:
    harness.sandbox.tables["tasks"].scheduling_gone = True
    app_id = plain_app(harness)
    async with harness.client() as client:
        (made,) = await add_reload_tasks(client, app_id, 1)
        preview = data(await client.call_tool("migrate_reload_tasks", {"task_id": made}))
        args = {"task_id": made, "confirm_token": preview["confirm_token"]}
        done = data(await client.call_tool("migrate_reload_tasks", args))["result"]
    assert [m["reload_task_id"] for m in done["migrated"]] == [made]
    posts = [(x.path, x.status) for x in harness.recorder.exchanges if x.method == "POST" and "migrateFrom" in x.query]
    assert posts == [("/api/v1/tasks", 201)]
    assert replacement(harness, made)["id"] == done["migrated"][0]["task_id"]


async def test_a_migrated_reload_task_refused_by_qlik_is_read_exactly(migrated: Harness) -> None:
    """Changelog 271: PUT/DELETE of a migrated reload task answer 400 TASKS-001; the API is not retired."""
    task_id = migrated_ids(migrated)[0]
    api = migrated.backend.qlik
    with pytest.raises(MigratedReloadTask) as refused:
        await ReloadTasksApi(api).delete(task_id)
    text = str(refused.value)
    assert "TASKS-001" in text and "HTTP 400" in text and "migrated" in text and "update_task" in text
    assert "retired" not in text
    assert task_id in reload_table(migrated)
    async with migrated.client() as client:
        listed = data(await client.call_tool("list_reload_tasks", {}))
    assert listed


async def test_creation_gone_is_not_the_whole_api_retired(harness: Harness) -> None:
    """Changelog 271: POST /api/v1/reload-tasks answers 410 TASKS-011; reads and changes still work."""
    sandbox_reload_tasks.stop_creation(harness.sandbox)
    app_id = plain_app(harness)
    task_id = next(t["id"] for t in reload_table(harness).values() if t.get("state") == "Enabled")
    async with harness.client() as client:
        text = error_text(await client.call_tool("create_reload_task", {"app_id": app_id, "schedule": DAILY}))
        listed = data(await client.call_tool("list_reload_tasks", {}))
        got = data(await client.call_tool("get_reload_task", {"task_id": task_id}))
    assert "HTTP 410" in text and "TASKS-011" in text and "no longer creates reload tasks" in text
    assert "create_task" in text and "retired" not in text
    assert listed and got


async def test_migrating_one_task_names_the_reload_tasks_that_stop_with_it(harness: Harness) -> None:
    app_id = plain_app(harness)
    async with harness.client() as client:
        first, second = await add_reload_tasks(client, app_id, 2)
        preview = data(await client.call_tool("migrate_reload_tasks", {"task_id": first}))
        assert len(preview["changes"]) == 1 and first in preview["changes"][0]
        assert any(second in n for n in preview["notes"])
        both = await client.call_tool("migrate_reload_tasks", {"task_id": first, "app_id": app_id})
        assert "exactly one of" in error_text(both)


async def test_whole_tenant_skips_migrated_tasks_with_a_note(migrated: Harness) -> None:
    async with migrated.client() as client:
        preview = data(await client.call_tool("migrate_reload_tasks", {"whole_tenant": True}))
    skipped = [n for n in preview["notes"] if "already migrated, skipped" in n]
    assert sorted(skipped) == sorted(
        f"reload task {i} (app {reload_table(migrated)[i]['appId']}): already migrated, skipped"
        for i in migrated_ids(migrated)
    )
    assert not any(i in line for line in preview["changes"] for i in migrated_ids(migrated))


async def test_a_partial_failure_says_what_migrated_and_what_did_not(harness: Harness) -> None:
    app_id = plain_app(harness)
    room = 10 - len(tasks_of_app(harness, app_id))
    async with harness.client() as client:
        existing = sum(1 for t in reload_table(harness).values() if t["appId"] == app_id)
        await add_reload_tasks(client, app_id, room + 2 - existing)
        preview = data(await client.call_tool("migrate_reload_tasks", {"app_id": app_id}))
        args = {"app_id": app_id, "confirm_token": preview["confirm_token"]}
        result = data(await client.call_tool("migrate_reload_tasks", args))["result"]
    assert len(result["migrated"]) == room and len(result["failed"]) == 2
    assert all("CHO-014" in f["error"] for f in result["failed"])
    assert result["note"].startswith(f"{room} of {room + 2} migrated, 2 not")
    for failure in result["failed"]:
        stored = reload_table(harness)[failure["reload_task_id"]]
        assert not stored.get("migrated") and stored["state"] == "Enabled"
    assert len(tasks_of_app(harness, app_id)) == 10
