"""find_missed_runs (served by the ops toolset): every time schedule of the served kinds whose runs it can read
(reload tasks and tasks: app reloads; sharing tasks: executions; Qalyptus tasks: the status list) expanded over a
window and joined with the runs that happened: what should have run and did not, ran late, or ran twice, with the
reason where the tenant gives one.

A reload task's or task's runs are its app's reloads that name it (resourceType reload-tasks / tasks); a kind
whose runs are not reloads reads them through its source's `runs_since` (task by task) or `runs_of` (many at once),
and a kind whose listing does not carry its schedules reads them through `schedules_of`, within the budget. A miss
is concluded only for a task whose runs were read back to the window's start; others are named as not checked.
Imported at the end of tools.py, whose helpers it reads when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.schedule import ExpansionBudget
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import owner_of, row_names
from qlik_tasks_mcp.tools.operation import read
from qlik_tasks_mcp.tools.ops.reload_window import SCAN_SECONDS, ReloadWindow, RunSources, read_window
from qlik_tasks_mcp.tools.ops.selection import spending, unique_tasks, unless_unavailable
from qlik_tasks_mcp.tools.sources import (
    Budget,
    RunsOf,
    RunsSince,
    TaskInfo,
    all_tasks,
    gather,
    many_runs_reader,
    parse_time,
    run_times,
    runs_reader,
    scan_now,
    schedules_reader,
    short_time,
    timings,
)

MISSED_REQUESTS = 400
# The runs of these kinds are app reloads that name the task.
RESOURCE = {"reload": "reload-tasks", "task": "tasks"}
MAX_OCCURRENCES = 1000
# A run this much before its time still counts as its run (clocks differ a little).
EARLY = timedelta(minutes=2)
QUOTA = "EXCEEDED_LIMIT"
APP_HAS_TASKS = "app has tasks: Qlik stops an app's reload tasks once it has tasks"
Outcome = Literal["missed", "late", "twice"]


class MissedRun(Compact):
    what: Outcome
    kind: str
    task_id: str
    name: str
    app_id: str | None = None
    app: str | None = None
    due: list[str] = Field(description="Scheduled times concerned (UTC), oldest first, at most 10.")
    count: int
    late_min: int | None = Field(default=None, description="late: the longest delay, minutes.")
    reason: str | None = Field(default=None, description="missed: why, where the tenant says.")


class MissedReport(Compact):
    since: str
    until: str
    rows: list[MissedRun]
    checked: dict[str, int]
    stopped_early: bool = False
    not_checked: list[str] = []
    note: str | None = None


@dataclass
class _Joined:
    missed: list[datetime] = field(default_factory=list)
    quota: list[datetime] = field(default_factory=list)
    late: list[tuple[datetime, int]] = field(default_factory=list)
    twice: list[datetime] = field(default_factory=list)


def _timed(info: TaskInfo) -> bool:
    schedules = timings(info)
    return bool(schedules) and all(s.readable for s in schedules)


def _join(
    due: list[datetime], runs: list[tuple[datetime, str]], tolerance: timedelta, following: datetime | None = None
) -> _Joined:
    """Each scheduled time against the runs from just before it to the next one (after the last, `following`, the
    next time not judged yet, whose own run is not the last one's late run): none is a miss (a run that ended over
    quota counts as none), the first after `tolerance` is late, two within it ran twice."""
    joined = _Joined()
    bounds = [*due[1:], following] if due else []
    for at, bound in zip(due, bounds, strict=True):
        until = bound - EARLY if bound is not None else None
        mine = [(t, s) for t, s in runs if t >= at - EARLY and (until is None or t < until)]
        ran = [t for t, s in mine if s != QUOTA]
        if not ran:
            (joined.quota if mine else joined.missed).append(at)
            continue
        on_time = [t for t in ran if t <= at + tolerance]
        if len(on_time) > 1:
            joined.twice.append(at)
        elif not on_time:
            joined.late.append((at, int((ran[0] - at).total_seconds() // 60)))
    return joined


def _reason(info: TaskInfo, app_has_tasks: bool, gone_owner: str | None) -> str | None:
    if not info.enabled:
        code = info.disabled_reason or "disabled"
        if code == "inactive":  # a Qalyptus task's isActive false
            return code
        if "OWNER-DISABLED" in code:
            return "owner disabled (OWNER-DISABLED)"
        return code if code.startswith("disabled") else f"disabled ({code})"
    if info.kind == "reload" and app_has_tasks:
        return APP_HAS_TASKS
    if gone_owner:
        return f"owner {gone_owner}"
    return None


def _times(values: list[datetime]) -> list[str]:
    return [short_time(v.isoformat()) or "" for v in values[:10]]


async def _tasks(
    sources: RunSources, kinds: list[str], app_id: str | None, budget: Budget, notes: list[str]
) -> list[TaskInfo]:
    """The tasks of `kinds`: of one app; else listed tenant-wide where the kind can, and app by app (every app the
    served kinds know) where it cannot."""
    infos: list[TaskInfo] = []
    by_app = kinds
    apps = {app_id} if app_id else set()
    if not app_id:
        by_app = []
        for kind in kinds:
            listed = await unless_unavailable(all_tasks(sources.of(kind), budget), [], notes)
            if listed is None:
                by_app.append(kind)
            else:
                infos += listed
        for found in sources.by_kind.values() if by_app else []:
            apps |= await unless_unavailable(found.app_ids(), set(), notes)

    async def one(pair: tuple[str, str]) -> None:
        app, kind = pair
        infos.extend(await unless_unavailable(sources.of(kind).of_app(app), [], notes))

    await gather([(app, kind) for app in sorted(apps - {""}) for kind in by_app], one)
    return unique_tasks(infos)


def _runs_of(window: ReloadWindow) -> dict[tuple[str, str], list[tuple[datetime, str]]]:
    runs: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    for doc in window.reloads:
        created = parse_time(doc.creation_time)
        if created is not None and doc.resource_id:
            runs.setdefault((doc.resource_type, doc.resource_id), []).append((created, doc.status.upper()))
    for found in runs.values():
        found.sort()
    return runs


async def _reloads_by_task(
    sources: RunSources,
    scheduled: list[TaskInfo],
    kinds: list[str],
    since: datetime,
    app_id: str | None,
    budget: Budget,
    notes: list[str],
) -> dict[tuple[str, str], list[tuple[datetime, str]]]:
    """The runs of the tasks whose runs are app reloads, by task: only for apps whose reloads were all read."""
    tasks = [i for i in scheduled if i.kind in kinds]
    if not tasks or sources.reloads is None:
        return {}
    apps = {i.app_id for i in tasks if i.app_id}

    async def known_apps() -> set[str]:
        return apps

    window = await read_window(
        sources.reloads, since - EARLY, budget, scan_now, [app_id] if app_id else None, known_apps
    )
    if window.note:
        notes.append(window.note)
    by_resource = _runs_of(window)
    hidden = set() if window.tenant_wide else await _hidden_apps(sources, apps)
    if hidden:
        notes.append(
            f"Not compared: the tasks of {len(hidden)} apps this key cannot see, as the reloads listed to a key are "
            "those it has access to (reloads.json)."
        )
    return {
        (i.kind, i.id): by_resource.get((RESOURCE[i.kind], i.id), [])
        for i in tasks
        if window.covers(i.app_id) and i.app_id not in hidden
    }


async def _hidden_apps(sources: RunSources, apps: set[str]) -> set[str]:
    """Apps the tenant's items answer left out for this key: their reloads, read app by app, may be hidden from it
    too, so none read is no miss. Apps whose names could not be read at all are not counted as hidden."""
    found = await sources.names.apps(apps)
    return {a for a in apps if a not in found}


async def _read_schedules(sources: RunSources, infos: list[TaskInfo], kinds: list[str], budget: Budget) -> None:
    """Every time schedule of the tasks of kinds whose listing does not carry them (Qalyptus triggers); a task not
    read keeps none and is not checked (the budget names it)."""
    for kind in kinds:
        reader = schedules_reader(sources.of(kind))
        mine = [i for i in infos if i.kind == kind]
        if reader is not None and mine:
            read = await reader(mine, budget)
            for info in mine:
                info.schedules = read.get(info.id, [])


async def _runs_by_task(
    scheduled: list[TaskInfo],
    readers: dict[str, RunsSince],
    many: dict[str, RunsOf],
    since: datetime,
    budget: Budget,
) -> dict[tuple[str, str], list[tuple[datetime, str]]]:
    """The runs of the tasks of kinds that read their own: one listing per task (sharing executions), or one for
    many tasks (Qalyptus statuses, one per organization)."""
    found: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    for kind, reader in many.items():
        mine = [i for i in scheduled if i.kind == kind]
        if mine:
            read = await reader(mine, since - EARLY, budget)
            found |= {(kind, task_id): runs for task_id, runs in read.items()}

    async def one(info: TaskInfo) -> None:
        try:
            runs = await readers[info.kind](info, since - EARLY, lambda what: budget.spend(scan_now(), what))
        except ApiError as exc:
            budget.skipped.append(f"runs of {info.kind} {info.id} (HTTP {exc.status})")
            return
        if runs is not None:
            found[(info.kind, info.id)] = runs

    await gather([i for i in scheduled if i.kind in readers], one)
    return found


def _qlik_owner(info: TaskInfo) -> str | None:
    """The task's owner as a Qlik user, who runs it; a Qalyptus task's owner is a Qalyptus user, and whether a gone
    Qlik user stops its runs is not documented."""
    return owner_of(info) if info.kind != "qalyptus" else None


async def _gone_owners(sources: RunSources, infos: list[TaskInfo]) -> dict[str, str]:
    """Owners who can no longer run anything (disabled, deleted), by id: the look-up degrades to none."""
    owners = {o for o in map(_qlik_owner, infos) if o}
    users = await sources.names.users(owners) if owners else {}
    return {i: u.status for i, u in users.items() if u.gone}


def _rows(info: TaskInfo, joined: _Joined, reason: str | None) -> list[MissedRun]:
    def row(what: Outcome, due: list[datetime], **extra: object) -> MissedRun:
        return MissedRun.model_validate(
            {
                "what": what,
                "kind": info.kind,
                "task_id": info.id,
                "name": one_line(info.name, 200),
                "app_id": info.app_id,
            }
            | {"due": _times(due), "count": len(due)}
            | extra
        )

    rows = []
    if joined.missed:
        rows.append(row("missed", joined.missed, reason=reason))
    if joined.quota:
        rows.append(row("missed", joined.quota, reason=f"quota: the run ended {QUOTA}"))
    if joined.late:
        rows.append(row("late", [t for t, _ in joined.late], late_min=max(m for _, m in joined.late)))
    if joined.twice:
        rows.append(row("twice", joined.twice))
    return rows


@read("Find missed runs")
async def find_missed_runs(
    sources: RunSources,
    hours: Annotated[int, Field(ge=1, le=168, description="Look back this many hours.")] = 24,
    late_after_minutes: Annotated[int, Field(ge=1, le=720)] = 15,
    app_id: Annotated[str | None, Field(min_length=1, max_length=128)] = None,
) -> MissedReport:
    """What should have run in a window (every time schedule of tasks, reload, sharing and Qalyptus tasks) but did
    not, ran late or ran twice, with the tenant's reason; a task that ran is never a miss."""
    by_reloads = [kind for kind in RESOURCE if kind in sources.by_kind and sources.reloads is not None]
    by_runs = {k: read for k, found in sources.by_kind.items() if k not in RESOURCE and (read := runs_reader(found))}
    by_many = {
        k: read for k, found in sources.by_kind.items() if k not in RESOURCE and (read := many_runs_reader(found))
    }
    kinds = by_reloads + list(by_runs) + list(by_many)
    if not kinds:
        raise InvalidInput(
            f"no kind served here ({sources.available}) has runs this tool reads: serve reload or tasks with reloads"
        )
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    tolerance = timedelta(minutes=late_after_minutes)
    budget = Budget(requests=MISSED_REQUESTS, deadline=scan_now() + SCAN_SECONDS)
    notes: list[str] = []

    with spending(budget):  # every listing page read spends one of the budget's requests
        infos = await _tasks(sources, kinds, app_id, budget, notes)
    listing_cut = bool(budget.skipped)

    def timed() -> list[TaskInfo]:
        # Every form of time schedule (RRULE, interval, cron) through the one reader; a task being deleted (a
        # sharing task's statusCode DELETING) no longer runs.
        return [i for i in infos if _timed(i) and i.state.upper() != "DELETING"]

    runs = await _reloads_by_task(sources, timed(), by_reloads, since, app_id, budget, notes)
    # Reads of one task each come after the reloads, which cover many tasks a request: a big Qalyptus
    # organization does not leave the reloads unread.
    await _read_schedules(sources, infos, kinds, budget)
    scheduled = timed()
    runs |= await _runs_by_task(scheduled, by_runs, by_many, since, budget)
    with_tasks = {i.app_id for i in infos if i.kind == "task" and i.app_id}
    gone = await _gone_owners(sources, scheduled)
    expansion = ExpansionBudget()
    rows: list[MissedRun] = []
    unread: list[str] = []
    expected = 0
    for info in scheduled:
        found = runs.get((info.kind, info.id))
        if found is None:
            unread.append(f"{info.kind} {info.id}: its runs were not all read")
            continue
        try:
            due = await run_times(info, count=MAX_OCCURRENCES, now=since, budget=expansion, even_if_disabled=True)
        except InvalidInput as exc:
            unread.append(f"{info.kind} {info.id}: {exc}")
            continue
        times = [t.astimezone(UTC) for t in due]
        # A time within `tolerance` of now is not judged yet, but its run is its own, not the time before's.
        judged = [t for t in times if t <= now - tolerance]
        following = times[len(judged)] if len(judged) < len(times) else None
        expected += len(judged)
        reason = _reason(info, info.app_id in with_tasks, gone.get(_qlik_owner(info) or ""))
        rows += _rows(info, _join(judged, found, tolerance, following), reason)
    order = {"missed": 0, "late": 1, "twice": 2}
    rows.sort(key=lambda r: (order[r.what], r.due[0] if r.due else "", r.task_id))
    names = await row_names(sources.names, (r.app_id for r in rows), [])
    for row in rows:
        row.app = names.app(row.app_id)
    if listing_cut:
        notes.append("The task listing stopped early: tasks it did not reach were not checked.")
    skipped_kinds = sorted(set(sources.by_kind) - set(kinds) - {"app"})
    if skipped_kinds:
        notes.append(f"Not compared: {', '.join(skipped_kinds)} (their runs are not read here).")
    return MissedReport(
        since=short_time(since.isoformat()) or "",
        until=short_time(now.isoformat()) or "",
        rows=rows,
        checked={"tasks": len(scheduled) - len(unread), "runs due": expected, "tasks not checked": len(unread)},
        stopped_early=bool(budget.skipped),
        not_checked=(unread + budget.skipped)[:20],
        note=" ".join(filter(None, [*notes, *budget.notes, tenant_text_note(["name", "app"]) if rows else None]))
        or None,
    )
