"""Tasks and task chains (`/api/v1/tasks`): list, get, create, update, delete, start (and wait), runs, logs."""

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.resource import Listing
from qlik_tasks_mcp.client.schedule import end_after_change, time_zone
from qlik_tasks_mcp.client.tasks import WRITABLE, RunDoc, ScheduleDoc, TaskDoc, TasksApi
from qlik_tasks_mcp.client.workflow import (
    Interval,
    check_workflow,
    interval_rrule,
    reload_after_task,
    repeating_interval,
    scheduled_reload,
    task_name,
)
from qlik_tasks_mcp.tools.common import Cursor, Limit, put_owner_note
from qlik_tasks_mcp.tools.fence import untrusted
from qlik_tasks_mcp.tools.follow import FailedTail, Followed, RunWatch, WaitSeconds, follow
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.inventory import Clients
from qlik_tasks_mcp.tools.logs import GREP_MAX, RunLog, compile_grep, slice_log
from qlik_tasks_mcp.tools.model import Compact, Deleted, Input
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.sources import (
    Failure,
    FailureScan,
    TaskInfo,
    first_error_line,
    gather,
    parse_time,
    read_each,
)

# A status filter reads at most this many pages to fill one answer.
MAX_SCAN_PAGES = 5

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Task id.")]
RunId = Annotated[str, Field(min_length=1, max_length=128, description="Run id.")]
AppId = Annotated[str, Field(min_length=1, max_length=128, description="App id (the task's resource).")]
RunSort = Annotated[
    Literal["-startedAt", "+startedAt", "-endedAt", "+endedAt", "-status", "+status"],
    Field(description="Sort order."),
]
StatusFilter = Annotated[
    Literal["RUNNING", "SUCCEEDED", "FAILED"] | None,
    Field(description="Only runs with this status (filtered here: a page may hold fewer rows)."),
]
Description = Annotated[str | None, Field(max_length=500, description="Free text shown with the task.")]
Workflow = Annotated[
    dict[str, Any] | None,
    Field(description="Raw Task body (Serverless Workflow), validated against the API schema before sending."),
]


class ScheduleIn(Input):
    """When a scheduled task runs: an ISO 8601 repeating interval whose start is wall-clock time in a zone."""

    interval: str = Field(
        max_length=80, description="R[n]/<local start>/<duration>, e.g. R/2026-02-01T06:00:00/P1D (daily 06:00)."
    )
    time_zone: str | None = Field(
        None, max_length=64, description="IANA zone, e.g. Europe/Zurich; default UTC (update: keep current)."
    )
    end: str | None = Field(
        None, max_length=40, description='Local end; default never (update: keep current, "" clears).'
    )

    def to_api(self, current: ScheduleDoc | None = None) -> tuple[Interval, str, str]:
        """The interval, zone and end ("" for never); on an update, `current` (the stored schedule) supplies the
        zone and end the caller left out. The interval carries its own start."""
        interval = repeating_interval(self.interval)
        zone = self.time_zone or (current.zone if current else "UTC")
        stored_end = current.end_date_time if current else None
        end = end_after_change(self.end, stored_end, interval.start, time_zone(zone))
        return interval, zone, end


class AfterTaskIn(Input):
    """Start when a run of another task finishes."""

    task_id: str = Field(min_length=1, max_length=128, description="The task whose run finishing starts this one.")
    status: Literal["SUCCEEDED", "FAILED", "any"] = Field("SUCCEEDED", description="Which outcome starts it.")


def _short(value: Any, width: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value is not None else "(none)"
    return text if len(text) <= width else text[: width - 3] + "..."


def trigger_text(task: TaskDoc) -> str | None:
    parts = [f"schedule {task.schedule.text}"] if task.schedule else []
    for trigger in task.triggers:
        outcome = {"SUCCEEDED": "succeeds", "FAILED": "fails"}.get(trigger.status or "", "finishes")
        parts.append(f"when task {trigger.task_id} {outcome}")
    return "; ".join(parts) or None


class TaskRow(Compact):
    id: str
    name: str
    enabled: bool
    app_id: str | None = None
    partial: bool | None = None
    trigger: str | None = None
    disabled_code: str | None = None
    owner_id: str | None = None
    updated_at: str | None = None

    @classmethod
    def fields_of(cls, task: TaskDoc) -> dict[str, Any]:
        targets = task.targets
        return {
            "id": task.id,
            "name": task.name,
            "enabled": task.enabled,
            "app_id": task.app_id,
            "partial": targets[0][1] if targets else None,
            "trigger": trigger_text(task),
            "disabled_code": task.disabled_code,
            "owner_id": task.metadata.owner_id,
            "updated_at": task.metadata.updated_at,
        }

    @classmethod
    def of(cls, task: TaskDoc) -> "TaskRow":
        return cls(**cls.fields_of(task))


class TaskDetail(TaskRow):
    description: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    workflow: dict[str, Any] = Field(default_factory=dict, description="start, events, states as the API has them.")

    @classmethod
    def of(cls, task: TaskDoc) -> "TaskDetail":
        return cls(
            **cls.fields_of(task),
            description=task.description or None,
            created_at=task.metadata.created_at,
            created_by=task.metadata.created_by,
            workflow=task.workflow(),
        )


class TaskPage(Compact):
    tasks: list[TaskRow]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")


class TaskResult(Compact):
    task: TaskDetail


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)
    except ValueError:
        return None


