"""The tasks toolset on Qlik's Scheduling Tasks API (`/api/scheduling/tasks`, the default) and on its v1 fallback,
through a real MCP client session against the sandbox tenant as of November 2026.

Every request and answer is validated against the specs, and the one-call creators against NOTES-2026-11.md
(tests/spec_check.py), at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from qlik_tasks_mcp.sandbox.tasks import TaskTables
from tests.conftest import Harness, data, error_text, make_harness, row_ids

pytestmark = pytest.mark.anyio

SCHED = "/api/scheduling/tasks"


async def _closed(harness: Harness) -> None:
    await harness.backend.aclose()
    assert not harness.recorder.problems, "\n".join(harness.recorder.problems)
    assert not harness.recorder.unvalidated


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = make_harness(toolsets="tasks,ops")
    tables(harness).run_seconds = 0.3
    yield harness
    await _closed(harness)


@pytest.fixture
async def v1() -> AsyncIterator[Harness]:
    """auto mode on a tenant whose /api/scheduling/tasks answers 404."""
    harness = make_harness(toolsets="tasks,ops")
    tables(harness).run_seconds = 0.3
    tables(harness).scheduling_gone = True
    yield harness
    await _closed(harness)


def tables(h: Harness) -> TaskTables:
    return h.sandbox.tables["tasks"]


def app_named(h: Harness, name: str) -> str:
    return next(a.id for a in h.sandbox.apps.values() if a.name == name)


def task_named(h: Harness, name: str) -> dict[str, Any]:
    return next(t for t in tables(h).tasks.values() if t["name"] == name)


def first_task(h: Harness, app: str) -> dict[str, Any]:
    return next(t for t in tables(h).tasks.values() if t["resourceId"] == app_named(h, app))


def requests(h: Harness, method: str, prefix: str = "") -> list[Any]:
    return [x for x in h.recorder.exchanges if x.method == method and x.path.startswith(prefix)]


async def test_tenant_wide_list_filters_and_token_paging_over_three_pages(h: Harness) -> None:
    async with h.client() as client:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            args: dict[str, Any] = {"limit": 5, "sort": "+name"} | ({"cursor": cursor} if cursor else {})
            page = data(await client.call_tool("list_tasks", args))
            pages += 1
            seen += [t["id"] for t in page["tasks"]]
            assert "name, app, owner: text from the tenant" in page["note"] and "names" not in page
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert pages == 3 and sorted(seen) == sorted(tables(h).tasks)
        lists = [x for x in requests(h, "GET", SCHED) if x.path == SCHED]
        # Each answer's next href carries no cursor: the token does, and the client sends it as `page`.
        assert all("page=" not in (x.response_body["links"].get("next") or {}).get("href", "") for x in lists)
        assert sum("page=" in x.query for x in lists) == 2
        disabled = data(await client.call_tool("list_tasks", {"enabled": False, "last_status": "SUCCEEDED"}))
        sent = parse_qs(requests(h, "GET", SCHED)[-1].query)["filter"]
        assert sent == ['enabled eq false and lastStatus eq "SUCCEEDED"']
        assert all(t["enabled"] is False and t["last_status"] == "SUCCEEDED" for t in disabled["tasks"])
        app = app_named(h, "Sales Dashboard")
        one_app = data(await client.call_tool("list_tasks", {"resource_id": app}))
        assert {t["app_id"] for t in row_ids(one_app)} == {app}


async def test_a_looping_next_link_is_stopped(h: Harness) -> None:
    tables(h).looping_pages = True
    async with h.client() as client:
        first = data(await client.call_tool("list_tasks", {"limit": 5}))
        looped = await client.call_tool("list_tasks", {"limit": 5, "cursor": first["next_cursor"]})
    assert "same next cursor" in error_text(looped) and "stopped" in error_text(looped)


async def test_published_examples_are_read_explained_and_updated_without_refusal(h: Harness) -> None:
    examples = [
        task_named(h, "TaskExample"),
        task_named(h, "Reload Service Desk when Task 1 succeeded"),
        task_named(h, "Nightly reload – Web Analytics (UI)"),
    ]
    async with h.client() as client:
        dataset = data(await client.call_tool("get_task", {"task_id": examples[0]["id"]}))["task"]
        assert "when a dataset is updated" in dataset["trigger"]
        chained = data(await client.call_tool("get_task", {"task_id": examples[1]["id"]}))["task"]
        assert chained["trigger"].endswith("succeeds")
        ui = data(await client.call_tool("get_task", {"task_id": examples[2]["id"]}))["task"]
        assert ui["trigger"] == "every day at 02:30 Europe/Zurich" and len(ui["next_runs"]) == 3
        explained = data(await client.call_tool("explain_schedule", {"kind": "task", "task_id": examples[2]["id"]}))
        assert explained["description"].startswith("every day at 02:30") and len(explained["next_runs"]) == 5
        for example in examples:
            before = {k: example[k] for k in ("name", "states", "events", "start") if k in example}
            args = {"task_id": example["id"], "enabled": False}
            preview = data(await client.call_tool("update_task", args))
            assert [d["field"] for d in preview["diff"]] == ["enabled"]
            assert any("JSON Patch makes the caller the task's owner" in n for n in preview["notes"])
            done = data(await client.call_tool("update_task", args | {"confirm_token": preview["confirm_token"]}))
            assert done["status"] == "done" and done["result"]["enabled"] is False
            stored = tables(h).tasks[example["id"]]
            assert {k: stored[k] for k in before} == before
            assert stored["metadata"]["ownerId"] == h.sandbox.caller_id
    patches = requests(h, "PATCH", SCHED)
    assert [x.request_body for x in patches] == [[{"op": "replace", "path": "/enabled", "value": False}]] * 3
    assert not requests(h, "PUT")


async def test_a_recurrence_is_explained_across_a_dst_change(h: Harness) -> None:
    app = app_named(h, "HR Headcount")
    schedule = {
        "recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0"],
        "time_zone": "Europe/Zurich",
        "start": "2027-03-26T00:00:00",
    }
    async with h.client() as client:
        created = data(
            await client.call_tool("create_task", {"name": "HR – daily (Zurich)", "app_id": app, "schedule": schedule})
        )
        task = created["task"]
        assert task["name"] == "HR – daily (Zurich)" and task["enabled"] is True
        assert "disabled unless told" in created["note"]
        explained = data(
            await client.call_tool("explain_schedule", {"kind": "task", "task_id": task["id"], "count": 4})
        )
    assert [r["utc"] for r in explained["next_runs"]] == [
        "2027-03-26T05:00:00Z",
        "2027-03-27T05:00:00Z",
        "2027-03-28T04:00:00Z",
        "2027-03-29T04:00:00Z",
    ]
    creator = requests(h, "POST", f"{SCHED}/resources/{app}/actions/reload/on-time-schedule")
    assert creator[0].request_body == {
        "name": "HR – daily (Zurich)",
        "enabled": True,
        "recurrence": "RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
        "timezone": "Europe/Zurich",
        "startDateTime": "2027-03-26T00:00:00",
    }


async def test_the_one_call_creators_and_their_cho_errors(h: Harness) -> None:
    # NOTES 1.1: onTaskId must be a UUID, as the ids of tasks made on the scheduling API are.
    upstream = task_named(h, "Nightly reload – Web Analytics (UI)")
    app = app_named(h, "Marketing Funnel")
    async with h.client() as client:
        after = {"task_id": upstream["id"], "status": "FAILED"}
        args = {"name": "Marketing if Finance fails", "app_id": app, "after_task": after, "enabled": False}
        follower = data(await client.call_tool("create_task", args))["task"]
        assert follower["enabled"] is False and follower["trigger"] == f"when task {upstream['id']} fails"
        data_args = {"name": "Marketing on new data", "app_id": app, "dataset_updated": True}
        on_data = data(await client.call_tool("create_task", data_args))["task"]
        assert "when a dataset is updated" in on_data["trigger"]
        again = error_text(await client.call_tool("create_task", data_args))
        assert "CHO-031" in again and on_data["id"] in again and "HTTP 409" in again
        ghost = {"name": "x", "app_id": "00000000-0000-4000-a000-000000000000", "dataset_updated": True}
        missing = error_text(await client.call_tool("create_task", ghost))
        assert "HTTP 403" in missing and "CHO-003" in missing and "app:reload" in missing
        bad_zone = {"recurrence": ["RRULE:FREQ=DAILY"], "time_zone": "Mars/Olympus"}
        assert "IANA" in error_text(
            await client.call_tool("create_task", {"name": "x", "app_id": app, "schedule": bad_zone})
        )
        daily = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=5;BYMINUTE=0"], "time_zone": "UTC"}
        while sum(1 for t in tables(h).tasks.values() if t["resourceId"] == app) < 10:
            data(await client.call_tool("create_task", {"name": "filler", "app_id": app, "schedule": daily}))
        full = error_text(await client.call_tool("create_task", {"name": "11th", "app_id": app, "schedule": daily}))
        assert "HTTP 422" in full and "CHO-014" in full and "maximum of 10 tasks" in full
    assert not requests(h, "POST", "/api/v1/tasks")


async def test_dependencies_and_what_is_downstream(h: Harness) -> None:
    root = first_task(h, "Sales Dashboard")
    followers = {
        t["id"]
        for t in tables(h).tasks.values()
        if any(c.get("contextAttributeValue") == root["id"] for e in t.get("events", []) for c in e["correlation"])
    }
    assert len(followers) == 2
    async with h.client() as client:
        below = data(await client.call_tool("get_task_dependencies", {"task_id": root["id"]}))
        assert {t["id"] for t in below["tasks"]} == followers
        assert all(t["enabled"] is True and t["depth"] == 1 for t in below["tasks"])
        assert "BEGIN UNTRUSTED task names" in below["names"] and "run after this one" in below["note"]
        child = next(iter(followers))
        parents = data(await client.call_tool("get_task_dependencies", {"task_id": child, "direction": "parents"}))
        assert [t["id"] for t in parents["tasks"]] == [root["id"]] and parents["tasks"][0]["last_status"]
        preview = data(await client.call_tool("delete_task", {"task_id": root["id"]}))
        assert any(n.startswith("Downstream: 2 task(s)") for n in preview["notes"])
        disabling = data(await client.call_tool("update_task", {"task_id": root["id"], "enabled": False}))
        assert any(n.startswith("Downstream: 2 task(s)") for n in disabling["notes"])
        started = data(await client.call_tool("start_task", {"task_id": root["id"]}))
        assert started["downstream"].startswith("Downstream: 2 task(s)")


async def test_runs_and_logs_on_the_scheduling_api(h: Harness) -> None:
    task = first_task(h, "Customer Churn")
    app = app_named(h, "Customer Churn")
    async with h.client() as client:
        run = data(await client.call_tool("start_task", {"task_id": task["id"], "wait": True}))["run"]
        assert run["status"] == "FAILED"
        runs = data(await client.call_tool("list_task_runs", {"task_id": task["id"], "limit": 2}))
        assert runs["runs"][0]["id"] == run["id"]
        by_app = data(await client.call_tool("list_resource_task_runs", {"resource_id": app, "status": "FAILED"}))
        assert run["id"] in [r["id"] for r in by_app["runs"]]
        last = data(await client.call_tool("get_last_task_run", {"task_id": task["id"]}))["run"]
        log = data(await client.call_tool("get_task_run_log", {"task_id": task["id"], "run_id": last["id"]}))
        assert "Execution Failed" in log["log"]
        found = data(await client.call_tool("find_failures", {}))
        assert any(g["task_id"] == task["id"] for g in found["groups"])
    logs = [x for x in requests(h, "GET", SCHED) if x.path.endswith("/log")]
    # get_task_run_log streams text/plain; the failed run's tail and find_failures' first error line read JSON.
    assert sum(isinstance(x.response_body, bytes) for x in logs) == 1
    assert not [x for x in h.recorder.exchanges if x.path.startswith("/api/v1/tasks")]
    assert {x.tier for x in requests(h, "GET", SCHED)} == {"1"}
    assert {x.tier for x in requests(h, "POST", SCHED)} == {"2"}


async def test_every_task_tool_on_the_v1_fallback(v1: Harness) -> None:
    h = v1
    task = first_task(h, "Finance P&L")
    app = app_named(h, "Finance P&L")
    async with h.client() as client:
        listed = data(await client.call_tool("list_tasks", {"resource_id": app}))
        assert task["id"] in [t["id"] for t in listed["tasks"]]
        assert "resource_id" in error_text(await client.call_tool("list_tasks", {}))
        assert data(await client.call_tool("get_task", {"task_id": task["id"]}))["task"]["app_id"] == app
        schedule = {"interval": "R/2026-03-01T06:00:00/P1D", "time_zone": "UTC"}
        made = data(
            await client.call_tool("create_task", {"name": "Finance extra", "app_id": app, "schedule": schedule})
        )
        assert tables(h).tasks[made["task"]["id"]]["name"] == "finance-extra"
        assert "Scheduling Tasks API" in error_text(
            await client.call_tool("create_task", {"name": "x", "app_id": app, "dataset_updated": True})
        )
        assert "Scheduling Tasks API" in error_text(
            await client.call_tool("get_task_dependencies", {"task_id": task["id"]})
        )
        preview = data(await client.call_tool("update_task", {"task_id": task["id"], "enabled": False}))
        assert any("A PUT makes the caller" in n for n in preview["notes"])
        args = {"task_id": task["id"], "enabled": False, "confirm_token": preview["confirm_token"]}
        assert data(await client.call_tool("update_task", args))["result"]["enabled"] is False
        run = data(await client.call_tool("start_task", {"task_id": task["id"], "wait": True}))["run"]
        assert data(await client.call_tool("list_task_runs", {"task_id": task["id"]}))["runs"][0]["id"] == run["id"]
        assert data(await client.call_tool("list_resource_task_runs", {"resource_id": app}))["runs"]
        assert data(await client.call_tool("get_last_task_run", {"task_id": task["id"]}))["run"]["id"] == run["id"]
        log = data(await client.call_tool("get_task_run_log", {"task_id": task["id"], "run_id": run["id"]}))
        assert log["total_lines"] > 10
        gone = data(await client.call_tool("delete_task", {"task_id": made["task"]["id"]}))
        data(
            await client.call_tool(
                "delete_task", {"task_id": made["task"]["id"], "confirm_token": gone["confirm_token"]}
            )
        )
        assert made["task"]["id"] not in tables(h).tasks
    probes = requests(h, "GET", SCHED)
    assert len(probes) == 1 and probes[0].status == 404
    assert len(requests(h, "PUT", "/api/v1/tasks")) == 1 and not requests(h, "PATCH")
