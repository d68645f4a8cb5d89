"""Ops answers across every served task kind: failures in a window, schedules explained, bulk enable/disable,
and one app's whole schedule. They see each family only through its `TaskSource`, and only served families."""

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ClientError, InvalidInput
from qlik_tasks_mcp.client.ratelimit import pacing_reported
from qlik_tasks_mcp.client.reloads import ReloadsApi
from qlik_tasks_mcp.client.schedule import (
    ExpansionBudget,
    read_schedule,
    rrule_lines,
    start_after_change,
    utc_z,
)
from qlik_tasks_mcp.client.schedule import time_zone as zone_info
from qlik_tasks_mcp.client.schedule_text import rrule_parts
from qlik_tasks_mcp.client.workflow import repeating_interval
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note, untrusted_once
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import Names, RowNames, owner_change_note, owner_of
from qlik_tasks_mcp.tools.operation import destructive, read
from qlik_tasks_mcp.tools.ops import bulk, missed, orphans, stats
from qlik_tasks_mcp.tools.ops.selection import (
    MAX_TARGETS,
    ONE_BY_ONE,
    PREVIEW_LINES,
    BulkFailure,
    BulkResult,
    KindName,
    Sources,
    TaskFilter,
    TaskRef,
    preview_page,
    select_targets,
    spending,
    unique_tasks,
    unless_unavailable,
)
from qlik_tasks_mcp.tools.reloads.tools import Reload
from qlik_tasks_mcp.tools.sources import (
    APP_RELOADS,
    OWNER_OFF,
    SENDER_KINDS,
    Budget,
    Failure,
    FailureScan,
    KindUnavailable,
    TaskInfo,
    TaskSource,
    ended,
    gather,
    run_times,
    runs_it,
    scan_now,
    schedule_line,
    stale_note,
    stale_reports_notes,
    timings,
    why_off,
    will_not_run,
)

SCAN_REQUESTS = 400
SCAN_SECONDS = 45.0
# An overview reads one app's tasks, the tenant's app ids, then other apps' tasks for chains: every page counts.
OVERVIEW_REQUESTS = 400
CHAIN_SCAN_APPS = 200
RECENT_RELOADS = 10
ERROR_CHARS = 300

ScanKind = Literal["app", "reload", "task", "sharing", "qalyptus"]


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
    kind: str = Field(description="Task kind, or app: reloads no served task kind started (a user, the API).")
    task_id: str = Field(description="The task's id (kind app: the app's).")
    name: str
    app_id: str | None = None
    app: str | None = None
    failures: int = Field(description="Failed runs in the window.")
    last_failed_at: str | None = None
    ref: str | None = Field(None, description="Id of the newest failure; ref_kind says of what.")
    ref_kind: str | None = Field(None, description="reload: get_reload_log; run: get_task_run_log; else the kind's.")
    first_error: str | None = Field(default=None, exclude=True)
    error: int | None = Field(default=None, description="Its first error's line in errors.")


class FailureReport(Compact):
    since: str
    groups: list[FailureGroup]
    errors: str | None = Field(None, description="Each distinct first error once, fenced, with its failures.")
    checked: dict[str, int]
    requests: dict[str, str] = Field({}, description="Per kind: requests spent / its budget.")
    stopped_early: bool = False
    not_checked: list[str] = []
    note: str | None = None


class OverviewItem(Compact):
    kind: str
    id: str
    name: str
    enabled: bool
    disabled_reason: str | None = None
    schedule: str | None = None
    next_runs: list[str] = []
    will_not_run: str | None = Field(None, description="Why its schedule will not run it.")
    after: list[str] = Field(default=[], description="Runs whose end starts this task.")
    starts: list[str] = Field(default=[], description="Tasks this one's end starts.")
    owner: str | None = None


class ReloadHistory(Compact):
    reloads: list[Reload] = Field(description="The app's latest reloads, newest first.")
    ended: int
    failed: int
    failure_rate: float | None = Field(None, description="failed / ended, among these reloads.")


class AppOverview(Compact):
    app_id: str
    items: list[OverviewItem]
    recent_reloads: ReloadHistory | None = None
    note: str | None = None


def outcome(status: str | None) -> str:
    return {"SUCCEEDED": "succeeds", "FAILED": "fails"}.get((status or "").upper(), "finishes")


