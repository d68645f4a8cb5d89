"""Recurrence rules (RFC 5545 RRULE lines) and time zones: validation and expansion, with dateutil.

Pure functions, shared by the tools (validate before sending) and the sandbox (compute next runs).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache, partial
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import anyio
from dateutil import rrule

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule_text import UNITS, rrule_parts

_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")
_MAX_LINES = 20
HORIZON_YEARS = 40
# Seconds of CPU time expanding rules may take per tool call, counted on the threads that expand: a busy machine
# slows the expansion down but never refuses a rule for the time other processes held the cores.
EXPANSION_SECONDS = 2.0
# The Gregorian calendar, weekdays and leap years included, repeats every 400 years (146097 days, 20871 weeks).
_CALENDAR_CYCLE = 400
_TOO_FREQUENT = ("SECONDLY", "MINUTELY")


class ExpansionBudget:
    """EXPANSION_SECONDS of expansion work, shared by every expansion of one tool call (each task of a listing).

    Work is the CPU time of the thread that expands (`cpu_clock`), measured only while an expansion runs
    (`measured()`), so neither the awaits between expansions nor the time the thread waits for a core count."""

    def __init__(self, seconds: float = EXPANSION_SECONDS, cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.seconds = seconds
        self.spent = 0.0
        self._cpu_clock = cpu_clock
        self._since: float | None = None
        self._thread: int | None = None

    @contextmanager
    def measured(self) -> Iterator[None]:
        """One expansion on this thread; `check()` is called within it."""
        self._since, self._thread = self._cpu_clock(), threading.get_ident()
        try:
            yield
        finally:
            self._charge()
            self._since = self._thread = None

    def check(self) -> None:
        """Charge the work since the last check; InvalidInput once the budget is spent."""
        self._charge()
        if self.spent > self.seconds:
            raise InvalidInput(
                f"working out this schedule's runs took more than {self.seconds:g} s of work; simplify it "
                "(fewer lines, fewer BY values, a start closer to now)"
            )

    def _charge(self) -> None:
        if self._since is None or self._thread != threading.get_ident():
            return  # not within measured() on this thread: nothing of this expansion ran here
        now = self._cpu_clock()
        self.spent += now - self._since
        self._since = now


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


def _too_frequent(line: str) -> str | None:
    """Why a rule runs more often than a Qlik schedule may (no documented minimum: sub-minute and minutely)."""
    parts = rrule_parts(line)
    freq = parts.get("FREQ", "")
    if freq in _TOO_FREQUENT:
        return (
            f"FREQ={freq} runs the task every {UNITS[freq]}, more often than Qlik schedules allow; "
            "use FREQ=HOURLY or slower (BYMINUTE picks the minute)"
        )
    if len([s for s in parts.get("BYSECOND", "").split(",") if s]) > 1:
        return "BYSECOND lists several seconds, which runs the task seconds apart; give one (BYSECOND=0)"
    return None


def rrule_lines(lines: Sequence[str]) -> list[str]:
    """Check RECUR lines as Qlik takes them: `RRULE:...` each, no DTSTART/DTEND, parsable by dateutil,
    no more often than hourly-with-minutes, and each with a run in the next HORIZON_YEARS."""
    if len(lines) > _MAX_LINES:
        raise InvalidInput(f"recurrence has {len(lines)} lines; at most {_MAX_LINES} are accepted")
    budget = ExpansionBudget()
    with budget.measured():
        return _checked_lines(lines, budget)


def _checked_lines(lines: Sequence[str], budget: ExpansionBudget) -> list[str]:
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
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
        too_often = _too_frequent(line)
        if too_often:
            raise InvalidInput(f"recurrence[{index}] {line[:80]!r}: {too_often}")
        budget.check()
        if not _runs_within_horizon(line, now, budget):
            raise InvalidInput(f"recurrence[{index}] {line[:80]!r}: {_never_runs(line, now)}")
        clean.append(line)
    return clean


def _never_runs(line: str, now: datetime) -> str:
    until = _until(_parse(line, now))
    if until is not None and until < _years_later(now, HORIZON_YEARS):
        return f"this rule has no occurrence before its UNTIL ({until:%Y-%m-%d})"
    return (
        f"this rule has no occurrence in the next {HORIZON_YEARS} years; check that its BY parts can meet "
        "(e.g. BYMONTH=2;BYMONTHDAY=30 never happens)"
    )


def _runs_within_horizon(line: str, now: datetime, budget: ExpansionBudget) -> bool:
    shift = _window_shift(now)
    rules = [_shifted(_parse(line, now), now, shift)]
    limit = _years_later(now, HORIZON_YEARS + shift)
    return any(run <= limit for run in _runs(rules, _years_later(now, shift), budget))


def _parse(line: str, dtstart: datetime) -> rrule.rrule:
    parsed = rrule.rrulestr(line, dtstart=dtstart)
    assert isinstance(parsed, rrule.rrule)
    return parsed


def _until(rule: rrule.rrule) -> datetime | None:
    until = getattr(rule, "_until", None)  # dateutil keeps the parsed UNTIL only there
    return until if isinstance(until, datetime) else None


def _has_count(rule: rrule.rrule) -> bool:
    return getattr(rule, "_count", None) is not None  # dateutil keeps the parsed COUNT only there


def _years_later(value: datetime, years: int) -> datetime:
    # Shifts are whole 400-year cycles, so 29 February stays a real date.
    return value.replace(year=value.year + years)


def _window_shift(base: datetime) -> int:
    """Whole calendar cycles that move `base` to within HORIZON_YEARS + 400 years of datetime's last year.

    dateutil looks for a rule's next run until year 9999 and never gives up before: a rule that cannot
    happen (30 February) costs thousands of years of work. Expanding the same rule moved by whole calendar
    cycles gives the same runs, moved; near year 9999 the search ends on its own after a few centuries.
    """
    room = datetime.max.year - HORIZON_YEARS - base.year
    return max(0, room // _CALENDAR_CYCLE * _CALENDAR_CYCLE)


def _shifted(rule: rrule.rrule, dtstart: datetime, shift: int) -> rrule.rrule:
    until = _until(rule)
    if until is not None and until.year + shift > datetime.max.year:
        until = None  # past the last year: the search ends there anyway
    return rule.replace(
        dtstart=_years_later(dtstart, shift), until=_years_later(until, shift) if until is not None else None
    )


def _runs(rules: list[rrule.rrule], after: datetime, budget: ExpansionBudget) -> Iterator[datetime]:
    """The runs of `rules` after `after`, in order, in one pass; InvalidInput once the budget is spent."""
    merged = rrule.rruleset()
    for rule in rules:
        merged.rrule(rule)
    for index, run in enumerate(merged):
        if index % 64 == 0:
            budget.check()
        if run > after:
            yield run


def occurrences(
    lines: Iterable[str],
    zone: ZoneInfo,
    start: datetime | None,
    *,
    after: datetime,
    count: int,
    end: datetime | None = None,
    strict: bool = False,
    budget: ExpansionBudget | None = None,
) -> list[datetime]:
    """The next `count` runs after `after` (aware, any zone), as aware datetimes in `zone`.

    Expansion happens in local wall-clock time and is then placed in the zone, so "06:00 every day"
    stays 06:00 across DST changes, as Qlik and RFC 5545 intend. The work is bounded: runs are looked
    for at least HORIZON_YEARS ahead and for at most the `budget`'s work (then InvalidInput). With
    `strict`, a rule that could still run but has no run in the horizon is InvalidInput too, rather
    than an empty list (which otherwise means the schedule has ended). One `budget` may be shared by many
    calls, e.g. every task of a listing; without one, this call has EXPANSION_SECONDS of work.
    """
    dtstart = start or after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    after_local = after.astimezone(zone).replace(tzinfo=None)
    shift = _window_shift(max(after_local, dtstart))
    # A line given twice costs twice and adds no run.
    rules = [_shifted(_parse(line, dtstart), dtstart, shift) for line in dict.fromkeys(lines)]
    budget = budget if budget is not None else ExpansionBudget()
    with budget.measured():
        return _occurrences(rules, zone, after_local, shift, count=count, end=end, strict=strict, budget=budget)


def _occurrences(
    rules: list[rrule.rrule],
    zone: ZoneInfo,
    after_local: datetime,
    shift: int,
    *,
    count: int,
    end: datetime | None,
    strict: bool,
    budget: ExpansionBudget,
) -> list[datetime]:
    found: list[datetime] = []
    for shifted in _runs(rules, _years_later(after_local, shift), budget):
        run = _years_later(shifted, -shift)
        if end is not None and run > end:
            break
        aware = run.replace(tzinfo=zone)
        # A wall time that does not exist (spring-forward gap) is skipped, like most schedulers do.
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != run:
            continue
        found.append(aware)
        if len(found) >= count:
            break
    if strict and not found and _could_run_later(rules, end, _years_later(after_local, HORIZON_YEARS)):
        raise InvalidInput(
            f"this schedule has no occurrence in the next {HORIZON_YEARS} years; check that its rules' BY parts "
            "can meet (e.g. BYMONTH=2;BYMONTHDAY=30 never happens)"
        )
    return found


def _could_run_later(rules: list[rrule.rrule], end: datetime | None, horizon: datetime) -> bool:
    if end is not None and end <= horizon:
        return False
    # Rules here are shifted, so is their UNTIL; a COUNT may have run out, which is an end, not an error.
    return any(not _has_count(r) and _until(r) is None for r in rules)


async def occurrences_off_loop(
    lines: Iterable[str],
    zone: ZoneInfo,
    start: datetime | None,
    *,
    after: datetime,
    count: int,
    end: datetime | None = None,
    strict: bool = False,
    budget: ExpansionBudget | None = None,
) -> list[datetime]:
    """occurrences() in a worker thread: work within the budget that never stalls other sessions."""
    lines = list(lines)
    work = partial(occurrences, lines, zone, start, after=after, count=count, end=end, strict=strict, budget=budget)
    return await anyio.to_thread.run_sync(work)


def utc_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
