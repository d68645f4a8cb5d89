"""Qalyptus Cloud's contract as the sandbox reads it: request bodies and schedule timing.

Qalyptus publishes no OpenAPI file; the bodies below are written from its API reference (beta v1, the seed
/work/shared/seeds/002_*.txt: "Update task", "Add or update a schedule", "Delete task schedules",
"Create task", "Update task email", "Update task recipients", "Add or update report", "Add or update external event",
"Generate an on-demand report") and
qlik_tasks_mcp/specs/qalyptus/NOTES.md. The reference marks a nullable field "or null"; a field without it
takes no null (ASP.NET cannot read null into an int or a DateTime). Unknown fields are ignored, as ASP.NET does.
Frequency and weekday words are not documented: the sandbox takes the English names, in any case.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from jsonschema import Draft7Validator

from qlik_tasks_mcp.sandbox.schedule import next_occurrence, wall_clock, zone_of

NULLABLE_TEXT = {"type": ["string", "null"]}
NULLABLE_FLAG = {"type": ["boolean", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
INT = {"type": "integer"}
DATE_TIME = {"type": "string", "format": "date-time"}
UPDATE_TASK: dict[str, Any] = {
    "type": "object",
    "required": ["name", "isActive", "sendNotifications"],
    "properties": {
        "name": {"type": "string"},
        "description": NULLABLE_TEXT,
        "isActive": {"type": "boolean"},
        "sendNotifications": {"type": "boolean"},
        "notifyIfError": NULLABLE_FLAG,
        "notifyIfWarning": NULLABLE_FLAG,
        "notifyIfSuccess": NULLABLE_FLAG,
        "notificationRecipients": NULLABLE_TEXT,
        "notificationCc": NULLABLE_TEXT,
        "notificationBcc": NULLABLE_TEXT,
        "testMode": {"type": "boolean"},
        "testModeRecipients": NULLABLE_TEXT,
    },
}
SCHEDULE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "timeZone"],
    "properties": {
        "name": {"type": "string"},
        "frequency": NULLABLE_TEXT,
        "execution": NULLABLE_TEXT,
        "priority": INT,
        "timeZone": {"type": "string"},
        "day": INT,
        "month": INT,
        "atHour": NULLABLE_INT,
        "atMinut": NULLABLE_INT,
        "everyHours": INT,
        "fromHour": NULLABLE_INT,
        "fromMinut": NULLABLE_INT,
        "toHour": NULLABLE_INT,
        "toMinut": NULLABLE_INT,
        "weeklyDays": NULLABLE_TEXT,
        "startDate": DATE_TIME,
        "endDate": DATE_TIME,
    },
}
SCHEDULE_IDS: dict[str, Any] = {"type": "array", "items": {"type": "string", "format": "uuid"}}
UUID = {"type": "string", "format": "uuid"}
NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}
CREATE_TASK: dict[str, Any] = {
    "type": "object",
    "required": ["name", "projectID"],
    "properties": {"name": {"type": "string"}, "description": NULLABLE_TEXT, "projectID": UUID},
}
TASK_EMAIL: dict[str, Any] = {
    "type": "object",
    "required": ["from", "subject", "isActive"],
    "properties": {
        "from": {"type": "string"},
        "ccBcc": {"type": "boolean"},
        "cc": NULLABLE_TEXT,
        "bcc": NULLABLE_TEXT,
        "ccQlikVariable": NULLABLE_UUID,
        "bccQlikVariable": NULLABLE_UUID,
        "subject": {"type": "string"},
        "message": NULLABLE_TEXT,
        "isActive": {"type": "boolean"},
        "oneToAll": {"type": "boolean"},
    },
}
RECIPIENTS: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "type"],
        "properties": {"id": UUID, "type": {"type": "string"}},
    },
}
NULLABLE_LIST = {"type": ["array", "null"]}
TASK_REPORT: dict[str, Any] = {
    "type": "object",
    "required": ["reportID", "format", "emailEmbedment", "emailAttachment"],
    "properties": {
        "reportID": UUID,
        "format": {"type": "string"},
        "emailEmbedment": {"type": "boolean"},
        "emailAttachment": {"type": "boolean"},
        "fileOpenPassword": NULLABLE_TEXT,
        "fileWritePassword": NULLABLE_TEXT,
        "isOpenFilePasswordProtected": {"type": "boolean"},
        "isWriteFilePasswordProtected": {"type": "boolean"},
        "iterationOptions": {"type": "object"},
        "filters": NULLABLE_LIST,
        "conditions": NULLABLE_LIST,
        "storageServices": NULLABLE_LIST,
        "hub": {"type": "object"},
        "fileStorage": {"type": "object"},
        "separatorOptions": {"type": "object"},
    },
}
EXTERNAL_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "execution", "priority", "qlikEvent"],
    "properties": {
        "name": {"type": "string"},
        "execution": {"type": "string"},
        "priority": INT,
        "description": NULLABLE_TEXT,
        "appID": NULLABLE_TEXT,
        "qlikEvent": {"type": "string"},
        "startDate": DATE_TIME,
        "endDate": DATE_TIME,
        "timeZone": NULLABLE_TEXT,
    },
}
# FieldSelectionDto's fields are not listed in the reference: {fieldName, values} is inferred.
GENERATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "selections": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["fieldName", "values"],
                "properties": {
                    "fieldName": {"type": "string"},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "appId": NULLABLE_TEXT,
        "bookmarkId": NULLABLE_TEXT,
    },
}
# The Qlik events this sandbox knows (the reference types qlikEvent as a string without listing values).
QLIK_EVENTS = ("app.reload.succeeded", "app.reload.failed", "app.reload.finished")
SCHEDULE_FIELDS = tuple(SCHEDULE["properties"])
UPDATE_FIELDS = tuple(UPDATE_TASK["properties"])
FREQUENCIES = ("Once", "Hourly", "Daily", "Weekly", "Monthly", "Yearly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@cache
def _validator(name: str) -> Draft7Validator:
    schema = {
        "update": UPDATE_TASK,
        "schedule": SCHEDULE,
        "ids": SCHEDULE_IDS,
        "create": CREATE_TASK,
        "email": TASK_EMAIL,
        "recipients": RECIPIENTS,
        "task_report": TASK_REPORT,
        "event": EXTERNAL_EVENT,
        "generate": GENERATE,
    }[name]
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def problems(name: str, body: Any) -> list[str]:
    """Where `body` breaks the reference's request body `name` (update, schedule or ids)."""
    out = []
    for error in sorted(_validator(name).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])[:5]:
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        out.append(f"{where}: {error.message[:160]}")
    return out


