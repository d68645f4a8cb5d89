"""Two weeks of run history for the sandbox tenant (`build_sandbox(history=True)`), true to every schedule, with a
few known cases the ops answers must find: two apps whose reloads got slower this week, and in the last day a run
missed with no reason (a task, a sharing task and a Qalyptus task), one over quota, one whose task's owner is
disabled, one late and one run twice; a Qalyptus task made inactive three days ago, and one with a second schedule
in another zone that ran at each time of both.

It replaces the families' short random histories with one that follows each task's schedule: every occurrence of
an enabled reload task and task ran (a reload naming it), and every one of a sharing task delivered, except the
cases. Disabled tasks ran until they were
disabled; reload tasks of apps that have tasks do not run (changelog 135). `cases(sandbox)` says what was seeded,
by task id and reason, so tests find the cases by what they are. Deterministic for a given sandbox seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from qlik_tasks_mcp.sandbox import qalyptus, qalyptus_contract, qalyptus_seed, reload_tasks, reloads, sharing_tasks
from qlik_tasks_mcp.sandbox import tasks as workflow_tasks
from qlik_tasks_mcp.sandbox.core import Sandbox
from qlik_tasks_mcp.sandbox.schedule import next_occurrence, wall_clock, zone_of
from qlik_tasks_mcp.sandbox.schedule import task_runs as schedule_task_runs
from qlik_tasks_mcp.sandbox.workflow import schedule_of

TABLE = "history"
DAYS = 14
# How much slower the slowed apps' reloads are this week than the week before.
SLOWDOWNS = (3.0, 2.0)
LATE = timedelta(minutes=45)
# The cases are runs due within the last 23 hours and at least this long ago, so a day's window holds them whole.
SETTLED = timedelta(hours=1)
MAX_RUNS = 2000


@dataclass
class Cases:
    """What the history seeded, for tests: app ids by slowdown, and (kind, task id) -> reason (None: none given)."""

    slowed_apps: list[str] = field(default_factory=list)
    missed: dict[tuple[str, str], str | None] = field(default_factory=dict)
    late: list[tuple[str, str]] = field(default_factory=list)
    twice: list[tuple[str, str]] = field(default_factory=list)
    # Tasks that ran at every occurrence of the last day.
    ran: list[tuple[str, str]] = field(default_factory=list)
    # Tasks with several time schedules (Qalyptus triggers) that ran at each time of every one.
    several_schedules: list[tuple[str, str]] = field(default_factory=list)


def cases(sandbox: Sandbox) -> Cases:
    found = sandbox.tables.get(TABLE)
    assert isinstance(found, Cases), "the sandbox was built without history"
    return found


# When a schedule runs -----------------------------------------------------------------------------------


def _rule_runs(
    lines: list[str], zone: ZoneInfo, start: datetime | None, end: datetime | None, since: datetime, until: datetime
) -> list[datetime]:
    rules = [line for line in lines if line.strip() and not line.strip().upper().startswith(("DTSTART", "DTEND"))]
    runs: list[datetime] = []
    cursor = since
    while len(runs) < MAX_RUNS:
        found = next_occurrence(rules, zone, start, end, cursor)
        if found is None or found > until:
            break
        runs.append(found)
        cursor = found
    return runs


def task_runs(task: dict[str, Any], since: datetime, until: datetime) -> list[datetime]:
    """When a task's time schedule (recurrence, repeating interval or cron) runs in (since, until], read by the
    sandbox's one schedule reader (sandbox/schedule.py) from the task's creation."""
    created = _parsed(task.get("createdAt")) or since
    return schedule_task_runs(schedule_of(task), created, after=since, before=until, limit=MAX_RUNS)


def _parsed(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def reload_task_runs(task: dict[str, Any], since: datetime, until: datetime) -> list[datetime]:
    zone = zone_of(task.get("timeZone") or "UTC")
    if zone is None or not task.get("recurrence"):
        return []
    start, end = wall_clock(task.get("startDateTime"), zone), wall_clock(task.get("endDateTime"), zone)
    return _rule_runs(list(task["recurrence"]), zone, start, end, since, until)


# The history ---------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """One scheduled task's history: its runs, until when it ran, and how its last-day case changes a run."""

    kind: str
    task: dict[str, Any]
    app_id: str
    runs: list[datetime]
    until: datetime
    case: str | None = None