class Run(Compact):
    id: str
    task_id: str
    task_name: str | None = None
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    seconds: float | None = None
    triggered_by: str | None = None
    app_id: str | None = None

    @classmethod
    def fields_of(cls, run: RunDoc) -> dict[str, Any]:
        return {
            "id": run.id,
            "task_id": run.task_id,
            "task_name": run.task_name,
            "status": run.status,
            "started_at": run.started_at,
            "ended_at": run.ended_at,
            "seconds": _seconds(run.started_at, run.ended_at),
            "triggered_by": run.triggered_by,
            "app_id": run.resource_id,
        }

    @classmethod
    def of(cls, run: RunDoc) -> "Run":
        return cls(**cls.fields_of(run))


class RunDetail(Run):
    message: str | None = None

    @classmethod
    def of(cls, run: RunDoc) -> "RunDetail":
        return cls(**cls.fields_of(run), message=untrusted(run.log, "run message") if run.log else None)


class RunPage(Compact):
    runs: list[Run]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    scanned: int | None = Field(default=None, description="Runs read to find these (status filter).")


class LastRun(Compact):
    run: RunDetail | None = None
    note: str | None = None


class StartResult(Compact):
    task_id: str
    started: bool
    run: RunDetail | None = None
    waited_seconds: float | None = None
    wait_ended: Literal["finished", "timeout"] | None = None
    log_tail: str | None = None
    note: str | None = None

    @classmethod
    def of(cls, task_id: str, followed: Followed[RunDoc], tail: FailedTail[RunDoc]) -> "StartResult":
        waited = followed.waited_seconds is not None
        note = followed.note
        if followed.log_tail is not None and not note:
            note = f"{tail.returned}; get_task_run_log reads more."
        return cls(
            task_id=task_id,
            started=True,
            run=RunDetail.of(followed.run) if followed.run else None,
            waited_seconds=followed.waited_seconds,
            wait_ended=("finished" if followed.finished else "timeout") if waited else None,
            log_tail=followed.log_tail,
            note=note,
        )


def describe(task: TaskDoc) -> str:
    targets = task.targets
    app = f" reloading app {targets[0][0]}" if targets else ""
    return f"task {task.name} ({task.id}){app}, {trigger_text(task) or 'no trigger'}"


def service(clients: Clients) -> TasksApi:
    return TasksApi(clients.qlik)


@read("List tasks")
async def list_tasks(
    api: TasksApi,
    resource_id: Annotated[str, Field(min_length=1, max_length=128, description="App id (required by the API).")],
    sort: Annotated[
        Literal["-updatedAt", "+updatedAt", "-createdAt", "+createdAt"], Field(description="Sort order.")
    ] = "-updatedAt",
    limit: Limit = 20,
    cursor: Cursor = None,
) -> TaskPage:
    """List the tasks of one app (the API requires resource_id): trigger, enabled, owner."""
    page = await api.list(resource_id=resource_id, sort=sort, limit=limit, cursor=cursor)
    return TaskPage(tasks=[TaskRow.of(t) for t in page.items], next_cursor=page.next_cursor)


@read("Get task")
async def get_task(api: TasksApi, task_id: TaskId) -> TaskResult:
    """One task: trigger (schedule or task it follows), target app, owner, workflow."""
    return TaskResult(task=TaskDetail.of(await api.get(task_id)))


