"""One-line human descriptions of recurrence rules, for people reading a schedule."""

from __future__ import annotations

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
    """The NAME=VALUE parts of one already-validated RRULE line, upper-cased as RFC 5545 compares them."""
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
    if parts.get("COUNT"):
        words.append(f"{parts['COUNT']} times")
    if parts.get("UNTIL"):
        until = parts["UNTIL"]
        words.append(f"until {until[:4]}-{until[4:6]}-{until[6:8]}")
    return " ".join(words)


def describe_schedule(lines: list[str], zone: str | None, start: str | None = None, end: str | None = None) -> str:
    text = "; and ".join(describe_rrule(line, start) for line in lines) or "no recurrence"
    if zone:
        text += f" {zone}"
    if end:
        text += f", until {end[:10]}"
    return text
