"""Tasks and task chains on the Scheduling Tasks API (`/api/scheduling/tasks`, or `/api/v1/tasks` where a tenant
lacks it): list, get, create, update, delete, start (and wait), dependencies, runs, logs."""

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.resource import Listing
from qlik_tasks_mcp.client.schedule import end_after_change, local_datetime, rrule_lines, time_zone
from qlik_tasks_mcp.client.tasks import (
    WRITABLE,
    GraphDoc,
    GraphKind,
    RunDoc,
    ScheduleDoc,
    TaskDoc,
    TasksApi,
    scim_filter,
)
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
from qlik_tasks_mcp.tools.fence import one_line, quoted, untrusted, untrusted_fields
from qlik_tasks_mcp.tools.follow import FailedTail, Followed, RunWatch, WaitSeconds, follow
from qlik_tasks_mcp.tools.gate import Plan, field_diff
from qlik_tasks_mcp.tools.inventory import Clients
from qlik_tasks_mcp.tools.logs import GREP_MAX, LogSink, RunLog, compile_grep
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
    """When a scheduled task runs: RRULE lines from a local start, or an ISO 8601 repeating interval, in a zone."""

    interval: str | None = Field(
        None, max_length=80, description="R[n]/<local start>/<duration>, e.g. R/2026-02-01T06:00:00/P1D (daily 06:00)."
    )
    recurrence: list[str] | None = Field(
        None,
        max_length=10,
        description='RRULE lines, e.g. ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0"]; not with interval.',
    )
    start: str | None = Field(None, max_length=40, description="Local start of a recurrence; default now.")
    time_zone: str | None = Field(
        None, max_length=64, description="IANA zone, e.g. Europe/Zurich; default UTC (update: keep current)."
    )
    end: str | None = Field(
        None, max_length=40, description='Local end; default never (update: keep current, "" clears).'
    )

    def to_api(self, current: ScheduleDoc | None = None) -> tuple[Interval, str, str]:
        """The interval, zone and end ("" for never); on an update, `current` (the stored schedule) supplies the
        zone and end the caller left out. The interval carries its own start."""
        if not self.interval or self.recurrence:
            raise InvalidInput("give schedule.interval, or schedule.recurrence (RRULE lines), not both or neither")
        interval = repeating_interval(self.interval)
        zone = self.time_zone or (current.zone if current else "UTC")
        stored_end = current.end_date_time if current else None
        end = end_after_change(self.end, stored_end, interval.start, time_zone(zone))
        return interval, zone, end

    def schedule_fields(self, current: ScheduleDoc | None = None) -> dict[str, Any]:
        """The Task `schedule` object on the scheduling API: an interval becomes an RRULE from its own start, so
        both forms are one recurrence with startDateTime; zone and end kept from `current` unless given."""
        if self.interval and self.recurrence:
            raise InvalidInput("give schedule.interval or schedule.recurrence (RRULE lines), not both")
        zone = self.time_zone or (current.zone if current else "UTC")
        if self.recurrence:
            lines, start = rrule_lines(self.recurrence), self.start
            if start:
                local_datetime(start, "schedule.start")
        elif self.interval:
            interval = repeating_interval(self.interval)
            lines, start = [interval_rrule(interval)], interval.start
        else:
            raise InvalidInput("give schedule.recurrence (RRULE lines) or schedule.interval")
        stored_end = current.end_date_time if current else None
        end = end_after_change(self.end, stored_end, start, time_zone(zone))
        fields: dict[str, Any] = {"recurrence": "\n".join(lines), "timezone": zone}
        return fields | ({"startDateTime": start} if start else {}) | ({"endDateTime": end} if end else {})


class AfterTaskIn(Input):
    """Start when a run of another task finishes."""

    task_id: str = Field(min_length=1, max_length=128, description="The task whose run finishing starts this one.")
    status: Literal["SUCCEEDED", "FAILED", "any"] = Field("SUCCEEDED", description="Which outcome starts it.")


