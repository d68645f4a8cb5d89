"""Tasks and task chains (`/api/v1/tasks`): list, get, create, update, delete, start (and wait), runs, logs."""

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.paging import Page
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.schedule import end_after_change, time_zone
from qlik_tasks_mcp.client.tasks import WRITABLE, TasksApi, put_body
from qlik_tasks_mcp.client.workflow import (
    check_workflow,
    reload_after_task,
    reload_targets,
    repeating_interval,
    schedule_of,
    scheduled_reload,
    task_name,
    triggers,
)
from qlik_tasks_mcp.tools.common import ConfirmToken, Cursor, Limit, Registrar, put_owner_note
from qlik_tasks_mcp.tools.fence import untrusted
from qlik_tasks_mcp.tools.gate import Consent, Gated, Plan
from qlik_tasks_mcp.tools.logs import GREP_MAX, RunLog, compile_grep, slice_log
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.watch import (
    FAILED_TAIL,
    FIND_RUN_SECONDS,
    POLL_FACTOR,
    POLL_FIRST,
    Progress,
    WaitSeconds,
    watch,
)

TOOLSET = "tasks"
log = logging.getLogger("qlik_tasks_mcp.tools.tasks")

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

    def to_api(self, current: Any = None) -> tuple[Any, str, str]:
        """The interval, zone and end ("" for never); on an update, `current` (the stored schedule) supplies the
        zone and end the caller left out. The interval carries its own start."""
        kept = current if isinstance(current, dict) else {}
        interval = repeating_interval(self.interval)
        zone = self.time_zone or kept.get("timezone") or "UTC"
        end = end_after_change(self.end, kept.get("endDateTime"), interval.start, time_zone(zone))
        return interval, zone, end


class AfterTaskIn(Input):
    """Start when a run of another task finishes."""

    task_id: str = Field(min_length=1, max_length=128, description="The task whose run finishing starts this one.")
    status: Literal["SUCCEEDED", "FAILED", "any"] = Field("SUCCEEDED", description="Which outcome starts it.")


