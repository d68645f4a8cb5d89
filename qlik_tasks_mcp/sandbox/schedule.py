"""Time in the sandbox: IANA zones, wall-clock date-times and RFC 5545 recurrence, read as Qlik documents them.

The sandbox's own reading, written from the specs' field descriptions (reload-tasks `recurrence`: "RECUR lines
... as specified in RFC5545. DTSTART and DTEND lines are not allowed"; `timeZone`: an IANA name; start/end:
local when a zone is given, else RFC 3339 with an offset), not from the client's checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from dateutil import rrule

# How far ahead a next run is looked for. dateutil alone looks until year 9999 and yields nothing meanwhile, so a
# rule that cannot happen (30 February) would cost seconds to tens of seconds of the sandbox's event loop.
HORIZON_YEARS = 40
# The Gregorian calendar, weekdays and leap years included, repeats every 400 years.
_CALENDAR_CYCLE = 400
# Runs skipped in a row (wall times in a spring-forward gap) before giving up.
_GAP_SKIPS = 16


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_of(name: object) -> ZoneInfo | None:
    """The IANA zone called `name`, or None when there is no such zone."""
    return ZoneInfo(name) if isinstance(name, str) and name in _zones() else None


def wall_clock(value: object, zone: ZoneInfo) -> datetime | None:
    """An ISO 8601 date-time as wall-clock time in `zone` (an offset, when given, is honoured); None if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(zone).replace(tzinfo=None) if parsed.tzinfo else parsed


def recurrence_problem(lines: Iterable[str]) -> str | None:
    """What is wrong with RECUR lines (RFC 5545 RRULE/EXRULE/RDATE/EXDATE; no DTSTART/DTEND), or None."""
    for index, line in enumerate(lines):
        upper = line.strip().upper()
        if upper.startswith(("DTSTART", "DTEND")):
            return f"recurrence[{index}]: DTSTART and DTEND lines are not allowed; use the start and end fields"
        try:
            rrule.rrulestr(line.strip(), dtstart=datetime(2000, 1, 1), forceset=True)
        except (ValueError, TypeError) as exc:
            return f"recurrence[{index}] {line[:80]!r} is not an RFC 5545 recurrence rule: {exc}"
    return None


def next_occurrence(
    lines: Iterable[str], zone: ZoneInfo, start: datetime | None, end: datetime | None, after: datetime
) -> datetime | None:
    """The first run after `after` (aware) and within HORIZON_YEARS, as an aware time in `zone`; wall times that do
    not exist are skipped. The search is bounded: see `_shift`."""
    dtstart = start or after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    cursor = after.astimezone(zone).replace(tzinfo=None)
    horizon = _years_later(cursor, HORIZON_YEARS)
    shift = _shift(max(cursor, dtstart))
    rules = _shifted_set(lines, dtstart, shift)
    for _ in range(_GAP_SKIPS):
        shifted = rules.after(_years_later(cursor, shift), inc=False)
        found = _years_later(shifted, -shift) if shifted is not None else None
        if found is None or found > horizon or (end is not None and found > end):
            return None
        cursor = found
        aware = found.replace(tzinfo=zone)
        # A wall time in a spring-forward gap does not exist: it does not run, like most schedulers.
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == found:
            return aware
    return None