async def _reload_body(
    api: TasksApi,
    *,
    name: str,
    app_id: str,
    schedule: ScheduleIn | None,
    after_task: AfterTaskIn | None,
    partial: bool,
    enabled: bool,
    description: str | None,
) -> dict[str, Any]:
    """The workflow of a reload of `app_id` on `schedule` or after `after_task` (exactly one is given)."""
    path_segment(app_id, "app_id")
    slug = task_name(name)
    if schedule is not None:
        interval, zone, end = schedule.to_api()
        return scheduled_reload(
            name=slug,
            app_id=app_id,
            partial=partial,
            interval=interval,
            time_zone=zone,
            end=end,
            enabled=enabled,
            description=description,
        )
    assert after_task is not None
    # A trigger that does not exist would never fire: say so now rather than create a dead task.
    await api.get(after_task.task_id)
    return reload_after_task(
        name=slug,
        app_id=app_id,
        partial=partial,
        task_id=after_task.task_id,
        status=None if after_task.status == "any" else after_task.status,
        enabled=enabled,
        description=description,
    )


@write("Create task")
async def create_task(
    api: TasksApi,
    name: Annotated[str | None, Field(max_length=100, description="Title; stored as lowercase-hyphen name.")] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="App to reload.")] = None,
    schedule: Annotated[ScheduleIn | None, Field(description="Reload on this schedule.")] = None,
    after_task: Annotated[AfterTaskIn | None, Field(description="Reload when this task's run ends.")] = None,
    partial: Annotated[bool, Field(description="Partial reload instead of full.")] = False,
    enabled: bool = True,
    description: Description = None,
    workflow: Workflow = None,
) -> TaskResult:
    """Create a reload task: app_id + name + schedule or after_task; or a raw workflow for anything else."""
    if workflow is not None:
        if any(v is not None for v in (name, app_id, schedule, after_task, description)):
            raise InvalidInput("give either workflow alone, or name + app_id + schedule/after_task, not both")
        return TaskResult(task=TaskDetail.of(await api.create(check_workflow(workflow))))
    if not name or not app_id or (schedule is None) == (after_task is None):
        raise InvalidInput("give name, app_id and exactly one of schedule or after_task (or a raw workflow)")
    body = await _reload_body(
        api,
        name=name,
        app_id=app_id,
        schedule=schedule,
        after_task=after_task,
        partial=partial,
        enabled=enabled,
        description=description,
    )
    return TaskResult(task=TaskDetail.of(await api.create(check_workflow(body))))


