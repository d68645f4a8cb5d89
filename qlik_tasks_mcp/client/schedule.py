"""Schedules and time zones: the one reader of every schedule form Qlik allows (RFC 5545 recurrences, single- or
multi-line; ISO 8601 repeating intervals and bare durations; cron), validation before sending, and expansion into
next runs: minutely, hourly and daily rules (weekly ones every week) by counting whole periods to the moment asked
about, every other rule with dateutil from a recent anchor rather than its first start.

Pure functions for the tools; the sandbox has its own reader (sandbox/schedule.py).
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil import rrule

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule_text import UNITS, describe_cron, describe_recurrence, describe_rrule, rrule_parts

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
    # Today's midnight, as the syntax check's start is one: whether an INTERVAL reaches its BYHOUR depends on the
    # start's hour, and a check that moved with the clock would accept a rule at 02:00 and refuse it at 03:00.
    now = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
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
    until = _until(_started(line, now))
    if until is not None and until < _years_later(now, HORIZON_YEARS):
        return f"this rule has no occurrence before its UNTIL ({until:%Y-%m-%d})"
    return (
        f"this rule has no occurrence in the next {HORIZON_YEARS} years; check that its BY parts can meet "
        "(e.g. BYMONTH=2;BYMONTHDAY=30 never happens)"
    )


def _runs_within_horizon(line: str, now: datetime, budget: ExpansionBudget) -> bool:
    shift = _window_shift(now)
    rules = [_shifted(_started(line, now), now, shift)]
    limit = _years_later(now, HORIZON_YEARS + shift)
    return any(run <= limit for run in _runs(rules, _years_later(now, shift), budget))


@lru_cache(maxsize=4096)
def _parse(line: str, dtstart: datetime) -> rrule.rrule:
    # Rules are never changed in place (replace() makes a new one), so one parse serves every caller.
    parsed = rrule.rrulestr(line, dtstart=dtstart)
    assert isinstance(parsed, rrule.rrule)
    return parsed


def _started(line: str, dtstart: datetime) -> rrule.rrule:
    """The rule read from its own start: only then does dateutil know whether its interval ever reaches its
    BYHOUR/BYMINUTE/BYSECOND (every 2 hours from an even hour never reaches 3)."""
    try:
        return _parse(line, dtstart)
    except ValueError as exc:
        raise InvalidInput(
            f"{line[:80]!r} never runs from its start ({dtstart:%Y-%m-%d %H:%M:%S}): its INTERVAL never reaches its "
            f"BY values ({exc})"
        ) from None


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


def _runs(
    rules: list[rrule.rrule], after: datetime, budget: ExpansionBudget, parts: Recurrence | None = None, shift: int = 0
) -> Iterator[datetime]:
    """The runs of `rules` (and of `parts`' RDATE/EXRULE/EXDATE, moved by `shift` years) after `after`, in order,
    in one pass; InvalidInput once the budget is spent."""
    merged = rrule.rruleset()
    for rule in rules:
        merged.rrule(rule)
    if parts is not None:
        for line in parts.exrules:
            rule = _anchored(_parse(line, parts.anchor), after, shift)
            merged.exrule(_shifted(rule, _dtstart(rule), shift))
        for day in parts.rdates:
            if day.year + shift <= datetime.max.year:
                merged.rdate(_years_later(day, shift))
        for day in parts.exdates:
            if day.year + shift <= datetime.max.year:
                merged.exdate(_years_later(day, shift))
    skip_days = (
        {_years_later(datetime.combine(d, time_of_day()), shift).date() for d in parts.exdays} if parts else set()
    )
    for index, run in enumerate(merged):
        if index % 64 == 0:
            budget.check()
        if run > after and run.date() not in skip_days:
            yield run


# Moving a rule's start forward --------------------------------------------------------------------------------
#
# dateutil walks a rule from its DTSTART, so a rule started long ago costs every run since (an hourly rule from
# January: thousands of steps per next run). A rule started a whole number of its periods later has the same runs
# from that later start on, for the kinds below: their periods stay aligned and the defaults dateutil takes from
# DTSTART (time of day, weekday, day of month) are unchanged by the move. A COUNT counts from the first start, so a
# rule with one is never moved.

_PERIODS = {
    rrule.SECONDLY: timedelta(seconds=1),
    rrule.MINUTELY: timedelta(minutes=1),
    rrule.HOURLY: timedelta(hours=1),
    rrule.DAILY: timedelta(days=1),
    rrule.WEEKLY: timedelta(weeks=1),
}


def _interval(rule: rrule.rrule) -> int:
    return int(getattr(rule, "_interval", 1) or 1)  # dateutil keeps the parsed INTERVAL only there


def _freq(rule: rrule.rrule) -> int:
    return int(getattr(rule, "_freq", rrule.YEARLY))  # dateutil keeps the parsed FREQ only there


def _dtstart(rule: rrule.rrule) -> datetime:
    found = getattr(rule, "_dtstart", None)
    assert isinstance(found, datetime)
    return found


def anchor_for(rule: rrule.rrule, after: datetime) -> datetime:
    """The latest start no later than `after` from which `rule` has the same runs after `after` as from its own
    start: its start moved forward by whole periods (by whole years for monthly and yearly rules)."""
    start = _dtstart(rule)
    if _has_count(rule) or after <= start:
        return start
    freq, every = _freq(rule), _interval(rule)
    if freq == rrule.WEEKLY and getattr(rule, "_bysetpos", None):
        # dateutil's first week runs from the start's day to the week's end: BYSETPOS would pick from part of it.
        return start
    period = _PERIODS.get(freq)
    if period is not None:
        step = period * every
        return start + step * ((after - start) // step)
    if freq not in (rrule.MONTHLY, rrule.YEARLY) or (start.month, start.day) == (2, 29):
        return start
    # Whole years that are also whole intervals: a monthly rule every 5 months repeats its months every 5 years.
    years_step = every if freq == rrule.YEARLY else every // math.gcd(every, 12)
    years = (after.year - start.year - 1) // years_step * years_step
    return start.replace(year=start.year + years) if years > 0 else start


def _anchored(rule: rrule.rrule, after: datetime, shift: int = 0) -> rrule.rrule:
    """`rule` started at anchor_for(rule, after) (`after` is in the rule's own, unshifted years when `shift`)."""
    moved = anchor_for(rule, _years_later(after, -shift) if shift else after)
    return rule if moved == _dtstart(rule) else rule.replace(dtstart=moved)


# Multi-line recurrences -------------------------------------------------------------------------------------------

_DATE_TIME = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2}):?(\d{2}):?(\d{2})?(Z)?)?$")


