"""Tasks and task chains on the Scheduling Tasks API (`/api/scheduling/tasks`, or `/api/v1/tasks` where a tenant
lacks it): list, get, create, update, delete, start (and wait), dependencies, runs, logs."""

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.resource import Listing
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
from qlik_tasks_mcp.client.workflow import check_workflow, reload_after_task, scheduled_reload, task_name
from qlik_tasks_mcp.tools.fence import one_line, quoted, tenant_text_note, untrusted_fields
from qlik_tasks_mcp.tools.follow import FailedTail, RunWatch, WaitSeconds, follow
from qlik_tasks_mcp.tools.gate import Plan, field_diff
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.logs import GREP_MAX, LogSink, RunLog, compile_grep
from qlik_tasks_mcp.tools.model import Deleted
from qlik_tasks_mcp.tools.names import Names, RowNames, owner_change_note, row_names, user_id_of
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.params import Cursor, Limit
from qlik_tasks_mcp.tools.sources import TaskSource, stale_reports_note
from qlik_tasks_mcp.tools.tasks.models import (
    DETAIL_NAMES_NOTE,
    NAMES_NOTE,
    OWNER_OFF_NOTE,
    RUN_NAMES_NOTE,
    AfterTaskIn,
    Dependencies,
    Dependency,
    LastRun,
    Run,
    RunDetail,
    RunPage,
    ScheduleIn,
    StartResult,
    TaskDetail,
    TaskPage,
    TaskResult,
    TaskRow,
    ids_once,
    next_runs,
    task_names,
    trigger_words,
)
from qlik_tasks_mcp.tools.tasks.source import WorkflowTaskSource

# A status filter reads at most this many pages to fill one answer.
MAX_SCAN_PAGES = 5
# Next runs get_task shows.
DETAIL_RUNS = 3

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Task id.")]
RunId = Annotated[str, Field(min_length=1, max_length=128, description="Run id.")]
AppId = Annotated[str, Field(min_length=1, max_length=128, description="App id.")]
RunSort = Literal["-startedAt", "+startedAt", "-endedAt", "+endedAt", "-status", "+status"]
StatusFilter = Annotated[
    Literal["RUNNING", "SUCCEEDED", "FAILED"] | None,
    Field(description="Filtered here: a page may hold fewer rows."),
]
Description = Annotated[str | None, Field(max_length=500)]
Workflow = Annotated[
    dict[str, Any] | None,
    Field(description="Raw Task body (Serverless Workflow)."),
]