def _rescheduled(current: TaskDoc, schedule: ScheduleIn) -> tuple[dict[str, Any], list[str]]:
    """The task's `start` with `schedule`'s timing, and the schedule changes, one line per field."""
    stored = current.schedule
    if current.start is None or stored is None:
        raise InvalidInput(
            "this task starts when another task finishes, not on a schedule; pass workflow to redefine it"
        )
    interval, zone, end = schedule.to_api(stored)
    # The interval replaces the timing (cron, recurrence, start); zone and end stay unless given.
    new: dict[str, Any] = {"interval": interval.text, "timezone": zone} | ({"endDateTime": end} if end else {})
    old = stored.wire()
    changes = [
        f"schedule {key}: {old.get(key) or '(none)'} -> {new.get(key) or '(none)'}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    return {**current.start.wire(), "schedule": new}, changes


async def plan_update(
    api: TasksApi,
    task_id: str,
    enabled: bool | None,
    description: str | None,
    schedule: ScheduleIn | None,
    workflow: dict[str, Any] | None,
) -> Plan:
    if workflow is not None and any(v is not None for v in (enabled, description, schedule)):
        raise InvalidInput("give either workflow alone (it replaces the whole task), or the fields to change")
    current = await api.get(task_id)
    before = current.put_body()
    body = dict(workflow) if workflow is not None else dict(before)
    if enabled is not None:
        body["enabled"] = enabled
    if description is not None:
        body["description"] = description
    schedule_changes: list[str] = []
    if schedule is not None:
        body["start"], schedule_changes = _rescheduled(current, schedule)
    check_workflow(body)
    changes = [
        f"{key}: {_short(before.get(key))} -> {_short(body.get(key))}"
        for key in WRITABLE
        if before.get(key) != body.get(key) and not (key == "start" and schedule is not None)
    ]
    changes += schedule_changes
    if not changes:
        raise InvalidInput("the task already has these values; nothing to change")
    notes = [put_owner_note([current.metadata.owner_id])]
    return Plan(action=f"Update {describe(current)}", changes=changes, state=current.wire(), notes=notes, payload=body)


@destructive("Update task", plan=plan_update, idempotent=True)
async def update_task(
    api: TasksApi,
    plan: Plan,
    task_id: TaskId,
    enabled: Annotated[bool | None, Field(description="false disables, true enables.")] = None,
    description: Description = None,
    schedule: Annotated[ScheduleIn | None, Field(description="New schedule (scheduled tasks only).")] = None,
    workflow: Workflow = None,
) -> TaskDetail:
    """Change a task (PUT; makes the caller its owner). Needs the user's confirmation."""
    return TaskDetail.of(await api.replace(task_id, plan.payload))


async def plan_delete(api: TasksApi, task_id: str) -> Plan:
    current = await api.get(task_id)
    return Plan(
        action=f"Delete {describe(current)}",
        changes=["the task and its trigger are removed"],
        state=current.wire(),
        notes=["This cannot be undone. Tasks chained after this one are no longer started by it."],
    )


@destructive("Delete task", plan=plan_delete, idempotent=True)
async def delete_task(api: TasksApi, plan: Plan, task_id: TaskId) -> Deleted:
    """Delete a task. Needs the user's confirmation."""
    await api.delete(task_id)
    return Deleted(id=task_id, deleted=True)


def _say(run: RunDoc | None) -> str:
    return f"run {run.id} {run.status}" if run else "waiting for the run to appear"


def failed_tail(api: TasksApi, task_id: str) -> FailedTail[RunDoc]:
    return FailedTail(lambda run: run.status == "FAILED", lambda run: api.run_log(task_id, run.id))


def run_watch(api: TasksApi, task_id: str, tail: FailedTail[RunDoc]) -> RunWatch[RunDoc]:
    """A task's runs as the follower sees them: the latest run, ended once it is not RUNNING."""
    return RunWatch[RunDoc](
        latest=functools.partial(api.last_run, task_id),
        run_id=lambda run: run.id,
        ended=lambda run: run.status != "RUNNING",
        say=_say,
        tail_if_failed=tail,
    )


@write("Start task")
async def start_task(
    api: TasksApi,
    ctx: Context,
    task_id: TaskId,
    source: Annotated[
        str | None, Field(max_length=100, description="Origin recorded on the run; default manual.")
    ] = None,
    wait: Annotated[bool, Field(description="Wait for the run to end, with progress.")] = False,
    timeout_seconds: WaitSeconds = 60,
) -> StartResult:
    """Start a task now; wait=true follows its run to the end. Ending the wait never cancels the run."""
    tail = failed_tail(api, task_id)
    followed = await follow(
        run_watch(api, task_id, tail),
        ctx=ctx,
        start=functools.partial(api.start, task_id, source),
        wait=wait,
        timeout_seconds=timeout_seconds,
        check_with="get_last_task_run",
    )
    return StartResult.of(task_id, followed, tail)


async def _runs_page(
    fetch: Callable[[str | None], Awaitable[Listing[RunDoc]]], status: str | None, limit: int, cursor: str | None
) -> RunPage:
    """A page of runs; with `status`, pages are read (at most MAX_SCAN_PAGES) until `limit` rows match."""
    page = await fetch(cursor)
    if not status:
        return RunPage(runs=[Run.of(r) for r in page.items], next_cursor=page.next_cursor)
    rows: list[Run] = []
    scanned = 0
    for _ in range(MAX_SCAN_PAGES):
        scanned += len(page.items)
        rows += [Run.of(r) for r in page.items if r.status == status]
        if len(rows) >= limit or not page.next_cursor:
            break
        page = await fetch(page.next_cursor)
    return RunPage(runs=rows, next_cursor=page.next_cursor, scanned=scanned)


@read("List task runs")
async def list_task_runs(
    api: TasksApi,
    task_id: TaskId,
    sort: RunSort = "-startedAt",
    status: StatusFilter = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> RunPage:
    """Runs of a task: status, start/end, duration, what triggered it."""
    return await _runs_page(
        lambda page_cursor: api.runs(task_id, sort=sort, limit=limit, cursor=page_cursor), status, limit, cursor
    )


@read("List an app's task runs")
async def list_resource_task_runs(
    api: TasksApi,
    resource_id: AppId,
    sort: RunSort = "-startedAt",
    status: StatusFilter = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> RunPage:
    """Runs of every task that targets one app."""
    return await _runs_page(
        lambda page_cursor: api.resource_runs(resource_id, sort=sort, limit=limit, cursor=page_cursor),
        status,
        limit,
        cursor,
    )


@read("Get last task run")
async def get_last_task_run(api: TasksApi, task_id: TaskId) -> LastRun:
    """A task's latest run: status, times, error message if it failed."""
    run = await api.last_run(task_id)
    if run is None:
        return LastRun(note="The task has not run yet.")
    return LastRun(run=RunDetail.of(run))


@read("Get task run log")
async def get_task_run_log(
    api: TasksApi,
    task_id: TaskId,
    run_id: RunId,
    lines: Annotated[int, Field(ge=1, le=500, description="Lines to return (1-500).")] = 40,
    grep: Annotated[
        str | None, Field(max_length=GREP_MAX, description="Case-insensitive regex; only matching lines.")
    ] = None,
    offset: Annotated[
        int | None, Field(ge=0, description="Skip this many log lines and read forward; default: the tail.")
    ] = None,
) -> RunLog:
    """A run's reload log: the tail by default, or from offset, or only lines matching grep."""
    if grep:
        compile_grep(grep)
    text = await api.run_log(task_id, run_id)
    return slice_log(task_id, run_id, text, lines=lines, grep=grep, offset=offset)


def _timing(schedule: ScheduleDoc | None) -> dict[str, Any]:
    """TaskInfo's schedule fields: an interval is expanded as an RRULE from its own start; a cron is only named."""
    if schedule is None:
        return {}
    if schedule.interval is not None:
        try:
            interval = repeating_interval(schedule.interval)
            expanded: dict[str, Any] = {"recurrence": [interval_rrule(interval)], "start": interval.start}
        except InvalidInput:
            expanded = {}
        return expanded | {
            "schedule_text": schedule.interval,
            "time_zone": schedule.zone,
            "end": schedule.end_date_time,
        }
    if schedule.cron:
        return {"schedule_text": f"cron {schedule.cron_expression}", "time_zone": schedule.zone}
    return {}


class WorkflowTaskSource:
    """Tasks (`/api/v1/tasks`) as the ops tools see them: listed only app by app; they can chain."""

    kind = "task"
    chains = True

    def __init__(self, api: TasksApi) -> None:
        self.api = api

    @staticmethod
    def info(task: TaskDoc) -> TaskInfo:
        return TaskInfo(
            kind="task",
            id=task.id,
            name=task.name,
            enabled=task.enabled,
            app_id=task.app_id,
            state="enabled" if task.enabled else "disabled",
            disabled_reason=None if task.enabled else (task.disabled_code or "disabled"),
            after=[(t.task_id, t.status) for t in task.triggers],
            owner_before_put=task.metadata.owner_id or "unknown",
            **_timing(task.schedule),
        )

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await self.api.get(task_id))

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        return await read_each(task_ids, self.get)

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(task) async for task in self.api.all(resource_id=app_id)]

    async def app_ids(self) -> set[str]:
        # The API lists tasks only per app: there is no cheap tenant-wide list.
        return set()

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        body = (await self.api.get(info.id)).put_body()
        body["enabled"] = enabled
        await self.api.replace(info.id, body)

    async def failures(self, scan: FailureScan) -> None:
        """Failed runs of the tasks of every app the scan knows of, read app by app within the budget."""
        apps = sorted(a for a in scan.apps if a)

        async def one(app_id: str) -> None:
            try:
                scan.found.extend(await self._failures_of_app(app_id, scan))
            except ApiError as exc:
                scan.budget.skipped.append(f"task runs of app {app_id} (HTTP {exc.status})")

        await gather(apps, one)
        scan.checked["task apps"] = len(apps)

    async def _failures_of_app(self, app_id: str, scan: FailureScan) -> list[Failure]:
        """Failed runs of an app's tasks since the scan's start, newest first, one per task, with the first
        error line of its log."""
        failures = await self._failed_runs(app_id, scan)
        for failure in failures:
            if failure.ref and scan.budget.spend(scan.clock(), f"log of run {failure.ref}"):
                try:
                    failure.error = first_error_line(await self.api.run_log(failure.task_id, failure.ref))
                except ApiError as exc:
                    failure.error = f"(log not readable: HTTP {exc.status})"
        return failures

    async def _failed_runs(self, app_id: str, scan: FailureScan) -> list[Failure]:
        """The newest failed run of each of an app's tasks in the window, reading pages while the budget allows."""
        failures: dict[str, Failure] = {}
        cursor: str | None = None
        while scan.budget.spend(scan.clock(), f"task runs of app {app_id}"):
            page = await self.api.resource_runs(app_id, sort="-startedAt", limit=100, cursor=cursor)
            older = False
            for run in page.items:
                started = parse_time(run.started_at)
                if started is not None and started < scan.since:
                    older = True
                    break
                if run.status.upper() == "FAILED" and run.task_id not in failures:
                    failures[run.task_id] = _failure(app_id, run)
            if older or not page.next_cursor:
                break
            cursor = page.next_cursor
        return list(failures.values())


def _failure(app_id: str, run: RunDoc) -> Failure:
    return Failure(
        kind="task",
        task_id=run.task_id,
        name=run.task_name or run.task_id,
        app_id=app_id,
        at=run.ended_at or run.started_at,
        ref=run.id or None,
    )


def source(clients: Clients) -> WorkflowTaskSource:
    return WorkflowTaskSource(TasksApi(clients.qlik))
