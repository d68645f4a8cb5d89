"""The ops answers that join runs across time, and the one-yes bulk changes, through an MCP client on the sandbox
with two weeks of history (sandbox/history.py): its cases are found by what they are, never by position."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from qlik_tasks_mcp.sandbox import history, qalyptus
from qlik_tasks_mcp.sandbox import sharing_tasks as sandbox_sharing
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.tools.ops import missed as missed_module
from qlik_tasks_mcp.tools.ops import reload_window, stats
from tests.conftest import Harness, data, error_text, make_harness

pytestmark = pytest.mark.anyio


@pytest.fixture
async def seeded() -> AsyncIterator[Harness]:
    h = make_harness(sandbox_options={"history": True})
    yield h
    await h.backend.aclose()
    assert not h.recorder.problems, "\n".join(h.recorder.problems)


async def test_reload_stats_name_the_seeded_slowdowns_first(seeded: Harness) -> None:
    slowed = history.cases(seeded.sandbox).slowed_apps
    assert len(slowed) == 2
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {}))
    rows = report["rows"]
    assert [r["app_id"] for r in rows[:2]] == slowed
    first, second = rows[0], rows[1]
    assert 2.5 < first["slowdown"] < 3.5 and 1.6 < second["slowdown"] < 2.4
    assert all(r.get("slowdown", 0) < 1.5 for r in rows[2:])
    assert first["runs"] >= 6 and first["before_runs"] >= 6 and first["p90_s"] >= first["median_s"]
    # The slowest statements of the newest reload, Qlik keeping its metadata: one fence for the result.
    assert first["statements_of"] and report["statements"].count("BEGIN UNTRUSTED") == 1
    assert not report.get("stopped_early")


async def test_reload_stats_by_task_and_for_named_apps(seeded: Harness) -> None:
    slowed = history.cases(seeded.sandbox).slowed_apps
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {"app_ids": slowed[::-1], "by": "task"}))
    assert {r["app_id"] for r in report["rows"]} == set(slowed)
    assert report["rows"][0]["app_id"] == slowed[0] and report["rows"][0]["task"].startswith("task ")


async def test_reload_stats_say_what_the_budget_left_unread(seeded: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # One page of ten reloads: the earlier week is left unread, and the result says so.
    monkeypatch.setattr(stats, "STATS_REQUESTS", 1)
    monkeypatch.setattr(reload_window, "PAGE", 10)
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {}))
    assert report["stopped_early"] and report["not_read"] and "Stopped early" in report["note"]


async def test_missed_runs_find_each_seeded_case_with_its_reason(seeded: Harness) -> None:
    cases = history.cases(seeded.sandbox)
    async with seeded.client() as client:
        report = data(await client.call_tool("find_missed_runs", {}))
    rows = {(r["what"], r["kind"], r["task_id"]): r for r in report["rows"]}
    reasons = {
        None: lambda r: "reason" not in r,
        "quota": lambda r: "EXCEEDED_LIMIT" in r["reason"],
        "owner disabled": lambda r: r["reason"].startswith("owner disabled"),
        "disabled": lambda r: r["reason"].startswith("disabled"),
        "app has tasks": lambda r: r["reason"].startswith("app has tasks"),
        "inactive": lambda r: r["reason"] == "inactive",
    }
    # A disabled task's miss is a case only when it was due in the cases' hours: not required here.
    assert {None, "quota", "owner disabled", "app has tasks"} <= set(cases.missed.values())
    for (kind, task_id), reason in cases.missed.items():
        row = rows[("missed", kind, task_id)]
        assert reasons[reason](row), (reason, row)
    for kind, task_id in cases.late:
        assert rows[("late", kind, task_id)]["late_min"] >= 40
    for kind, task_id in cases.twice:
        assert rows[("twice", kind, task_id)]["count"] == 1
    # No false miss: a task that ran at each of its times is in no row; a miss the history did not seed is one the
    # tenant explains (a disabled task, or a reload task of an app with tasks, due just outside the cases' hours).
    assert cases.ran
    assert not [key for key in rows if key[1:] in cases.ran]
    others = [r for key, r in rows.items() if key[0] == "missed" and key[1:] not in cases.missed]
    assert all(r["reason"].startswith(("disabled", "app has tasks")) for r in others), others
    assert report["checked"]["runs due"] > len(rows)


async def test_missed_runs_never_conclude_from_reloads_left_unread(
    seeded: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(missed_module, "MISSED_REQUESTS", 0)
    async with seeded.client() as client:
        report = data(await client.call_tool("find_missed_runs", {}))
    assert report["rows"] == [] and report["stopped_early"] and report["not_checked"]


async def test_missed_runs_read_sharing_deliveries(seeded: Harness) -> None:
    table = sandbox_sharing.tables(seeded.sandbox)
    task = next(
        t
        for t in table.tasks.values()
        if t["enabled"] and t.get("statusCode") != "DELETING" and (t.get("scheduleOptions") or {}).get("recurrence")
    )
    now = seeded.sandbox.clock.now()
    start = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    hourly = ["RRULE:FREQ=HOURLY;INTERVAL=1;BYMINUTE=0;BYSECOND=0"]
    task["scheduleOptions"] = {"timezone": "UTC", "recurrence": hourly, "startDateTime": start, "endDateTime": ""}
    table.executions.pop(task["id"], None)
    top = now.replace(minute=0, second=0, microsecond=0)
    for hours in (5, 4, 2, 1, 0):  # not 3 hours ago
        due = top - timedelta(hours=hours)
        if now - due > timedelta(minutes=1):
            sandbox_sharing.start_execution(seeded.sandbox, task, at=due + timedelta(seconds=10), seconds=5)
    async with seeded.client() as client:
        report = data(await client.call_tool("find_missed_runs", {"hours": 6, "app_id": task["appId"]}))
    mine = [r for r in report["rows"] if r["task_id"] == task["id"]]
    missed_at = (top - timedelta(hours=3)).strftime("%Y-%m-%d %H:%MZ")
    assert mine == [
        {"what": "missed", "kind": "sharing", "task_id": task["id"], "name": mine[0]["name"]}
        | {"app_id": task["appId"], "due": [missed_at], "count": 1}
    ]


def test_join_tells_missed_late_twice_and_quota_apart() -> None:
    t0 = datetime(2026, 12, 1, 6, tzinfo=UTC)
    day = timedelta(days=1)
    due = [t0, t0 + day, t0 + 2 * day, t0 + 3 * day, t0 + 4 * day]
    runs = [
        (t0 - timedelta(minutes=1), "SUCCEEDED"),  # a clock a minute ahead still ran it
        (t0 + day + timedelta(minutes=50), "SUCCEEDED"),
        (t0 + 2 * day + timedelta(seconds=5), "SUCCEEDED"),
        (t0 + 2 * day + timedelta(seconds=30), "FAILED"),
        (t0 + 4 * day + timedelta(seconds=5), "EXCEEDED_LIMIT"),
    ]
    joined = missed_module._join(due, runs, timedelta(minutes=15))
    assert joined.missed == [t0 + 3 * day] and joined.quota == [t0 + 4 * day]
    assert joined.late == [(t0 + day, 50)] and joined.twice == [t0 + 2 * day]


async def test_a_leavers_sharing_tasks_move_to_another_owner_with_one_yes(harness: Harness) -> None:
    users = {u.name: u for u in harness.sandbox.users.values()}
    leaver, heir = users["Eve Exited"], users["Ben Builder"]
    sharing = sandbox_sharing.tables(harness.sandbox).tasks
    theirs = sorted(i for i, t in sharing.items() if t["owner"] == leaver.id and t.get("statusCode") != "DELETING")
    going = [i for i, t in sharing.items() if t["owner"] == leaver.id and t.get("statusCode") == "DELETING"]
    assert len(theirs) >= 3 and going
    args = {"new_owner": heir.email, "filter": {"owner_id": leaver.id}}
    before = copy.deepcopy(harness.sandbox.tables)
    async with harness.client() as client:
        preview = data(await client.call_tool("change_tasks_owner", args))
        assert preview["status"] == "confirmation_required"
        assert all(i in " ".join(preview["changes"]) for i in theirs)
        # Their reload tasks and tasks cannot be given: the preview says who can take them over.
        put_note = next(n for n in preview["notes"] if "reload tasks/tasks" in n)
        assert heir.id in put_note and "signed in as themselves" in put_note
        # One is being deleted: named, not changed.
        assert any(n.startswith("1 being deleted") and going[0] in n for n in preview["notes"])
        assert harness.sandbox.tables == before
        done = data(await client.call_tool("change_tasks_owner", args | {"confirm_token": preview["confirm_token"]}))
    assert done["status"] == "done" and done["result"]["changed"] == len(theirs), done["result"]
    assert all(sharing[i]["owner"] == heir.id for i in theirs)
    assert [i for i, t in sharing.items() if t["owner"] == leaver.id] == going


async def test_tasks_are_never_given_to_a_gone_user(harness: Harness) -> None:
    users = {u.name: u for u in harness.sandbox.users.values()}
    args = {"new_owner": users["Finn Frozen"].id, "filter": {"owner_id": users["Eve Exited"].id}}
    async with harness.client() as client:
        refused = await client.call_tool("change_tasks_owner", args)
    assert "disabled and cannot own tasks" in error_text(refused)


async def test_deleting_four_tasks_of_four_kinds_takes_one_yes(harness: Harness) -> None:
    reload_id = next(iter(harness.sandbox.tables["reload_tasks"]))
    task = next(iter(sandbox_tasks.tables(harness.sandbox).tasks))
    sharing = sandbox_sharing.tables(harness.sandbox).tasks
    shared = next(i for i, t in sharing.items() if t.get("statusCode") != "DELETING")
    report_tasks = qalyptus.tables(harness.sandbox).org().tasks
    report = next(iter(report_tasks))
    refs = [{"kind": "reload", "id": reload_id}, {"kind": "task", "id": task}]
    refs += [{"kind": "sharing", "id": shared}, {"kind": "qalyptus", "id": report}]
    async with harness.client() as client:
        preview = data(await client.call_tool("delete_tasks", {"tasks": refs}))
        assert preview["action"].startswith("Delete 4 tasks (1 qalyptus, 1 reload, 1 sharing, 1 task)")
        assert len(preview["changes"]) == 4 and reload_id in harness.sandbox.tables["reload_tasks"]
        done = data(await client.call_tool("delete_tasks", {"tasks": refs, "confirm_token": preview["confirm_token"]}))
    assert done["result"] == {"changed": 4, "already": 0}
    assert reload_id not in harness.sandbox.tables["reload_tasks"]
    assert task not in sandbox_tasks.tables(harness.sandbox).tasks
    assert shared not in sharing or sharing[shared].get("statusCode") == "DELETING"
    assert report not in report_tasks


async def test_a_bulk_delete_says_what_failed(harness: Harness) -> None:
    targets = [t["id"] for t in harness.sandbox.tables["reload_tasks"].values()][:3]
    refs = [{"kind": "reload", "id": i} for i in targets]
    harness.backend.qlik.retry.base_delay = 0.001
    async with harness.client() as client:
        preview = data(await client.call_tool("delete_tasks", {"tasks": refs}))
        faults = harness.sandbox.faults
        faults.match_path, faults.match_method, faults.status_503 = targets[1], "DELETE", 10
        done = data(await client.call_tool("delete_tasks", {"tasks": refs, "confirm_token": preview["confirm_token"]}))
    result = done["result"]
    assert result["changed"] == 2 and [f["id"] for f in result["failed"]] == [targets[1]]
    assert [i in harness.sandbox.tables["reload_tasks"] for i in targets] == [False, True, False]


async def test_reload_stats_read_app_by_app_for_a_caller_who_is_not_an_admin(seeded: Harness) -> None:
    seeded.sandbox.caller_id = next(u.id for u in seeded.sandbox.users.values() if not u.admin)
    slowed = history.cases(seeded.sandbox).slowed_apps
    async with seeded.client() as client:
        report = data(await client.call_tool("get_reload_stats", {}))
    assert "app by app" in report["note"]
    assert [r["app_id"] for r in report["rows"][:2]] == slowed
