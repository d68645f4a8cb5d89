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