@dataclass(frozen=True)
class Recurrence:
    """An RFC 5545 recurrence as a task may hold it: RRULE lines (with or without the `RRULE:` prefix), and DTSTART,
    RDATE, EXDATE and EXRULE lines. Times are wall-clock times in `zone`."""

    rules: tuple[str, ...]
    zone: ZoneInfo
    dtstart: datetime | None = None
    exrules: tuple[str, ...] = ()
    rdates: tuple[datetime, ...] = ()
    exdates: tuple[datetime, ...] = ()
    # EXDATE;VALUE=DATE days: no run on those days.
    exdays: tuple[date, ...] = ()
    anchor: datetime = datetime(2000, 1, 1)


def _params(head: str) -> dict[str, str]:
    return {k.upper(): v for k, _, v in (p.partition("=") for p in head.split(";")[1:] if p)}


def _moment(value: str, params: dict[str, str], zone: ZoneInfo, what: str) -> datetime | date:
    """One DATE or DATE-TIME value as wall-clock time in `zone`: UTC (`Z`) and TZID times are converted."""
    match = _DATE_TIME.match(value.strip())
    if not match:
        raise InvalidInput(f"{what} value {value[:40]!r} is not an RFC 5545 date or date-time (e.g. 20260301T060000)")
    year, month, day, hour, minute, second, utc = match.groups()
    try:
        if hour is None:
            return date(int(year), int(month), int(day))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError as exc:
        raise InvalidInput(f"{what} value {value[:40]!r} is not a real date: {exc}") from exc
    if utc:
        return moment.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)
    if "TZID" in params:
        return moment.replace(tzinfo=time_zone(params["TZID"])).astimezone(zone).replace(tzinfo=None)
    return moment


def recurrence_zone(lines: Iterable[str], default: str) -> str:
    """The zone a recurrence is evaluated in: its DTSTART's TZID when it has one (RFC 5545), else `default`."""
    for raw in lines:
        head = raw.strip().split(":", 1)[0]
        if head.upper().startswith("DTSTART") and "TZID" in _params(head):
            return _params(head)["TZID"]
    return default


def parse_recurrence(lines: Iterable[str], zone: ZoneInfo) -> Recurrence:
    """Every line of a recurrence read, or InvalidInput naming the line that cannot be."""
    return _recurrence(tuple(lines), zone)