def service(clients: Deps) -> Sources:
    reloads = ReloadsApi(clients.qlik) if APP_RELOADS in clients.sources else None
    return Sources(clients.sources, clients.names, reloads)


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
    zone_info(time_zone)
    if recurrence:
        lines = rrule_lines(recurrence)
        # With no start, create and update start the schedule now: explain it as they would send it.
        start = start_after_change(start, None, zone_info(time_zone)) or ""
        schedule = read_schedule(recurrence=lines, zone=time_zone, start=start, end=end)
        info = TaskInfo("proposed", "-", "-", True, schedule=schedule)
        if any("BYHOUR" in parts and "BYMINUTE" not in parts for parts in map(rrule_parts, lines)):
            return info, f"No BYMINUTE: runs take the start's minute ({start[14:16]}); add BYMINUTE=0 for on the hour."
        return info, None
    if interval:
        parsed = repeating_interval(interval)
        schedule = read_schedule(interval=parsed.text, zone=time_zone, end=end)
        return TaskInfo("proposed", "-", "-", True, schedule=schedule), None
    raise InvalidInput("give task_id with kind, or a schedule to check: recurrence lines or an interval")


@read("Explain a schedule")
async def explain_schedule(
    sources: Sources,
    kind: Annotated[KindName | None, Field(description="With task_id: the task's kind.")] = None,
    task_id: Annotated[str | None, Field(max_length=128)] = None,
    recurrence: Annotated[list[str] | None, Field(max_length=20, description="Or RRULE lines to check.")] = None,
    interval: Annotated[
        str | None, Field(max_length=80, description="Or ISO 8601 R/start/duration (start local, Z or offset).")
    ] = None,
    time_zone: Annotated[str, Field(max_length=64, description="Of given lines/interval.")] = "UTC",
    start: Annotated[str | None, Field(max_length=40, description="Local.")] = None,
    end: Annotated[str | None, Field(max_length=40, description="Local.")] = None,
    count: Annotated[int, Field(ge=1, le=20, description="Next runs to show.")] = 5,
) -> ScheduleExplained:
    """A task's schedule, or one given, in words with its next runs (local and UTC); validates a given one."""
    label = hint = None
    if task_id:
        info = await _explained_task(sources, kind, task_id)
        label = f"{kind} {info.id} {info.name}"
    else:
        # Checking the rules expands them (bounded): in a worker thread, so other sessions never wait on it.
        info, hint = await anyio.to_thread.run_sync(_proposed, recurrence, interval, time_zone, start, end)
    schedules = timings(info)
    if not schedules:
        what = info.schedule_text or "no time schedule (it runs on demand or when another task ends)"
        return ScheduleExplained(description=what, time_zone=info.time_zone or "UTC", next_runs=[], task=label)
    # Several schedules (a Qalyptus task's triggers): each in words, their runs merged, each in its own zone.
    description = "; ".join(s.shown for s in schedules)
    zones = ", ".join(dict.fromkeys(s.zone for s in schedules))
    readable = [s for s in schedules if s.readable]
    if not readable:
        note = "This schedule could not be read, so its runs are not shown; it is shown as stored."
        return ScheduleExplained(description=description, time_zone=zones, next_runs=[], task=label, note=note)
    for schedule in readable:
        if schedule.start and schedule.end and schedule.end <= schedule.start:
            raise InvalidInput(
                f"end {schedule.end:%Y-%m-%dT%H:%M:%S} must be after start {schedule.start:%Y-%m-%dT%H:%M:%S}"
            )
    now = datetime.now(UTC)
    runs = await run_times(info, count=count, now=now, budget=ExpansionBudget(), even_if_disabled=True, strict=True)
    has_tasks = bool(info.kind == "reload" and info.app_id and await _has_tasks(sources, info.app_id, None))
    # Runs here are worked out even for a task that is off: none at all means the schedule itself has ended.
    off = why_off(info, app_has_tasks=has_tasks)
    why_not = f"These runs happen only once that changes: {off}." if off and runs else off
    if not runs:
        why_not = "; ".join(filter(None, [ended(readable, now), off])) + "."
    unread = len(schedules) - len(readable)
    skipped = f"{unread} of its schedules could not be read: their runs are not shown." if unread else None
    notes = [info.also, why_not, skipped, *dict.fromkeys(s.note for s in readable), hint]
    return ScheduleExplained(
        description=description,
        time_zone=zones,
        next_runs=[RunTime(local=r.strftime("%Y-%m-%d %H:%M %Z (%a)"), utc=utc_z(r)) for r in runs],
        task=label,
        note=" ".join(filter(None, notes)) or None,
    )


