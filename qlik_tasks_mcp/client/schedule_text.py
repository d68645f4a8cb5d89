"""One-line human descriptions of recurrence rules, for people reading a schedule."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qlik_tasks_mcp.client.schedule import Cron, Recurrence

DAYS = {"MO": "Mon", "TU": "Tue", "WE": "Wed", "TH": "Thu", "FR": "Fri", "SA": "Sat", "SU": "Sun"}
UNITS = {
    "YEARLY": "year",
    "MONTHLY": "month",
    "WEEKLY": "week",
    "DAILY": "day",
    "HOURLY": "hour",
    "MINUTELY": "minute",
    "SECONDLY": "second",
}


def rrule_parts(line: str) -> dict[str, str]:
    """The NAME=VALUE parts of one already-validated RRULE line (with or without its `RRULE:` prefix), upper-cased
    as RFC 5545 compares them."""
    body = line.split(":", 1)[1] if ":" in line else line
    return {k.upper(): v.upper() for k, _, v in (p.partition("=") for p in body.split(";") if p)}


def _times(parts: dict[str, str], start: str | None) -> str | None:
    hours = [int(h) for h in parts.get("BYHOUR", "").split(",") if h]
    # Without BYMINUTE the minute comes from the start, as the expansion (RFC 5545) takes it.
    start_minute = [int(start[14:16])] if start and len(start) >= 16 and start[14:16].isdigit() else [0]
    minutes = [int(m) for m in parts.get("BYMINUTE", "").split(",") if m] or start_minute
    if not hours and start and len(start) >= 16 and parts.get("FREQ") in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
        # Without BYHOUR the time of day comes from the start.
        return f"at {start[11:16]}"
    if not hours:
        if parts.get("FREQ") == "HOURLY" and parts.get("BYMINUTE"):
            return "at minute " + ", ".join(f"{m:02d}" for m in minutes)
        return None
    return "at " + ", ".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes)


def describe_rrule(line: str, start: str | None = None) -> str:
    parts = rrule_parts(line)
    freq = parts.get("FREQ", "")
    interval = int(parts.get("INTERVAL", "1") or 1)
    unit = UNITS.get(freq, freq.lower())
    days = [d[-2:] for d in parts.get("BYDAY", "").split(",") if d]
    words: list[str] = []
    if freq == "WEEKLY" and interval == 1 and sorted(days) == sorted(["MO", "TU", "WE", "TH", "FR"]):
        words.append("every weekday")
    elif freq in ("DAILY", "WEEKLY") and interval == 1 and len(days) == 7:
        words.append("every day")
    else:
        words.append(f"every {interval} {unit}s" if interval > 1 else f"every {unit}")
        if days:
            words.append("on " + ", ".join(DAYS.get(d, d) for d in days))
    if parts.get("BYMONTHDAY"):
        words.append("on day " + parts["BYMONTHDAY"].replace(",", ", ") + " of the month")
    if parts.get("BYMONTH"):
        words.append("in month " + parts["BYMONTH"].replace(",", ", "))
    times = _times(parts, start)
    if times:
        words.append(times)
    if parts.get("UNTIL"):
        until = parts["UNTIL"]
        words.append(f"until {until[:4]}-{until[4:6]}-{until[6:8]}")
    return " ".join(words) + (f", {parts['COUNT']} times" if parts.get("COUNT") else "")


def _moments(values: tuple[datetime, ...]) -> str:
    shown = ", ".join(f"{v:%Y-%m-%d %H:%M}" for v in values[:3])
    return shown + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def describe_recurrence(
    lines: list[str], parts: Recurrence, start: datetime | None, end: datetime | None, zone: str
) -> str:
    """A whole recurrence in words: its rules (from DTSTART, else the start), the dates it adds and skips."""
    first = parts.dtstart or start
    first_text = first.strftime("%Y-%m-%dT%H:%M:%S") if first else None
    words = "; and ".join(describe_rrule(line, first_text) for line in parts.rules)
    if parts.exrules:
        words += "; except " + "; ".join(describe_rrule(line, first_text) for line in parts.exrules)
    if parts.rdates:
        words += ("; " if words else "on ") + ("also " if words else "") + _moments(parts.rdates)
    skipped = tuple(sorted(parts.exdates)) + tuple(datetime.combine(d, datetime.min.time()) for d in parts.exdays)
    if skipped:
        words += f", except {_moments(skipped)}"
    if parts.dtstart is not None and parts.rules:
        words += f", from {parts.dtstart:%Y-%m-%d}"
    words += f" {zone}"
    return words + (f", until {end:%Y-%m-%d}" if end else "")


_CRON_DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def describe_cron(parsed: Cron) -> str:
    """A cron in words: how often in the day, on which days."""
    every_hour = len(parsed.hours) == 24
    if parsed.minute_step and every_hour and 60 % parsed.minute_step == 0 and parsed.minutes[0] == 0:
        when = f"every {parsed.minute_step} minutes" if parsed.minute_step > 1 else "every minute"
    elif every_hour and len(parsed.minutes) == 1:
        when = f"every hour at minute {parsed.minutes[0]:02d}"
    elif len(parsed.hours) * len(parsed.minutes) <= 8:
        when = "at " + ", ".join(f"{h:02d}:{m:02d}" for h in parsed.hours for m in parsed.minutes)
    else:
        when = f"at minute {_span(parsed.minutes)} of hours {_span(parsed.hours)}"
    days: list[str] = []
    weekdays = parsed.weekdays
    if weekdays is not None and sorted(weekdays) == [1, 2, 3, 4, 5]:
        days.append("on weekdays")
    elif weekdays is not None:
        days.append("on " + ", ".join(_CRON_DAY_NAMES[d] for d in weekdays))
    if parsed.days is not None:
        days.append(("or " if days else "") + f"on day {_span(parsed.days)} of the month")
    if parsed.months is not None:
        days.append("in " + ", ".join(_MONTHS[m - 1] for m in parsed.months))
    return " ".join([when, *days]) if days else f"every day {when}" if not when.startswith("every") else when


def _span(values: tuple[int, ...]) -> str:
    if len(values) > 2 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(str(v) for v in values)