def _short(value: Any, width: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value is not None else "(none)"
    return text if len(text) <= width else text[: width - 3] + "..."


def trigger_text(task: TaskDoc) -> str | None:
    parts = [f"schedule {task.schedule.text}"] if task.schedule else []
    parts += [f"when a dataset is updated ({what})" for what in task.dataset_updates]
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
    last_status: str | None = None

    @classmethod
    def fields_of(cls, task: TaskDoc) -> dict[str, Any]:
        targets = task.targets
        return {
            "last_status": task.last_status,
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
    names: str | None = Field(None, description="The tasks' names and descriptions, tenant text in one fence.")
    note: str | None = None


class TaskResult(Compact):
    task: TaskDetail
    note: str | None = None


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
    downstream: str | None = Field(default=None, description="Tasks chained after this one, which its run starts.")

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
    return f"task {quoted(task.name, 300)} ({task.id}){app}, {trigger_text(task) or 'no trigger'}"


ENABLED_NOTE = "enabled was sent explicitly: Qlik creates tasks disabled unless told otherwise."


def service(clients: Clients) -> TasksApi:
    return TasksApi(clients.qlik, clients.tasks_api)


TaskSort = Literal[
    "-updatedAt",
    "+updatedAt",
    "-createdAt",
    "+createdAt",
    "-name",
    "+name",
    "-lastStartedAt",
    "+lastStartedAt",
    "-lastStatus",
    "+lastStatus",
    "-enabled",
    "+enabled",
    "-ownerId",
    "+ownerId",
    "-resourceId",
    "+resourceId",
]
V1_SORTS = ("-updatedAt", "+updatedAt", "-createdAt", "+createdAt")


def _names(tasks: list[TaskDoc]) -> str | None:
    pairs = [(f"{t.id} name", t.name) for t in tasks] + [(f"{t.id} description", t.description) for t in tasks]
    return untrusted_fields(pairs, "task names") if tasks else None


def _v1_kept(task: TaskDoc, owner_id: str | None, enabled: bool | None, last_status: str | None) -> bool:
    return (
        (owner_id is None or task.metadata.owner_id == owner_id)
        and (enabled is None or task.enabled == enabled)
        and (last_status is None or (task.last_status or "").upper() == last_status)
    )


@read("List tasks")
async def list_tasks(
    api: TasksApi,
    resource_id: Annotated[
        str | None, Field(min_length=1, max_length=128, description="App id; omit for every task (scheduling API).")
    ] = None,
    sort: Annotated[TaskSort, Field(description="Sort order (v1: updatedAt/createdAt only).")] = "-updatedAt",
    limit: Limit = 20,
    cursor: Cursor = None,
    owner_id: Annotated[str | None, Field(min_length=1, max_length=128, description="Only this owner's.")] = None,
    enabled: Annotated[bool | None, Field(description="Only enabled (true) or disabled (false) tasks.")] = None,
    last_status: Annotated[
        Literal["RUNNING", "SUCCEEDED", "FAILED"] | None,
        Field(description="Only tasks whose last run has this status."),
    ] = None,
) -> TaskPage:
    """List tasks, tenant-wide or of one app (the v1 API requires resource_id); filters, sort, paging."""
    endpoint = await api.endpoint()
    note = None
    if endpoint.scheduling:
        scim = scim_filter(app_id=resource_id, owner_id=owner_id, enabled=enabled, last_status=last_status)
        page = await api.list(resource_id=resource_id, sort=sort, limit=limit, cursor=cursor, scim=scim)
        rows = page.items
    else:
        if not resource_id:
            raise InvalidInput("the v1 tasks API lists one app at a time: give resource_id")
        if sort not in V1_SORTS:
            raise InvalidInput(f"the v1 tasks API sorts only by {', '.join(V1_SORTS)}")
        page = await api.list(resource_id=resource_id, sort=sort, limit=limit, cursor=cursor)
        rows = [t for t in page.items if _v1_kept(t, owner_id, enabled, last_status)]
        if len(rows) < len(page.items):
            note = "The v1 API cannot filter by owner, enabled or last status: filtered here, so a page may be short."
    note = "; ".join(n for n in (note, page.cut_note) if n) or None
    return TaskPage(tasks=[TaskRow.of(t) for t in rows], next_cursor=page.next_cursor, names=_names(rows), note=note)


@read("Get task")
async def get_task(api: TasksApi, task_id: TaskId) -> TaskResult:
    """One task: trigger (schedule, task it follows, dataset update), target app, owner, workflow."""
    return TaskResult(task=TaskDetail.of(await api.get(task_id)))


def _creator_body(name: str, enabled: bool, description: str | None) -> dict[str, Any]:
    return {"name": name, "enabled": enabled} | ({"description": description} if description else {})


async def _create_scheduling(
    api: TasksApi,
    *,
    name: str,
    app_id: str,
    schedule: ScheduleIn | None,
    after_task: AfterTaskIn | None,
    dataset_updated: bool,
    enabled: bool,
    description: str | None,
) -> TaskDoc:
    """The one-call creator for the trigger given; the tenant builds the workflow."""
    body = _creator_body(name, enabled, description)
    if schedule is not None:
        return await api.create_reload(app_id, "on-time-schedule", body | schedule.schedule_fields())
    if after_task is not None:
        status = {"SUCCEEDED": "succeeded", "FAILED": "failed"}.get(after_task.status, "any")
        trigger = {"onTaskId": after_task.task_id, "onTaskStatus": status}
        return await api.create_reload(app_id, "on-task-event", body | trigger)
    assert dataset_updated
    return await api.create_reload(app_id, "on-dataset-updated", body)


async def _create_v1(
    api: TasksApi,
    *,
    name: str,
    app_id: str,
    schedule: ScheduleIn | None,
    after_task: AfterTaskIn | None,
    partial: bool,
    enabled: bool,
    description: str | None,
) -> TaskDoc:
    """A definition for /api/v1/tasks, whose spec wants a lowercase-hyphen name and an interval or cron."""
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
    return await api.create(check_workflow(body))


def _check_create_shape(
    name: str | None, app_id: str | None, triggers: int, workflow: dict[str, Any] | None, others: list[Any]
) -> None:
    if workflow is not None:
        if any(v is not None for v in others):
            raise InvalidInput("give either workflow alone, or name + app_id + schedule/after_task, not both")
        return
    if not name or not app_id or triggers != 1:
        raise InvalidInput(
            "give name, app_id and exactly one of schedule or after_task or dataset_updated (or a raw workflow)"
        )
    path_segment(app_id, "app_id")


@write("Create task")
async def create_task(
    api: TasksApi,
    name: Annotated[
        str | None, Field(max_length=100, description="Title, kept as given (v1: lowercase-hyphen).")
    ] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="App to reload.")] = None,
    schedule: Annotated[ScheduleIn | None, Field(description="Reload on this schedule.")] = None,
    after_task: Annotated[AfterTaskIn | None, Field(description="Reload when this task's run ends.")] = None,
    partial: Annotated[bool, Field(description="Partial reload instead of full (v1 or raw workflow only).")] = False,
    enabled: Annotated[bool, Field(description="Sent always: Qlik creates tasks disabled unless told.")] = True,
    description: Description = None,
    workflow: Workflow = None,
    dataset_updated: Annotated[bool, Field(description="Reload when a pipeline updates the app's datasets.")] = False,
) -> TaskResult:
    """Create a reload task: app_id + name + schedule, after_task or dataset_updated; or a raw workflow."""
    triggers = sum([schedule is not None, after_task is not None, dataset_updated])
    others = [name, app_id, schedule, after_task, description, True if dataset_updated else None]
    _check_create_shape(name, app_id, triggers, workflow, others)
    endpoint = await api.endpoint()
    if workflow is not None:
        task = await api.create(check_workflow(workflow, endpoint.name))
        return TaskResult(task=TaskDetail.of(task))
    assert name and app_id
    if endpoint.scheduling:
        if partial:
            raise InvalidInput("the one-call creators take no partial flag: pass a raw workflow for a partial reload")
        task = await _create_scheduling(
            api,
            name=name,
            app_id=app_id,
            schedule=schedule,
            after_task=after_task,
            dataset_updated=dataset_updated,
            enabled=enabled,
            description=description,
        )
    else:
        if dataset_updated:
            raise InvalidInput("dataset_updated needs the Scheduling Tasks API; this server uses /api/v1/tasks")
        task = await _create_v1(
            api,
            name=name,
            app_id=app_id,
            schedule=schedule,
            after_task=after_task,
            partial=partial,
            enabled=enabled,
            description=description,
        )
    return TaskResult(task=TaskDetail.of(task), note=ENABLED_NOTE)


