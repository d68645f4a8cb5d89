"""Qalyptus task schedules: the body of "Add or update a schedule", its checks, and its next runs.

Pure functions shared by the tools (validate before sending) and the sandbox (refuse what the client
should never send, compute nextExecutionDate). The field names are Qalyptus's, misspellings included
(`atMinut`, `fromMinut`, `toMinut`). Frequency and weekday spellings are not documented: the title-case
English names below are what this server sends; what it reads is compared case-insensitively.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule import LOCAL_FORMAT, Schedule, read_schedule, time_zone, unreadable

FREQUENCIES = ("Once", "Hourly", "Daily", "Weekly", "Monthly", "Yearly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIELDS = (
    "name",
    "frequency",
    "execution",
    "priority",
    "timeZone",
    "day",
    "month",
    "atHour",
    "atMinut",
    "everyHours",
    "fromHour",
    "fromMinut",
    "toHour",
    "toMinut",
    "weeklyDays",
    "startDate",
    "endDate",
)
# Which fields each frequency uses; the rest are sent empty (null, or 0 where the API's integer is not nullable).
USES: dict[str, frozenset[str]] = {
    "Once": frozenset(),
    "Hourly": frozenset({"everyHours", "fromHour", "fromMinut", "toHour", "toMinut"}),
    "Daily": frozenset({"atHour", "atMinut"}),
    "Weekly": frozenset({"atHour", "atMinut", "weeklyDays"}),
    "Monthly": frozenset({"atHour", "atMinut", "day"}),
    "Yearly": frozenset({"atHour", "atMinut", "day", "month"}),
}
TIMING = ("day", "month", "atHour", "atMinut", "everyHours", "fromHour", "fromMinut", "toHour", "toMinut", "weeklyDays")
NOT_NULLABLE = frozenset({"day", "month", "everyHours"})
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_BYDAY = {d: d[:2].upper() for d in WEEKDAYS}


def frequency_of(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return next((f for f in FREQUENCIES if f.lower() == value.strip().lower()), None)


def hhmm(value: str, field: str) -> tuple[int, int]:
    match = _HHMM.match(value.strip())
    if not match:
        raise InvalidInput(f"{field} {value[:20]!r} must be a time of day as HH:MM (00:00-23:59), e.g. 06:30")
    return int(match.group(1)), int(match.group(2))


def weekdays(values: list[str] | str) -> list[str]:
    """Day names (full or 3 letters, any case), in week order, without repeats."""
    items = re.split(r"[,;\s]+", values) if isinstance(values, str) else values
    found: set[str] = set()
    for item in (i.strip() for i in items if i and i.strip()):
        day = next((d for d in WEEKDAYS if item.lower() in (d.lower(), d[:3].lower())), None)
        if day is None:
            raise InvalidInput(f"weekday {item[:20]!r} is not a day name: use Monday..Sunday or Mon..Sun")
        found.add(day)
    return [d for d in WEEKDAYS if d in found]


def parse_date(value: Any, zone: ZoneInfo, field: str) -> datetime:
    """A local wall-clock time in `zone` from an ISO date-time (with or without offset)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field} {value[:40]!r} must be a date-time like 2026-03-01T06:00:00") from None
    return parsed.astimezone(zone).replace(tzinfo=None) if parsed.tzinfo else parsed


