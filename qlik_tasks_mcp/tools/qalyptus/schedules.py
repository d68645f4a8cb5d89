"""Qalyptus task triggers: schedules and Qlik external events together as the tenant returns them, in words; add or
update a schedule (validated before anything is sent) or an external event (run when a Qlik app reloads); delete
either."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import TriggerDoc
from qlik_tasks_mcp.client.schedule import local_datetime, time_zone, utc_z
from qlik_tasks_mcp.tools.fence import quoted
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.qalyptus.models import (
    OrgName,
    QalyptusOrgs,
    TaskId,
    Trigger,
    event_name,
    event_words,
    task_named,
    text_of,
)

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


class TriggerList(Compact):
    organization: str
    task_id: str
    triggers: list[Trigger]


class ScheduleSet(Compact):
    task_id: str
    schedule: Trigger | None = None
    note: str | None = None


class EventSet(Compact):
    task_id: str
    event: Trigger | None = None
    note: str | None = None


class TriggersDeleted(Compact):
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


async def trigger_rows(orgs: QalyptusOrgs, triggers: list[TriggerDoc]) -> list[Trigger]:
    labels = await orgs.app_labels([t.app_id for t in triggers if t.app_id and not t.scheduled])
    return [Trigger.of(t, labels) for t in triggers]


@read("List Qalyptus task triggers")
async def list_qalyptus_task_triggers(orgs: QalyptusOrgs, task_id: TaskId, organization: OrgName = None) -> TriggerList:
    """A Qalyptus task's schedules and Qlik events, in words, with next runs."""
    api = orgs.get(organization)
    found = await api.triggers(task_id)
    return TriggerList(organization=api.name, task_id=task_id, triggers=await trigger_rows(orgs, found))


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
    return ScheduleSet(task_id=task_id, note="Saved; list_qalyptus_task_triggers shows it.")


# External events ---------------------------------------------------------------------------------------

# What this server sends as qlikEvent. The reference types it as a string and lists no values: these are inferred
# (events of a Qlik app's reload); what is read back is compared loosely (models.EVENT_WORDS).
QLIK_EVENTS = {"success": "app.reload.succeeded", "failure": "app.reload.failed", "any": "app.reload.finished"}
# "execution" is a required string the reference does not explain; a new event takes what schedules carry.
EXECUTION = "Queue"


def event_body(
    current: TriggerDoc | None, app_id: str | None, on: str | None, name: str | None, words: str
) -> dict[str, Any]:
    """The whole "Add or update external event" body: the current event (if any) with the changes on top."""
    sent = current.wire() if current else {}
    body: dict[str, Any] = {
        "name": sent.get("name") or "",
        "execution": sent.get("execution") if isinstance(sent.get("execution"), str) else EXECUTION,
        "priority": sent.get("priority") if isinstance(sent.get("priority"), int) else 0,
        "description": sent.get("description"),
        "appID": current.app_id if current else None,
        "qlikEvent": event_name(current) if current else None,
        "timeZone": sent.get("timeZone"),
    }
    for key in ("startDate", "endDate"):
        if sent.get(key):
            body[key] = sent[key]
    if app_id:
        body["appID"] = app_id
    if on:
        body["qlikEvent"] = QLIK_EVENTS[on]
    if not body["appID"]:
        raise InvalidInput("app_id is required to add an event: the Qlik app whose reload starts the task")
    if not body["qlikEvent"]:
        body["qlikEvent"] = QLIK_EVENTS["success"]
    body["name"] = name.strip() if name and name.strip() else body["name"] or words[:100]
    return body