def _shift(base: datetime) -> int:
    """Whole calendar cycles that move `base` to within HORIZON_YEARS + 400 years of datetime's last year.

    Moved by whole cycles a rule has the same runs, moved; and dateutil's search for a run that never comes ends at
    year 9999, so from there it costs a few centuries of work rather than thousands of years.
    """
    room = datetime.max.year - HORIZON_YEARS - base.year
    return max(0, room // _CALENDAR_CYCLE * _CALENDAR_CYCLE)


def _shifted_set(lines: Iterable[str], dtstart: datetime, shift: int) -> rrule.rruleset:
    """The lines as one recurrence set, every date in it `shift` years later (dates past year 9999 dropped)."""
    # A line given twice costs twice and adds no run.
    text = "\n".join(dict.fromkeys(line.strip() for line in lines))
    parsed = rrule.rrulestr(text, dtstart=_years_later(dtstart, shift), forceset=True)
    assert isinstance(parsed, rrule.rruleset)
    moved = rrule.rruleset()
    # dateutil keeps a set's parts only in these attributes; UNTIL, RDATE and EXDATE are absolute, so they move too.
    for rule in parsed._rrule:  # pyright: ignore[reportAttributeAccessIssue]
        moved.rrule(_until_moved(rule, shift))
    for rule in parsed._exrule:  # pyright: ignore[reportAttributeAccessIssue]
        moved.exrule(_until_moved(rule, shift))
    for day in parsed._rdate:  # pyright: ignore[reportAttributeAccessIssue]
        if day.year + shift <= datetime.max.year:
            moved.rdate(_years_later(day, shift))
    for day in parsed._exdate:  # pyright: ignore[reportAttributeAccessIssue]
        if day.year + shift <= datetime.max.year:
            moved.exdate(_years_later(day, shift))
    return moved


def _until_moved(rule: rrule.rrule, shift: int) -> rrule.rrule:
    until = getattr(rule, "_until", None)  # dateutil keeps the parsed UNTIL only there
    if not isinstance(until, datetime) or shift == 0:
        return rule
    # Past the last year the search ends anyway.
    return rule.replace(until=_years_later(until, shift) if until.year + shift <= datetime.max.year else None)


def _years_later(value: datetime, years: int) -> datetime:
    # Shifts are whole 400-year cycles (29 February stays a real date); the horizon may land on a 29 February.
    try:
        return value.replace(year=min(value.year + years, datetime.max.year))
    except ValueError:
        return value.replace(year=min(value.year + years, datetime.max.year), day=28)


def utc_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Task schedules (scheduling-tasks.json `schedule`): a recurrence, an ISO 8601 interval or a cron, in `timezone` ------

_STAMP = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$")
_INTERVAL = re.compile(r"^(?:R(\d*)/)?(?:([^/P][^/]*)/)?(P[0-9YMWDTHS]+)$")
_ENDING = re.compile(r"^R(\d*)/(P[0-9YMWDTHS]+)/([^/P][^/]*)$")
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_CRON_NAMES = {n: i for i, n in enumerate("SUN MON TUE WED THU FRI SAT".split())} | {
    n: i for i, n in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)
}


def _stamp(value: str, tzid: str | None, zone: ZoneInfo) -> datetime | None:
    """An RFC 5545 DATE-TIME (`20260301T020000`, `...Z`, or in TZID) as wall-clock time in `zone`."""
    match = _STAMP.match(value.strip())
    if not match:
        return None
    y, mo, d, h, mi, s, utc = match.groups()
    try:
        moment = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    source = UTC if utc else zone_of(tzid) if tzid else None
    return moment.replace(tzinfo=source).astimezone(zone).replace(tzinfo=None) if source else moment


def recurrence_set(lines: Iterable[str], zone: ZoneInfo, start: datetime | None) -> rrule.rruleset | str:
    """A task's recurrence (RRULE lines with or without the prefix, DTSTART, RDATE, EXDATE, EXRULE) as one set in
    wall-clock time, or what is wrong with it."""
    text = [line.strip() for line in lines if line.strip()]
    dtstart = start or datetime(2000, 1, 1)
    for line in text:
        head, _, value = line.partition(":")
        if head.upper().startswith("DTSTART"):
            tzid = next((p[5:] for p in head.split(";") if p.upper().startswith("TZID=")), None)
            found = _stamp(value, tzid, zone)
            if found is None:
                return f"DTSTART {value[:40]!r} is not an RFC 5545 date-time"
            dtstart = found
    out = rrule.rruleset()
    for line in text:
        head, colon, value = line.partition(":")
        name = head.split(";", 1)[0].upper()
        if not colon and "FREQ=" in line.upper():
            name, value = "RRULE", line
        try:
            if name in ("RRULE", "EXRULE"):
                rule = rrule.rrulestr(value, dtstart=dtstart)
                (out.rrule if name == "RRULE" else out.exrule)(rule)  # pyright: ignore[reportArgumentType]
            elif name in ("RDATE", "EXDATE"):
                tzid = next((p[5:] for p in head.split(";") if p.upper().startswith("TZID=")), None)
                for part in value.split(","):
                    found = _stamp(part, tzid, zone)
                    if found is None:
                        return f"{name} {part[:40]!r} is not an RFC 5545 date-time"
                    (out.rdate if name == "RDATE" else out.exdate)(found)
            elif name != "DTSTART":
                return f"{line[:60]!r} is not an RFC 5545 recurrence line"
        except (ValueError, TypeError) as exc:
            return f"{line[:80]!r} is not an RFC 5545 recurrence rule: {exc}"
    return out