@lru_cache(maxsize=1024)
def _recurrence(lines: tuple[str, ...], zone: ZoneInfo) -> Recurrence:
    # Read once per recurrence: reading a schedule reads it, and every expansion of it again.
    rules: list[str] = []
    exrules: list[str] = []
    rdates: list[datetime] = []
    exdates: list[datetime] = []
    exdays: list[date] = []
    dtstart: datetime | None = None
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        head, colon, value = line.partition(":")
        name = head.split(";", 1)[0].upper()
        if not colon and "FREQ=" in line.upper():
            name, value = "RRULE", line
        where = f"recurrence line {index + 1}"
        if name in ("RRULE", "EXRULE"):
            text = f"RRULE:{value.strip()}"
            try:
                _parse(text, datetime(2000, 1, 1))
            except (ValueError, TypeError) as exc:
                # Whether an RRULE's INTERVAL reaches its BY values depends on the start: _started() decides that.
                if name != "RRULE" or "empty set" not in str(exc):
                    raise InvalidInput(f"{where} {line[:80]!r} is not a valid RRULE: {exc}") from exc
            (rules if name == "RRULE" else exrules).append(text)
        elif name in ("DTSTART", "RDATE", "EXDATE"):
            params = _params(head)
            values = [_moment(v, params, zone, f"{where} ({name})") for v in value.split(",") if v.strip()]
            if name == "DTSTART":
                if len(values) != 1:
                    raise InvalidInput(f"{where}: DTSTART needs one date-time")
                first = values[0]
                dtstart = first if isinstance(first, datetime) else datetime.combine(first, datetime.min.time())
            for moment in values if name != "DTSTART" else []:
                if isinstance(moment, datetime):
                    (rdates if name == "RDATE" else exdates).append(moment)
                elif name == "EXDATE":
                    exdays.append(moment)
                else:
                    rdates.append(datetime.combine(moment, (dtstart or datetime.min).time()))
        elif name in ("DTEND", "DURATION"):
            continue  # a run's length, not when it starts
        else:
            raise InvalidInput(
                f"{where} {line[:60]!r} is not a recurrence line: use RRULE:, EXRULE:, RDATE:, EXDATE: or DTSTART"
            )
    if not rules and not rdates:
        raise InvalidInput("the recurrence has no RRULE or RDATE line: it never runs")
    return Recurrence(tuple(rules), zone, dtstart, tuple(exrules), tuple(rdates), tuple(exdates), tuple(exdays))


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
    anchored: bool = True,
) -> list[datetime]:
    """The next `count` runs after `after` (aware, any zone), as aware datetimes in `zone`.

    `lines` is a recurrence as parse_recurrence() reads it (its DTSTART, when it has one, is the start). Expansion
    happens in local wall-clock time and is then placed in the zone, so "06:00 every day" stays 06:00 across DST
    changes, as Qlik and RFC 5545 intend. A rule of the shapes _simple_rule() reads is counted period by period
    from the moment asked about; any other is expanded from a recent start (anchor_for), not its first;
    `anchored=False` walks every rule with dateutil from its first start (the reference the tests compare with).
    The work is bounded:
    runs are looked for at least HORIZON_YEARS ahead and for at most the `budget`'s work (then InvalidInput).
    With `strict`, a rule that could still run but has no run in the horizon is InvalidInput too, rather than an
    empty list (which otherwise means the schedule has ended). One `budget` may be shared by many calls, e.g.
    every task of a listing; without one, this call has EXPANSION_SECONDS of work.
    """
    budget = budget if budget is not None else ExpansionBudget()
    with budget.measured():
        return _occurrences(list(lines), zone, start, after, count, end, strict, budget, anchored)


