"""find_missed_runs on Qalyptus report tasks: every active schedule trigger of a task expanded and merged, its runs
read from each organization's status list once, and no miss concluded from a list that may not hold every run."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.schedule import ExpansionBudget
from qlik_tasks_mcp.sandbox import history, qalyptus
from qlik_tasks_mcp.tools.qalyptus.models import QalyptusOrgs
from qlik_tasks_mcp.tools.qalyptus.source import QalyptusTaskSource
from qlik_tasks_mcp.tools.sources import Budget, TaskInfo, run_times
from tests.conftest import Harness, data

pytestmark = pytest.mark.anyio


def _org(h: Harness) -> qalyptus.Org:
    return qalyptus.tables(h.sandbox).org()


def _served(h: Harness, keys: list[tuple[str, str]]) -> list[str]:
    """The Qalyptus task ids among `keys` that the server's organization holds (the EU one is not configured)."""
    return [task for kind, task in keys if kind == "qalyptus" and task in _org(h).tasks]


def _triggers(h: Harness, task_id: str) -> list[dict[str, Any]]:
    return _org(h).triggers.get(task_id, [])


async def _missed(h: Harness) -> dict[str, Any]:
    async with h.client() as client:
        return data(await client.call_tool("find_missed_runs", {}))


def _not_checked(report: dict[str, Any], task_id: str) -> bool:
    return f"qalyptus {task_id}: its runs were not all read" in report.get("not_checked", [])


async def test_each_seeded_qalyptus_miss_is_found_with_its_reason_and_none_for_a_task_that_ran(
    seeded: Harness,
) -> None:
    cases = history.cases(seeded.sandbox)
    missed = {task: reason for (kind, task), reason in cases.missed.items() if kind == "qalyptus"}
    assert set(missed.values()) == {None, "inactive"}
    before = len(seeded.recorder.exchanges)
    report = await _missed(seeded)
    rows = {(r["what"], r["task_id"]): r for r in report["rows"] if r["kind"] == "qalyptus"}
    for task, reason in missed.items():
        row = rows[("missed", task)]
        assert row.get("reason") == reason, row
    inactive = next(t for t, r in missed.items() if r == "inactive")
    # Inactive three days ago: every time of both its schedules in the last day was missed.
    assert rows[("missed", inactive)]["count"] >= 3
    ran = _served(seeded, cases.ran)
    several = _served(seeded, cases.several_schedules)
    assert ran and several and set(several) <= set(ran)
    assert not [key for key in rows if key[1] in ran]
    assert not [task for task in ran if _not_checked(report, task)]
    # Inactive with its only schedule inactive too: no time, so no row and nothing left unchecked.
    paused = next(
        t for t, task in _org(seeded).tasks.items() if not any(x.get("isActive") for x in _triggers(seeded, t))
    )
    assert not [key for key in rows if key[1] == paused] and not _not_checked(report, paused)
    # One status list per organization for every task, and one trigger read per task (one organization here).
    spent = seeded.recorder.exchanges[before:]
    qalyptus_paths = [e.path for e in spent if e.host == qalyptus.QALYPTUS_HOST]
    assert qalyptus_paths.count("/api/v1/status/tasks") == 1
    triggers = [p for p in qalyptus_paths if p.endswith("/triggers")]
    assert sorted(triggers) == sorted(f"/api/v1/tasks/{t}/triggers" for t in _org(seeded).tasks)
    assert "qalyptus" not in (report.get("note") or "").split("Not compared:")[-1]


async def test_a_status_list_of_each_tasks_latest_run_concludes_no_miss(seeded: Harness) -> None:
    # A tenant whose status list holds only each task's latest execution.
    org = _org(seeded)
    latest = {r["taskID"]: r for r in sorted(org.executions.values(), key=lambda r: r["_created"])}
    org.executions = {r["id"]: r for r in latest.values()}
    cases = history.cases(seeded.sandbox)
    report = await _missed(seeded)
    rows = {(r["what"], r["task_id"]): r for r in report["rows"] if r["kind"] == "qalyptus"}
    gap = next(task for (kind, task), reason in cases.missed.items() if kind == "qalyptus" and reason is None)
    inactive = next(task for (kind, task), reason in cases.missed.items() if kind == "qalyptus" and reason)
    # Its latest run is in the window and none before it is listed: not a miss, not checked.
    assert ("missed", gap) not in rows and _not_checked(report, gap)
    # The latest run listed started before the window: the list says it has not run since.
    assert rows[("missed", inactive)]["reason"] == "inactive"
    assert [task for task in _served(seeded, cases.ran) if _not_checked(report, task)]