def _interval_rule(text: str, zone: ZoneInfo, created: datetime) -> rrule.rrule | str:
    """An ISO 8601 repeating interval: from its start (local, `Z` or an offset), or, a bare duration, from when the
    task was created."""
    ending = _ENDING.match(text.strip())
    if ending:
        return _ending_rule(ending, zone, created)
    match = _INTERVAL.match(text.strip())
    duration = _DURATION.match(match.group(3)) if match else None
    if not match or not duration or not any(duration.groups()):
        return f"{text[:60]!r} is not an ISO 8601 repeating interval"
    start = wall_clock(match.group(2), zone) if match.group(2) else created.astimezone(zone).replace(tzinfo=None)
    if start is None:
        return f"interval start {match.group(2)[:40]!r} is not an ISO 8601 date-time"
    y, mo, w, d, h, mi, s = (int(v or 0) for v in duration.groups())
    count = int(match.group(1)) if match.group(1) else None
    if (y or mo) and (w or d or h or mi or s):
        return f"{text[:60]!r} mixes months or years with other units"
    if y or mo:
        freq, every = (rrule.YEARLY, y) if y else (rrule.MONTHLY, mo)
    else:
        freq, every = rrule.SECONDLY, ((w * 7 + d) * 24 * 60 + h * 60 + mi) * 60 + s
    return rrule.rrule(freq, interval=every, dtstart=start.replace(microsecond=0), count=count)


def _ending_rule(match: re.Match[str], zone: ZoneInfo, created: datetime) -> rrule.rrule | str:
    """`R[n]/<duration>/<end>`: a run at the start of each interval, the last interval ending at the end; n of them,
    or every one since the task was made. Only durations of a fixed length (no months or years)."""
    duration = _DURATION.match(match.group(2))
    end = wall_clock(match.group(3), zone)
    if not duration or not any(duration.groups()) or end is None:
        return f"{match.group(0)[:60]!r} is not an ISO 8601 repeating interval"
    y, mo, w, d, h, mi, s = (int(v or 0) for v in duration.groups())
    if y or mo:
        return f"{match.group(0)[:60]!r}: months or years counted back from an end have no fixed length"
    step = timedelta(seconds=((w * 7 + d) * 24 * 60 + h * 60 + mi) * 60 + s)
    last = end - step
    if match.group(1):
        first = last - step * (int(match.group(1)) - 1)
    else:
        first = last - step * max(0, (last - created.astimezone(zone).replace(tzinfo=None)) // step)
    return rrule.rrule(rrule.SECONDLY, interval=int(step.total_seconds()), dtstart=first, until=last)


def _cron_number(token: str) -> int:
    return _CRON_NAMES[token.upper()] if token.upper() in _CRON_NAMES else int(token)


def _cron_values(field: str, low: int, high: int) -> list[int] | None:
    if field in ("*", "?"):
        return None
    out: set[int] = set()
    for part in field.split(","):
        body, _, step = part.partition("/")
        if body in ("*", "?"):
            first, last = low, high
        elif "-" in body:
            first, last = (_cron_number(x) for x in body.split("-", 1))
        else:
            first = _cron_number(body)
            last = high if step else first
        out.update(range(first, last + 1, int(step) if step else 1))
    return sorted(v % 7 if high == 7 else v for v in out)


def _cron_rules(expression: str, dtstart: datetime) -> list[rrule.rrule] | str:
    """A five-field cron (minute hour day month weekday; lists, ranges, steps, names) as daily rules; a day of the
    month and a weekday both given match either, as cron reads them."""
    fields = expression.split()
    if len(fields) != 5:
        return f"cron {expression[:60]!r} must have five fields"
    try:
        minute, hour, day, month, weekday = (
            _cron_values(f, lo, hi)
            for f, (lo, hi) in zip(fields, ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7)), strict=True)
        )
    except (ValueError, KeyError):
        return f"cron {expression[:60]!r} is not a cron expression this tenant reads"
    base: dict[str, Any] = {"byhour": hour or list(range(24)), "byminute": minute or list(range(60)), "bysecond": 0}
    if month:
        base["bymonth"] = month
    days: list[dict[str, Any]] = [base | {"bymonthday": day}] if day else []
    # cron counts weekdays from Sunday (0), dateutil from Monday (0).
    days += [base | {"byweekday": [rrule.weekday((d - 1) % 7) for d in weekday]}] if weekday else []
    return [rrule.rrule(rrule.DAILY, dtstart=dtstart, **kw) for kw in days or [base]]  # pyright: ignore[reportArgumentType]