def checker(name: str) -> Callable[[Any], list[str]]:
    _validator(name)  # built at start-up, not on the first request

    def check(body: Any) -> list[str]:
        return problems(name, body)

    return check


def frequency_of(value: Any) -> str | None:
    return next((f for f in FREQUENCIES if isinstance(value, str) and f.lower() == value.strip().lower()), None)


def weekdays_of(value: Any) -> list[str] | None:
    """Day names (full or three letters, any case) in week order; None when one is not a day."""
    words = [w.strip().lower() for w in str(value or "").replace(";", ",").split(",") if w.strip()]
    days = [d for d in WEEKDAYS if any(w in (d.lower(), d[:3].lower()) for w in words)]
    return days if len(days) == len(set(words)) else None


def schedule_problem(body: dict[str, Any]) -> str | None:
    """What a tenant refuses beyond the body's types: an unknown zone, frequency or weekday; end before start."""
    zone = zone_of(body["timeZone"])
    if zone is None:
        return f"timeZone {body['timeZone'][:60]!r} is not a time zone"
    if body.get("frequency") is not None and frequency_of(body["frequency"]) is None:
        return f"frequency {str(body['frequency'])[:30]!r} is not one of {', '.join(FREQUENCIES)}"
    if body.get("weeklyDays") and weekdays_of(body["weeklyDays"]) is None:
        return f"weeklyDays {body['weeklyDays'][:60]!r} are not day names"
    start, end = wall_clock(body.get("startDate"), zone), wall_clock(body.get("endDate"), zone)
    if start is not None and end is not None and end <= start:
        return "endDate must be after startDate"
    return None


def _rule(trigger: dict[str, Any], start: datetime | None) -> str | None:
    freq = frequency_of(trigger.get("frequency"))
    at = f"BYHOUR={trigger.get('atHour') or 0};BYMINUTE={trigger.get('atMinut') or 0};BYSECOND=0"
    if freq == "Hourly":
        windowed = trigger.get("fromHour") is not None
        first, minute = (start.hour, start.minute) if start else (0, 0)
        last = (23, 59)
        if windowed:
            first, minute = trigger["fromHour"], trigger.get("fromMinut") or 0
            last = (trigger.get("toHour") or 23, trigger.get("toMinut") or 0)
        hours = [h for h in range(first, 24, max(1, trigger.get("everyHours") or 1)) if (h, minute) <= last]
        return f"RRULE:FREQ=DAILY;BYHOUR={','.join(map(str, hours))};BYMINUTE={minute};BYSECOND=0" if hours else None
    days = ",".join(d[:2].upper() for d in weekdays_of(trigger.get("weeklyDays")) or [])
    return {
        "Daily": f"RRULE:FREQ=DAILY;{at}",
        "Weekly": f"RRULE:FREQ=WEEKLY;BYDAY={days};{at}" if days else None,
        "Monthly": f"RRULE:FREQ=MONTHLY;BYMONTHDAY={trigger.get('day') or 1};{at}",
        "Yearly": f"RRULE:FREQ=YEARLY;BYMONTH={trigger.get('month') or 1};BYMONTHDAY={trigger.get('day') or 1};{at}",
    }.get(freq or "")


def next_run(trigger: dict[str, Any], after: datetime) -> datetime | None:
    """The schedule's next run after `after` (aware), in its zone; None when it does not run again."""
    zone = zone_of(trigger.get("timeZone"))
    if zone is None:
        return None
    start, end = wall_clock(trigger.get("startDate"), zone), wall_clock(trigger.get("endDate"), zone)
    if frequency_of(trigger.get("frequency")) == "Once":
        if start is None or (end is not None and start > end):
            return None
        when = start.replace(tzinfo=zone)
        return when if when > after else None
    rule = _rule(trigger, start)
    return next_occurrence([rule], zone, start, end, after) if rule else None


def api_date(local: datetime, zone_name: str) -> str:
    """Wall-clock time with its zone's offset: the same moment read as an instant or as local time."""
    zone = zone_of(zone_name)
    assert zone is not None
    return local.replace(tzinfo=zone).isoformat(timespec="seconds")