def api_date(local: datetime, zone: ZoneInfo) -> str:
    """Local wall-clock time with the zone's offset: the same moment whether read as an instant or local."""
    return local.replace(tzinfo=zone).isoformat(timespec="seconds")


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def problems(body: Any) -> list[str]:
    """Everything wrong with a schedule body, each saying what to fix (empty when it is good)."""
    if not isinstance(body, dict):
        return ["the schedule must be a JSON object"]
    out: list[str] = []
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        out.append(f"unknown fields {unknown}")
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        out.append("name is required")
    zone: ZoneInfo | None = None
    try:
        zone = time_zone(body.get("timeZone") or "")
    except InvalidInput as exc:
        out.append(str(exc))
    freq = frequency_of(body.get("frequency"))
    if freq is None:
        return [*out, f"frequency must be one of {', '.join(FREQUENCIES)}"]
    for key in TIMING:
        value = body.get(key)
        if key not in USES[freq] and value not in (None, 0, ""):
            out.append(f"{key} does not apply to a {freq} schedule")
    ranges = {"atHour": 23, "fromHour": 23, "toHour": 23, "atMinut": 59, "fromMinut": 59, "toMinut": 59}
    for key, top in ranges.items():
        value = body.get(key)
        if key in USES[freq] and value is not None and (_int(body, key) is None or not 0 <= value <= top):
            out.append(f"{key} must be 0-{top}")
    if freq in ("Daily", "Weekly", "Monthly", "Yearly") and (body.get("atHour") is None or body.get("atMinut") is None):
        out.append(f"a {freq} schedule needs the time of day (atHour and atMinut)")
    if freq == "Hourly":
        every = _int(body, "everyHours")
        if every is None or not 1 <= every <= 23:
            out.append("an Hourly schedule needs everyHours 1-23")
        window = [body.get(k) for k in ("fromHour", "fromMinut", "toHour", "toMinut")]
        if any(v is not None for v in window):
            if any(v is None for v in window):
                out.append("an Hourly window needs fromHour, fromMinut, toHour and toMinut together")
            elif all(isinstance(v, int) for v in window) and (window[0], window[1]) >= (window[2], window[3]):
                out.append("the Hourly window must end after it starts (from before to, same day)")
    if freq == "Weekly":
        try:
            if not weekdays(body.get("weeklyDays") or ""):
                out.append("a Weekly schedule needs weeklyDays (e.g. Monday,Thursday)")
        except InvalidInput as exc:
            out.append(str(exc))
    if freq in ("Monthly", "Yearly"):
        day, month = _int(body, "day"), _int(body, "month")
        if day is None or not 1 <= day <= 31:
            out.append(f"a {freq} schedule needs day 1-31")
        if freq == "Yearly":
            if month is None or not 1 <= month <= 12:
                out.append("a Yearly schedule needs month 1-12")
            elif day is not None and 1 <= day <= 31 and day > calendar.monthrange(2024, month)[1]:
                out.append(f"day {day} does not exist in {calendar.month_name[month]}")
    if zone is not None:
        start = end = None
        for key in ("startDate", "endDate"):
            if body.get(key) is not None:
                try:
                    parsed = parse_date(body[key], zone, key)
                except InvalidInput as exc:
                    out.append(str(exc))
                    continue
                start, end = (parsed, end) if key == "startDate" else (start, parsed)
        if freq == "Once" and body.get("startDate") is None:
            out.append("a Once schedule needs startDate (when it runs)")
        if start is not None and end is not None and end <= start:
            out.append("endDate must be after startDate")
    return out


def check(body: dict[str, Any]) -> dict[str, Any]:
    found = problems(body)
    if found:
        raise InvalidInput("schedule: " + "; ".join(found))
    return body


def rrule_of(body: dict[str, Any], start: datetime | None) -> list[str]:
    """The schedule as RRULE lines (empty for Once), for computing its next runs."""
    freq = frequency_of(body.get("frequency"))
    at = f"BYHOUR={body.get('atHour')};BYMINUTE={body.get('atMinut')};BYSECOND=0"
    if freq == "Daily":
        return [f"RRULE:FREQ=DAILY;{at}"]
    if freq == "Weekly":
        days = ",".join(_BYDAY[d] for d in weekdays(body.get("weeklyDays") or ""))
        return [f"RRULE:FREQ=WEEKLY;BYDAY={days};{at}"]
    if freq == "Monthly":
        return [f"RRULE:FREQ=MONTHLY;BYMONTHDAY={body.get('day')};{at}"]
    if freq == "Yearly":
        return [f"RRULE:FREQ=YEARLY;BYMONTH={body.get('month')};BYMONTHDAY={body.get('day')};{at}"]
    if freq == "Hourly":
        every = int(body.get("everyHours") or 1)
        if body.get("fromHour") is not None:
            first, minute = int(body["fromHour"]), int(body.get("fromMinut") or 0)
            last = (int(body["toHour"]), int(body.get("toMinut") or 0))
        else:
            first, minute = (start.hour, start.minute) if start else (0, 0)
            last = (23, 59)
        hours = [h for h in range(first, 24, every) if (h, minute) <= last]
        return [f"RRULE:FREQ=DAILY;BYHOUR={','.join(map(str, hours))};BYMINUTE={minute};BYSECOND=0"]
    return []