def task_schedule_set(schedule: Any, created: datetime) -> tuple[rrule.rruleset, ZoneInfo, datetime | None] | str:
    """A task's `start.schedule` as one recurrence set in its zone, with its end; or what is wrong with it."""
    if isinstance(schedule, str):
        schedule = {"interval": schedule}
    if not isinstance(schedule, dict):
        return "no schedule"
    zone = zone_of(schedule.get("timezone") or "UTC")
    if zone is None:
        return f"timezone {schedule.get('timezone')!r} is not an IANA time zone"
    start = wall_clock(schedule.get("startDateTime"), zone)
    end = wall_clock(schedule.get("endDateTime"), zone)
    out = rrule.rruleset()
    if isinstance(schedule.get("recurrence"), str):
        found = recurrence_set(schedule["recurrence"].splitlines(), zone, start)
        if isinstance(found, str):
            return found
        out = found
    elif isinstance(schedule.get("interval"), str):
        rule = _interval_rule(schedule["interval"], zone, created)
        if isinstance(rule, str):
            return rule
        out.rrule(rule)
    elif schedule.get("cron") is not None:
        cron = schedule["cron"]
        expression = cron.get("expression") if isinstance(cron, dict) else cron
        rules = _cron_rules(str(expression), (start or created.astimezone(zone).replace(tzinfo=None)).replace(second=0))
        if isinstance(rules, str):
            return rules
        for rule in rules:
            out.rrule(rule)
        if isinstance(cron, dict) and cron.get("validUntil"):
            end = wall_clock(cron["validUntil"], zone)
    else:
        return "the schedule has no recurrence, interval or cron"
    return out, zone, end


def task_runs(
    schedule: Any, created: datetime, *, after: datetime, before: datetime, limit: int = 1000
) -> list[datetime]:
    """The runs of a task's schedule between `after` and `before` (aware), as Qlik documents it: a time schedule's
    first run is its next occurrence after the task is made, never the moment it is made. Empty if unreadable."""
    found = task_schedule_set(schedule, created)
    if isinstance(found, str):
        return []
    rules, zone, end = found
    cursor = max(after, created).astimezone(zone).replace(tzinfo=None)
    last = before.astimezone(zone).replace(tzinfo=None)
    out: list[datetime] = []
    for run in rules.xafter(cursor, count=limit):
        if run > last or (end is not None and run > end):
            break
        aware = run.replace(tzinfo=zone)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == run:
            out.append(aware)
    return out


def task_recurrence_problem(text: str, zone_name: object) -> str | None:
    """What is wrong with a task's `recurrence` (which, unlike a reload task's, may hold DTSTART, RDATE and EXDATE
    lines beside its RRULEs), or None."""
    zone = zone_of(zone_name or "UTC")
    if zone is None:
        return f"timezone {zone_name!r} is not an IANA time zone"
    found = recurrence_set(text.splitlines(), zone, None)
    if isinstance(found, str):
        return found
    return None if found._rrule or found._rdate else "no RRULE or RDATE line"  # pyright: ignore[reportAttributeAccessIssue]


def cron_problem(expression: str) -> str | None:
    found = _cron_rules(expression, datetime(2000, 1, 1))
    return found if isinstance(found, str) else None
