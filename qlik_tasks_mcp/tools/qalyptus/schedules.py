"""Qalyptus task schedules: list, add or update (validated before anything is sent), delete."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.qalyptus import TriggerDoc
from qlik_tasks_mcp.client.schedule import local_datetime, time_zone, utc_z
from qlik_tasks_mcp.tools.fence import quoted
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.operation import destructive, read
from qlik_tasks_mcp.tools.qalyptus.models import OrgName, QalyptusOrgs, TaskId, Trigger, task_named, text_of

NEXT_RUNS = 3
# The tool's parameters and the API fields each sets, to refuse one that a frequency does not use, in the
# caller's words.
PARAM_FIELDS = {
    "at": ("atHour", "atMinut"),
    "every_hours": ("everyHours",),
    "from_time": ("fromHour", "fromMinut"),
    "to_time": ("toHour", "toMinut"),
    "weekdays": ("weeklyDays",),
    "day": ("day",),
    "month": ("month",),
}
TAKES = {
    "Once": "start (when it runs)",
    "Hourly": "every_hours, optionally from_time and to_time",
    "Daily": "at",
    "Weekly": "weekdays and at",
    "Monthly": "day and at",
    "Yearly": "month, day and at",
}


class ScheduleIn(Input):
    """When a Qalyptus task runs. To update, give only what changes."""

    frequency: Literal["once", "hourly", "daily", "weekly", "monthly", "yearly"] | None = None
    time_zone: str | None = Field(None, max_length=64, description="IANA zone.")
    at: str | None = Field(None, max_length=5, description="Time of day HH:MM (daily/weekly/monthly/yearly).")
    every_hours: int | None = Field(None, ge=1, le=23, description="Hourly: run every N hours.")
    from_time: str | None = Field(None, max_length=5, description="Hourly window start HH:MM.")
    to_time: str | None = Field(None, max_length=5, description="Hourly window end HH:MM.")
    weekdays: list[str] | None = Field(None, max_length=7, description="Weekly: e.g. [Monday, Thursday].")
    day: int | None = Field(None, ge=1, le=31, description="Monthly/yearly: day of month.")
    month: int | None = Field(None, ge=1, le=12, description="Yearly: month 1-12.")
    start: str | None = Field(
        None, max_length=19, description="Local YYYY-MM-DDTHH:MM:SS; default today 00:00 (update: keep)."
    )
    end: str | None = Field(None, max_length=19, description="Local; default never.")
    name: str | None = Field(None, max_length=100, description="Default: the schedule in words.")


class ScheduleList(Compact):
    organization: str
    task_id: str
    schedules: list[Trigger]


class ScheduleSet(Compact):
    task_id: str
    schedule: Trigger | None = None
    note: str | None = None


class SchedulesDeleted(Compact):
    task_id: str
    deleted: list[str]


def build_body(args: ScheduleIn, current: dict[str, Any] | None, now_utc: datetime) -> dict[str, Any]:
    """The full "Add or update a schedule" body: the current schedule (if any) with the changes on top."""
    if current is None:
        if not args.frequency:
            raise InvalidInput(
                "frequency is required to add a schedule: once, hourly, daily, weekly, monthly or yearly"
            )
        if not args.time_zone:
            raise InvalidInput("time_zone is required to add a schedule (an IANA name, e.g. Europe/Zurich)")
        body: dict[str, Any] = dict.fromkeys(sched.FIELDS) | {"priority": 0, "day": 0, "month": 0, "everyHours": 0}
    else:
        body = {key: current.get(key) for key in sched.FIELDS}
    zone_name = args.time_zone or str(body.get("timeZone") or "")
    zone = time_zone(zone_name)
    body["timeZone"] = zone_name
    freq = sched.frequency_of(args.frequency or body.get("frequency"))
    if freq is None:
        raise InvalidInput(f"the schedule's frequency {body.get('frequency')!r} is not one this server knows; give one")
    if current is not None and freq != sched.frequency_of(current.get("frequency")):
        body = sched.empty_timing(body, freq)
    body["frequency"] = freq
    for param, fields in PARAM_FIELDS.items():
        if getattr(args, param) is not None and not set(fields) <= sched.USES[freq]:
            raise InvalidInput(f"{param} does not apply to a {freq.lower()} schedule, which takes {TAKES[freq]}")
    if args.at:
        body["atHour"], body["atMinut"] = sched.hhmm(args.at, "at")
    if args.every_hours is not None:
        body["everyHours"] = args.every_hours
    if (args.from_time is None) != (args.to_time is None) and body.get("fromHour") is None:
        raise InvalidInput("give from_time and to_time together (the hourly window), or neither")
    if args.from_time:
        body["fromHour"], body["fromMinut"] = sched.hhmm(args.from_time, "from_time")
    if args.to_time:
        body["toHour"], body["toMinut"] = sched.hhmm(args.to_time, "to_time")
    if args.weekdays is not None:
        days = sched.weekdays(args.weekdays)
        if not days:
            raise InvalidInput("weekdays must name at least one day, e.g. [Monday, Thursday]")
        body["weeklyDays"] = ",".join(days)
    if args.day is not None:
        body["day"] = args.day
    if args.month is not None:
        body["month"] = args.month
    if args.start:
        body["startDate"] = sched.api_date(local_datetime(args.start, "start"), zone)
    elif current is None:
        if freq == "Once":
            raise InvalidInput("a once schedule needs start: the local date-time it runs at, YYYY-MM-DDTHH:MM:SS")
        # The start of today, not now: the same all day, so the plan shown and the plan acted on agree.
        today = now_utc.astimezone(zone).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
        body["startDate"] = sched.api_date(today, zone)
    if args.end:
        body["endDate"] = sched.api_date(local_datetime(args.end, "end"), zone)
    missing = _missing(body, freq)
    if missing:
        raise InvalidInput(f"a {freq.lower()} schedule needs {missing}")
    if args.name and args.name.strip():
        body["name"] = args.name.strip()
    elif not body.get("name"):
        body["name"] = sched.describe(body)[:100]
    if body.get("endDate") is None:
        body.pop("endDate")
    return sched.check(body)


def _missing(body: dict[str, Any], freq: str) -> str | None:
    if freq == "Hourly" and not body.get("everyHours"):
        return "every_hours (1-23)"
    if freq in ("Daily", "Weekly", "Monthly", "Yearly") and (body.get("atHour") is None or body.get("atMinut") is None):
        return "at (HH:MM)"
    if freq == "Weekly" and not body.get("weeklyDays"):
        return "weekdays"
    if freq in ("Monthly", "Yearly") and not body.get("day"):
        return "day (1-31)"
    if freq == "Yearly" and not body.get("month"):
        return "month (1-12)"
    return None


def stored(schedule: TriggerDoc) -> dict[str, Any]:
    """What identifies a schedule's settings (not the derived next run)."""
    sent = schedule.wire()
    return {k: sent.get(k) for k in (*sched.FIELDS, "id", "isActive")}


