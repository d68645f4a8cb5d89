"""Ops answers across every task kind: failures in a window, schedules explained, bulk enable/disable,
and one app's whole schedule."""

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.schedule import local_datetime, occurrences, rrule_lines, start_after_change, utc_z
from qlik_tasks_mcp.client.schedule import time_zone as zone_info
from qlik_tasks_mcp.client.schedule_text import describe_schedule, rrule_parts
from qlik_tasks_mcp.client.workflow import interval_rrule, repeating_interval
from qlik_tasks_mcp.tools.common import ConfirmToken, Registrar, put_owner_note
from qlik_tasks_mcp.tools.fence import untrusted
from qlik_tasks_mcp.tools.gate import Consent, Gated, Plan
from qlik_tasks_mcp.tools.kinds import Budget, Failure, Kind, ReloadKind, ScansFailures, TaskInfo, TaskKind, parse_time
from qlik_tasks_mcp.tools.model import Compact, Input

TOOLSET = "ops"
CONCURRENCY = 4
SCAN_REQUESTS = 400
SCAN_SECONDS = 45.0
PREVIEW_LINES = 100
MAX_TARGETS = 5000
CHAIN_SCAN_APPS = 200
BULK_SCAN_FROM = 20  # more ids than this of one kind: read the kind's whole list once instead of one GET each

T = TypeVar("T")
KindName = Literal["reload", "task", "sharing", "qalyptus"]


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


def run_times(info: TaskInfo, *, count: int, now: datetime, even_if_disabled: bool = False) -> list[datetime]:
    if not info.recurrence or not info.time_zone or not (info.enabled or even_if_disabled):
        return []
    zone = zone_info(info.time_zone)
    start = local_datetime(info.start[:19], "start") if info.start else None
    end = local_datetime(info.end[:19], "end") if info.end else None
    return occurrences(info.recurrence, zone, start, after=now, count=count, end=end)


def schedule_line(info: TaskInfo) -> str | None:
    if info.recurrence:
        return describe_schedule(info.recurrence, info.time_zone, info.start, info.end)
    return info.schedule_text


def outcome(status: str | None) -> str:
    return {"SUCCEEDED": "succeeds", "FAILED": "fails"}.get((status or "").upper(), "finishes")


async def gather(items: list[T], work: Callable[[T], Awaitable[None]]) -> None:
    """Run `work` over `items` with bounded concurrency: a big tenant is read steadily, not all at once."""
    limiter = anyio.CapacityLimiter(CONCURRENCY)
    errors: list[Exception] = []

    async def one(item: T) -> None:
        async with limiter:
            try:
                await work(item)
            except Exception as exc:
                # The first failure ends the rest, and surfaces as itself rather than as an exception group.
                errors.append(exc)
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for item in items:
            group.start_soon(one, item)
    if errors:
        raise errors[0]