def _clear(sandbox: Sandbox) -> None:
    """Forget the families' short random histories: this one replaces them."""
    st = reloads.tables(sandbox)
    st.reloads.clear()
    st.by_app.clear()
    runs = workflow_tasks.tables(sandbox)
    runs.runs.clear()
    runs.runs_of.clear()


def _plans(sandbox: Sandbox, since: datetime, now: datetime, found: Cases) -> list[_Plan]:
    plans: list[_Plan] = []
    rng = random.Random(sandbox.seed * 4051)
    st = workflow_tasks.tables(sandbox)
    with_tasks = {t.get("resourceId") for t in st.tasks.values()}
    for task in reload_tasks.tasks(sandbox).values():
        runs = reload_task_runs(task, since, now)
        if task.get("migrated"):
            continue
        if task["appId"] in with_tasks:
            # Changelog 135: an app with tasks no longer runs its reload tasks.
            reload_tasks.turn_off_for_app(sandbox, str(task["appId"]))
            if any(now - timedelta(hours=23) <= t <= now - SETTLED for t in runs):
                enabled = task.get("state") == "Enabled"
                found.missed[("reload", task["id"])] = "app has tasks" if enabled else "disabled"
            continue
        until = now if task.get("state") == "Enabled" else now - timedelta(days=rng.randint(2, 5))
        plans.append(_Plan("reload", task, task["appId"], runs, until))
    for task in st.tasks.values():
        targets = workflow_tasks.reload_targets(task)
        if not targets:
            continue
        until = now if task.get("enabled") else now - timedelta(days=rng.randint(2, 5))
        plans.append(_Plan("task", task, targets[0][0], task_runs(task, since, now), until))
    return plans


def _last_day(plan: _Plan, now: datetime) -> list[datetime]:
    return [t for t in plan.runs if now - timedelta(hours=23) <= t <= now - SETTLED]


def _owner(task: dict[str, Any]) -> str | None:
    """The owner's id, wherever the task's family keeps it (tasks: metadata.ownerId; reload tasks: ownerId)."""
    metadata = task.get("metadata")
    owner = metadata.get("ownerId") if isinstance(metadata, dict) else None
    return owner or task.get("ownerId") or task.get("owner")


def _choose_cases(sandbox: Sandbox, plans: list[_Plan], now: datetime, found: Cases) -> None:
    """The last day's cases, on enabled tasks with a run then, chain heads left alone (their followers would
    inherit the case); what is left of them ran every time."""
    heads = _heads(sandbox)
    # A task whose owner is disabled or deleted has a reason of its own for every miss: no case goes to one.
    gone = {u.id for u in sandbox.users.values() if u.status != "active"}
    able = [
        p
        for p in plans
        if p.until == now and _last_day(p, now) and p.task["id"] not in heads and _owner(p.task) not in gone
    ]
    able.sort(key=lambda p: (p.kind != "task", p.task["id"]))
    leaver = next((u for u in sandbox.users.values() if u.status == "disabled"), None)
    chosen = ["missed", "quota", "owner", "late", "twice"] if leaver else ["missed", "quota", "late", "twice"]
    for plan, case in zip(able, chosen, strict=False):
        plan.case = case
    for plan in plans:
        key = (plan.kind, plan.task["id"])
        if plan.case == "owner" and leaver is not None:
            # What Qlik does when an owner is disabled: their tasks are disabled, saying why.
            plan.task["enabled"] = False
            owner = {"ownerId": leaver.id, "disabledCode": "OWNER-DISABLED"}
            plan.task["metadata"] = dict(plan.task["metadata"]) | owner
            plan.until = now - timedelta(days=2)
            found.missed[key] = "owner disabled"
        elif plan.until < now and _last_day(plan, now):
            found.missed[key] = "disabled"
        elif plan.case in ("missed", "quota"):
            found.missed[key] = None if plan.case == "missed" else "quota"
        elif plan.case == "late":
            found.late.append(key)
        elif plan.case == "twice":
            found.twice.append(key)
        elif plan.until == now and _last_day(plan, now):
            found.ran.append(key)