def _short(value: Any, width: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value is not None else "(none)"
    return text if len(text) <= width else text[: width - 3] + "..."


async def describe(names: Names, task: TaskDoc) -> str:
    """The task for a preview or question: its name, the app it reloads and its owner by name, its trigger."""
    targets = task.targets
    app = f" reloading {await names.describe_app(targets[0][0])}" if targets else ""
    owner_id = task.metadata.owner_id
    owner = f", owner {await names.describe_user(owner_id)}" if owner_id else ""
    return f"task {quoted(task.name, 300)} ({task.id}){app}{owner}, {trigger_words(task) or 'no trigger'}"


ENABLED_NOTE = "enabled was sent explicitly: Qlik creates tasks disabled unless told otherwise."


@dataclass(frozen=True)
class Tasks:
    """What the tasks tools work with: the tasks API, the one name lookup, and the served families' task sources
    (made on first use), which previews read to say whose reports would go stale."""

    api: TasksApi
    names: Names
    sources: Callable[[], dict[str, TaskSource]] = dict


def service(clients: Deps) -> Tasks:
    return Tasks(TasksApi(clients.qlik, clients.tasks_api), clients.names, lambda: clients.sources)


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


def _v1_kept(task: TaskDoc, owner_id: str | None, enabled: bool | None, last_status: str | None) -> bool:
    return (
        (owner_id is None or task.metadata.owner_id == owner_id)
        and (enabled is None or task.enabled == enabled)
        and (last_status is None or (task.last_status or "").upper() == last_status)
    )


@read("List tasks")
async def list_tasks(
    tasks: Tasks,
    resource_id: Annotated[
        str | None, Field(min_length=1, max_length=128, description="App id; omit for every task (scheduling API).")
    ] = None,
    sort: Annotated[TaskSort, Field(description="v1: updatedAt/createdAt only.")] = "-updatedAt",
    limit: Limit = 20,
    cursor: Cursor = None,
    owner_id: Annotated[str | None, Field(min_length=1, max_length=128, description="User id, name or e-mail.")] = None,
    enabled: bool | None = None,
    last_status: Literal["RUNNING", "SUCCEEDED", "FAILED"] | None = None,
) -> TaskPage:
    """List tasks, tenant-wide or of one app (the v1 API requires resource_id)."""
    api = tasks.api
    endpoint = await api.endpoint()
    note = None
    if owner_id:
        owner_id = await user_id_of(tasks.names, owner_id)
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
    names, runs = await task_names(tasks.names, rows), await next_runs(rows)
    listed = [TaskRow.listed(t, names, runs) for t in rows]
    owner_off = any((r.will_not_run or "").startswith("owner ") for r in listed)
    notes = (note, page.cut_note, NAMES_NOTE if rows else None, OWNER_OFF_NOTE if owner_off else None)
    return TaskPage(
        tasks=listed,
        next_cursor=page.next_cursor,
        app_ids=ids_once(listed, "app_id", "app"),
        owner_ids=ids_once(listed, "owner_id", "owner"),
        note=" ".join(n for n in notes if n) or None,
    )


@read("Get task")
async def get_task(tasks: Tasks, task_id: TaskId) -> TaskResult:
    """One task: trigger (schedule in words, task it follows, dataset update), next runs, target app, owner,
    workflow."""
    task = await tasks.api.get(task_id)
    runs = await next_runs([task], count=DETAIL_RUNS, shown=True)
    detail = TaskDetail.of(task, await task_names(tasks.names, [task]), runs)
    return TaskResult(task=detail, note=DETAIL_NAMES_NOTE)


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
    tasks: Tasks,
    name: Annotated[
        str | None, Field(max_length=100, description="Title, kept as given (v1: lowercase-hyphen).")
    ] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="App to reload.")] = None,
    schedule: Annotated[ScheduleIn | None, Field(description="Reload on this schedule.")] = None,
    after_task: Annotated[AfterTaskIn | None, Field(description="Reload when this task's run ends.")] = None,
    partial: Annotated[bool, Field(description="v1 or raw workflow only.")] = False,
    enabled: bool = True,
    description: Description = None,
    workflow: Workflow = None,
    dataset_updated: Annotated[bool, Field(description="Reload when a pipeline updates the app's datasets.")] = False,
) -> TaskResult:
    """Create a reload task: app_id + name + schedule, after_task or dataset_updated; or a raw workflow."""
    triggers = sum([schedule is not None, after_task is not None, dataset_updated])
    others = [name, app_id, schedule, after_task, description, True if dataset_updated else None]
    _check_create_shape(name, app_id, triggers, workflow, others)
    api = tasks.api
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
    return schedule.schedule_fields(stored) if scheduling else schedule.v1_fields(stored)


