"""Ops answers across every served task kind: failures in a window, schedules explained, bulk enable/disable,
and one app's whole schedule. They see each family only through its `TaskSource`, and only served families."""

import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar

import anyio
from pydantic import Field

from qlik_tasks_mcp.client.allowance import pages_allowed
from qlik_tasks_mcp.client.errors import ClientError, InvalidInput
from qlik_tasks_mcp.client.schedule import (
    EXPANSION_SECONDS,
    local_datetime,
    occurrences_off_loop,
    rrule_lines,
    start_after_change,
    utc_z,
)
from qlik_tasks_mcp.client.schedule import time_zone as zone_info
from qlik_tasks_mcp.client.schedule_text import describe_schedule, rrule_parts
from qlik_tasks_mcp.client.workflow import interval_rrule, repeating_interval
from qlik_tasks_mcp.tools import orphans
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note, untrusted_fields
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.inventory import Clients
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.names import Names, owner_change_note, task_lines
from qlik_tasks_mcp.tools.operation import destructive, read
from qlik_tasks_mcp.tools.sources import Budget, Failure, FailureScan, TaskInfo, TaskSource, gather

SCAN_REQUESTS = 400
SCAN_SECONDS = 45.0
# An overview reads one app's tasks, the tenant's app ids, then other apps' tasks for chains: every page counts.
OVERVIEW_REQUESTS = 400
PREVIEW_LINES = 100
MAX_TARGETS = 5000
CHAIN_SCAN_APPS = 200
ERROR_CHARS = 300

KindName = Literal["reload", "task", "sharing", "qalyptus"]
T = TypeVar("T")


class RunTime(Compact):
    local: str
    utc: str


class ScheduleExplained(Compact):
    description: str
    time_zone: str
    next_runs: list[RunTime]
    task: str | None = None
    note: str | None = None


class FailureGroup(Compact):
    kind: str
    task_id: str
    name: str
    app_id: str | None = None
    failures: int
    last_failed_at: str | None = None
    ref: str | None = Field(None, description="Run/execution id of the newest failure.")
    first_error: str | None = None


class FailureReport(Compact):
    since: str
    groups: list[FailureGroup]
    errors: str | None = Field(None, description="Every group's first_error, fenced once, by kind and task id.")
    checked: dict[str, int]
    stopped_early: bool = False
    not_checked: list[str] = []
    note: str | None = None


class TaskRef(Input):
    kind: KindName
    id: str = Field(min_length=1, max_length=128)


class BulkFailure(Compact):
    kind: str
    id: str
    error: str


class BulkResult(Compact):
    changed: int
    already: int
    failed: list[BulkFailure] = []


class OverviewItem(Compact):
    kind: str
    id: str
    name: str
    enabled: bool
    disabled_reason: str | None = None
    schedule: str | None = None
    next_runs: list[str] = []
    after: list[str] = Field(default=[], description="Runs whose end starts this task.")
    starts: list[str] = Field(default=[], description="Tasks this one's end starts.")


class AppOverview(Compact):
    app_id: str
    items: list[OverviewItem]
    note: str | None = None


async def run_times(
    info: TaskInfo, *, count: int, now: datetime, deadline: float, even_if_disabled: bool = False, strict: bool = False
) -> list[datetime]:
    """The next runs, worked out off the event loop within `deadline` (one per tool call, shared by its tasks).

    `strict`: a rule with no run in the horizon is InvalidInput, so an empty list means the schedule ended."""
    if not info.recurrence or not info.time_zone or not (info.enabled or even_if_disabled):
        return []
    zone = zone_info(info.time_zone)
    start = local_datetime(info.start[:19], "start") if info.start else None
    end = local_datetime(info.end[:19], "end") if info.end else None
    return await occurrences_off_loop(
        info.recurrence, zone, start, after=now, count=count, end=end, strict=strict, deadline=deadline
    )


def schedule_line(info: TaskInfo) -> str | None:
    if info.recurrence:
        return describe_schedule(info.recurrence, info.time_zone, info.start, info.end)
    return info.schedule_text


def outcome(status: str | None) -> str:
    return {"SUCCEEDED": "succeeds", "FAILED": "fails"}.get((status or "").upper(), "finishes")