def _heads(sandbox: Sandbox) -> set[str]:
    """Tasks whose runs start other tasks."""
    st = workflow_tasks.tables(sandbox)
    return {tr.task_id for t in st.tasks.values() for tr in workflow_tasks.triggers(t)}


def _slowed(sandbox: Sandbox, plans: list[_Plan], now: datetime) -> list[str]:
    """The two apps with the most runs of enabled tasks whose reloads succeed, chain heads left alone (their
    followers' reloads would slow down too)."""
    failing = workflow_tasks.tables(sandbox).failing_apps | set(reloads.tables(sandbox).defects)
    heads = _heads(sandbox)
    counts: dict[str, int] = {}
    for plan in plans:
        if plan.until == now and plan.app_id not in failing and plan.task["id"] not in heads and plan.runs:
            counts[plan.app_id] = counts.get(plan.app_id, 0) + len(plan.runs)
    for plan in plans:
        if plan.task["id"] in heads:
            counts.pop(plan.app_id, None)
    return sorted(counts, key=lambda a: (-counts[a], a))[: len(SLOWDOWNS)]


def _run(
    sandbox: Sandbox, plan: _Plan, at: datetime, seconds: float, *, failed: bool, quota: bool, broken: bool = False
) -> None:
    # The families stamp times as UTC.
    at = at.astimezone(UTC)
    if plan.kind == "task":
        run = workflow_tasks.start_run(sandbox, plan.task, at=at, triggered_by="time-schedule", seconds=seconds)
        reload = reloads.tables(sandbox).reloads.get(run["workerId"]) if run["workerId"] else None
    else:
        reload = reloads.start_reload(
            sandbox,
            plan.app_id,
            type="chronos",
            resource_type="reload-tasks",
            resource_id=plan.task["id"],
            outcome="FAILED" if failed else (None if broken else "SUCCEEDED"),
            at=at,
            user_id=plan.task.get("userId"),
            seconds=seconds,
        )
    if quota and reload is not None:
        reload["_outcome"] = "EXCEEDED_LIMIT"


def _owner_active(sandbox: Sandbox, task: dict[str, Any]) -> bool:
    owner = sandbox.users.get(task.get("ownerId") or "")
    return owner is not None and owner.status == "active"


def _sharing(sandbox: Sandbox, since: datetime, now: datetime, found: Cases) -> None:
    """Report deliveries true to each schedule: one execution per recipient a run; a task disabled ran until then,
    one being deleted not at all; the first that ran in the last day missed its last run there, saying nothing."""
    st = sharing_tasks.tables(sandbox)
    rng = random.Random(sandbox.seed * 6203)
    missing: str | None = None
    for task_id, task in sorted(st.tasks.items()):
        schedule = task.get("scheduleOptions") or {}
        zone = zone_of(schedule.get("timezone") or "UTC")
        st.executions.pop(task_id, None)
        if not schedule.get("recurrence") or zone is None or task.get("statusCode") == "DELETING":
            continue
        start, end = wall_clock(schedule.get("startDateTime"), zone), wall_clock(schedule.get("endDateTime"), zone)
        runs = _rule_runs(list(schedule["recurrence"]), zone, start, end, since, now)
        plan = _Plan("sharing", task, task["appId"], runs, now if task.get("enabled") else now - timedelta(days=3))
        last = _last_day(plan, now)
        key = ("sharing", task_id)
        if plan.until < now:
            if last:
                found.missed[key] = "disabled"
        elif last and missing is None and _owner_active(sandbox, task):
            # A miss that says nothing: its owner is active, else the tenant would explain it.
            missing = task_id
            found.missed[key] = None
        elif last:
            found.ran.append(key)
        for due in runs:
            if due <= plan.until and not (task_id == missing and due == last[-1]):
                at = (due + timedelta(seconds=rng.randint(1, 40))).astimezone(UTC)
                sharing_tasks.start_execution(sandbox, task, at=at, seconds=20)


# The Qalyptus cases, by task name (qalyptus_seed): a second schedule, every 6 h from midnight in Tokyo, on two of
# them, so each has times in any last day whatever the hour.
QALYPTUS_CASES = {
    "Daily Finance Pack": "two schedules",
    "Executive KPIs Hourly": "missed",
    "Weekly Ops Scorecard": "inactive",
}
SECOND_SCHEDULE = {"name": "Every 6 hours", "zone": "Asia/Tokyo", "frequency": "Hourly", "everyHours": 6}