def _grouped(found: list[Failure]) -> list[FailureGroup]:
    """One group per task and app, newest failure first: every failed run counts; the first error is the newest's."""
    groups: dict[tuple[str, str, str | None], FailureGroup] = {}
    for failure in sorted(found, key=lambda f: f.at or "", reverse=True):
        key = (failure.kind, failure.task_id, failure.app_id)
        group = groups.get(key)
        if group is not None:
            group.failures += 1
            if group.first_error is None and failure.error:
                group.first_error = one_line(failure.error, ERROR_CHARS)
            continue
        groups[key] = FailureGroup(
            kind=failure.kind,
            task_id=failure.task_id,
            name=one_line(failure.name, 200),
            app_id=failure.app_id,
            failures=1,
            last_failed_at=failure.at,
            ref=failure.ref,
            ref_kind=failure.ref_kind if failure.ref else None,
            first_error=one_line(failure.error, ERROR_CHARS) if failure.error else None,
        )
    return sorted(groups.values(), key=lambda g: g.last_failed_at or "", reverse=True)


def _errors_block(groups: list[FailureGroup]) -> str | None:
    """The groups' first error lines in one fence, each distinct one once with its failures (100 tasks failing
    alike are one line); each group names its line."""
    block, numbers = untrusted_once(
        ((g.first_error, g.failures) for g in groups if g.first_error), "first error lines", "failures"
    )
    for group in groups:
        group.error = numbers.get(group.first_error or "")
    return block


def _stopped_note(budget: Budget, requests: int, narrow: str) -> str | None:
    if not budget.skipped:
        return None
    return (
        f"Stopped early: {len(budget.skipped)} reads skipped to stay within {requests} requests / "
        f"{SCAN_SECONDS:.0f} s; {narrow}."
    )


def _scan_order(sources: Sources, kinds: list[ScanKind] | None) -> list[tuple[str, TaskSource]]:
    """The kinds to scan; app reloads first, as the task kinds count their failed runs from them."""
    chosen = [(k, s) for k, s in sources.by_kind.items() if kinds is None or k in kinds]
    return sorted(chosen, key=lambda pair: pair[0] != APP_RELOADS)


