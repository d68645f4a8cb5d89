"""Time in the sandbox: IANA zones, wall-clock date-times and RFC 5545 recurrence, read as Qlik documents them.

The sandbox's own reading, written from the specs' field descriptions (reload-tasks `recurrence`: "RECUR lines
... as specified in RFC5545. DTSTART and DTEND lines are not allowed"; `timeZone`: an IANA name; start/end:
local when a zone is given, else RFC 3339 with an offset), not from the client's checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from dateutil import rrule


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
    """The first run after `after` (aware), as an aware time in `zone`; wall times that do not exist are skipped."""
    dtstart = start or after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    rules = rrule.rrulestr("\n".join(line.strip() for line in lines), dtstart=dtstart, forceset=True)
    cursor = after.astimezone(zone).replace(tzinfo=None)
    for _ in range(16):
        found = rules.after(cursor, inc=False)
        if found is None or (end is not None and found > end):
            return None
        cursor = found
        aware = found.replace(tzinfo=zone)
        # A wall time in a spring-forward gap does not exist: it does not run, like most schedulers.
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == found:
            return aware
    return None


def utc_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