@dataclass
class Sources:
    """The task sources of the served toolsets, by kind."""

    by_kind: dict[str, TaskSource]
    names: Names

    def of(self, kind: str) -> TaskSource:
        if kind not in self.by_kind:
            raise InvalidInput(f"kind {kind!r} is not served here; choose from {self.available}")
        return self.by_kind[kind]

    @property
    def available(self) -> str:
        return ", ".join(self.by_kind) or "(none: serve a family toolset beside ops)"


def service(clients: Clients) -> Sources:
    return Sources(clients.sources, clients.names)


class KindUnavailable(ClientError):
    """Raised by a TaskSource whose API this tenant no longer serves (e.g. retired): the ops tools skip that
    kind with this message as a note instead of failing."""


async def _unless_unavailable(call: Awaitable[T], fallback: T, notes: list[str]) -> T:
    """`call`'s answer, or `fallback` with the source's note when its kind is unavailable on this tenant."""
    try:
        return await call
    except KindUnavailable as exc:
        if str(exc) not in notes:
            notes.append(str(exc))
        return fallback


async def _explained_task(sources: Sources, kind: str | None, task_id: str) -> TaskInfo:
    if kind is None:
        raise InvalidInput(f"give the kind of task {task_id}: one of {sources.available}")
    try:
        return await sources.of(kind).get(task_id)
    except KindUnavailable as exc:
        return TaskInfo(kind, task_id, "-", False, schedule_text=f"{exc}: its schedule cannot be read here")


def _proposed(
    recurrence: list[str] | None, interval: str | None, time_zone: str, start: str | None, end: str | None
) -> tuple[TaskInfo, str | None]:
    """A schedule given to check, as create and update would send it, and a hint about how it reads."""
    if recurrence and interval:
        raise InvalidInput("give recurrence lines or an interval, not both")
    if recurrence:
        info = TaskInfo("proposed", "-", "-", True, recurrence=rrule_lines(recurrence))
        # With no start, create and update start the schedule now: explain it as they would send it.
        start = start_after_change(start, None, zone_info(time_zone)) or ""
        info.time_zone, info.start, info.end = time_zone, start, end
        if any("BYHOUR" in parts and "BYMINUTE" not in parts for parts in map(rrule_parts, info.recurrence)):
            return info, f"No BYMINUTE: runs take the start's minute ({start[14:16]}); add BYMINUTE=0 for on the hour."
        return info, None
    if interval:
        parsed = repeating_interval(interval)
        info = TaskInfo("proposed", "-", "-", True, recurrence=[interval_rrule(parsed)], start=parsed.start)
        info.time_zone, info.end = time_zone, end
        return info, None
    raise InvalidInput("give task_id with kind, or a schedule to check: recurrence lines or an interval")


@read("Explain a schedule")
async def explain_schedule(
    sources: Sources,
    kind: Annotated[KindName | None, Field(description="With task_id: the task's kind.")] = None,
    task_id: Annotated[str | None, Field(max_length=128, description="Explain this task's schedule.")] = None,
    recurrence: Annotated[
        list[str] | None, Field(max_length=20, description="Or check RRULE lines before create/update.")
    ] = None,
    interval: Annotated[str | None, Field(max_length=80, description="Or an ISO 8601 R/start/duration.")] = None,
    time_zone: Annotated[str, Field(max_length=64, description="IANA zone of a given schedule.")] = "UTC",
    start: Annotated[str | None, Field(max_length=40, description="Local start of a given schedule.")] = None,
    end: Annotated[str | None, Field(max_length=40, description="Local end of a given schedule.")] = None,
    count: Annotated[int, Field(ge=1, le=20, description="How many next runs.")] = 5,
) -> ScheduleExplained:
    """Next runs (task's zone and UTC) and a one-line description of a task's schedule, or validate one."""
    label = hint = None
    if task_id:
        info = await _explained_task(sources, kind, task_id)
        label = f"{kind} {info.id} {info.name}"
        if not info.recurrence:
            what = info.schedule_text or "no time schedule (it runs on demand or when another task ends)"
            return ScheduleExplained(description=what, time_zone=info.time_zone or "UTC", next_runs=[], task=label)
    else:
        # Checking the rules expands them (bounded): in a worker thread, so other sessions never wait on it.
        info, hint = await anyio.to_thread.run_sync(_proposed, recurrence, interval, time_zone, start, end)
    zone = zone_info(info.time_zone or "UTC")
    if info.start and info.end and local_datetime(info.end[:19], "end") <= local_datetime(info.start[:19], "start"):
        raise InvalidInput(f"end {info.end} must be after start {info.start}")
    deadline = time.monotonic() + EXPANSION_SECONDS
    runs = await run_times(
        info, count=count, now=datetime.now(UTC), deadline=deadline, even_if_disabled=True, strict=True
    )
    note = None if info.enabled else "The task is disabled: these runs happen only once it is enabled."
    if not runs:
        note = "No future runs: the schedule has ended."
    return ScheduleExplained(
        description=schedule_line(info) or "-",
        time_zone=zone.key,
        next_runs=[RunTime(local=r.strftime("%Y-%m-%d %H:%M %Z (%a)"), utc=utc_z(r)) for r in runs],
        task=label,
        note=" ".join(filter(None, [note, hint])) or None,
    )