def runs_note(body: dict[str, Any], now_utc: datetime) -> str:
    try:
        runs = sched.next_runs(body, now_utc, NEXT_RUNS)
    except InvalidInput:
        return "Its next runs could not be computed here."
    if not runs:
        return "This schedule has no run after now."
    return "Next runs: " + ", ".join(f"{r.isoformat(timespec='minutes')} ({utc_z(r)})" for r in runs)


def _known(schedules: list[TriggerDoc]) -> str:
    return ", ".join(f"{s.id} ({text_of(s.name, 40)})" for s in schedules) or "none"


@read("List Qalyptus task schedules")
async def list_qalyptus_task_schedules(
    orgs: QalyptusOrgs, task_id: TaskId, organization: OrgName = None
) -> ScheduleList:
    """A Qalyptus task's schedules: frequency in words, zone, start/end, next run, active."""
    api = orgs.get(organization)
    found = await api.schedules(task_id)
    return ScheduleList(organization=api.name, task_id=task_id, schedules=[Trigger.of(s) for s in found])


def _plan_add(body: dict[str, Any], existing: list[TriggerDoc], where: str, now: datetime) -> Plan:
    # Zero is a real minute or hour, but an unused day, month or interval.
    unused = ("day", "month", "everyHours", "priority")
    changes = [f"{k}: {text_of(v)}" for k, v in body.items() if v not in (None, "") and not (v == 0 and k in unused)]
    words = sched.describe(body)
    return Plan(
        action=f"Add schedule '{body['name']}'"
        + (f" ({words})" if body["name"] != words[:100] else "")
        + f" to {where}",
        changes=changes,
        state=["add", sorted(s.id for s in existing)],
        notes=[runs_note(body, now)],
        payload=body,
    )