def next_runs(body: dict[str, Any], after: datetime, count: int = 1) -> list[datetime]:
    """The next runs after `after` (aware), in the schedule's zone, as schedule_of() reads it; empty when it never
    runs again (or is a Qlik event); InvalidInput saying why when it cannot be read."""
    schedule = schedule_of(body)
    if schedule is None:
        return []
    if not schedule.readable:
        raise InvalidInput(schedule.problem or "the schedule cannot be read")
    return schedule.next_runs(after, count)


def schedule_of(body: dict[str, Any]) -> Schedule | None:
    """The schedule read whole by the one schedule reader (client.schedule.read_schedule): its RRULE (rrule_of),
    zone, start and end; None for a trigger with no frequency (a Qlik event). One that cannot be read says why."""
    freq = frequency_of(body.get("frequency"))
    if freq is None:
        return None
    zone = body.get("timeZone") or "UTC"
    try:
        tz = time_zone(zone)
        start = parse_date(body["startDate"], tz, "startDate") if body.get("startDate") else None
        end = parse_date(body["endDate"], tz, "endDate") if body.get("endDate") else None
        if freq == "Once" and start is None:
            raise InvalidInput("a Once schedule without startDate never runs")
        # A Once schedule is its one run, at its start.
        lines = [f"RDATE:{start:%Y%m%dT%H%M%S}"] if freq == "Once" and start else rrule_of(body, start)
    except InvalidInput as exc:
        return unreadable(describe(body), zone, str(exc))
    return read_schedule(
        recurrence=lines,
        zone=zone,
        start=start.strftime(LOCAL_FORMAT) if start else None,
        end=end.strftime(LOCAL_FORMAT) if end else None,
    )


def describe(body: dict[str, Any]) -> str:
    """One line a person reads: "Weekly on Monday,Thursday at 06:30 (Europe/Zurich)"."""
    freq = frequency_of(body.get("frequency")) or str(body.get("frequency") or "?")
    at = f"{body.get('atHour') or 0:02d}:{body.get('atMinut') or 0:02d}" if body.get("atHour") is not None else ""
    zone = f" ({body.get('timeZone')})" if body.get("timeZone") else ""
    if freq == "Once":
        return f"Once at {body.get('startDate')}{zone}"
    if freq == "Hourly":
        text = f"Every {body.get('everyHours') or '?'} h"
        if body.get("fromHour") is not None:
            text += (
                f" from {body.get('fromHour'):02d}:{body.get('fromMinut') or 0:02d}"
                f" to {body.get('toHour') or 0:02d}:{body.get('toMinut') or 0:02d}"
            )
        return text + zone
    if freq == "Weekly":
        return f"Weekly on {body.get('weeklyDays')} at {at}{zone}"
    if freq == "Monthly":
        return f"Monthly on day {body.get('day')} at {at}{zone}"
    if freq == "Yearly":
        month = body.get("month")
        name = calendar.month_name[month] if isinstance(month, int) and 1 <= month <= 12 else str(month)
        return f"Yearly on {name} {body.get('day')} at {at}{zone}"
    return f"{freq} at {at}{zone}" if at else f"{freq}{zone}"


def empty_timing(body: dict[str, Any], freq: str) -> dict[str, Any]:
    """Clear the timing fields `freq` does not use (a frequency change leaves old ones behind)."""
    out = dict(body)
    for key in TIMING:
        if key not in USES[freq]:
            out[key] = 0 if key in NOT_NULLABLE else None
    return out