def _occurrences(
    lines: list[str],
    zone: ZoneInfo,
    start: datetime | None,
    after: datetime,
    count: int,
    end: datetime | None,
    strict: bool,
    budget: ExpansionBudget,
    anchored: bool,
) -> list[datetime]:
    parts = parse_recurrence(lines, zone)
    after_local = after.astimezone(zone).replace(tzinfo=None)
    dtstart = parts.dtstart or start or after_local.replace(second=0, microsecond=0)
    simple = _simple_rule(parts, dtstart) if anchored else None
    if simple is not None:
        try:
            return _placed(_simple_runs(simple, after_local, budget), zone, count, end)
        except _TooSparse:
            pass  # runs too far apart for counting periods: dateutil's search, with its horizon, decides
    parts = replace(parts, anchor=dtstart)
    shift = _window_shift(max(after_local, dtstart))
    rules: list[rrule.rrule] = []
    # A line given twice costs twice and adds no run.
    for line in dict.fromkeys(parts.rules):
        rule = _started(line, dtstart)
        if anchored:
            rule = _anchored(rule, after_local)
        rules.append(_shifted(rule, _dtstart(rule), shift))
    local = (_years_later(run, -shift) for run in _runs(rules, _years_later(after_local, shift), budget, parts, shift))
    try:
        found = _placed(local, zone, count, end)
    except ValueError as exc:  # dateutil finds some rules empty only while walking them
        raise InvalidInput(f"this schedule never runs: {exc}; check its INTERVAL against its BY values") from None
    if strict and not found and _could_run_later(rules, end, _years_later(after_local, HORIZON_YEARS)):
        raise InvalidInput(
            f"this schedule has no occurrence in the next {HORIZON_YEARS} years; check that its rules' BY parts "
            "can meet (e.g. BYMONTH=2;BYMONTHDAY=30 never happens)"
        )
    return found


def _placed(local: Iterable[datetime], zone: ZoneInfo, count: int, end: datetime | None) -> list[datetime]:
    """The first `count` of the wall-clock runs `local` (in order) up to `end`, placed in `zone`."""
    found: list[datetime] = []
    for run in local:
        if end is not None and run > end:
            break
        aware = run.replace(tzinfo=zone)
        # A wall time that does not exist (spring-forward gap) is skipped, like most schedulers do.
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != run:
            continue
        found.append(aware)
        if len(found) >= count:
            break
    return found


# Rules counted period by period -----------------------------------------------------------------------------------
#
# Most task schedules are minutely, hourly or daily rules (weekly ones every week) with times and weekdays: their
# runs after a moment are found by counting whole periods from the start to that moment and reading the next few
# periods, with no rule object built or walked. dateutil reads the rule first (its defaults from DTSTART, hours an
# interval can never reach dropped), so both ways share one reading; tests compare them on random rules.

_SIMPLE_PERIODS = {rrule.MINUTELY: 60, rrule.HOURLY: 3600, rrule.DAILY: 86400}
# Periods read without a run before dateutil's search takes over (a filter that rarely or never matches).
_SPARSE_PERIODS = 4096


class _TooSparse(Exception):
    pass


@dataclass(frozen=True)
class _Simple:
    start: datetime
    period: timedelta
    first: datetime  # the start of the period the rule starts in
    hours: frozenset[int] | None  # filters; None: any
    minutes: frozenset[int] | None
    weekdays: frozenset[int] | None
    # Times within a period, as seconds from its start, in order.
    offsets: tuple[int, ...]
    until: datetime | None


@lru_cache(maxsize=1024)
def _simple_rule(parts: Recurrence, dtstart: datetime) -> _Simple | None:
    """The recurrence as a _Simple rule, when it is one rule of that shape and nothing else; else None."""
    if len(set(parts.rules)) != 1 or parts.exrules or parts.rdates or parts.exdates or parts.exdays:
        return None
    rule = _started(parts.rules[0], dtstart)
    freq, every = _freq(rule), _interval(rule)
    if freq == rrule.WEEKLY and every == 1:
        freq = rrule.DAILY  # every week on its weekdays: every day, kept on those weekdays
    other = ("_bysetpos", "_bymonth", "_byyearday", "_byeaster", "_byweekno", "_bynweekday", "_count")
    if freq not in _SIMPLE_PERIODS or any(getattr(rule, name, None) for name in other):
        return None
    if getattr(rule, "_bymonthday", ()) or getattr(rule, "_bynmonthday", ()):
        return None
    hours, minutes, seconds = (_by(rule, name) for name in ("_byhour", "_byminute", "_bysecond"))
    if seconds is None:
        return None
    unit = _SIMPLE_PERIODS[freq]
    if freq == rrule.DAILY:
        if hours is None or minutes is None:
            return None
        offsets = sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)
        first = datetime.combine(dtstart.date(), time_of_day())
        hours = minutes = None
    elif freq == rrule.HOURLY:
        if minutes is None:
            return None
        offsets = sorted(m * 60 + s for m in minutes for s in seconds)
        first = dtstart.replace(minute=0, second=0, microsecond=0)
        minutes = None
    else:
        offsets = sorted(seconds)
        first = dtstart.replace(second=0, microsecond=0)
    period = timedelta(seconds=unit * every)
    return _Simple(dtstart, period, first, hours, minutes, _by(rule, "_byweekday"), tuple(offsets), _until(rule))


