"""Recurrence rules (RFC 5545 RRULE lines) and time zones: validation and expansion, with dateutil.

Pure functions, shared by the tools (validate before sending) and the sandbox (compute next runs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil import rrule

from qlik_tasks_mcp.client.errors import InvalidInput

_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")
_MAX_LINES = 20


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def time_zone(name: str) -> ZoneInfo:
    """An IANA zone, or InvalidInput that says what to send instead."""
    if not name or name not in _zones():
        raise InvalidInput(
            f"time zone {name!r} is not an IANA time zone name: use a name such as Europe/Zurich, "
            "America/New_York or UTC"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - listed zones load
        raise InvalidInput(f"time zone {name!r} could not be loaded") from exc


def local_datetime(value: str, field: str) -> datetime:
    """A wall-clock time with no offset (the form Qlik wants when a time zone is given)."""
    if not _LOCAL.match(value):
        raise InvalidInput(
            f"{field} {value!r} must be a local date-time without offset, like 2026-01-31T06:00:00 "
            "(the time zone field says which zone it is in)"
        )
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{field} {value!r} is not a real date-time: {exc}") from exc


LOCAL_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _parsed(value: str | None) -> datetime | None:
    try:
        return local_datetime(value, "") if value else None
    except InvalidInput:
        return None


def start_after_change(given: str | None, stored: str | None, now_in: ZoneInfo | None) -> str | None:
    """A schedule's start: the given one, else the stored one (a change keeps it), else, with `now_in`, now.

    Now is taken to the minute, so a plan computed twice (asked, then acted on) says the same thing.
    """
    if given:
        return local_datetime(given, "start").strftime(LOCAL_FORMAT)
    if stored:
        return stored
    return datetime.now(now_in).replace(tzinfo=None, second=0, microsecond=0).strftime(LOCAL_FORMAT) if now_in else None


def end_after_change(given: str | None, stored: str | None, start: str | None, zone: ZoneInfo) -> str:
    """A schedule's end: the given one ("" for never), else the stored one, else never (""); after the start."""
    text = stored or "" if given is None else given
    if not text:
        return ""
    if given is None and _parsed(text) is None:
        return text  # stored in a form of the tenant's own: kept as it is
    end = local_datetime(text, "end")
    begin = _parsed(start) or datetime.now(zone).replace(tzinfo=None)
    if end <= begin:
        kept = "" if given is not None else ' (the current end: give a later end, or end="" for never)'
        raise InvalidInput(f"end {text}{kept} must be after the start {start or 'now'}")
    return end.strftime(LOCAL_FORMAT)


def rrule_lines(lines: Sequence[str]) -> list[str]:
    """Check RECUR lines as Qlik takes them: `RRULE:...` each, no DTSTART/DTEND, parsable by dateutil."""
    if len(lines) > _MAX_LINES:
        raise InvalidInput(f"recurrence has {len(lines)} lines; at most {_MAX_LINES} are accepted")
    clean: list[str] = []
    for index, raw in enumerate(lines):
        line = raw.strip()
        upper = line.upper()
        if upper.startswith(("DTSTART", "DTEND")):
            raise InvalidInput(
                f"recurrence[{index}]: DTSTART/DTEND lines are not allowed; give the start and end as "
                "start/end fields instead"
            )
        if not upper.startswith("RRULE:"):
            raise InvalidInput(
                f"recurrence[{index}] {line[:60]!r} must start with 'RRULE:', e.g. "
                "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=0;BYSECOND=0"
            )
        try:
            rrule.rrulestr(line, dtstart=datetime(2000, 1, 1), forceset=True)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"recurrence[{index}] {line[:80]!r} is not a valid RRULE: {exc}") from exc
        clean.append(line)
    return clean


def occurrences(
    lines: Iterable[str],
    zone: ZoneInfo,
    start: datetime | None,
    *,
    after: datetime,
    count: int,
    end: datetime | None = None,
) -> list[datetime]:
    """The next `count` runs after `after` (aware, any zone), as aware datetimes in `zone`.

    Expansion happens in local wall-clock time and is then placed in the zone, so "06:00 every day"
    stays 06:00 across DST changes, as Qlik and RFC 5545 intend.
    """
    dtstart = start or after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    rules = rrule.rruleset()
    for line in lines:
        parsed = rrule.rrulestr(line, dtstart=dtstart)
        assert isinstance(parsed, rrule.rrule)
        rules.rrule(parsed)
    after_local = after.astimezone(zone).replace(tzinfo=None)
    found: list[datetime] = []
    cursor = after_local
    guard = 0
    while len(found) < count and guard < count * 4 + 8:
        guard += 1
        nxt = rules.after(cursor, inc=False)
        if nxt is None or (end is not None and nxt > end):
            break
        cursor = nxt
        aware = nxt.replace(tzinfo=zone)
        # A wall time that does not exist (spring-forward gap) is skipped, like most schedulers do.
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != nxt:
            continue
        found.append(aware)
    return found


def utc_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