async def test_a_status_list_not_reaching_the_windows_start_concludes_nothing(seeded: Harness) -> None:
    org = _org(seeded)
    recent = seeded.sandbox.clock.now() - timedelta(hours=12)
    org.executions = {i: r for i, r in org.executions.items() if r["_created"] >= recent}
    report = await _missed(seeded)
    assert not [r for r in report["rows"] if r["kind"] == "qalyptus"]
    cases = history.cases(seeded.sandbox)
    for task in _served(seeded, list(cases.missed) + cases.ran):
        assert _not_checked(report, task), task


async def test_run_times_without_a_zone_conclude_nothing(seeded: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # Statuses in the organization's wall-clock time, with no zone: read as UTC they would move every run.
    monkeypatch.setattr(qalyptus, "stamp", lambda when: when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    report = await _missed(seeded)
    assert not [r for r in report["rows"] if r["kind"] == "qalyptus"]
    assert "run times without a time zone" in report["note"]
    cases = history.cases(seeded.sandbox)
    for task in _served(seeded, list(cases.missed) + cases.ran):
        assert _not_checked(report, task), task


async def test_schedules_left_unread_by_the_budget_are_named(seeded: Harness) -> None:
    source = QalyptusTaskSource(QalyptusOrgs(seeded.backend.qalyptus))
    infos = [TaskInfo("qalyptus", task, "-", True) for task in sorted(_org(seeded).tasks)]
    budget = Budget(requests=2, deadline=math.inf)
    found = await source.schedules_of(infos, budget)
    assert len(found) == 2 and budget.requests == 0
    assert sorted(budget.skipped) == sorted(f"schedules of Qalyptus task {i.id}" for i in infos if i.id not in found)


async def test_a_tasks_schedules_are_merged_in_their_own_zones() -> None:
    start = "2026-11-01T00:00:00"
    morning = sched.schedule_of(
        {"frequency": "Daily", "atHour": 6, "atMinut": 0, "timeZone": "Europe/Zurich", "startDate": start}
    )
    tokyo = sched.schedule_of({"frequency": "Hourly", "everyHours": 6, "timeZone": "Asia/Tokyo", "startDate": start})
    # 05:00 UTC every day as well, in another zone: the same moment is one run.
    same = sched.schedule_of({"frequency": "Daily", "atHour": 14, "atMinut": 0, "timeZone": "Asia/Tokyo"})
    assert morning and tokyo and same
    info = TaskInfo("qalyptus", "t", "-", False, schedules=[morning, tokyo, same])
    after = datetime(2026, 12, 1, tzinfo=UTC)
    runs = await run_times(info, count=6, now=after, budget=ExpansionBudget(), even_if_disabled=True)
    got = [t.astimezone(UTC).strftime("%H:%M") for t in runs]
    assert got == ["03:00", "05:00", "09:00", "15:00", "21:00", "03:00"]


def test_a_once_schedule_is_its_one_run_and_an_event_is_no_time() -> None:
    once = sched.schedule_of({"frequency": "Once", "timeZone": "Europe/Zurich", "startDate": "2026-12-05T10:00:00"})
    assert once is not None and once.readable
    assert once.next_runs(datetime(2026, 12, 1, tzinfo=UTC), 3) == [datetime(2026, 12, 5, 9, tzinfo=UTC)]
    assert sched.schedule_of({"type": "QlikEvent", "eventType": "ReloadSucceeded", "timeZone": "UTC"}) is None
    lost = sched.schedule_of({"frequency": "Once", "timeZone": "UTC"})
    assert lost is not None and not lost.readable