def _by(rule: rrule.rrule, name: str) -> frozenset[int] | None:
    found = getattr(rule, name, None)
    return None if found is None else frozenset(found)


def _simple_runs(rule: _Simple, after: datetime, budget: ExpansionBudget) -> Iterator[datetime]:
    """The rule's wall-clock runs after `after`, in order, from the period `after` falls in; _TooSparse once
    _SPARSE_PERIODS periods in a row have none, or the next period would pass the horizon (dateutil's search,
    shifted, decides near the calendar's end)."""
    skipped = max(0, (after - rule.first) // rule.period) if after > rule.first else 0
    begin = rule.first + rule.period * skipped
    base = max(after, rule.start)
    # Days, not years: a 29 February plus 40 years may be no date, and the calendar ends at year 9999.
    horizon = base + min(datetime.max - base, timedelta(days=366 * HORIZON_YEARS))
    empty = 0
    for read in itertools.count():
        if read % 64 == 0:
            budget.check()
        if empty >= _SPARSE_PERIODS or begin > horizon:
            raise _TooSparse
        runs = _period_runs(rule, begin)
        for run in runs:
            if rule.until is not None and run > rule.until:
                return
            if run > after and run >= rule.start:
                yield run
        empty = 0 if runs else empty + 1
        begin += rule.period


def _period_runs(rule: _Simple, begin: datetime) -> list[datetime]:
    if rule.weekdays is not None and begin.weekday() not in rule.weekdays:
        return []
    if (rule.hours is not None and begin.hour not in rule.hours) or (
        rule.minutes is not None and begin.minute not in rule.minutes
    ):
        return []
    return [begin + timedelta(seconds=offset) for offset in rule.offsets]


def _could_run_later(rules: list[rrule.rrule], end: datetime | None, horizon: datetime) -> bool:
    if end is not None and end <= horizon:
        return False
    # Rules here are shifted, so is their UNTIL; a COUNT may have run out, which is an end, not an error.
    return any(not _has_count(r) and _until(r) is None for r in rules)


def local_and_utc(value: datetime) -> str:
    """A run as a person reads it: wall-clock time in its zone, then UTC."""
    return f"{value:%Y-%m-%d %H:%M %Z (%a)} = {utc_z(value)}"


def utc_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Every form of a task's schedule, read one way ---------------------------------------------------------------------

_INTERVAL = re.compile(r"^R(\d{0,9})/(?:([^/]+)/)?(P[^/]+)$")
_ENDING = re.compile(r"^R(\d{0,9})/(P[^/]+)/([^/P][^/]*)$")
_DURATION = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_FREQ = {"Y": "YEARLY", "M": "MONTHLY", "W": "WEEKLY", "D": "DAILY", "h": "HOURLY", "m": "MINUTELY", "s": "SECONDLY"}
_UNIT_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "W": 7 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}
# Where a cron field's values lie, and the names it may use.
_CRON_RANGES = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "weekday": (0, 7),
}
_MONTH_NAMES = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_DAY_NAMES = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_RRULE_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Where a cron's rules start: any midnight long ago (they are daily rules, moved forward to now when expanded).
_CRON_EPOCH = datetime(2000, 1, 1)


@dataclass(frozen=True)
class Duration:
    text: str
    parts: dict[str, int]

    @property
    def seconds(self) -> int:
        return sum(n * _UNIT_SECONDS[unit] for unit, n in self.parts.items())

    def rrule(self, count: int | None = None) -> str:
        """The RRULE that repeats like this duration in wall-clock time, so it is expanded across DST like the rest."""
        if len(self.parts) == 1:
            unit, every = next(iter(self.parts.items()))
            rule = f"RRULE:FREQ={_FREQ[unit]};INTERVAL={every}"
        elif "Y" in self.parts or "M" in self.parts:
            raise InvalidInput(f"duration {self.text} mixes months or years with other units: it has no fixed length")
        elif self.seconds % 60 == 0:
            rule = f"RRULE:FREQ=MINUTELY;INTERVAL={self.seconds // 60}"
        else:
            rule = f"RRULE:FREQ=SECONDLY;INTERVAL={self.seconds}"
        return rule + (f";COUNT={count}" if count else "")


def duration(value: str) -> Duration:
    """An ISO 8601 duration (PnYnMnWnDTnHnMnS), or InvalidInput."""
    text = value.strip()
    match = _DURATION.match(text)
    parts = {unit: int(n) for unit, n in (match.groupdict().items() if match else []) if n and int(n)}
    if not match or not parts or text.endswith("T"):
        raise InvalidInput(
            f"duration {value[:40]!r} is not ISO 8601: use e.g. P1D (daily), PT4H (every 4 hours), P1W (weekly)"
        )
    return Duration(text, parts)