def _plan_change(body: dict[str, Any], current: TriggerDoc, where: str, now: datetime) -> Plan:
    sent = current.wire()
    before = {k: sent.get(k) for k in sched.FIELDS}
    changes = [
        f"{k}: {text_of(before.get(k)) or '(none)'} -> {text_of(body.get(k)) or '(none)'}"
        for k in sched.FIELDS
        if before.get(k) != body.get(k)
    ]
    if not changes:
        raise InvalidInput("the schedule already has these values; nothing to change")
    return Plan(
        action=f"Update schedule {quoted(current.name or '', 80)} of {where}: "
        f"{sched.describe(before)} -> {sched.describe(body)}",
        changes=changes,
        state=stored(current),
        notes=[runs_note(body, now)],
        payload=body,
    )


async def plan_set(
    orgs: QalyptusOrgs, task_id: str, schedule: ScheduleIn, schedule_id: str | None, organization: str | None
) -> Plan:
    api = orgs.get(organization)
    now = datetime.now(UTC)
    existing = await api.schedules(task_id)
    current = None
    if schedule_id:
        current = next((s for s in existing if s.id == schedule_id), None)
        if current is None:
            raise InvalidInput(f"task {task_id} has no schedule {schedule_id}; its schedules: {_known(existing)}")
    body = build_body(schedule, current.wire() if current else None, now)
    where = f"{await task_named(api, task_id)} in {api.name}"
    return _plan_add(body, existing, where, now) if current is None else _plan_change(body, current, where, now)


@destructive("Set Qalyptus task schedule", plan=plan_set)
async def set_qalyptus_task_schedule(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
    schedule: ScheduleIn,
    schedule_id: Annotated[
        str | None, Field(max_length=128, description="Schedule to update; leave out to add one.")
    ] = None,
    organization: OrgName = None,
) -> ScheduleSet:
    """Add a schedule to a Qalyptus task, or update one (schedule_id)."""
    saved = await orgs.get(organization).set_schedule(task_id, plan.payload, schedule_id)
    if saved is not None:
        return ScheduleSet(task_id=task_id, schedule=Trigger.of(saved))
    return ScheduleSet(task_id=task_id, note="Saved; list_qalyptus_task_schedules shows it.")


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


async def plan_delete_schedules(
    orgs: QalyptusOrgs, task_id: str, schedule_ids: list[str], organization: str | None
) -> Plan:
    api = orgs.get(organization)
    ids = _unique(schedule_ids)
    existing = await api.schedules(task_id)
    by_id = {s.id: s for s in existing}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise InvalidInput(f"task {task_id} has no schedule {unknown[0]}; its schedules: {_known(existing)}")
    doomed = [by_id[i] for i in ids]
    notes = ["This cannot be undone."]
    if len(doomed) == len(by_id):
        notes.append("The task is left with no schedule: it runs only on Qlik events or when run by hand.")
    return Plan(
        action=f"Delete {len(doomed)} schedule{'s' if len(doomed) > 1 else ''} of {await task_named(api, task_id)} "
        f"in {api.name}",
        changes=[f"{text_of(s.name, 60) or ''} ({s.id}): {sched.describe(s.wire())}" for s in doomed],
        state=[stored(s) for s in doomed],
        notes=notes,
        payload=ids,
    )


@destructive("Delete Qalyptus task schedules", plan=plan_delete_schedules, idempotent=True)
async def delete_qalyptus_task_schedules(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
    schedule_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]],
        Field(min_length=1, max_length=50),
    ],
    organization: OrgName = None,
) -> SchedulesDeleted:
    """Delete schedules of a Qalyptus task."""
    await orgs.get(organization).delete_schedules(task_id, plan.payload)
    return SchedulesDeleted(task_id=task_id, deleted=plan.payload)