def _grouped(found: list[Failure]) -> list[FailureGroup]:
    groups: dict[tuple[str, str], FailureGroup] = {}
    for failure in found:
        key = (failure.kind, failure.task_id)
        group = groups.get(key)
        if group is not None:
            group.failures += 1
            continue
        groups[key] = FailureGroup(
            kind=failure.kind,
            task_id=failure.task_id,
            name=one_line(failure.name, 200),
            app_id=failure.app_id,
            failures=1,
            last_failed_at=failure.at,
            ref=failure.ref,
            first_error=one_line(failure.error, ERROR_CHARS) if failure.error else None,
        )
    return sorted(groups.values(), key=lambda g: g.last_failed_at or "", reverse=True)


def _errors_block(groups: list[FailureGroup]) -> str | None:
    """The groups' first error lines in one fence: tenant text, read as data."""
    pairs = [(f"{g.kind} {g.task_id}", g.first_error) for g in groups if g.first_error]
    return untrusted_fields(pairs, "first error lines") if pairs else None


@contextmanager
def _spending(budget: Budget) -> Iterator[None]:
    """Every listing page read in this block spends one of `budget`'s requests (client/allowance.py)."""
    with pages_allowed(lambda what: budget.spend(time.monotonic(), what)):
        yield


def _stopped_note(budget: Budget, requests: int, narrow: str) -> str | None:
    if not budget.skipped:
        return None
    return (
        f"Stopped early: {len(budget.skipped)} reads skipped to stay within {requests} requests / "
        f"{SCAN_SECONDS:.0f} s; {narrow}."
    )


@read("Find failures")
async def find_failures(
    sources: Sources,
    hours: Annotated[int, Field(ge=1, le=168, description="Look back this many hours.")] = 24,
    app_ids: Annotated[list[str] | None, Field(max_length=200, description="Also check tasks of these apps.")] = None,
) -> FailureReport:
    """Every failed run/execution in a window across all task kinds, grouped by task, with first error line."""
    clock = time.monotonic
    budget = Budget(requests=SCAN_REQUESTS, deadline=clock() + SCAN_SECONDS)
    since = datetime.now(UTC) - timedelta(hours=hours)
    scan = FailureScan(since=since, budget=budget, clock=clock, apps=set(app_ids or []))
    # In inventory order: reload tasks name the apps that the tasks scan then reads app by app.
    unavailable: list[str] = []
    for kind, found in sources.by_kind.items():
        try:
            with _spending(budget):
                await _unless_unavailable(found.failures(scan), None, unavailable)
        except ClientError as exc:
            status = getattr(exc, "status", None)
            budget.skipped.append(f"{kind} failures" + (f" (HTTP {status})" if status is not None else f" ({exc})"))
    groups = _grouped(scan.found)
    notes = [*unavailable, _stopped_note(budget, SCAN_REQUESTS, "narrow with hours or app_ids")]
    if groups:
        notes.append(tenant_text_note(["name", "first_error"]) + " The errors block has them fenced as tenant data.")
    return FailureReport(
        since=utc_z(since),
        groups=groups,
        errors=_errors_block(groups),
        checked=scan.checked,
        stopped_early=bool(budget.skipped),
        not_checked=(unavailable + budget.skipped)[:20],
        note=" ".join(filter(None, notes)) or None,
    )