@dataclass(frozen=True)
class RepeatingInterval:
    """An ISO 8601 repeating interval `R[n]/<start>/<duration>` or `R[n]/<duration>/<end>`, or a bare `<duration>` /
    `R[n]/<duration>`."""

    text: str
    repetitions: int | None
    # As written: a local time, or one with `Z` or an offset; None for a bare duration.
    start_text: str | None
    every: Duration
    # `R[n]/<duration>/<end>`: the intervals end there (each run starts an interval), as written.
    end_text: str | None = None

    def start_in(self, zone: ZoneInfo) -> datetime | None:
        """The start as wall-clock time in `zone` (a `Z` or offset start is converted)."""
        return wall_time(self.start_text, zone, "interval start") if self.start_text else None

    def rrule(self) -> str:
        return self.every.rrule(self.repetitions)


def repeating_interval(value: str) -> RepeatingInterval:
    """Any interval form Qlik's specs allow, checked, or InvalidInput saying what to send."""
    text = value.strip()
    if text.startswith("P"):
        return RepeatingInterval(text, None, None, duration(text))
    ending = _ENDING.match(text)
    if ending:
        count, every, end = ending.groups()
        if count == "0":
            raise InvalidInput("interval R0/... never runs; leave the count out (R/...) to repeat forever")
        wall_time(end, UTC_ZONE, "interval end")
        return RepeatingInterval(text, int(count) if count else None, None, duration(every), end)
    match = _INTERVAL.match(text)
    if not match:
        raise InvalidInput(
            f"interval {value[:60]!r} must be an ISO 8601 repeating interval R[n]/<start>/<duration> or a duration, "
            "e.g. R/2026-02-01T06:00:00/P1D (every day at 06:00 from 1 Feb 2026, in time_zone), "
            "R/2026-02-01T05:00:00Z/PT4H, or PT15M"
        )
    count, start, every = match.groups()
    if count == "0":
        raise InvalidInput("interval R0/... never runs; leave the count out (R/...) to repeat forever")
    if start:
        wall_time(start, UTC_ZONE, "interval start")
    return RepeatingInterval(text, int(count) if count else None, start, duration(every))


UTC_ZONE = ZoneInfo("UTC")


def wall_time(value: str, zone: ZoneInfo, field: str) -> datetime:
    """An ISO 8601 date-time as wall-clock time in `zone`: a local one as it is, one with `Z` or an offset converted."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{field} {value[:40]!r} is not a real date-time in ISO 8601 form, like 2026-01-31T06:00:00 (local) or "
            "2026-01-31T05:00:00Z"
        ) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(zone).replace(tzinfo=None)
    return parsed.replace(microsecond=0)


@dataclass(frozen=True)
class Cron:
    """A cron expression as sets of values: 5 fields (minute hour day month weekday), or 6 with seconds first."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...] | None  # None: any day (`*` or `?`)
    months: tuple[int, ...] | None
    weekdays: tuple[int, ...] | None  # 0 = Sunday
    minute_step: int | None = None

    def rrules(self) -> list[str]:
        """Daily rules with the cron's times, on the days it names: a day of month or a weekday, cron's OR."""
        at = [f"BYHOUR={_join(self.hours)}", f"BYMINUTE={_join(self.minutes)}", f"BYSECOND={_join(self.seconds)}"]
        if self.months:
            at.append(f"BYMONTH={_join(self.months)}")
        base = "RRULE:FREQ=DAILY;" + ";".join(at)
        by_day = f";BYMONTHDAY={_join(self.days)}" if self.days else ""
        by_weekday = f";BYDAY={','.join(_RRULE_DAYS[d] for d in self.weekdays)}" if self.weekdays else ""
        if by_day and by_weekday:
            return [base + by_day, base + by_weekday]
        return [base + by_day + by_weekday]


def _join(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in values)