def register(reg: Registrar, kinds: dict[str, Kind]) -> None:
    available = ", ".join(kinds)

    def adapter(kind: str) -> Kind:
        if kind not in kinds:
            raise InvalidInput(f"kind {kind!r} is not served here; choose from {available}")
        return kinds[kind]

    @reg.tool(TOOLSET, "read", title="Explain a schedule")
    async def explain_schedule(
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
            if kind is None:
                raise InvalidInput(f"give the kind of task {task_id}: one of {available}")
            info = await adapter(kind).get(task_id)
            label = f"{kind} {info.id} {info.name}"
            if not info.recurrence:
                what = info.schedule_text or "no time schedule (it runs on demand or when another task ends)"
                return ScheduleExplained(description=what, time_zone=info.time_zone or "UTC", next_runs=[], task=label)
        elif recurrence and interval:
            raise InvalidInput("give recurrence lines or an interval, not both")
        elif recurrence:
            info = TaskInfo("proposed", "-", "-", True, recurrence=rrule_lines(recurrence))
            # With no start, create and update start the schedule now: explain it as they would send it.
            start = start_after_change(start, None, zone_info(time_zone)) or ""
            info.time_zone, info.start, info.end = time_zone, start, end
            if any("BYHOUR" in parts and "BYMINUTE" not in parts for parts in map(rrule_parts, info.recurrence)):
                hint = f"No BYMINUTE: runs take the start's minute ({start[14:16]}); add BYMINUTE=0 for on the hour."
        elif interval:
            parsed = repeating_interval(interval)
            info = TaskInfo("proposed", "-", "-", True, recurrence=[interval_rrule(parsed)], start=parsed.start)
            info.time_zone, info.end = time_zone, end
        else:
            raise InvalidInput("give task_id with kind, or a schedule to check: recurrence lines or an interval")
        zone = zone_info(info.time_zone or "UTC")
        if info.start and info.end and local_datetime(info.end[:19], "end") <= local_datetime(info.start[:19], "start"):
            raise InvalidInput(f"end {info.end} must be after start {info.start}")
        runs = run_times(info, count=count, now=datetime.now(UTC), even_if_disabled=True)
        note = None if info.enabled else "The task is disabled: these runs happen only once it is enabled."
        if not runs:
            note = "No future runs: the schedule has ended."
        note = " ".join(filter(None, [note, hint])) or None
        return ScheduleExplained(
            description=schedule_line(info) or "-",
            time_zone=zone.key,
            next_runs=[RunTime(local=r.strftime("%Y-%m-%d %H:%M %Z (%a)"), utc=utc_z(r)) for r in runs],
            task=label,
            note=note,
        )

    @reg.tool(TOOLSET, "read", title="Find failures")
    async def find_failures(
        hours: Annotated[int, Field(ge=1, le=168, description="Look back this many hours.")] = 24,
        app_ids: Annotated[
            list[str] | None, Field(max_length=200, description="Also check tasks of these apps.")
        ] = None,
    ) -> FailureReport:
        """Every failed run/execution in a window across all task kinds, grouped by task, with first error line."""
        clock = time.monotonic
        budget = Budget(requests=SCAN_REQUESTS, deadline=clock() + SCAN_SECONDS)
        since = datetime.now(UTC) - timedelta(hours=hours)
        found: list[Failure] = []
        checked: dict[str, int] = {}
        apps: set[str] = set(app_ids or [])
        reload_kind = kinds.get("reload")
        if isinstance(reload_kind, ReloadKind):
            count = 0
            async for raw in reload_kind.api.all():
                count += 1
                apps.add(raw.get("appId", ""))
                last = parse_time(raw.get("lastExecutionTime"))
                if raw.get("disabledCode") == "CONSECUTIVE-FAILURES" and (last is None or last >= since):
                    found.append(
                        Failure(
                            "reload",
                            raw["id"],
                            f"reload of app {raw.get('appId')}",
                            raw.get("appId"),
                            raw.get("lastExecutionTime"),
                            error=raw.get("log") or "disabled after consecutive failures",
                        )
                    )
            checked["reload"] = count
        task_kind = kinds.get("task")
        if isinstance(task_kind, TaskKind):
            app_list = sorted(a for a in apps if a)

            async def scan(app_id: str) -> None:
                try:
                    found.extend(await task_kind.failures_of_app(app_id, since, budget, clock))
                except ApiError as exc:
                    budget.skipped.append(f"task runs of app {app_id} (HTTP {exc.status})")

            await gather(app_list, scan)
            checked["task apps"] = len(app_list)
        for name, kind in kinds.items():
            if isinstance(kind, ScansFailures):
                try:
                    failures, read = await kind.failures(since, budget, clock)
                except ApiError as exc:
                    budget.skipped.append(f"{name} failures (HTTP {exc.status})")
                    continue
                found.extend(failures)
                checked[name] = read
        groups: dict[tuple[str, str], FailureGroup] = {}
        for failure in found:
            key = (failure.kind, failure.task_id)
            group = groups.get(key)
            if group is None:
                groups[key] = FailureGroup(
                    kind=failure.kind,
                    task_id=failure.task_id,
                    name=failure.name,
                    app_id=failure.app_id,
                    failures=1,
                    last_failed_at=failure.at,
                    ref=failure.ref,
                    first_error=untrusted(failure.error, "log line") if failure.error else None,
                )
            else:
                group.failures += 1
        ordered = sorted(groups.values(), key=lambda g: g.last_failed_at or "", reverse=True)
        return FailureReport(
            since=utc_z(since),
            groups=ordered,
            checked=checked,
            stopped_early=bool(budget.skipped),
            not_checked=budget.skipped[:20],
            note=(
                f"Stopped early: {len(budget.skipped)} reads skipped to stay within {SCAN_REQUESTS} requests / "
                f"{SCAN_SECONDS:.0f} s; narrow with hours or app_ids."
                if budget.skipped
                else None
            ),
        )

    async def resolve_targets(
        tasks: list[TaskRef] | None, app_id: str | None, only: list[KindName] | None
    ) -> list[TaskInfo]:
        if bool(tasks) == bool(app_id):
            raise InvalidInput("give either tasks (kind + id each) or app_id")
        found: list[TaskInfo] = []
        if app_id:
            for name, kind in kinds.items():
                if only is None or name in only:
                    found += await kind.of_app(app_id)
            return found
        assert tasks is not None
        if len(tasks) > MAX_TARGETS:
            raise InvalidInput(f"{len(tasks)} tasks given; at most {MAX_TARGETS} per call")
        wanted: dict[str, list[str]] = {}
        for ref in tasks:
            wanted.setdefault(ref.kind, []).append(ref.id)
        for name, ids in wanted.items():
            kind = adapter(name)
            unique = list(dict.fromkeys(ids))
            if isinstance(kind, ReloadKind) and len(unique) > BULK_SCAN_FROM:
                keep = set(unique)
                got = {raw["id"]: kind.info(raw) async for raw in kind.api.all() if raw["id"] in keep}
            else:
                got = {}

                async def one(task_id: str, kind: Kind = kind, got: dict[str, TaskInfo] = got) -> None:
                    got[task_id] = await kind.get(task_id)

                await gather(unique, one)
            missing = [i for i in unique if i not in got]
            if missing:
                raise InvalidInput(f"no {name} task with id {', '.join(missing[:10])}; nothing was changed")
            found += [got[i] for i in unique]
        return found

    async def plan_bulk(
        enabled: bool, tasks: list[TaskRef] | None, app_id: str | None, kinds_filter: list[KindName] | None
    ) -> tuple[Plan, list[TaskInfo]]:
        targets = await resolve_targets(tasks, app_id, kinds_filter)
        verb = "Enable" if enabled else "Disable"
        todo = [t for t in targets if t.enabled != enabled]
        if not todo:
            raise InvalidInput(
                f"all {len(targets)} tasks are already {'enabled' if enabled else 'disabled'}; nothing to change"
            )
        per_kind: dict[str, int] = {}
        for t in todo:
            per_kind[t.kind] = per_kind.get(t.kind, 0) + 1
        state_word = "enabled" if enabled else "disabled"
        changes = [f"{t.kind} {t.id} ({t.name}): {t.state or 'now'} -> {state_word}" for t in todo[:PREVIEW_LINES]]
        if len(todo) > PREVIEW_LINES:
            changes.append(f"... and {len(todo) - PREVIEW_LINES} more (all bound by the confirmation)")
        notes = (
            [f"{len(targets) - len(todo)} already {state_word}: left as they are"] if len(todo) < len(targets) else []
        )
        notes.append("Tasks are changed one by one; if some fail, the result lists what changed and what did not.")
        put = [t.owner_before_put for t in todo if t.owner_before_put]
        if put:
            notes.append(f"{len(put)} reload tasks/tasks: " + put_owner_note(put))
        kinds_text = ", ".join(f"{n} {k}" for k, n in sorted(per_kind.items()))
        plan = Plan(
            action=f"{verb} {len(todo)} tasks ({kinds_text})" + (f" of app {app_id}" if app_id else ""),
            changes=changes,
            state=sorted((t.kind, t.id, t.enabled) for t in targets),
            notes=notes,
        )
        return plan, todo

    @reg.resolver
    async def ask_bulk(
        ctx: Context,
        enabled: bool,
        tasks: list[TaskRef] | None,
        app_id: str | None,
        kinds_filter: list[KindName] | None,
    ) -> Elicit[Consent] | None:
        async def plan() -> Plan:
            return (await plan_bulk(enabled, tasks, app_id, kinds_filter))[0]

        return await reg.gate.ask(ctx, plan)

    @reg.tool(TOOLSET, "destructive", title="Enable or disable tasks", idempotent=True)
    async def set_tasks_enabled(
        enabled: Annotated[bool, Field(description="true enables, false disables (pauses) them.")],
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_bulk)],
        tasks: Annotated[
            list[TaskRef] | None, Field(max_length=MAX_TARGETS, description="These tasks (kind + id).")
        ] = None,
        app_id: Annotated[str | None, Field(max_length=128, description="Or every task of this app.")] = None,
        kinds_filter: Annotated[list[KindName] | None, Field(description="With app_id: only these kinds.")] = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[BulkResult]:
        """Enable or disable many tasks of any kind at once. Needs the user's confirmation of the listed tasks."""
        plan, todo = await plan_bulk(enabled, tasks, app_id, kinds_filter)

        async def act() -> BulkResult:
            failed: list[BulkFailure] = []

            async def one(info: TaskInfo) -> None:
                try:
                    await kinds[info.kind].set_enabled(info, enabled)
                except (ApiError, InvalidInput) as exc:
                    failed.append(BulkFailure(kind=info.kind, id=info.id, error=str(exc)[:300]))

            await gather(todo, one)
            return BulkResult(changed=len(todo) - len(failed), already=0, failed=failed)

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    @reg.tool(TOOLSET, "read", title="App schedule overview")
    async def get_app_schedule_overview(
        app_id: Annotated[str, Field(min_length=1, max_length=128, description="App id.")],
        runs: Annotated[int, Field(ge=0, le=10, description="Next runs to show per task.")] = 3,
    ) -> AppOverview:
        """Everything scheduled for one app, every kind: what runs when, what triggers what, what is disabled."""
        infos: list[TaskInfo] = []
        for kind in kinds.values():
            infos += await kind.of_app(app_id)
        note = None
        # Chains cross apps: a task of another app may start when one of these ends. Read the other apps'
        # tasks (bounded) to find such followers.
        others: list[TaskInfo] = []
        task_kind, reload_kind = kinds.get("task"), kinds.get("reload")
        if infos and isinstance(task_kind, TaskKind) and isinstance(reload_kind, ReloadKind):
            apps = sorted({raw.get("appId", "") async for raw in reload_kind.api.all()} - {app_id, ""})
            budget = Budget(requests=CHAIN_SCAN_APPS, deadline=time.monotonic() + SCAN_SECONDS)
            scanned = [a for a in apps if budget.spend(time.monotonic(), f"tasks of app {a}")]

            async def read(other: str) -> None:
                others.extend(await task_kind.of_app(other))

            await gather(scanned, read)
            if budget.skipped:
                note = f"Followers in {len(budget.skipped)} other apps were not checked (limit {CHAIN_SCAN_APPS} apps)."
        starts: dict[str, list[str]] = {}
        for info in infos + others:
            for task_id, status in info.after:
                starts.setdefault(task_id, []).append(
                    f"{info.kind} {info.id} ({info.name}), when this {outcome(status)}"
                )
        now = datetime.now(UTC)
        items = []
        for info in infos:
            times = run_times(info, count=runs, now=now) if runs else []
            items.append(
                OverviewItem(
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
            )
        items.sort(key=lambda i: (not i.enabled, i.next_runs[0] if i.next_runs else "~"))
        if not items:
            note = "Nothing is scheduled for this app (or the id is not an app's)."
        return AppOverview(app_id=app_id, items=items, note=note)