async def _targets(
    sources: Sources, tasks: list[TaskRef] | None, app_id: str | None, only: list[KindName] | None, notes: list[str]
) -> list[TaskInfo]:
    if bool(tasks) == bool(app_id):
        raise InvalidInput("give either tasks (kind + id each) or app_id")
    found: list[TaskInfo] = []
    if app_id:
        for kind, source in sources.by_kind.items():
            if only is None or kind in only:
                found += await _unless_unavailable(source.of_app(app_id), [], notes)
        return found
    assert tasks is not None
    if len(tasks) > MAX_TARGETS:
        raise InvalidInput(f"{len(tasks)} tasks given; at most {MAX_TARGETS} per call")
    wanted: dict[str, list[str]] = {}
    for ref in tasks:
        wanted.setdefault(ref.kind, []).append(ref.id)
    for kind, ids in wanted.items():
        unique = list(dict.fromkeys(ids))
        got = await _unless_unavailable(sources.of(kind).many(unique), None, notes)
        if got is None:
            continue
        missing = [i for i in unique if i not in got]
        if missing:
            raise InvalidInput(f"no {kind} task with id {', '.join(missing[:10])}; nothing was changed")
        found += [got[i] for i in unique]
    return found


async def _bulk_notes(names: Names, targets: list[TaskInfo], todo: list[TaskInfo], state_word: str) -> list[str]:
    notes = [f"{len(targets) - len(todo)} already {state_word}: left as they are"] if len(todo) < len(targets) else []
    notes.append("Tasks are changed one by one; if some fail, the result lists what changed and what did not.")
    put = [t.owner_before_put for t in todo if t.owner_before_put]
    note = await owner_change_note(names, put) if put else ""
    if note:
        notes.append(f"{len(put)} reload tasks/tasks: " + note)
    return notes


async def plan_bulk(
    sources: Sources,
    enabled: bool,
    tasks: list[TaskRef] | None,
    app_id: str | None,
    kinds_filter: list[KindName] | None,
) -> Plan:
    unavailable: list[str] = []
    targets = await _targets(sources, tasks, app_id, kinds_filter, unavailable)
    state_word = "enabled" if enabled else "disabled"
    todo = [t for t in targets if t.enabled != enabled]
    if not todo:
        skipped = "".join(f" ({note}: skipped)" for note in unavailable)
        raise InvalidInput(f"all {len(targets)} tasks are already {state_word}{skipped}; nothing to change")
    per_kind: dict[str, int] = {}
    for t in todo:
        per_kind[t.kind] = per_kind.get(t.kind, 0) + 1
    changes = await task_lines(sources.names, todo[:PREVIEW_LINES], state_word)
    if len(todo) > PREVIEW_LINES:
        changes.append(f"... and {len(todo) - PREVIEW_LINES} more (all bound by the confirmation)")
    kinds_text = ", ".join(f"{n} {k}" for k, n in sorted(per_kind.items()))
    return Plan(
        action=f"{'Enable' if enabled else 'Disable'} {len(todo)} tasks ({kinds_text})"
        + (f" of app {app_id}" if app_id else ""),
        changes=changes,
        state=sorted((t.kind, t.id, t.enabled) for t in targets),
        notes=[f"{note}: skipped" for note in unavailable]
        + await _bulk_notes(sources.names, targets, todo, state_word),
        payload=todo,
    )


@destructive("Enable or disable tasks", plan=plan_bulk, idempotent=True)
async def set_tasks_enabled(
    sources: Sources,
    plan: Plan,
    enabled: Annotated[bool, Field(description="true enables, false disables (pauses) them.")],
    tasks: Annotated[
        list[TaskRef] | None, Field(max_length=MAX_TARGETS, description="These tasks (kind + id).")
    ] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="Or every task of this app.")] = None,
    kinds_filter: Annotated[list[KindName] | None, Field(description="With app_id: only these kinds.")] = None,
) -> BulkResult:
    """Enable or disable many tasks of any kind at once. Needs the user's confirmation of the listed tasks."""
    todo: list[TaskInfo] = plan.payload
    failed: list[BulkFailure] = []

    async def one(info: TaskInfo) -> None:
        try:
            await sources.of(info.kind).set_enabled(info, enabled)
        except ClientError as exc:
            failed.append(BulkFailure(kind=info.kind, id=info.id, error=str(exc)[:300]))

    await gather(todo, one)
    return BulkResult(changed=len(todo) - len(failed), already=0, failed=failed)