def _cron_field(text: str, name: str, names: dict[str, int] | None = None) -> tuple[tuple[int, ...] | None, int | None]:
    """A cron field's values (None for any) and its step when it is `*/n`."""
    low, high = _CRON_RANGES[name]
    if text in ("*", "?"):
        return None, None
    values: set[int] = set()
    step_of_all = None
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise InvalidInput(f"cron {name} field {text!r}: the step after / must be a positive number")

        def number(token: str) -> int:
            upper = token.upper()
            if names and upper in names:
                return names[upper]
            if not token.isdigit():
                raise InvalidInput(
                    f"cron {name} field {text!r}: {token!r} is not a number"
                    + (" (L, W and # are not read here)" if any(c in token for c in "LW#") else "")
                )
            return int(token)

        # `0/15` is Quartz's `*/15`: every 15th value from the first.
        whole = body in ("*", "?") or (step is not None and body == str(low))
        if whole and step and len(text.split(",")) == 1:
            step_of_all = step
        if whole:
            first, last = low, high
        elif "-" in body:
            first, last = (number(t) for t in body.split("-", 1))
        else:
            first = number(body)
            last = high if step else first
        if not low <= first <= high or not low <= last <= high or first > last:
            raise InvalidInput(f"cron {name} field {text!r}: values must lie in {low}-{high}")
        values.update(range(first, last + 1, step or 1))
    return tuple(sorted(values)), step_of_all


def cron(expression: str) -> Cron:
    """A cron expression read, or InvalidInput naming the field that cannot be."""
    text = _CRON_MACROS.get(expression.strip().lower(), expression.strip())
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise InvalidInput(
            f"cron {expression[:60]!r} must have 5 fields (minute hour day month weekday), or 6 with seconds first"
        )
    seconds, _ = _cron_field(fields[0], "second")
    minutes, step = _cron_field(fields[1], "minute")
    hours, _ = _cron_field(fields[2], "hour")
    days, _ = _cron_field(fields[3], "day")
    months, _ = _cron_field(fields[4], "month", _MONTH_NAMES)
    weekdays, _ = _cron_field(fields[5], "weekday", _DAY_NAMES)
    if len(expression.split()) == 6 and weekdays is not None and fields[5].replace(",", "").replace("-", "").isdigit():
        # Six fields is the Quartz form, whose weekdays run 1 (Sunday) to 7 (Saturday).
        weekdays = tuple(sorted({(d - 1) % 7 for d in weekdays}))
    return Cron(
        expression.strip(),
        seconds or (0,),
        minutes or tuple(range(60)),
        hours or tuple(range(24)),
        days,
        months,
        None if weekdays is None else tuple(sorted({d % 7 for d in weekdays})),
        step if hours is None else None,
    )


def _recurrence_lines(value: str | Sequence[str] | None) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value or [])
    return [line.strip() for text in texts for line in text.splitlines() if line.strip()]


# Next runs already worked out, by schedule and count: (after what, the runs).
_AHEAD: dict[tuple[Schedule, int], tuple[datetime, list[datetime]]] = {}
AHEAD_KEPT = 4096


@dataclass(frozen=True)
class Schedule:
    """A task's schedule in whichever form it is stored (RRULE recurrence, ISO 8601 interval, cron), read into one
    recurrence in one zone: words to show, and next runs. One that cannot be read keeps its raw text and says why."""

    form: str  # recurrence | interval | cron | unreadable
    raw: str
    zone: str
    lines: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    words: str = ""
    problem: str | None = None
    note: str | None = None

    @property
    def readable(self) -> bool:
        return self.problem is None

    @property
    def shown(self) -> str:
        """What a result shows: the words, or the raw text with why it could not be read."""
        return self.words if self.readable else f"{self.raw} (not read: {self.problem})"

    def next_runs(
        self, after: datetime, count: int, *, budget: ExpansionBudget | None = None, strict: bool = False
    ) -> list[datetime]:
        """The next runs after `after`, aware in the schedule's zone; [] for one that cannot be read or has ended."""
        if not self.readable or not self.lines:
            return []
        known = self.known_runs(after, count)
        if known is not None:
            return known
        runs = occurrences(
            self.lines,
            time_zone(self.zone),
            self.start,
            after=after,
            count=count,
            end=self.end,
            strict=strict,
            budget=budget,
        )
        if len(runs) == count:  # fewer: the rule ran out within its horizon, which a later `after` moves on
            if len(_AHEAD) >= AHEAD_KEPT:
                _AHEAD.clear()
            _AHEAD[(self, count)] = (after, list(runs))
        return runs

    def known_runs(self, after: datetime, count: int) -> list[datetime] | None:
        """next_runs() without expanding: the runs already worked out for a moment before `after`, or None.

        The runs found after t are the runs after any later moment before the first of them: a listing read again
        (the next page, the next question) reuses them instead of expanding the rule again."""
        known = _AHEAD.get((self, count))
        if known is not None and known[0] <= after < known[1][0]:
            return list(known[1])
        return None

    def ended(self, after: datetime) -> str:
        """Why a readable schedule with no run after `after` has none: its end passed, or its rules ran out."""
        if self.end is not None and self.end.replace(tzinfo=time_zone(self.zone)) <= after:
            return f"the schedule has ended: its end ({self.end:%Y-%m-%d %H:%M} {self.zone}) has passed"
        return "the schedule has ended: its last run is past (its UNTIL or COUNT was reached)"