def _short(value: Any, width: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value is not None else "(none)"
    return text if len(text) <= width else text[: width - 3] + "..."


def trigger_text(raw: dict[str, Any]) -> str | None:
    parts: list[str] = []
    schedule = schedule_of(raw)
    if schedule:
        parts.append(f"schedule {schedule}")
    for trigger in triggers(raw):
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
    def fields_of(cls, raw: dict[str, Any]) -> dict[str, Any]:
        meta = raw.get("metadata") or {}
        targets = reload_targets(raw)
        return {
            "id": raw.get("id", ""),
            "name": raw.get("name", ""),
            "enabled": bool(raw.get("enabled")),
            "app_id": raw.get("resourceId") or (targets[0][0] if targets else None),
            "partial": targets[0][1] if targets else None,
            "trigger": trigger_text(raw),
            "disabled_code": meta.get("disabledCode") if not raw.get("enabled") else None,
            "owner_id": meta.get("ownerId"),
            "updated_at": meta.get("updatedAt"),
        }

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "TaskRow":
        return cls(**cls.fields_of(raw))


class TaskDetail(TaskRow):
    description: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    workflow: dict[str, Any] = Field(default_factory=dict, description="start, events, states as the API has them.")

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "TaskDetail":
        meta = raw.get("metadata") or {}
        return cls(
            **cls.fields_of(raw),
            description=raw.get("description") or None,
            created_at=meta.get("createdAt"),
            created_by=meta.get("createdBy"),
            workflow={k: raw[k] for k in ("start", "events", "states") if k in raw},
        )


class TaskPage(Compact):
    tasks: list[TaskRow]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")


class TaskResult(Compact):
    task: TaskDetail


class Deleted(Compact):
    id: str
    deleted: bool


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
    def fields_of(cls, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": raw.get("id", ""),
            "task_id": raw.get("taskId", ""),
            "task_name": raw.get("taskName"),
            "status": raw.get("status", ""),
            "started_at": raw.get("startedAt"),
            "ended_at": raw.get("endedAt"),
            "seconds": _seconds(raw.get("startedAt"), raw.get("endedAt")),
            "triggered_by": raw.get("triggeredBy"),
            "app_id": raw.get("resourceId"),
        }

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "Run":
        return cls(**cls.fields_of(raw))


class RunDetail(Run):
    message: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "RunDetail":
        text = raw.get("log")
        return cls(**cls.fields_of(raw), message=untrusted(text, "run message") if text else None)


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


def describe(task: dict[str, Any]) -> str:
    targets = reload_targets(task)
    app = f" reloading app {targets[0][0]}" if targets else ""
    return f"task {task.get('name')} ({task.get('id')}){app}, {trigger_text(task) or 'no trigger'}"


def register(reg: Registrar, api: TasksApi) -> None:
    async def runs_page(
        fetch: Callable[[str | None], Awaitable[Page]], status: str | None, limit: int, cursor: str | None
    ) -> RunPage:
        page = await fetch(cursor)
        if not status:
            return RunPage(runs=[Run.of(r) for r in page.items], next_cursor=page.next_cursor)
        rows: list[Run] = []
        scanned = 0
        for _ in range(MAX_SCAN_PAGES):
            scanned += len(page.items)
            rows += [Run.of(r) for r in page.items if r.get("status") == status]
            if len(rows) >= limit or not page.next_cursor:
                break
            page = await fetch(page.next_cursor)
        return RunPage(runs=rows, next_cursor=page.next_cursor, scanned=scanned)

    @reg.tool(TOOLSET, "read", title="List tasks")
    async def list_tasks(
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

    @reg.tool(TOOLSET, "read", title="Get task")
    async def get_task(task_id: TaskId) -> TaskResult:
        """One task: trigger (schedule or task it follows), target app, owner, workflow."""
        return TaskResult(task=TaskDetail.of(await api.get(task_id)))

    @reg.tool(TOOLSET, "write", title="Create task")
    async def create_task(
        name: Annotated[
            str | None, Field(max_length=100, description="Title; stored as lowercase-hyphen name.")
        ] = None,
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
        path_segment(app_id, "app_id")
        slug = task_name(name)
        if schedule is not None:
            interval, zone, end = schedule.to_api()
            body = scheduled_reload(
                name=slug,
                app_id=app_id,
                partial=partial,
                interval=interval,
                time_zone=zone,
                end=end,
                enabled=enabled,
                description=description,
            )
        else:
            assert after_task is not None
            # A trigger that does not exist would never fire: say so now rather than create a dead task.
            await api.get(after_task.task_id)
            body = reload_after_task(
                name=slug,
                app_id=app_id,
                partial=partial,
                task_id=after_task.task_id,
                status=None if after_task.status == "any" else after_task.status,
                enabled=enabled,
                description=description,
            )
        return TaskResult(task=TaskDetail.of(await api.create(check_workflow(body))))

    async def plan_update(
        task_id: str,
        enabled: bool | None,
        description: str | None,
        schedule: ScheduleIn | None,
        workflow: dict[str, Any] | None,
    ) -> tuple[Plan, dict[str, Any]]:
        if workflow is not None and any(v is not None for v in (enabled, description, schedule)):
            raise InvalidInput("give either workflow alone (it replaces the whole task), or the fields to change")
        current = await api.get(task_id)
        before = put_body(current)
        body = dict(workflow) if workflow is not None else dict(before)
        if enabled is not None:
            body["enabled"] = enabled
        if description is not None:
            body["description"] = description
        schedule_changes: list[str] = []
        if schedule is not None:
            start = body.get("start")
            if not isinstance(start, dict) or "schedule" not in start:
                raise InvalidInput(
                    "this task starts when another task finishes, not on a schedule; pass workflow to redefine it"
                )
            stored = start["schedule"]
            # A bare string is an interval in UTC; its zone and end carry over like an object's.
            old = stored if isinstance(stored, dict) else {"interval": stored, "timezone": "UTC"}
            interval, zone, end = schedule.to_api(old)
            # The interval replaces the timing (cron, recurrence, start); zone and end stay unless given.
            new: dict[str, Any] = {"interval": interval.text, "timezone": zone} | ({"endDateTime": end} if end else {})
            body["start"] = {**start, "schedule": new}
            schedule_changes = [
                f"schedule {key}: {old.get(key) or '(none)'} -> {new.get(key) or '(none)'}"
                for key in sorted(set(old) | set(new))
                if old.get(key) != new.get(key)
            ]
        check_workflow(body)
        changes = [
            f"{key}: {_short(before.get(key))} -> {_short(body.get(key))}"
            for key in WRITABLE
            if before.get(key) != body.get(key) and not (key == "start" and schedule is not None)
        ]
        changes += schedule_changes
        if not changes:
            raise InvalidInput("the task already has these values; nothing to change")
        notes = [put_owner_note([(current.get("metadata") or {}).get("ownerId")])]
        return Plan(action=f"Update {describe(current)}", changes=changes, state=current, notes=notes), body

    @reg.resolver
    async def ask_update(
        ctx: Context,
        task_id: str,
        enabled: bool | None,
        description: str | None,
        schedule: ScheduleIn | None,
        workflow: dict[str, Any] | None,
    ) -> Elicit[Consent] | None:
        async def plan() -> Plan:
            return (await plan_update(task_id, enabled, description, schedule, workflow))[0]

        return await reg.gate.ask(ctx, plan)

    @reg.tool(TOOLSET, "destructive", title="Update task", idempotent=True)
    async def update_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_update)],
        enabled: Annotated[bool | None, Field(description="false disables, true enables.")] = None,
        description: Description = None,
        schedule: Annotated[ScheduleIn | None, Field(description="New schedule (scheduled tasks only).")] = None,
        workflow: Workflow = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[TaskDetail]:
        """Change a task (PUT; makes the caller its owner). Needs the user's confirmation."""
        plan, body = await plan_update(task_id, enabled, description, schedule, workflow)

        async def act() -> TaskDetail:
            return TaskDetail.of(await api.replace(task_id, body))

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    async def plan_delete(task_id: str) -> Plan:
        current = await api.get(task_id)
        return Plan(
            action=f"Delete {describe(current)}",
            changes=["the task and its trigger are removed"],
            state=current,
            notes=["This cannot be undone. Tasks chained after this one are no longer started by it."],
        )

    @reg.resolver
    async def ask_delete(ctx: Context, task_id: str) -> Elicit[Consent] | None:
        return await reg.gate.ask(ctx, lambda: plan_delete(task_id))

    @reg.tool(TOOLSET, "destructive", title="Delete task", idempotent=True)
    async def delete_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_delete)],
        confirm_token: ConfirmToken = None,
    ) -> Gated[Deleted]:
        """Delete a task. Needs the user's confirmation."""
        plan = await plan_delete(task_id)

        async def act() -> Deleted:
            await api.delete(task_id)
            return Deleted(id=task_id, deleted=True)

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    async def new_run(task_id: str, before_id: str | None) -> dict[str, Any] | None:
        run = await api.last_run(task_id)
        return run if run is not None and run.get("id") != before_id else None

    @reg.tool(TOOLSET, "write", title="Start task")
    async def start_task(
        ctx: Context,
        task_id: TaskId,
        source: Annotated[
            str | None, Field(max_length=100, description="Origin recorded on the run; default manual.")
        ] = None,
        wait: Annotated[bool, Field(description="Wait for the run to end, with progress.")] = False,
        timeout_seconds: WaitSeconds = 60,
    ) -> StartResult:
        """Start a task now; wait=true follows its run to the end. Ending the wait never cancels the run."""
        before = await api.last_run(task_id)
        before_id = before.get("id") if before else None
        await api.start(task_id, source)
        # From here on the task has started: no error may suggest starting it again.
        began = time.monotonic()
        result = StartResult(task_id=task_id, started=True)
        try:
            if not wait:
                run = await new_run(task_id, before_id)
                delay = POLL_FIRST / 2
                while run is None and time.monotonic() - began < FIND_RUN_SECONDS:
                    await anyio.sleep(delay)
                    delay *= POLL_FACTOR
                    run = await new_run(task_id, before_id)
                result.run = RunDetail.of(run) if run else None
                result.note = None if run else "The run is not visible yet; check it with get_last_task_run."
                return result
            progress = Progress(ctx, timeout_seconds)
            await progress.report(0, "task started; waiting for its run")
            try:
                run, finished = await watch(
                    lambda: new_run(task_id, before_id),
                    lambda r: r.get("status") != "RUNNING",
                    lambda r: f"run {r['id']} RUNNING" if r else "waiting for the run to appear",
                    progress=progress,
                    limit=timeout_seconds,
                    began=began,
                )
            except anyio.get_cancelled_exc_class():
                log.info("wait for task %s cancelled; its run continues on the tenant", task_id)
                raise
            waited = round(time.monotonic() - began, 1)
            result.run = RunDetail.of(run) if run else None
            result.waited_seconds = waited
            result.wait_ended = "finished" if finished else "timeout"
            status = run.get("status") if run else "not visible yet"
            await progress.report(waited, f"run {status}")
            if not finished:
                result.note = (
                    f"Stopped waiting after {timeout_seconds} s. The run was NOT cancelled and continues on the "
                    "tenant; follow it with get_last_task_run."
                )
            elif run is not None and run.get("status") == "FAILED":
                text = await api.run_log(task_id, run["id"])
                tail = slice_log(task_id, run["id"], text, lines=FAILED_TAIL, grep=None, offset=None)
                result.log_tail = tail.log
                result.note = f"{tail.returned}; get_task_run_log reads more."
        except ApiError as exc:
            result.note = (
                f"The task was started, but reading its run failed ({exc}). Do not start it again; "
                "check it with get_last_task_run."
            )
        return result

    @reg.tool(TOOLSET, "read", title="List task runs")
    async def list_task_runs(
        task_id: TaskId,
        sort: RunSort = "-startedAt",
        status: StatusFilter = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> RunPage:
        """Runs of a task: status, start/end, duration, what triggered it."""

        async def fetch(page_cursor: str | None) -> Page:
            return await api.runs(task_id, sort=sort, limit=limit, cursor=page_cursor)

        return await runs_page(fetch, status, limit, cursor)

    @reg.tool(TOOLSET, "read", title="List an app's task runs")
    async def list_resource_task_runs(
        resource_id: AppId,
        sort: RunSort = "-startedAt",
        status: StatusFilter = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> RunPage:
        """Runs of every task that targets one app."""

        async def fetch(page_cursor: str | None) -> Page:
            return await api.resource_runs(resource_id, sort=sort, limit=limit, cursor=page_cursor)

        return await runs_page(fetch, status, limit, cursor)

    @reg.tool(TOOLSET, "read", title="Get last task run")
    async def get_last_task_run(task_id: TaskId) -> LastRun:
        """A task's latest run: status, times, error message if it failed."""
        run = await api.last_run(task_id)
        if run is None:
            return LastRun(note="The task has not run yet.")
        return LastRun(run=RunDetail.of(run))

    @reg.tool(TOOLSET, "read", title="Get task run log")
    async def get_task_run_log(
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