@dataclass
class _KindShares:
    """Each kind's share of the scan's requests and time: what is left, split over the kinds still to scan, so
    one kind cannot starve the others and what one leaves unused goes to the next."""

    requests: int
    deadline: float
    left: int
    spent: dict[str, str]
    skipped: list[str]

    def budget(self, now: float) -> Budget:
        share = max(1, self.requests // max(1, self.left))
        return Budget(requests=share, deadline=now + max(0.0, self.deadline - now) / max(1, self.left))

    def close(self, kind: str, budget: Budget, given: int) -> None:
        used = given - budget.requests
        self.requests -= used
        self.left -= 1
        self.spent[kind] = f"{used}/{given}"
        self.skipped += budget.skipped


async def _scan_kind(kind: str, found: TaskSource, scan: FailureScan, unavailable: list[str]) -> None:
    try:
        with spending(scan.budget):
            await unless_unavailable(found.failures(scan), None, unavailable)
    except ClientError as exc:
        status = getattr(exc, "status", None)
        scan.budget.skipped.append(
            f"{kind} failures" + (f" (HTTP {status}: {exc})" if status is not None else f" ({exc})")
        )


def _rest_note(shares: _KindShares, short: list[str]) -> str | None:
    if not shares.skipped:
        return None
    again = f" Call again with kinds={short} for the rest of those kinds" if short else ""
    return (
        f"Stopped early: {len(shares.skipped)} reads skipped to stay within {SCAN_REQUESTS} requests / "
        f"{SCAN_SECONDS:.0f} s (each kind its share).{again}, or narrow with hours or app_ids."
    )


@read("Find failures")
async def find_failures(
    sources: Sources,
    ctx: Context,
    hours: Annotated[int, Field(ge=1, le=168, description="Look back this many hours.")] = 24,
    app_ids: Annotated[
        list[str] | None, Field(max_length=200, description="Also read these apps' reloads and task runs one by one.")
    ] = None,
    kinds: Annotated[list[ScanKind] | None, Field(max_length=5, description="app: reloads not by a task.")] = None,
) -> FailureReport:
    """Every failed run in a window across all task kinds and app reloads, grouped by task and app, with the first
    error line; each kind has its own request budget."""
    clock = scan_now
    order = _scan_order(sources, kinds)
    shares = _KindShares(SCAN_REQUESTS, clock() + SCAN_SECONDS, len(order), {}, [])
    since = datetime.now(UTC) - timedelta(hours=hours)
    scan = FailureScan(since=since, budget=shares.budget(clock()), clock=clock, apps=set(app_ids or []))
    scan.asked_apps = set(app_ids or [])
    unavailable: list[str] = []
    short: list[str] = []

    async def waiting(tier: str, seconds: float) -> None:
        await ctx.report_progress(0, 1, f"waiting {seconds:.0f} s for rate tier {tier}")

    with pacing_reported(waiting):
        for done, (kind, found) in enumerate(order):
            await ctx.report_progress(done, len(order), f"reading {kind} failures")
            scan.budget = shares.budget(clock())
            given = scan.budget.requests
            await _scan_kind(kind, found, scan, unavailable)
            if scan.budget.skipped:
                short.append(kind)
            shares.close(kind, scan.budget, given)
    scan.found += scan.reloads.unclaimed()
    groups = _grouped(scan.found)
    await _name_apps(sources.names, groups)
    return _report(scan, groups, shares, unavailable, short)


async def _name_apps(names: Names, groups: list[FailureGroup]) -> None:
    """App names beside app ids: one batched lookup for the whole report (apps not visible stay unnamed). The
    failures were found at a cost; a lookup that fails leaves the ids alone (Names notes why)."""
    found = await names.apps({g.app_id for g in groups if g.app_id})
    for group in groups:
        app = found.get(group.app_id or "")
        group.app = one_line(app.name, 200) if app and app.read else None


def _report(
    scan: FailureScan,
    groups: list[FailureGroup],
    shares: _KindShares,
    unavailable: list[str],
    short: list[str],
) -> FailureReport:
    notes = [*unavailable, _rest_note(shares, short), *scan.notes]
    if groups:
        notes.append(tenant_text_note(["name", "app"]) + " errors: first errors, fenced as tenant data.")
    if APP_RELOADS in shares.spent and not scan.reloads.tenant_wide:
        notes.append(
            "Reloads were read app by app (the tenant-wide listing needs a tenant admin, or its budget ran out): "
            "a task whose last run succeeded is found only in the apps read; name apps with app_ids."
        )
    return FailureReport(
        since=utc_z(scan.since),
        groups=groups,
        errors=_errors_block(groups),
        checked=scan.checked,
        requests=shares.spent,
        stopped_early=bool(shares.skipped),
        not_checked=(unavailable + shares.skipped)[:20],
        note=" ".join(filter(None, notes)) or None,
    )


async def _bulk_notes(names: Names, targets: list[TaskInfo], todo: list[TaskInfo], state_word: str) -> list[str]:
    notes = [f"{len(targets) - len(todo)} already {state_word}: left as they are"] if len(todo) < len(targets) else []
    notes.append(ONE_BY_ONE)
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
    filter: TaskFilter | None,
    page: int,
) -> Plan:
    unavailable: list[str] = []
    targets = await select_targets(sources, tasks, app_id, kinds_filter, unavailable, filter)
    state_word = "enabled" if enabled else "disabled"
    todo = [t for t in targets if t.enabled != enabled]
    if not todo:
        skipped = "".join(f" ({note}: skipped)" for note in unavailable)
        raise InvalidInput(f"all {len(targets)} tasks are already {state_word}{skipped}; nothing to change")
    per_kind: dict[str, int] = {}
    for t in todo:
        per_kind[t.kind] = per_kind.get(t.kind, 0) + 1
    kinds_text = ", ".join(f"{n} {k}" for k, n in sorted(per_kind.items()))
    return Plan(
        action=f"{'Enable' if enabled else 'Disable'} {len(todo)} tasks ({kinds_text})"
        + (f" of app {app_id}" if app_id else ""),
        changes=await preview_page(sources.names, todo, page, state_word),
        state=sorted((t.kind, t.id, t.enabled) for t in targets),
        notes=[f"{note}: skipped" for note in unavailable]
        + await _bulk_notes(sources.names, targets, todo, state_word)
        + ([] if enabled else await stale_reports_notes(sources.by_kind, sources.names, todo, deleting=False)),
        payload=todo,
    )