def unreadable(raw: str, zone: str | None, problem: str) -> Schedule:
    return Schedule("unreadable", raw, zone or "UTC", problem=problem.rstrip("."))


def read_schedule(
    *,
    recurrence: str | Sequence[str] | None = None,
    interval: str | None = None,
    cron_expression: str | None = None,
    zone: str | None = None,
    start: str | None = None,
    end: str | None = None,
    created: str | None = None,
) -> Schedule | None:
    """Whatever form a schedule is in, read; None when there is none. Never raises: a schedule that cannot be read
    comes back `unreadable`, with its raw text and why, so one odd task never fails a list.

    `start`/`end` are the schedule's startDateTime/endDateTime (local, or with `Z`/an offset); `created` is when the
    task was made, the only start a bare duration (`PT15M`) has."""
    lines = tuple(_recurrence_lines(recurrence))
    return _read(lines, interval, cron_expression, zone, start, end, created)


@lru_cache(maxsize=1024)
def _read(
    lines: tuple[str, ...],
    interval: str | None,
    cron_expression: str | None,
    zone: str | None,
    start: str | None,
    end: str | None,
    created: str | None,
) -> Schedule | None:
    """read_schedule(), once per distinct schedule: a listing of many tasks with the same rule reads it once."""
    raw = "\n".join(lines) or interval or cron_expression or ""
    if not raw.strip():
        return None
    name = recurrence_zone(lines, zone or "UTC") if lines else zone or "UTC"
    try:
        tz = time_zone(name)
        begin = wall_time(start, tz, "start") if start else None
        until = wall_time(end, tz, "end") if end else None
        if lines:
            parts = parse_recurrence(lines, tz)
            words = describe_recurrence(list(lines), parts, begin, until, name)
            return Schedule("recurrence", raw, name, lines, begin, until, words)
        if interval:
            parsed = repeating_interval(interval)
            if parsed.end_text:
                return _ending_interval(parsed, raw, name, tz, created)
            first = parsed.start_in(tz) or begin
            note = None
            if first is None and created:
                first = wall_time(created, tz, "created")
                note = "A bare duration has no start of its own: its runs are counted from the task's creation."
            if first is None:
                return unreadable(raw, name, "a bare duration with no start: when it runs cannot be worked out")
            line = parsed.rrule()
            words = describe_rrule(line, first.strftime(LOCAL_FORMAT)) + f" from {first:%Y-%m-%d %H:%M} {name}"
            return Schedule("interval", raw, name, (line,), first, until, words + _until_words(until), note=note)
        assert cron_expression is not None
        parsed_cron = cron(cron_expression)
        words = f"{describe_cron(parsed_cron)} {name} (cron {parsed_cron.text})" + _until_words(until)
        return Schedule("cron", raw, name, tuple(parsed_cron.rrules()), _CRON_EPOCH, until, words)
    except InvalidInput as exc:
        return unreadable(raw, name, str(exc))


def _ending_interval(parsed: RepeatingInterval, raw: str, name: str, tz: ZoneInfo, created: str | None) -> Schedule:
    """`R[n]/<duration>/<end>`: runs every duration, the last one a duration before the end; counted back from the
    end (n runs, or every one since the task was made)."""
    assert parsed.end_text is not None
    if "Y" in parsed.every.parts or "M" in parsed.every.parts:
        return unreadable(raw, name, "a duration in months or years counted back from an end has no fixed length")
    step = timedelta(seconds=parsed.every.seconds)
    last = wall_time(parsed.end_text, tz, "interval end") - step
    if parsed.repetitions:
        first = last - step * (parsed.repetitions - 1)
    else:
        since = wall_time(created, tz, "created") if created else _CRON_EPOCH
        first = last - step * max(0, (last - since) // step)
    line = parsed.every.rrule(parsed.repetitions)
    words = describe_rrule(line, first.strftime(LOCAL_FORMAT)) + f" up to {last:%Y-%m-%d %H:%M} {name}"
    return Schedule("interval", raw, name, (line,), first, last, words)


def _until_words(until: datetime | None) -> str:
    return f", until {until:%Y-%m-%d}" if until else ""