def _trigger_runs(trigger: dict[str, Any], since: datetime, until: datetime) -> list[datetime]:
    runs: list[datetime] = []
    cursor = since
    while (
        len(runs) < MAX_RUNS and (found := qalyptus_contract.next_run(trigger, cursor)) is not None and found <= until
    ):
        runs.append(found)
        cursor = found
    return runs


def _qalyptus(sandbox: Sandbox, since: datetime, now: datetime, found: Cases) -> None:
    """Qalyptus executions true to every active schedule trigger of each task (a task may have several, each with
    its own zone), in place of the seed's two days: one made inactive three days ago stopped running then; one
    missed its last run of the last day, saying nothing."""
    rng = random.Random(sandbox.seed * 9157)
    for org in qalyptus.tables(sandbox).orgs.values():
        org.executions.clear()
        for task_id, task in sorted(org.tasks.items()):
            case = QALYPTUS_CASES.get(task["name"])
            triggers = org.triggers.setdefault(task_id, [])
            if case in ("two schedules", "inactive"):
                triggers.append(qalyptus_seed.schedule(sandbox, now, **SECOND_SCHEDULE))
            until = now
            if case == "inactive":
                task["isActive"] = False
                until = now - timedelta(days=3)
            if not task["isActive"] and case is None:
                continue
            active = [t for t in triggers if t["type"] == "Schedule" and t.get("isActive")]
            runs = sorted({run for t in active for run in _trigger_runs(t, since, now)})
            last = [t for t in runs if now - timedelta(hours=23) <= t <= now - SETTLED]
            key = ("qalyptus", task_id)
            if case == "inactive" and last:
                found.missed[key] = "inactive"
            elif case == "missed" and last:
                found.missed[key] = None
            elif last:
                found.ran.append(key)
                if len(active) > 1:
                    found.several_schedules.append(key)
            for due in runs:
                at = due + timedelta(seconds=rng.randint(1, 40))
                if due > until or at > now or (case == "missed" and last and due == last[-1]):
                    continue
                qalyptus.start_run(
                    sandbox, org, task, at=at.astimezone(UTC), by="Schedule", seconds=rng.randint(20, 400)
                )


def seed(sandbox: Sandbox, days: int = DAYS) -> Cases:
    now = sandbox.clock.now().replace(microsecond=0)
    since = now - timedelta(days=days)
    _clear(sandbox)
    found = Cases()
    _sharing(sandbox, since, now, found)
    _qalyptus(sandbox, since, now, found)
    plans = _plans(sandbox, since, now, found)
    _choose_cases(sandbox, plans, now, found)
    found.slowed_apps = _slowed(sandbox, plans, now)
    slower = dict(zip(found.slowed_apps, SLOWDOWNS, strict=False))
    rng = random.Random(sandbox.seed * 7411)
    base = {p.app_id: rng.uniform(60, 150) for p in plans}
    week = now - timedelta(days=7)
    # As the reloads seed has it: a broken app script fails the reloads of the last two days.
    broken = now - timedelta(days=2)
    for plan in plans:
        last = _last_day(plan, now)[-1:] if plan.case else []
        ran = [t for t in plan.runs if t <= plan.until]
        for index, due in enumerate(ran):
            factor = slower.get(plan.app_id, 1.0) if due >= week else 1.0
            seconds = base[plan.app_id] * factor * rng.uniform(0.92, 1.08)
            at = due + timedelta(seconds=rng.randint(1, 40))
            case = plan.case if due in last else None
            if case == "missed":
                continue
            if case == "late":
                at = due + LATE
            # A task disabled after failures failed its last runs.
            stopped = plan.task.get("disabledCode") == "CONSECUTIVE-FAILURES" and index >= len(ran) - 5
            _run(sandbox, plan, at, seconds, failed=stopped, quota=case == "quota", broken=due >= broken)
            if case == "twice":
                _run(sandbox, plan, at + timedelta(seconds=20), seconds, failed=False, quota=False)
    sandbox.tables[TABLE] = found
    return found