@destructive("Enable or disable tasks", plan=plan_bulk, idempotent=True)
async def set_tasks_enabled(
    sources: Sources,
    plan: Plan,
    enabled: bool,
    tasks: Annotated[list[TaskRef] | None, Field(max_length=MAX_TARGETS)] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="Or every task of this app.")] = None,
    kinds_filter: Annotated[list[KindName] | None, Field(description="With app_id: only these kinds.")] = None,
    filter: Annotated[
        TaskFilter | None, Field(description="Or the tasks matching all of these, tenant-wide unless app_id.")
    ] = None,
    page: Annotated[int, Field(ge=1, le=MAX_TARGETS // PREVIEW_LINES, description="Preview page.")] = 1,
) -> BulkResult:
    """Enable or disable many tasks of any kind at once: named (tasks), of an app, or by filter."""
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
        apps |= await unless_unavailable(found.app_ids(), set(), [])
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
    info: TaskInfo,
    runs: int,
    now: datetime,
    starts: dict[str, list[str]],
    budget: ExpansionBudget,
    has_tasks: bool,
    owners: RowNames,
) -> OverviewItem:
    times = await run_times(info, count=runs, now=now, budget=budget, strict=True) if runs else []
    why_not = will_not_run(info, times, now=now, app_has_tasks=has_tasks) if runs else None
    return OverviewItem(
        kind=info.kind,
        id=info.id,
        name=info.name,
        # A reload task Qlik turned off (its app has tasks) is not enabled, whatever its own state says.
        enabled=info.enabled and not (has_tasks and info.kind == "reload"),
        disabled_reason=info.disabled_reason,
        schedule=schedule_line(info),
        next_runs=[] if why_not else [utc_z(t) for t in times],
        will_not_run=why_not,
        after=[f"task {t} {outcome(s)}" for t, s in info.after],
        starts=starts.get(info.id, []),
        owner=owners.user(info.owner_id) if info.owner_id else info.owner_label,
    )


async def _overview_items(
    infos: list[TaskInfo], runs: int, starts: dict[str, list[str]], has_tasks: bool, owners: RowNames
) -> tuple[list[OverviewItem], str | None]:
    """Every task's item; next runs share one expansion budget, and a task whose runs cannot be worked out within
    it says so."""
    now = datetime.now(UTC)
    expansion = ExpansionBudget()
    items: list[OverviewItem] = []
    unknown: list[str] = []
    for info in infos:
        try:
            items.append(await _overview_item(info, runs, now, starts, expansion, has_tasks, owners))
        except InvalidInput:
            unknown.append(f"{info.kind} {info.id}")
            items.append(await _overview_item(info, 0, now, starts, expansion, has_tasks, owners))
    if not unknown:
        return items, None
    return items, f"No next runs shown for {', '.join(unknown[:10])}: explain_schedule says why."


async def _owners_off(names: Names, infos: list[TaskInfo]) -> RowNames:
    """Marks the tasks whose owner the tenant says is disabled or deleted (one batched look-up), and gives their
    names; a look-up that fails leaves them as they are: the overview's own work goes on."""
    # Qalyptus owners are Qalyptus's own users (its source says when they are gone), not Qlik's.
    qlik = [info for info in infos if info.kind != "qalyptus"]
    try:
        users = await names.users(u for u in {owner_of(i) for i in qlik} if u)
    except ClientError:
        return RowNames({}, {})
    for info in qlik:
        user = users.get(owner_of(info) or "")
        if user is not None and user.status in OWNER_OFF and not info.owner_gone:
            info.owner_gone = f"{one_line(user.name, 100)} ({user.status})"
    return RowNames({}, users)


async def _has_tasks(sources: Sources, app_id: str, infos: list[TaskInfo] | None) -> bool:
    """Whether the app has tasks (then Qlik turns its reload tasks off): from the app's tasks of every kind when
    read already (`infos`, the overview), else read here; where the tasks kind is not served, the reload kind's
    own look-up says."""
    if "task" in sources.by_kind:
        if infos is None:
            infos = await unless_unavailable(sources.of("task").of_app(app_id), [], [])
        return any(info.kind == "task" for info in infos)
    ask: Callable[[str], Awaitable[bool | None]] | None = getattr(sources.by_kind.get("reload"), "has_tasks", None)
    return bool(ask and await ask(app_id))


def _chains(infos: list[TaskInfo]) -> dict[str, list[str]]:
    starts: dict[str, list[str]] = {}
    for info in infos:
        for task_id, status in info.after:
            starts.setdefault(task_id, []).append(f"{info.kind} {info.id} ({info.name}), when this {outcome(status)}")
    return starts