def _schedule_lines(current: TaskDoc, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A schedule change in words: the timing as a person reads it, and the start and end when they change."""
    created = current.metadata.created_at
    before, after = (ScheduleDoc.model_validate(doc).read(created) for doc in (old, new))
    words_before = before.shown if before else "(none)"
    words_after = after.shown if after else "(none)"
    lines = [f"schedule: {words_before} -> {words_after}"] if words_before != words_after else []
    for key, label in (("startDateTime", "start"), ("endDateTime", "end")):
        if old.get(key) != new.get(key):
            lines.append(f"schedule {label}: {old.get(key) or '(none)'} -> {new.get(key) or '(none)'}")
    return lines or ["schedule: the same runs, stored anew"]


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


async def _stale(tasks: Tasks, current: TaskDoc, *, deleting: bool) -> str | None:
    if not current.enabled and not deleting:
        return None
    leaving = {("task", current.id)}
    return await stale_reports_note(tasks.sources(), current.app_id, leaving, deleting=deleting, names=tasks.names)


async def plan_update(
    tasks: Tasks,
    task_id: str,
    enabled: bool | None,
    description: str | None,
    schedule: ScheduleIn | None,
    workflow: dict[str, Any] | None,
) -> UpdatePlan:
    if workflow is not None and any(v is not None for v in (enabled, description, schedule)):
        raise InvalidInput("give either workflow alone (it replaces the whole task), or the fields to change")
    api = tasks.api
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
            changes += _schedule_lines(current, old, new)
    if workflow:
        changes = [f"{key}: replaced" for key in WRITABLE if before.get(key) != after.get(key)]
    if not changes:
        raise InvalidInput("the task already has these values; nothing to change")
    notes = await _owner_notes(tasks.names, current, scheduling)
    if enabled is False:
        notes += [n for n in [await _downstream(api, task_id)] if n]
        notes += [n for n in [await _stale(tasks, current, deleting=False)] if n]
    return UpdatePlan(
        action=f"Update {await describe(tasks.names, current)}",
        changes=changes,
        state=current.wire(),
        notes=notes,
        diff=field_diff(before, after, WRITABLE),
        ops=ops,
        put_body=after,
    )


async def _owner_notes(names: Names, current: TaskDoc, scheduling: bool) -> list[str]:
    """Who owns the task now and that the change makes the caller its owner; nothing when the caller owns it."""
    note = await owner_change_note(names, [current.metadata.owner_id or "unknown"])
    if not note:
        return []
    return [note, ("A JSON Patch" if scheduling else "A PUT") + " makes the caller the task's owner."]


@destructive("Update task", plan=plan_update, idempotent=True)
async def update_task(
    tasks: Tasks,
    plan: UpdatePlan,
    task_id: TaskId,
    enabled: bool | None = None,
    description: Description = None,
    schedule: Annotated[ScheduleIn | None, Field(description="Scheduled tasks only.")] = None,
    workflow: Workflow = None,
) -> TaskDetail:
    """Change a task; this makes the caller its owner."""
    current = TaskDoc.model_validate(plan.state)
    return TaskDetail.of(await tasks.api.change(current, plan.ops, plan.put_body))


async def plan_delete(tasks: Tasks, task_id: str) -> Plan:
    current = await tasks.api.get(task_id)
    notes = ["This cannot be undone. Tasks chained after this one are no longer started by it."]
    notes += [n for n in [await _downstream(tasks.api, task_id)] if n]
    notes += [n for n in [await _stale(tasks, current, deleting=True)] if n]
    return Plan(
        action=f"Delete {await describe(tasks.names, current)}",
        changes=["the task and its trigger are removed"],
        state=current.wire(),
        notes=notes,
    )


@destructive("Delete task", plan=plan_delete, idempotent=True)
async def delete_task(tasks: Tasks, plan: Plan, task_id: TaskId) -> Deleted:
    """Delete a task."""
    await tasks.api.delete(task_id)
    return Deleted(id=task_id, deleted=True)


DOWN = ("children", "descendants")


def _dependency(task_id: str, depth: Any, task: TaskDoc | None, names: RowNames, down: bool) -> Dependency:
    return Dependency(
        id=task_id,
        side="downstream" if down else "upstream",
        name=one_line(task.name, 100) if task else None,
        enabled=task.enabled if task else None,
        last_status=task.last_status if task else None,
        app_id=task.app_id if task else None,
        app=names.app(task.app_id) if task else None,
        depth=depth if isinstance(depth, int) else None,
    )


def _side_note(rows: list[Dependency], down: bool) -> str:
    if down:
        if not rows:
            return "Nothing runs after this task."
        return f"{len(rows)} task(s) run after this one; disabling or deleting it stops them being started by it."
    return f"{len(rows)} task(s) lead to this one." if rows else "No task starts this one."


def _dependencies(task_id: str, direction: str, graphs: dict[str, GraphDoc], labels: RowNames) -> Dependencies:
    rows: list[Dependency] = []
    notes: list[str] = []
    edges: list[str] = []
    for kind, graph in graphs.items():
        down = kind in DOWN
        side = [_dependency(v.task_id, v.attrs.get("depth"), v.task, labels, down) for v in graph.vertices]
        side = [row for row in side if row.id != task_id]
        rows += side
        notes.append(_side_note(side, down))
        edges += [f"{e.source} -> {e.target}" for e in graph.edges if f"{e.source} -> {e.target}" not in edges]
    names = untrusted_fields([(r.id, r.name) for r in rows], "task names") if rows else None
    if rows:
        notes.append(tenant_text_note(["name", "app"]))
    return Dependencies(
        task_id=task_id, direction=direction, tasks=rows, edges=edges, names=names, note=" ".join(notes)
    )


@read("Get task dependencies")
async def get_task_dependencies(
    tasks: Tasks,
    task_id: TaskId,
    direction: Annotated[
        GraphKind | Literal["both"],
        Field(description="both: what leads to it (ancestors) and what runs after it (descendants)."),
    ] = "both",
    level: Annotated[int | None, Field(ge=1, le=20, description="Depth limit (ancestors/descendants).")] = None,
) -> Dependencies:
    """Tasks before and after a task in its chains: names, enabled, last status (scheduling API)."""
    kinds: list[GraphKind] = ["ancestors", "descendants"] if direction == "both" else [direction]
    graphs = {kind: await tasks.api.graph(task_id, kind, level=level) for kind in kinds}
    apps = [v.task.app_id for g in graphs.values() for v in g.vertices if v.task and v.task_id != task_id]
    return _dependencies(task_id, direction, graphs, await row_names(tasks.names, apps, []))


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
    tasks: Tasks,
    ctx: Context,
    task_id: TaskId,
    source: Annotated[
        str | None, Field(max_length=100, description="Origin recorded on the run; default manual.")
    ] = None,
    wait: bool = False,
    timeout_seconds: WaitSeconds = 60,
) -> StartResult:
    """Start a task now; wait=true follows its run to the end. Ending the wait never cancels the run."""
    api = tasks.api
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
    names: Names,
    fetch: Callable[[str | None], Awaitable[Listing[RunDoc]]],
    status: str | None,
    limit: int,
    cursor: str | None,
) -> RunPage:
    """A page of runs; with `status`, pages are read (at most MAX_SCAN_PAGES) until `limit` rows match."""
    page = await fetch(cursor)
    found, scanned = list(page.items), None
    if status:
        found, scanned = [r for r in page.items if r.status == status], len(page.items)
        for _ in range(MAX_SCAN_PAGES - 1):
            if len(found) >= limit or not page.next_cursor:
                break
            page = await fetch(page.next_cursor)
            scanned += len(page.items)
            found += [r for r in page.items if r.status == status]
    apps = await row_names(names, [r.resource_id for r in found], [])
    return RunPage(
        runs=[Run.of(r, apps) for r in found],
        next_cursor=page.next_cursor,
        scanned=scanned,
        note=RUN_NAMES_NOTE if found else None,
    )


@read("List task runs")
async def list_task_runs(
    tasks: Tasks,
    task_id: TaskId,
    sort: RunSort = "-startedAt",
    status: StatusFilter = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> RunPage:
    """Runs of a task: status, start/end, duration, what triggered it."""

    def fetch(page_cursor: str | None) -> Awaitable[Listing[RunDoc]]:
        return tasks.api.runs(task_id, sort=sort, limit=limit, cursor=page_cursor)

    return await _runs_page(tasks.names, fetch, status, limit, cursor)


@read("List an app's task runs")
async def list_resource_task_runs(
    tasks: Tasks,
    resource_id: AppId,
    sort: RunSort = "-startedAt",
    status: StatusFilter = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> RunPage:
    """Runs of every task that targets one app."""

    def fetch(page_cursor: str | None) -> Awaitable[Listing[RunDoc]]:
        return tasks.api.resource_runs(resource_id, sort=sort, limit=limit, cursor=page_cursor)

    return await _runs_page(tasks.names, fetch, status, limit, cursor)


@read("Get last task run")
async def get_last_task_run(tasks: Tasks, task_id: TaskId) -> LastRun:
    """A task's latest run: status, times, error message if it failed."""
    run = await tasks.api.last_run(task_id)
    if run is None:
        return LastRun(note="The task has not run yet.")
    return LastRun(run=RunDetail.of(run))


@read("Get task run log")
async def get_task_run_log(
    tasks: Tasks,
    task_id: TaskId,
    run_id: RunId,
    lines: Annotated[int, Field(ge=1, le=500, description="Max 500.")] = 40,
    grep: Annotated[str | None, Field(max_length=GREP_MAX, description="Case-insensitive regex.")] = None,
    offset: Annotated[int | None, Field(ge=0, description="Lines to skip; default: the tail.")] = None,
) -> RunLog:
    """A run's reload log: the tail by default, or from offset, or only lines matching grep."""
    if grep:
        compile_grep(grep)
    sink = await tasks.api.read_log(task_id, run_id, LogSink(lines=lines, grep=grep, offset=offset))
    assert isinstance(sink, LogSink)
    return sink.result(task_id, run_id)


def source(clients: Deps) -> WorkflowTaskSource:
    return WorkflowTaskSource(TasksApi(clients.qlik, clients.tasks_api))