@dataclass
class UpdatePlan(Plan):
    """An update's Plan: the JSON Patch (scheduling) and the PUT body (v1) that make the change."""

    ops: list[dict[str, Any]] = dc_field(default_factory=list)
    put_body: dict[str, Any] = dc_field(default_factory=dict)


def _schedule_change(current: TaskDoc, schedule: ScheduleIn, scheduling: bool) -> dict[str, Any]:
    """The task's new `start.schedule`: only a scheduled task can get one."""
    stored = current.schedule
    if current.start is None or stored is None:
        raise InvalidInput(
            "this task starts when another task finishes, not on a schedule; pass workflow to redefine it"
        )
    if scheduling:
        return schedule.schedule_fields(stored)
    interval, zone, end = schedule.to_api(stored)
    # The interval replaces the timing (cron, recurrence, start); zone and end stay unless given.
    return {"interval": interval.text, "timezone": zone} | ({"endDateTime": end} if end else {})


def _schedule_lines(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [
        f"schedule {key}: {old.get(key) or '(none)'} -> {new.get(key) or '(none)'}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


async def _downstream(api: TasksApi, task_id: str) -> str | None:
    """What runs after this task (one graph request), as a note; None when nothing does or v1 has no graphs."""
    if not (await api.endpoint()).scheduling:
        return None
    graph = await api.graph(task_id, "descendants")
    below = [v for v in graph.vertices if v.task_id != task_id]
    if not below:
        return None
    shown = ", ".join(f"{v.task_id} ({quoted(v.task.name, 60) if v.task else '?'})" for v in below[:20])
    more = f" and {len(below) - 20} more" if len(below) > 20 else ""
    return f"Downstream: {len(below)} task(s) run after this one: {shown}{more}."


async def plan_update(
    api: TasksApi,
    task_id: str,
    enabled: bool | None,
    description: str | None,
    schedule: ScheduleIn | None,
    workflow: dict[str, Any] | None,
) -> UpdatePlan:
    if workflow is not None and any(v is not None for v in (enabled, description, schedule)):
        raise InvalidInput("give either workflow alone (it replaces the whole task), or the fields to change")
    current = await api.get(task_id)
    scheduling = (await api.endpoint()).scheduling
    before = current.put_body()
    # Only what the tool changes is checked: the rest is the tenant's own document, sent back as it is.
    after = check_workflow(dict(workflow), "scheduling" if scheduling else "v1") if workflow else dict(before)
    ops: list[dict[str, Any]] = (
        [{"op": "replace", "path": f"/{k}", "value": after[k]} for k in after] if workflow else []
    )
    changes: list[str] = []
    for key, value in (("enabled", enabled), ("description", description)):
        if value is not None and before.get(key) != value:
            after[key] = value
            ops.append({"op": "replace" if key in before else "add", "path": f"/{key}", "value": value})
            changes.append(f"{key}: {_short(before.get(key))} -> {_short(value)}")
    if schedule is not None:
        old = dict(current.schedule.wire()) if current.schedule else {}
        new = _schedule_change(current, schedule, scheduling)
        if new != old:
            after["start"] = {**(current.start.wire() if current.start else {}), "schedule": new}
            ops.append({"op": "replace", "path": "/start/schedule", "value": new})
            changes += _schedule_lines(old, new)
    if workflow:
        changes = [f"{key}: replaced" for key in WRITABLE if before.get(key) != after.get(key)]
    if not changes:
        raise InvalidInput("the task already has these values; nothing to change")
    notes = [n for n in (put_owner_note([current.metadata.owner_id]),) if n]
    notes.append(("A JSON Patch" if scheduling else "A PUT") + " makes the caller the task's owner.")
    if enabled is False:
        notes += [n for n in [await _downstream(api, task_id)] if n]
    return UpdatePlan(
        action=f"Update {describe(current)}",
        changes=changes,
        state=current.wire(),
        notes=notes,
        diff=field_diff(before, after, WRITABLE),
        ops=ops,
        put_body=after,
    )


@destructive("Update task", plan=plan_update, idempotent=True)
async def update_task(
    api: TasksApi,
    plan: UpdatePlan,
    task_id: TaskId,
    enabled: Annotated[bool | None, Field(description="false disables, true enables.")] = None,
    description: Description = None,
    schedule: Annotated[ScheduleIn | None, Field(description="New schedule (scheduled tasks only).")] = None,
    workflow: Workflow = None,
) -> TaskDetail:
    """Change a task (JSON Patch, or PUT on v1; either makes the caller its owner). Needs confirmation."""
    current = TaskDoc.model_validate(plan.state)
    return TaskDetail.of(await api.change(current, plan.ops, plan.put_body))


async def plan_delete(api: TasksApi, task_id: str) -> Plan:
    current = await api.get(task_id)
    notes = ["This cannot be undone. Tasks chained after this one are no longer started by it."]
    notes += [n for n in [await _downstream(api, task_id)] if n]
    return Plan(
        action=f"Delete {describe(current)}",
        changes=["the task and its trigger are removed"],
        state=current.wire(),
        notes=notes,
    )


@destructive("Delete task", plan=plan_delete, idempotent=True)
async def delete_task(api: TasksApi, plan: Plan, task_id: TaskId) -> Deleted:
    """Delete a task. Needs the user's confirmation."""
    await api.delete(task_id)
    return Deleted(id=task_id, deleted=True)


class Dependency(Compact):
    id: str
    name: str | None = None
    enabled: bool | None = None
    last_status: str | None = None
    app_id: str | None = None
    depth: int | None = None


class Dependencies(Compact):
    task_id: str
    direction: str
    tasks: list[Dependency]
    edges: list[str] = Field(default_factory=list, description="child -> parent, as the graph gives them.")
    names: str | None = Field(None, description="The tasks' names, tenant text in one fence.")
    note: str | None = None


def _dependency(task_id: str, depth: Any, task: TaskDoc | None) -> Dependency:
    return Dependency(
        id=task_id,
        name=one_line(task.name, 100) if task else None,
        enabled=task.enabled if task else None,
        last_status=task.last_status if task else None,
        app_id=task.app_id if task else None,
        depth=depth if isinstance(depth, int) else None,
    )


def _dependencies(task_id: str, direction: str, graph: GraphDoc) -> Dependencies:
    rows = [_dependency(v.task_id, v.attrs.get("depth"), v.task) for v in graph.vertices if v.task_id != task_id]
    names = untrusted_fields([(r.id, r.name) for r in rows], "task names") if rows else None
    down = direction in ("children", "descendants")
    if not rows:
        note = "Nothing runs after this task." if down else "No task starts this one."
    elif down:
        note = f"{len(rows)} task(s) run after this one; disabling or deleting it stops them being started by it."
    else:
        note = f"{len(rows)} task(s) lead to this one."
    return Dependencies(
        task_id=task_id,
        direction=direction,
        tasks=rows,
        edges=[f"{e.source} -> {e.target}" for e in graph.edges],
        names=names,
        note=note,
    )


@read("Get task dependencies")
async def get_task_dependencies(
    api: TasksApi,
    task_id: TaskId,
    direction: Annotated[GraphKind, Field(description="children/descendants: what runs after it.")] = "descendants",
    level: Annotated[int | None, Field(ge=1, le=20, description="Depth limit (ancestors/descendants).")] = None,
) -> Dependencies:
    """Tasks before or after a task in its chain: names, enabled, last status (scheduling API)."""
    return _dependencies(task_id, direction, await api.graph(task_id, direction, level=level))


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
    result = StartResult.of(task_id, followed, tail)
    result.downstream = await _downstream(api, task_id)
    return result


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
    sink = await api.read_log(task_id, run_id, LogSink(lines=lines, grep=grep, offset=offset))
    assert isinstance(sink, LogSink)
    return sink.result(task_id, run_id)


def _local(value: str | None, zone: str) -> str | None:
    """A schedule bound as wall-clock time in `zone` (one with an offset, as Qlik's examples have, is converted)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(time_zone(zone)).replace(tzinfo=None)
    return parsed.isoformat(timespec="seconds")


def _timing(schedule: ScheduleDoc | None) -> dict[str, Any]:
    """TaskInfo's schedule fields: a recurrence as it is, an interval expanded as an RRULE from its own start, a
    cron named (in words by the ops tools where its fields are simple)."""
    if schedule is None:
        return {}
    zone = schedule.zone
    end = _local(schedule.end_date_time, zone)
    if schedule.recurrence_lines:
        start = _local(schedule.start_date_time, zone)
        return {"recurrence": schedule.recurrence_lines, "start": start, "end": end, "time_zone": zone}
    if schedule.interval is not None:
        try:
            interval = repeating_interval(schedule.interval)
            expanded: dict[str, Any] = {"recurrence": [interval_rrule(interval)], "start": interval.start}
        except InvalidInput:
            expanded = {}
        return expanded | {"schedule_text": schedule.interval, "time_zone": zone, "end": end}
    if schedule.cron_expression:
        return {"schedule_text": cron_text(schedule.cron_expression), "time_zone": zone}
    return {}


_CRON_DAYS = {"0": "Sun", "1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri", "6": "Sat", "7": "Sun"}


def cron_text(expression: str) -> str:
    """A five-field cron in words where its fields are plain numbers, lists or `*`; else named as it is."""
    fields = expression.split()
    plain = len(fields) == 5 and all(f == "*" or f.replace(",", "").isdigit() for f in fields)
    if not plain:
        return f"cron {expression}"
    minute, hour, day, month, weekday = fields
    if minute == "*" or hour == "*":
        return f"cron {expression}"
    times = ", ".join(f"{int(h):02d}:{int(m):02d}" for h in hour.split(",") for m in minute.split(","))
    words = [f"at {times}"]
    if weekday != "*":
        words.append("on " + ", ".join(_CRON_DAYS.get(d, d) for d in weekday.split(",")))
    if day != "*":
        words.append(f"on day {day} of the month")
    if month != "*":
        words.append(f"in month {month}")
    return (
        f"every day {' '.join(words)} (cron {expression})"
        if day == month == weekday == "*"
        else (f"{' '.join(words)} (cron {expression})")
    )


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
        """Every app with a task, from the tenant-wide list; v1 lists only per app, so none there."""
        if not (await self.api.endpoint()).scheduling:
            return set()
        return {task.app_id async for task in self.api.all(resource_id=None) if task.app_id}

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        # Only `enabled` changes: a patch on the scheduling API, a PUT of the whole document on v1.
        current = await self.api.get(info.id)
        body = current.put_body() | {"enabled": enabled}
        await self.api.change(current, [{"op": "replace", "path": "/enabled", "value": enabled}], body)

    async def failures(self, scan: FailureScan) -> None:
        """Failed runs of the tasks of every app with a task (scheduling API) or that the scan knows of (v1),
        read app by app within the budget."""
        known = set(scan.apps)
        # The scheduling API lists every task: scan the apps that have one, not only those other kinds named.
        if scan.budget.spend(scan.clock(), "the tenant's task list"):
            known |= await self.app_ids()
        apps = sorted(a for a in known if a)

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
    return WorkflowTaskSource(TasksApi(clients.qlik, clients.tasks_api))