async def _followers(sources: Sources, app_id: str) -> tuple[list[TaskInfo], str | None]:
    """Chains cross apps: a task of another app may start when one of these ends. Read the other apps' tasks
    (bounded, and every page within the overview's budget) of the kinds that chain, to find such followers."""
    chaining = [s for s in sources.by_kind.values() if s.chains]
    if not chaining:
        return [], None
    apps: set[str] = set()
    for found in sources.by_kind.values():
        apps |= await _unless_unavailable(found.app_ids(), set(), [])
    others_apps = sorted(apps - {app_id, ""})
    scanned = others_apps[:CHAIN_SCAN_APPS]
    others: list[TaskInfo] = []

    async def read_app(other: str) -> None:
        for found in chaining:
            others.extend(await found.of_app(other))

    await gather(scanned, read_app)
    if len(others_apps) > len(scanned):
        left = len(others_apps) - len(scanned)
        return others, f"Followers in {left} other apps were not checked (limit {CHAIN_SCAN_APPS} apps)."
    return others, None


async def _overview_item(
    info: TaskInfo, runs: int, now: datetime, starts: dict[str, list[str]], deadline: float
) -> OverviewItem:
    times = await run_times(info, count=runs, now=now, deadline=deadline, strict=True) if runs else []
    return OverviewItem(
        kind=info.kind,
        id=info.id,
        name=info.name,
        enabled=info.enabled,
        disabled_reason=info.disabled_reason,
        schedule=schedule_line(info),
        next_runs=[utc_z(t) for t in times],
        after=[f"task {t} {outcome(s)}" for t, s in info.after],
        starts=starts.get(info.id, []),
    )


async def _overview_items(
    infos: list[TaskInfo], runs: int, starts: dict[str, list[str]]
) -> tuple[list[OverviewItem], str | None]:
    """Every task's item; next runs share one deadline, and a task whose runs cannot be worked out in it says so."""
    now = datetime.now(UTC)
    deadline = time.monotonic() + EXPANSION_SECONDS
    items: list[OverviewItem] = []
    unknown: list[str] = []
    for info in infos:
        try:
            items.append(await _overview_item(info, runs, now, starts, deadline))
        except InvalidInput:
            unknown.append(f"{info.kind} {info.id}")
            items.append(await _overview_item(info, 0, now, starts, deadline))
    if not unknown:
        return items, None
    return items, f"No next runs shown for {', '.join(unknown[:10])}: explain_schedule says why."


def _chains(infos: list[TaskInfo]) -> dict[str, list[str]]:
    starts: dict[str, list[str]] = {}
    for info in infos:
        for task_id, status in info.after:
            starts.setdefault(task_id, []).append(f"{info.kind} {info.id} ({info.name}), when this {outcome(status)}")
    return starts


async def _app_tasks(sources: Sources, app_id: str) -> tuple[list[TaskInfo], list[TaskInfo], str | None]:
    """The app's tasks, and other apps' tasks that chain to them, every listing page within one budget."""
    budget = Budget(requests=OVERVIEW_REQUESTS, deadline=time.monotonic() + SCAN_SECONDS)
    unavailable: list[str] = []
    with _spending(budget):
        infos: list[TaskInfo] = []
        for found in sources.by_kind.values():
            infos += await _unless_unavailable(found.of_app(app_id), [], unavailable)
        others, note = await _followers(sources, app_id) if infos else ([], None)
    stopped = _stopped_note(budget, OVERVIEW_REQUESTS, "the overview may miss tasks or chains")
    return _unique(infos), others, " ".join(filter(None, [*unavailable, stopped, note])) or None


def _unique(infos: list[TaskInfo]) -> list[TaskInfo]:
    # A tenant whose listing loops sends the same task again: it is shown once.
    return list({(info.kind, info.id): info for info in infos}.values())


@read("App schedule overview")
async def get_app_schedule_overview(
    sources: Sources,
    app_id: Annotated[str, Field(min_length=1, max_length=128, description="App id.")],
    runs: Annotated[int, Field(ge=0, le=10, description="Next runs to show per task.")] = 3,
) -> AppOverview:
    """Everything scheduled for one app, every kind: what runs when, what triggers what, what is disabled."""
    infos, others, note = await _app_tasks(sources, app_id)
    items, unknown = await _overview_items(infos, runs, _chains(infos + others))
    items.sort(key=lambda i: (not i.enabled, i.next_runs[0] if i.next_runs else "~"))
    if not items:
        note = " ".join(filter(None, ["Nothing is scheduled for this app (or the id is not an app's).", note]))
    return AppOverview(app_id=app_id, items=items, note=" ".join(filter(None, [note, unknown])) or None)


find_orphans = orphans.find_orphans