@write("Set Qalyptus task event")
async def set_qalyptus_task_event(
    orgs: QalyptusOrgs,
    task_id: TaskId,
    app_id: Annotated[str | None, Field(max_length=128, description="Qlik app id.")] = None,
    on: Annotated[
        Literal["success", "failure", "any"] | None, Field(description="Reload outcome; default success.")
    ] = None,
    name: Annotated[str | None, Field(max_length=100)] = None,
    event_id: Annotated[str | None, Field(max_length=128, description="Event to change; leave out to add.")] = None,
    organization: OrgName = None,
) -> EventSet:
    """Run a Qalyptus task when a Qlik app reloads: add an external event, or change one (event_id)."""
    api = orgs.get(organization)
    current = None
    if event_id:
        triggers = await api.triggers(task_id)
        current = next((t for t in triggers if t.id == event_id and not t.scheduled), None)
        if current is None:
            events = ", ".join(f"{t.id} ({text_of(t.name, 40)})" for t in triggers if not t.scheduled) or "none"
            raise InvalidInput(f"task {task_id} has no external event {event_id}; its events: {events}")
    target = app_id or (current.app_id if current else None) or ""
    labels = await orgs.app_labels([target])
    probe = TriggerDoc.model_validate({"id": "", "appId": target, "qlikEvent": QLIK_EVENTS[on or "success"]})
    words = event_words(probe, labels) or ""
    body = event_body(current, app_id, on, name, words)
    saved = await api.set_external_event(task_id, body, event_id)
    note = None
    if target and "(not found)" in labels.get(target, ""):
        note = f"{labels[target]}: the Qlik tenant did not show this app to this server; check the id."
    if saved is None:
        return EventSet(
            task_id=task_id, note=" ".join(filter(None, ["Saved; list_qalyptus_task_triggers shows it.", note]))
        )
    return EventSet(task_id=task_id, event=Trigger.of(saved, labels), note=note)


# Deleting triggers --------------------------------------------------------------------------------------


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _known_triggers(triggers: list[TriggerDoc]) -> str:
    return ", ".join(f"{t.id} ({text_of(t.name, 40)})" for t in triggers) or "none"


async def plan_delete_triggers(
    orgs: QalyptusOrgs, task_id: str, trigger_ids: list[str], organization: str | None
) -> Plan:
    api = orgs.get(organization)
    ids = _unique(trigger_ids)
    existing = await api.triggers(task_id)
    by_id = {t.id: t for t in existing}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise InvalidInput(f"task {task_id} has no trigger {unknown[0]}; its triggers: {_known_triggers(existing)}")
    doomed = [by_id[i] for i in ids]
    pairs = zip(doomed, await trigger_rows(orgs, doomed), strict=True)
    notes = ["This cannot be undone."]
    if len(doomed) == len(by_id):
        notes.append("The task is left with no schedule or event: it runs only when run by hand.")
    return Plan(
        action=f"Delete {len(doomed)} trigger{'s' if len(doomed) > 1 else ''} of {await task_named(api, task_id)} "
        f"in {api.name}",
        changes=[f"{text_of(t.name, 60) or ''} ({t.id}): {row.when or row.type}" for t, row in pairs],
        state=[stored(t) | {"event": event_name(t), "app": t.app_id} for t in doomed],
        notes=notes,
        payload={
            "schedules": [t.id for t in doomed if t.scheduled],
            "events": [t.id for t in doomed if not t.scheduled],
        },
    )


@destructive("Delete Qalyptus task triggers", plan=plan_delete_triggers, idempotent=True)
async def delete_qalyptus_task_triggers(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
    trigger_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]],
        Field(min_length=1, max_length=50, description="Schedule or event ids."),
    ],
    organization: OrgName = None,
) -> TriggersDeleted:
    """Delete schedules or Qlik events of a Qalyptus task."""
    api = orgs.get(organization)
    schedules, events = plan.payload["schedules"], plan.payload["events"]
    if schedules:
        await api.delete_schedules(task_id, schedules)
    if events:
        try:
            await api.delete_external_events(task_id, events)
        except ApiError as exc:
            if not schedules:
                raise
            raise ToolError(
                f"The schedules {', '.join(schedules)} were deleted; deleting the events {', '.join(events)} failed: "
                f"{exc}"
            ) from exc
    return TriggersDeleted(task_id=task_id, deleted=schedules + events)
