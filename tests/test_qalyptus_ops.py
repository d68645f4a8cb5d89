"""A Qalyptus task read through the ops sources (the app overview, explain_schedule) carries every active schedule
trigger: each in words, their runs merged so the next run is the earliest of them; an inactive trigger is no time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.sandbox import qalyptus, qalyptus_contract, qalyptus_seed
from qlik_tasks_mcp.sandbox import tasks as sandbox_tasks
from qlik_tasks_mcp.tools.qalyptus.models import QalyptusOrgs
from qlik_tasks_mcp.tools.qalyptus.source import QalyptusTaskSource
from qlik_tasks_mcp.tools.sources import TaskInfo, schedule_line, will_not_run
from tests.conftest import Harness, data

pytestmark = pytest.mark.anyio

TWO_SCHEDULES = "Daily Finance Pack"


def _org(h: Harness) -> qalyptus.Org:
    return qalyptus.tables(h.sandbox).org()


def _task(h: Harness, name: str) -> dict[str, Any]:
    return next(t for t in _org(h).tasks.values() if t["name"] == name)


def _schedules(h: Harness, task_id: str) -> list[dict[str, Any]]:
    return [t for t in _org(h).triggers[task_id] if t["type"] == "Schedule" and t.get("isActive") is not False]


def _expected(triggers: list[dict[str, Any]], after: datetime, count: int) -> list[str]:
    """The first `count` runs of all the triggers merged, as the sandbox (its own schedule code) works them out."""
    runs: set[datetime] = set()
    for trigger in triggers:
        cursor = after
        for _ in range(count):
            found = qalyptus_contract.next_run(trigger, cursor)
            if found is None:
                break
            runs.add(found)
            cursor = found
    return [t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in sorted(runs)[:count]]


async def test_the_overview_shows_every_schedule_of_a_qalyptus_task_and_its_earliest_next_run(
    seeded: Harness,
) -> None:
    task = _task(seeded, TWO_SCHEDULES)
    triggers = _schedules(seeded, task["id"])
    assert {t["timeZone"] for t in triggers} == {"America/New_York", "Asia/Tokyo"}
    event = next(t for t in _org(seeded).triggers[task["id"]] if t["type"] == "QlikEvent")
    before = datetime.now(UTC)
    async with seeded.client() as client:
        overview = data(await client.call_tool("get_app_schedule_overview", {"app_id": event["appId"], "runs": 10}))
    after = datetime.now(UTC)
    item = next(i for i in overview["items"] if i["kind"] == "qalyptus" and i["id"] == task["id"])
    assert item["schedule"].startswith(
        "every day at 06:30 America/New_York; every day at 00:00, 06:00, 12:00, 18:00 Asia/Tokyo. Also runs when "
        f"Qlik '{seeded.sandbox.apps[event['appId']].name}' (app {event['appId']}) reloads"
    ), item["schedule"]
    # The next run is the earliest of both schedules: their runs merged (a run may fall due during the call).
    moment = before if item["next_runs"] == _expected(triggers, before, 10) else after
    assert item["next_runs"] == _expected(triggers, moment, 10)
    assert all(_expected([trigger], moment, 1)[0] in item["next_runs"] for trigger in triggers)
    assert "will_not_run" not in item


async def test_explain_schedule_merges_a_qalyptus_tasks_schedules(seeded: Harness) -> None:
    task = _task(seeded, TWO_SCHEDULES)
    triggers = _schedules(seeded, task["id"])
    before = datetime.now(UTC)
    async with seeded.client() as client:
        explained = data(
            await client.call_tool("explain_schedule", {"kind": "qalyptus", "task_id": task["id"], "count": 6})
        )
    after = datetime.now(UTC)
    assert explained["description"] == (
        "every day at 06:30 America/New_York; every day at 00:00, 06:00, 12:00, 18:00 Asia/Tokyo"
    )
    assert explained["time_zone"] == "America/New_York, Asia/Tokyo"
    utc = [r["utc"] for r in explained["next_runs"]]
    assert utc in (_expected(triggers, before, 6), _expected(triggers, after, 6))
    # Each run in its own schedule's zone.
    assert {r["local"].split(" ")[2] for r in explained["next_runs"]} == {"EST", "JST"}
    assert explained["note"].startswith("Also runs when Qlik ")


async def test_an_inactive_schedule_trigger_is_no_time_and_said_only_without_an_active_one(seeded: Harness) -> None:
    org = _org(seeded)
    task = _task(seeded, "Monthly Sales Distribution")
    now = seeded.sandbox.clock.now()
    # A second schedule, every 6 h in Tokyo, switched off: the task still runs only on the first of the month.
    off = qalyptus_seed.schedule(seeded.sandbox, now, "Paused", "Asia/Tokyo", frequency="Hourly", everyHours=6)
    off["isActive"] = False
    org.triggers[task["id"]].append(off)
    paused = _task(seeded, "Inventory Aging (paused)")
    source = QalyptusTaskSource(QalyptusOrgs(seeded.backend.qalyptus))
    info = await source.get(task["id"])
    assert schedule_line(info) == "every month on day 1 of the month at 06:30 Europe/Zurich"
    assert len(info.schedules) == 1
    idle = await source.get(paused["id"])
    assert idle.schedules == [] and schedule_line(idle) == "no active schedule (1 inactive schedule trigger)"
    # No due time: nothing to say it will not run on, however inactive the task is.
    assert will_not_run(idle, [], now=now) is None
    async with seeded.client() as client:
        one = data(await client.call_tool("explain_schedule", {"kind": "qalyptus", "task_id": task["id"]}))
        none = data(await client.call_tool("explain_schedule", {"kind": "qalyptus", "task_id": paused["id"]}))
    assert (
        one["description"] == "every month on day 1 of the month at 06:30 Europe/Zurich" and len(one["next_runs"]) == 5
    )
    assert {r["utc"][8:10] for r in one["next_runs"]} == {"01"}
    assert none["description"] == "no active schedule (1 inactive schedule trigger)" and none["next_runs"] == []


async def test_a_task_that_will_not_run_on_any_of_its_schedules_says_why_once() -> None:
    past = {"timeZone": "UTC", "startDate": "2026-01-01T00:00:00", "endDate": "2026-02-01T00:00:00"}
    daily = sched.schedule_of({"frequency": "Daily", "atHour": 6, "atMinut": 0} | past)
    hourly = sched.schedule_of({"frequency": "Hourly", "everyHours": 6} | past)
    lost = sched.schedule_of({"frequency": "Once", "timeZone": "UTC"})
    assert daily and hourly and lost
    now = datetime(2026, 12, 1, tzinfo=UTC)
    ended = TaskInfo("qalyptus", "t", "-", True, schedules=[daily, hourly])
    assert will_not_run(ended, [], now=now) == ("the schedule has ended: its end (2026-02-01 00:00 UTC) has passed")
    unread = TaskInfo("qalyptus", "t", "-", True, schedules=[lost, lost])
    assert will_not_run(unread, [], now=now) == (
        "its schedules could not be read (a Once schedule without startDate never runs)"
    )
    # One readable schedule that runs is enough.
    assert will_not_run(TaskInfo("qalyptus", "t", "-", True, schedules=[lost, daily]), [now], now=now) is None


async def test_a_disable_preview_says_which_qalyptus_tasks_still_run_on_their_own_schedules(harness: Harness) -> None:
    finance = next(a.id for a in harness.sandbox.apps.values() if a.name == "Finance P&L")
    only = next(t for t in sandbox_tasks.tables(harness.sandbox).tasks.values() if t["resourceId"] == finance)
    task = _task(harness, TWO_SCHEDULES)
    args = {"task_id": only["id"], "enabled": False}
    async with harness.client() as client:
        timed = data(await client.call_tool("update_task", args))
        # Its schedule switched off, the app's reload is the only thing that starts it.
        for trigger in _schedules(harness, task["id"]):
            trigger["isActive"] = False
        started = data(await client.call_tool("update_task", args))

    def warning(preview: dict[str, Any]) -> str:
        return next(n for n in preview["notes"] if "nothing scheduled reloads app" in n)

    assert "1 Qalyptus task(s) started by its reload run only on their own schedules, with that data" in warning(timed)
    assert "no longer run" not in warning(timed) and f"Qalyptus task {task['id']} " in warning(timed)
    assert "1 Qalyptus task(s) started by its reload no longer run" in warning(started)
    assert "their own schedules" not in warning(started)
