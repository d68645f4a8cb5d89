"""Task tools on `/api/v1/tasks` (QLIK_TASKS_API=v1) through a real MCP client session against the sandbox.

The Scheduling Tasks API, the default, is tested in tests/test_scheduling.py.

Every request and answer is validated against tasks.json by the harness recorder (checked at teardown).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from mcp.types import ElicitResult

from qlik_tasks_mcp.sandbox.tasks import TaskTables
from tests.conftest import Harness, data, error_text, make_harness
from tests.fake_clock import follow_on_sandbox_time

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "BEGIN UNTRUSTED run log"
DAILY = {"interval": "R/2026-03-01T06:00:00/P1D", "time_zone": "Europe/Zurich"}


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = make_harness(toolsets="tasks", tasks_api="v1")
    tables(harness).run_seconds = 0.3
    yield harness
    await harness.backend.aclose()
    assert not harness.recorder.problems, "\n".join(harness.recorder.problems)
    assert not harness.recorder.unvalidated


def tables(h: Harness) -> TaskTables:
    return h.sandbox.tables["tasks"]


def app_named(h: Harness, name: str) -> str:
    return next(a.id for a in h.sandbox.apps.values() if a.name == name)


def task_of_app(h: Harness, app_id: str) -> dict[str, Any]:
    return next(t for t in tables(h).tasks.values() if t["resourceId"] == app_id)


def sent(h: Harness, method: str, suffix: str = "") -> int:
    return sum(1 for x in h.recorder.exchanges if x.method == method and x.path.endswith(suffix))


async def test_catalogue_annotations_are_honest(h: Harness) -> None:
    async with h.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    reads = {"list_tasks", "get_task", "list_task_runs", "list_resource_task_runs", "get_last_task_run"}
    reads |= {"get_task_run_log", "get_task_dependencies"}
    assert set(tools) == reads | {"create_task", "start_task", "update_task", "delete_task"}
    for name, tool in tools.items():
        ann = tool.annotations
        assert ann is not None and tool.output_schema is not None
        assert ann.read_only_hint is (name in reads), name
        assert ann.destructive_hint is (name in ("update_task", "delete_task")), name
        assert len(tool.description or "") < 120, name
    assert ann_flags(tools["start_task"]) == (False, False, False)
    assert "requires resource_id" in (tools["list_tasks"].description or "")
    # Issue 16: resource_id became optional (tenant-wide on the scheduling API); v1 still refuses without it.
    assert "resource_id" not in tools["list_tasks"].input_schema.get("required", [])
    for name in ("update_task", "delete_task"):
        assert "confirm_token" in tools[name].input_schema["properties"]
        assert "consent" not in tools[name].input_schema["properties"]


def ann_flags(tool: Any) -> tuple[bool | None, bool | None, bool | None]:
    return tool.annotations.read_only_hint, tool.annotations.destructive_hint, tool.annotations.idempotent_hint


async def test_list_pages_one_app_and_get_shows_the_workflow(h: Harness) -> None:
    app_id = app_named(h, "Sales Dashboard")
    async with h.client() as client:
        created = data(
            await client.call_tool("create_task", {"name": "Sales hourly", "app_id": app_id, "schedule": DAILY})
        )
        seen: list[str] = []
        cursor = None
        while True:
            args: dict[str, Any] = {"resource_id": app_id, "limit": 1, "sort": "+createdAt"}
            page = data(await client.call_tool("list_tasks", args | ({"cursor": cursor} if cursor else {})))
            seen += [t["id"] for t in page["tasks"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert seen[-1] == created["task"]["id"]
        assert sorted(seen) == sorted(t["id"] for t in tables(h).tasks.values() if t["resourceId"] == app_id)
        assert all(
            "resourceId=" in x.query for x in h.recorder.exchanges if x.path == "/api/v1/tasks" and x.method == "GET"
        )
        missing = await client.call_tool("list_tasks", {})
        assert "resource_id" in error_text(missing)
        task = data(await client.call_tool("get_task", {"task_id": seen[0]}))["task"]
        # The interval in words, with its next runs in its zone and UTC, as list_tasks shows it.
        assert task["trigger"].startswith("every day at ") and task["app_id"] == app_id
        assert len(task["next_runs"]) == 3 and all(" = " in run and run.endswith("Z") for run in task["next_runs"])
        assert task["workflow"]["states"][0]["type"] == "EVENT"
        for bad, why in (("../users", "not a valid id"), ("0123456789abcdef01234567", "HTTP 404")):
            assert why in error_text(await client.call_tool("get_task", {"task_id": bad}))


async def test_create_scheduled_reload_builds_a_spec_valid_workflow(h: Harness) -> None:
    app_id = app_named(h, "HR Headcount")
    async with h.client() as client:
        args = {
            "name": "HR nightly (full)",
            "app_id": app_id,
            "schedule": DAILY | {"end": "2027-03-01T00:00:00"},
            "partial": True,
            "description": "Nightly HR",
        }
        task = data(await client.call_tool("create_task", args))["task"]
    stored = tables(h).tasks[task["id"]]
    assert stored["name"] == "hr-nightly-full" and task["enabled"] is True and task["partial"] is True
    assert stored["start"]["schedule"] == {
        "interval": "R/2026-03-01T06:00:00/P1D",
        "timezone": "Europe/Zurich",
        "endDateTime": "2027-03-01T00:00:00",
    }
    assert stored["metadata"]["trigger"]["type"] == 0
    assert task["trigger"] == "every day at 06:00 from 2026-03-01 06:00 Europe/Zurich, until 2027-03-01"


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ({"interval": "every day"}, "ISO 8601 repeating interval"),
        ({"interval": "R/2026-02-30T06:00:00/P1D"}, "not a real date-time"),
        ({"interval": "R/2026-03-01T06:00:00+25:00/P1D"}, "not a real date-time"),
        ({"interval": "PT15M"}, "has no start"),
        ({"interval": "R/2026-03-01T06:00:00/PT30S"}, "shortest accepted is PT1M"),
        ({"interval": "R/2026-03-01T06:00:00/P1X"}, "not ISO 8601"),
        ({"interval": "R0/2026-03-01T06:00:00/P1D"}, "never runs"),
        (DAILY | {"time_zone": "Mars/Olympus"}, "IANA"),
        (DAILY | {"end": "2026-01-01T00:00:00"}, "must be after"),
    ],
)
async def test_bad_schedules_are_refused_before_sending(h: Harness, schedule: dict[str, Any], why: str) -> None:
    before = len(tables(h).tasks)
    async with h.client() as client:
        args = {"name": "x", "app_id": next(iter(h.sandbox.apps)), "schedule": schedule}
        assert why in error_text(await client.call_tool("create_task", args))
    assert len(tables(h).tasks) == before and sent(h, "POST") == 0


async def test_create_input_must_be_one_shape(h: Harness) -> None:
    app_id = next(iter(h.sandbox.apps))
    async with h.client() as client:
        both = {"name": "x", "app_id": app_id, "schedule": DAILY, "after_task": {"task_id": "abc"}}
        assert "exactly one of schedule or after_task" in error_text(await client.call_tool("create_task", both))
        mixed = {"name": "x", "workflow": {"name": "x", "specVersion": "0.8"}}
        assert "workflow alone" in error_text(await client.call_tool("create_task", mixed))
        ghost = {"name": "x", "app_id": app_id, "after_task": {"task_id": "0123456789abcdef01234567"}}
        assert "HTTP 404" in error_text(await client.call_tool("create_task", ghost))
    assert sent(h, "POST") == 0


async def test_raw_workflow_is_checked_against_the_spec_schema(h: Harness) -> None:
    app_id = app_named(h, "Web Analytics")
    template = task_of_app(h, app_named(h, "Sales Dashboard"))
    good = {k: copy.deepcopy(template[k]) for k in ("start", "states", "specVersion", "version")}
    good["name"] = "web-analytics-raw"
    good["states"][0]["onEvents"][0]["actions"][0]["functionRef"]["arguments"]["appId"] = app_id
    async with h.client() as client:
        bad: dict[str, Any] = copy.deepcopy(good) | {"name": "Not Kebab", "colour": "red"}
        bad["states"][0]["type"] = "event"
        text = error_text(await client.call_tool("create_task", {"workflow": bad}))
        assert "workflow is not a valid task" in text
        assert "'Not Kebab' does not match" in text and "colour" in text and "EVENT" in text
        dangling = copy.deepcopy(good)
        dangling["states"][0]["onEvents"][0]["eventRefs"] = ["nope"]
        assert "'nope' is not the name of an event" in error_text(
            await client.call_tool("create_task", {"workflow": dangling})
        )
        assert sent(h, "POST") == 0
        task = data(await client.call_tool("create_task", {"workflow": good}))["task"]
    assert task["app_id"] == app_id and tables(h).tasks[task["id"]]["name"] == "web-analytics-raw"


async def test_start_and_wait_reports_progress_until_the_run_succeeds(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    follow_on_sandbox_time(h.sandbox, monkeypatch)  # waits on the sandbox's time, in no real time
    tables(h).run_seconds = 1.4
    task = task_of_app(h, app_named(h, "Sales Dashboard"))
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with h.client() as client:
        args = {"task_id": task["id"], "wait": True, "timeout_seconds": 30}
        result = data(await client.call_tool("start_task", args, progress_callback=on_progress))
    assert result["started"] is True and result["wait_ended"] == "finished"
    assert result["run"]["status"] == "SUCCEEDED" and result["run"]["triggered_by"] == "manual"
    assert "log_tail" not in result
    assert len(seen) >= 3
    assert all(later[0] > earlier[0] for earlier, later in pairwise(seen))
    assert all(total == 30 for _, total, _ in seen)
    assert any("RUNNING" in (m or "") for _, _, m in seen) and "SUCCEEDED" in (seen[-1][2] or "")
    assert sent(h, "POST", "/actions/start") == 1


async def test_a_failed_run_comes_back_with_its_log_tail(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    follow_on_sandbox_time(h.sandbox, monkeypatch)  # waits on the sandbox's time, in no real time
    task = task_of_app(h, app_named(h, "Customer Churn"))
    async with h.client() as client:
        result = data(
            await client.call_tool("start_task", {"task_id": task["id"], "wait": True, "timeout_seconds": 10})
        )
        assert result["run"]["status"] == "FAILED"
        assert result["run"]["message"].startswith("======== BEGIN UNTRUSTED run message")
        tail = result["log_tail"]
        assert tail.startswith(f"======== {BEGIN}") and tail.rstrip().endswith("END UNTRUSTED run log ========")
        assert "The following error occurred:" in tail and "Execution Failed" in tail
        last = data(await client.call_tool("get_last_task_run", {"task_id": task["id"]}))["run"]
        assert last["id"] == result["run"]["id"] and last["status"] == "FAILED"


async def test_timeout_ends_the_wait_but_never_the_run(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    follow_on_sandbox_time(h.sandbox, monkeypatch)  # waits on the sandbox's time, in no real time
    tables(h).run_seconds = 60
    task = task_of_app(h, app_named(h, "Finance P&L"))
    async with h.client() as client:
        result = data(await client.call_tool("start_task", {"task_id": task["id"], "wait": True, "timeout_seconds": 1}))
        assert result["wait_ended"] == "timeout" and result["run"]["status"] == "RUNNING"
        assert "NOT cancelled" in result["note"]
        last = data(await client.call_tool("get_last_task_run", {"task_id": task["id"]}))["run"]
        assert last["status"] == "RUNNING"
        again = await client.call_tool("start_task", {"task_id": task["id"]})
        assert "already running" in error_text(again)
        assert "HTTP 400" in error_text(again)
    assert sent(h, "POST", "/actions/start") == 2


async def test_start_without_wait_names_the_new_run(h: Harness) -> None:
    task = task_of_app(h, app_named(h, "Marketing Funnel"))
    async with h.client() as client:
        result = data(await client.call_tool("start_task", {"task_id": task["id"], "source": "ops-check"}))
    assert result["run"]["status"] == "RUNNING" and result["run"]["triggered_by"] == "ops-check"
    assert "wait_ended" not in result


async def test_a_chain_starts_b_after_a_succeeds_and_not_after_a_fails(h: Harness) -> None:
    a_task = task_of_app(h, app_named(h, "Finance P&L"))
    b_app, c_app = app_named(h, "Procurement Spend"), app_named(h, "Service Desk SLA")
    async with h.client() as client:
        b = data(
            await client.call_tool(
                "create_task", {"name": "B after A", "app_id": b_app, "after_task": {"task_id": a_task["id"]}}
            )
        )["task"]
        c = data(
            await client.call_tool(
                "create_task",
                {"name": "C if A fails", "app_id": c_app, "after_task": {"task_id": a_task["id"], "status": "FAILED"}},
            )
        )["task"]
        assert b["trigger"] == f"when task {a_task['id']} succeeds"
        stored = tables(h).tasks[b["id"]]
        assert stored["events"][0]["correlation"] == [
            {"contextAttributeName": "id", "contextAttributeValue": a_task["id"]},
            {"contextAttributeName": "status", "contextAttributeValue": "SUCCEEDED"},
        ]
        assert data(await client.call_tool("get_last_task_run", {"task_id": b["id"]})) == {
            "note": "The task has not run yet."
        }
        tables(h).run_seconds = 5
        started = data(await client.call_tool("start_task", {"task_id": a_task["id"]}))
        assert started["run"]["status"] == "RUNNING"
        # While A runs, B has not started.
        assert "run" not in data(await client.call_tool("get_last_task_run", {"task_id": b["id"]}))
        h.sandbox.clock.advance(timedelta(seconds=5.2))
        a_run = data(await client.call_tool("get_last_task_run", {"task_id": a_task["id"]}))["run"]
        b_run = data(await client.call_tool("get_last_task_run", {"task_id": b["id"]}))["run"]
        assert a_run["status"] == "SUCCEEDED"
        assert b_run["status"] == "RUNNING" and b_run["triggered_by"] == a_task["name"]
        assert b_run["started_at"] >= a_run["ended_at"]
        h.sandbox.clock.advance(timedelta(seconds=6))
        b_run = data(await client.call_tool("get_last_task_run", {"task_id": b["id"]}))["run"]
        assert b_run["status"] == "SUCCEEDED"
        assert "run" not in data(await client.call_tool("get_last_task_run", {"task_id": c["id"]}))
        runs = data(await client.call_tool("list_resource_task_runs", {"resource_id": b_app}))["runs"]
        assert [r["id"] for r in runs] == [b_run["id"]]


async def test_log_tail_offset_and_grep_on_a_multi_thousand_line_log(h: Harness) -> None:
    task = task_of_app(h, app_named(h, "Supply Chain Control Tower"))
    async with h.client() as client:
        run = data(await client.call_tool("get_last_task_run", {"task_id": task["id"]}))["run"]
        ids = {"task_id": task["id"], "run_id": run["id"]}
        tail = data(await client.call_tool("get_task_run_log", ids))
        total = tail["total_lines"]
        assert total > 4000
        assert (tail["first_line"], tail["last_line"]) == (total - 39, total)
        assert tail["returned"].startswith(f"lines {total - 39}-{total} of {total} (tail")
        assert tail["log"].startswith(f"======== {BEGIN}") and "Execution finished." in tail["log"]
        body = tail["log"].splitlines()[1:-1]
        assert len(body) == 40

        page = data(await client.call_tool("get_task_run_log", ids | {"offset": 100, "lines": 50}))
        assert (page["first_line"], page["last_line"], page["next_offset"]) == (101, 150, 150)
        again = data(await client.call_tool("get_task_run_log", ids | {"offset": page["next_offset"], "lines": 50}))
        assert again["first_line"] == 151
        end = data(await client.call_tool("get_task_run_log", ids | {"offset": total - 5, "lines": 50}))
        assert end["last_line"] == total and "next_offset" not in end

        grep = data(await client.call_tool("get_task_run_log", ids | {"grep": r"SALES_2016_0[1-3]\.qvd", "lines": 5}))
        assert grep["matches"] >= 3 and grep["returned"].startswith("the last 5 of") is (grep["matches"] > 5)
        hits = grep["log"].splitlines()[1:-1]
        assert hits and all("sales_2016_0" in line.lower() for line in hits)
        assert all(line.split(":", 1)[0].isdigit() for line in hits)
        forward = data(
            await client.call_tool("get_task_run_log", ids | {"grep": "lines fetched", "offset": 0, "lines": 3})
        )
        assert forward["first_line"] is not None and forward["next_offset"] == forward["last_line"]
        more = data(
            await client.call_tool(
                "get_task_run_log", ids | {"grep": "lines fetched", "offset": forward["next_offset"], "lines": 3}
            )
        )
        assert more["first_line"] > forward["last_line"]

        for bad, why in (
            ("(unclosed", "not a valid regular expression"),
            ("(a+)+$", "repeats a group that holds a repetition"),
            ("(x|xx)+y", "repeats a group that holds a repetition or alternatives"),
            ("x" * 201, "at most 200"),
        ):
            assert why in error_text(await client.call_tool("get_task_run_log", ids | {"grep": bad}))
        assert "not a valid id" in error_text(
            await client.call_tool("get_task_run_log", {"task_id": task["id"], "run_id": "../../x"})
        )
        assert "HTTP 404" in error_text(
            await client.call_tool("get_task_run_log", {"task_id": task["id"], "run_id": "nope"})
        )


async def test_runs_sort_filter_and_page(h: Harness) -> None:
    task = task_of_app(h, app_named(h, "Sales Dashboard"))
    churn = app_named(h, "Customer Churn")
    async with h.client() as client:
        newest = data(await client.call_tool("list_task_runs", {"task_id": task["id"]}))["runs"]
        oldest = data(await client.call_tool("list_task_runs", {"task_id": task["id"], "sort": "+startedAt"}))["runs"]
        assert len(newest) == 3 and [r["id"] for r in newest] == [r["id"] for r in reversed(oldest)]
        assert all(r["seconds"] >= 40 for r in newest)
        first = data(await client.call_tool("list_task_runs", {"task_id": task["id"], "limit": 2}))
        rest = data(await client.call_tool("list_task_runs", {"task_id": task["id"], "cursor": first["next_cursor"]}))
        assert [r["id"] for r in first["runs"] + rest["runs"]] == [r["id"] for r in newest]
        failed = data(
            await client.call_tool("list_resource_task_runs", {"resource_id": churn, "status": "FAILED", "limit": 2})
        )
        assert len(failed["runs"]) == 2 and all(r["status"] == "FAILED" for r in failed["runs"])
        none = data(await client.call_tool("list_resource_task_runs", {"resource_id": churn, "status": "SUCCEEDED"}))
        assert none["runs"] == [] and none["scanned"] == 3
        assert "HTTP 404" in error_text(
            await client.call_tool("list_resource_task_runs", {"resource_id": "0123456789abcdef"})
        )


async def test_update_is_gated_and_its_preview_says_ownership_moves(h: Harness) -> None:
    task = task_of_app(h, app_named(h, "Finance P&L"))
    owner = task["metadata"]["ownerId"]
    assert owner != h.sandbox.caller_id
    before = copy.deepcopy(tables(h).tasks)
    args = {"task_id": task["id"], "schedule": {"interval": "R/2026-04-01T05:00:00/PT12H", "time_zone": "UTC"}}
    async with h.client() as client:
        preview = data(await client.call_tool("update_task", args))
        assert preview["status"] == "confirmation_required"
        assert any("owner" in note and owner in note for note in preview["notes"])
        assert any(
            c.startswith("schedule: ") and c.endswith("-> every 12 hours from 2026-04-01 05:00 UTC")
            for c in preview["changes"]
        )
        assert tables(h).tasks == before and sent(h, "PUT") == 0
        other = await client.call_tool(
            "update_task", args | {"enabled": False, "confirm_token": preview["confirm_token"]}
        )
        assert "does not match this action" in error_text(other)
        done = data(await client.call_tool("update_task", args | {"confirm_token": preview["confirm_token"]}))
        assert done["status"] == "done"
        assert done["result"]["owner_id"] == h.sandbox.caller_id
        assert done["result"]["trigger"] == "every 12 hours from 2026-04-01 05:00 UTC"
        stored = tables(h).tasks[task["id"]]
        assert stored["metadata"]["ownerId"] == h.sandbox.caller_id and stored["start"]["stateName"] == "reload"
        chained = next(t for t in tables(h).tasks.values() if "events" in t)
        wrong = await client.call_tool("update_task", {"task_id": chained["id"], "schedule": DAILY})
        assert "not on a schedule" in error_text(wrong)
        same = await client.call_tool("update_task", {"task_id": task["id"], "enabled": True})
        assert "nothing to change" in error_text(same)
    assert sent(h, "PUT") == 1


async def test_update_schedule_keeps_zone_and_end_unless_given(h: Harness) -> None:
    task = task_of_app(h, app_named(h, "Finance P&L"))
    stored = tables(h).tasks[task["id"]]
    stored["start"]["schedule"] = {
        "interval": "R/2026-02-01T07:00:00/P1D",
        "timezone": "Europe/Zurich",
        "endDateTime": "2027-06-30T00:00:00",
    }
    args = {"task_id": task["id"], "schedule": {"interval": "R/2026-02-01T06:00:00/P1D"}}
    async with h.client() as client:
        preview = data(await client.call_tool("update_task", args))
        assert [c for c in preview["changes"] if c.startswith("schedule")] == [
            "schedule: every day at 07:00 from 2026-02-01 07:00 Europe/Zurich, until 2027-06-30 -> "
            "every day at 06:00 from 2026-02-01 06:00 Europe/Zurich, until 2027-06-30"
        ]
        data(await client.call_tool("update_task", args | {"confirm_token": preview["confirm_token"]}))
        kept = tables(h).tasks[task["id"]]["start"]["schedule"]
        assert (kept["timezone"], kept["endDateTime"]) == ("Europe/Zurich", "2027-06-30T00:00:00")
        never = {"interval": "R/2026-02-01T06:00:00/P1D", "time_zone": "UTC", "end": ""}
        cleared = data(await client.call_tool("update_task", {"task_id": task["id"], "schedule": never}))
    assert "schedule end: 2027-06-30T00:00:00 -> (none)" in cleared["changes"]
    assert (
        "schedule: every day at 06:00 from 2026-02-01 06:00 Europe/Zurich, until 2027-06-30 -> "
        "every day at 06:00 from 2026-02-01 06:00 UTC"
    ) in cleared["changes"]


async def test_update_through_elicitation_disables_the_task(h: Harness) -> None:
    task = task_of_app(h, app_named(h, "Executive KPIs"))
    h.elicit_answers = [ElicitResult(action="accept", content={"confirm": True})]
    async with h.client(elicitation=True) as client:
        done = data(await client.call_tool("update_task", {"task_id": task["id"], "enabled": False}))
    assert done["status"] == "done" and done["result"]["enabled"] is False
    assert "owner" in h.elicit_messages[0]
    assert tables(h).tasks[task["id"]]["metadata"]["disabledCode"] == "MANUALLY"


async def test_delete_is_gated(h: Harness) -> None:
    task = task_of_app(h, app_named(h, "Logistics On-Time Delivery"))
    async with h.client() as client:
        preview = data(await client.call_tool("delete_task", {"task_id": task["id"]}))
        assert preview["status"] == "confirmation_required" and task["id"] in tables(h).tasks
        for token in ("v1.9999999999.abc.forged", "nonsense"):
            result = await client.call_tool("delete_task", {"task_id": task["id"], "confirm_token": token})
            assert result.is_error and task["id"] in tables(h).tasks
        done = data(
            await client.call_tool("delete_task", {"task_id": task["id"], "confirm_token": preview["confirm_token"]})
        )
        assert done["status"] == "done" and task["id"] not in tables(h).tasks
        assert "HTTP 404" in error_text(await client.call_tool("get_task", {"task_id": task["id"]}))
    assert sent(h, "DELETE") == 1
    assert [line["outcome"] for line in h.audit_lines() if line["tool"] == "delete_task"] == [
        "confirmation_required",
        "refused",
        "refused",
        "done",
    ]


async def test_a_task_chained_while_its_trigger_runs_still_follows_that_run(h: Harness) -> None:
    tables(h).run_seconds = 5
    a_task = task_of_app(h, app_named(h, "Inventory Aging"))
    async with h.client() as client:
        data(await client.call_tool("start_task", {"task_id": a_task["id"]}))
        args = {
            "name": "late follower",
            "app_id": app_named(h, "Web Analytics"),
            "after_task": {"task_id": a_task["id"], "status": "any"},
        }
        b = data(await client.call_tool("create_task", args))["task"]
        assert b["trigger"] == f"when task {a_task['id']} finishes"
        h.sandbox.clock.advance(timedelta(seconds=5.2))
        b_run = data(await client.call_tool("get_last_task_run", {"task_id": b["id"]}))["run"]
    assert b_run["status"] == "RUNNING" and b_run["triggered_by"] == a_task["name"]