async def _app_tasks(sources: Sources, app_id: str) -> tuple[list[TaskInfo], list[TaskInfo], str | None, bool]:
    """The app's tasks, and other apps' tasks that chain to them, every listing page within one budget; and
    whether every page of the app's own tasks was read."""
    budget = Budget(requests=OVERVIEW_REQUESTS, deadline=scan_now() + SCAN_SECONDS)
    unavailable: list[str] = []
    with spending(budget):
        infos: list[TaskInfo] = []
        for found in sources.by_kind.values():
            infos += await unless_unavailable(found.of_app(app_id), [], unavailable)
        others, note = await _followers(sources, app_id) if infos else ([], None)
    stopped = _stopped_note(budget, OVERVIEW_REQUESTS, "the overview may miss tasks or chains")
    return unique_tasks(infos), others, " ".join(filter(None, [*unavailable, stopped, note])) or None, stopped is None


@read("App schedule overview")
async def get_app_schedule_overview(
    sources: Sources,
    app_id: Annotated[str, Field(min_length=1, max_length=128, description="App id.")],
    runs: Annotated[int, Field(ge=0, le=10, description="Next runs to show per task.")] = 3,
) -> AppOverview:
    """Everything scheduled for one app (every kind): what runs when, what triggers what, what is disabled; and
    its recent reloads' failure rate."""
    infos, others, note, complete = await _app_tasks(sources, app_id)
    owners = await _owners_off(sources.names, infos)
    has_tasks = await _has_tasks(sources, app_id, infos) if any(i.kind == "reload" for i in infos) else False
    items, unknown = await _overview_items(infos, runs, _chains(infos + others), has_tasks, owners)
    impact = await _impact(sources, app_id, infos, others, complete)
    items.sort(key=lambda i: (not i.enabled, i.next_runs[0] if i.next_runs else "~"))
    if not items:
        note = " ".join(filter(None, ["Nothing is scheduled for this app (or the id is not an app's).", note]))
    history, unread = await _recent_reloads(sources, app_id)
    return AppOverview(
        app_id=app_id,
        items=items,
        recent_reloads=history,
        note=" ".join(filter(None, [impact, note, unknown, unread])) or None,
    )


async def _impact(
    sources: Sources, app_id: str, infos: list[TaskInfo], others: list[TaskInfo], complete: bool
) -> str | None:
    """What reloads the app and whether that runs, what its reloads start, who sends its content (their owners
    are on the items); and, when every task of the app was read and nothing reloads it, who stops getting fresh
    reports (the previews' warning, stale_note)."""
    reloaders = [i for i in infos if i.kind in ("task", "reload")]
    senders = [i for i in infos if i.kind in SENDER_KINDS and i.enabled]
    if not reloaders and not senders:
        return None
    has_tasks = any(i.kind == "task" for i in reloaders)
    running = sum(1 for i in reloaders if runs_it(i, has_tasks))
    ours = {i.id for i in reloaders}
    started = {o.id for o in others if any(t in ours for t, _ in o.after)}
    parts = [f"Reloaded by {len(reloaders)} task(s), {running} of them running"]
    kinds = Counter(SENDER_KINDS[i.kind] for i in senders)
    if kinds:
        parts.append("its content sent by " + " and ".join(f"{n} {k}(s)" for k, n in kinds.items()))
    if started:
        parts.append(f"its reloads start {len(started)} task(s) of other apps")
    summary = "; ".join(parts) + "."
    if not complete or "sharing" not in sources.by_kind:
        return summary
    stale = await stale_note(app_id, reloaders, senders, [], (), deleting=False, names=sources.names)
    return " ".join(filter(None, [summary, stale]))


async def _recent_reloads(sources: Sources, app_id: str) -> tuple[ReloadHistory | None, str | None]:
    """One page of the app's reloads (GET /api/v1/reloads?appId=): status, duration, how many of those ended failed."""
    if sources.reloads is None:
        return None, None
    try:
        page = await sources.reloads.list(app_id=app_id, limit=RECENT_RELOADS)
    except ClientError as exc:
        return None, f"Its recent reloads could not be read: {exc}"
    ended = [doc for doc in page.items if doc.ended]
    failed = sum(1 for doc in ended if doc.status.upper() == "FAILED")
    rate = round(failed / len(ended), 2) if ended else None
    reloads = [Reload.of(doc) for doc in page.items]
    return ReloadHistory(reloads=reloads, ended=len(ended), failed=failed, failure_rate=rate), None


# The catalogue's order: the answers that join runs across time, then the bulk changes with one yes.
find_orphans = orphans.find_orphans
get_reload_stats = stats.get_reload_stats
find_missed_runs = missed.find_missed_runs
delete_tasks = bulk.delete_tasks
change_tasks_owner = bulk.change_tasks_owner
