"""Tasks and task chains on the Scheduling Tasks API (`/api/scheduling/tasks`, or `/api/v1/tasks` where a tenant
lacks it): list, get, create, update, delete, start (and wait), dependencies, runs, logs."""

import functools
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.resource import Listing
from qlik_tasks_mcp.client.schedule import (
    ExpansionBudget,
    Schedule,
    end_after_change,
    local_and_utc,
    rrule_lines,
    start_after_change,
    time_zone,
)
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
from qlik_tasks_mcp.tools.fence import one_line, quoted, tenant_text_note, untrusted, untrusted_fields
from qlik_tasks_mcp.tools.follow import FailedTail, Followed, RunWatch, WaitSeconds, follow
from qlik_tasks_mcp.tools.gate import Plan, field_diff
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.logs import GREP_MAX, LogSink, RunLog, compile_grep
from qlik_tasks_mcp.tools.model import Compact, Deleted, Input
from qlik_tasks_mcp.tools.names import Names, RowNames, owner_change_note, row_names, user_id_of
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.params import Cursor, Limit
from qlik_tasks_mcp.tools.sources import (
    OWNER_OFF,
    Budget,
    FailedReload,
    Failure,
    FailureScan,
    Narrow,
    TaskInfo,
    TaskSource,
    first_error_line,
    first_line,
    gather,
    owner_off_reason,
    parse_time,
    read_each,
    scan_now,
    short_time,
    short_utc,
    stale_reports_note,
    timing,
    will_not_run,
)

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


class ScheduleIn(Input):
    """When a scheduled task runs: RRULE lines from a local start, or an ISO 8601 repeating interval, in a zone."""

    interval: str | None = Field(
        None, max_length=80, description="ISO 8601, e.g. R/2026-02-01T06:00:00/P1D (daily 06:00)."
    )
    recurrence: list[str] | None = Field(
        None,
        max_length=10,
        description="RRULE lines (RRULE:FREQ=...); not with interval.",
    )
    start: str | None = Field(
        None, max_length=40, description="Local start of a recurrence; default now (update: kept)."
    )
    time_zone: str | None = Field(None, max_length=64, description="IANA zone; default UTC (update: kept).")
    end: str | None = Field(None, max_length=40, description='Local; default never (update: kept, "" clears).')

    def to_api(self, current: ScheduleDoc | None = None) -> tuple[Interval, str, str]:
        """The interval, zone and end ("" for never); on an update, `current` (the stored schedule) supplies the
        zone and end the caller left out. The interval carries its own start."""
        if not self.interval or self.recurrence:
            raise InvalidInput("give schedule.interval, or schedule.recurrence (RRULE lines), not both or neither")
        interval = repeating_interval(self.interval)
        zone = self.time_zone or (current.zone if current else "UTC")
        stored_end = current.end_date_time if current else None
        end = end_after_change(self.end, stored_end, interval.local_start(zone), time_zone(zone))
        return interval, zone, end

    def v1_fields(self, current: ScheduleDoc) -> dict[str, Any]:
        """The v1 `schedule` object (a PUT): the interval replaces the timing (cron, recurrence); the zone, the
        start and the end stay as stored unless given."""
        interval, zone, end = self.to_api(current)
        start = start_after_change(self.start, current.start_date_time, None)
        fields: dict[str, Any] = {"interval": interval.text, "timezone": zone}
        return fields | ({"startDateTime": start} if start else {}) | ({"endDateTime": end} if end else {})

    def schedule_fields(self, current: ScheduleDoc | None = None) -> dict[str, Any]:
        """The Task `schedule` object on the scheduling API: an interval becomes an RRULE from its own start, so
        both forms are one recurrence with startDateTime; zone, start and end kept from `current` unless given."""
        if self.interval and self.recurrence:
            raise InvalidInput("give schedule.interval or schedule.recurrence (RRULE lines), not both")
        zone = self.time_zone or (current.zone if current else "UTC")
        stored_start = current.start_date_time if current else None
        if self.recurrence:
            lines = rrule_lines(self.recurrence)
            start = start_after_change(self.start, stored_start, None)
        elif self.interval:
            interval = repeating_interval(self.interval)
            lines, start = [interval_rrule(interval)], interval.local_start(zone)
        else:
            raise InvalidInput("give schedule.recurrence (RRULE lines) or schedule.interval")
        stored_end = current.end_date_time if current else None
        end = end_after_change(self.end, stored_end, start, time_zone(zone))
        fields: dict[str, Any] = {"recurrence": "\n".join(lines), "timezone": zone}
        return fields | ({"startDateTime": start} if start else {}) | ({"endDateTime": end} if end else {})


class AfterTaskIn(Input):
    """Start when a run of another task finishes."""

    task_id: str = Field(min_length=1, max_length=128)
    status: Literal["SUCCEEDED", "FAILED", "any"] = Field("SUCCEEDED", description="Which outcome starts it.")


def _short(value: Any, width: int = 120) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value is not None else "(none)"
    return text if len(text) <= width else text[: width - 3] + "..."


def _other_triggers(task: TaskDoc) -> list[str]:
    own = f"appId {task.app_id}"
    parts = [f"when a dataset is updated ({'its app' if what == own else what})" for what in task.dataset_updates]
    for trigger in task.triggers:
        outcome = {"SUCCEEDED": "succeeds", "FAILED": "fails"}.get(trigger.status or "", "finishes")
        parts.append(f"when task {trigger.task_id} {outcome}")
    return parts


# A schedule's start, as its words give it ("from 2026-01-02 00:30"): a list row leaves out one that has passed.
_FROM = re.compile(r",? from \d{4}-\d{2}-\d{2}(?: \d{2}:\d{2})?")


def trigger_words(task: TaskDoc, *, listed: bool = False) -> str | None:
    """What starts the task: its schedule in words (one that cannot be read: raw, with why), and other triggers.
    `listed`: without a start that has passed (get_task says it)."""
    schedule = task.timing
    words = [schedule.shown] if schedule is not None else []
    counted = schedule is not None and " times" in schedule.words  # a COUNT runs out counted from its start
    if listed and schedule is not None and schedule.readable and schedule.start is not None and not counted:
        if schedule.start.replace(tzinfo=time_zone(schedule.zone)) <= datetime.now(UTC):
            words = [_FROM.sub("", schedule.shown, count=1)]
    return "; ".join(words + _other_triggers(task)) or None


# Fields of task and run rows that hold tenant text besides the fenced ones.
NAMES_NOTE = tenant_text_note(["name", "app", "owner"])
# Said once per page, so each row's will_not_run can be two words.
OWNER_OFF_NOTE = "will_not_run 'owner ...': Qlik runs a task as its owner."
DISABLED = "it is disabled"
DETAIL_NAMES_NOTE = tenant_text_note(["app", "owner", "creator"])
RUN_NAMES_NOTE = tenant_text_note(["task_name", "app"])


def _task_fields(task: TaskDoc, names: RowNames | None) -> dict[str, Any]:
    targets = task.targets
    owner = task.metadata.owner_id
    return {
        "last_status": task.last_status,
        "id": task.id,
        "name": one_line(task.name, 200),
        "enabled": task.enabled,
        "app_id": task.app_id,
        "app": names.app(task.app_id) if names else None,
        # Only a partial reload is worth a field: full is what a reload is unless told.
        "partial": True if targets and targets[0][1] else None,
        "disabled_code": task.disabled_code,
        "owner_id": owner,
        "owner": names.user(owner) if names else None,
    }


def _owner_off(task: TaskDoc, names: RowNames | None, *, short: bool = False) -> str | None:
    """Why a scheduled, enabled task will not run though the tenant still shows it enabled: its owner, by the
    tenant's own status for that user, is disabled or deleted (`short`: "owner deleted", see OWNER_OFF_NOTE)."""
    user = names.users.get(task.metadata.owner_id or "") if names else None
    if task.schedule is None or not task.enabled or user is None or user.status not in OWNER_OFF:
        return None
    return f"owner {user.status}" if short else owner_off_reason(user.status)


class TaskRow(Compact):
    id: str
    name: str
    enabled: bool
    app_id: str | None = None
    app: str | None = None
    partial: bool | None = None
    trigger: str | None = None
    next_run: str | None = Field(None, description="UTC, worked out from the schedule.")
    will_not_run: str | None = Field(None, description="Why its schedule will not run it.")
    disabled_code: str | None = None
    owner_id: str | None = None
    owner: str | None = None
    updated_at: str | None = None
    last_status: str | None = None

    @classmethod
    def listed(cls, task: TaskDoc, names: RowNames, runs: "NextRuns") -> "TaskRow":
        why_not = runs.why_not.get(task.id) or _owner_off(task, names, short=True)
        # A list row leaves to get_task what costs tokens on every row and rarely answers a question: when it was
        # changed (the default sort says the order), a start that has passed, a run it will not make, its
        # description (tenant text that would need a fence of its own).
        return cls(
            **_task_fields(task, names),
            trigger=trigger_words(task, listed=True),
            next_run=None if why_not else runs.first.get(task.id),
            # "enabled": false says it already.
            will_not_run=None if not task.enabled and why_not == DISABLED else why_not,
        )


class TaskDetail(TaskRow):
    next_runs: list[str] = Field(default_factory=list, description="Local time in the schedule's zone = UTC.")
    schedule_note: str | None = None
    description: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    creator: str | None = None
    workflow: dict[str, Any] = Field(default_factory=dict, description="start, events, states as the API has them.")

    @classmethod
    def of(cls, task: TaskDoc, names: RowNames | None = None, runs: "NextRuns | None" = None) -> "TaskDetail":
        creator = task.metadata.created_by
        schedule = task.timing
        return cls(
            **_task_fields(task, names),
            trigger=trigger_words(task),
            next_run=runs.first.get(task.id) if runs else None,
            next_runs=runs.shown.get(task.id, []) if runs else [],
            will_not_run=(runs.why_not.get(task.id) if runs else None) or _owner_off(task, names),
            schedule_note=schedule.note if schedule else None,
            updated_at=task.metadata.updated_at,
            description=task.description or None,
            created_at=task.metadata.created_at,
            created_by=creator,
            creator=names.user(creator) if names else None,
            workflow=task.workflow(),
        )


class TaskPage(Compact):
    tasks: list[TaskRow]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    app_ids: dict[str, str] = Field(default_factory=dict, description="App -> id, for rows naming only the app.")
    owner_ids: dict[str, str] = Field(default_factory=dict, description="Owner -> id, for rows naming only the owner.")
    note: str | None = None


def ids_once(rows: list[Any], id_field: str, name_field: str) -> dict[str, str]:
    """Name -> id for the ids several rows share under a name no other id has; those rows keep the name alone
    (their `id_field` emptied), so each id is said once per page. Rows without a name keep their id."""
    ids_of: dict[str, set[str]] = {}
    uses: Counter[str] = Counter()
    for row in rows:
        name, ident = getattr(row, name_field), getattr(row, id_field)
        if name and ident and not name.startswith("("):  # "(not visible to this key)" names no one
            ids_of.setdefault(name, set()).add(ident)
            uses[ident] += 1
    shared = {name: next(iter(ids)) for name, ids in ids_of.items() if len(ids) == 1 and uses[next(iter(ids))] > 1}
    for row in rows:
        if getattr(row, name_field) in shared:
            setattr(row, id_field, None)
    return shared


class TaskResult(Compact):
    task: TaskDetail
    note: str | None = None


async def task_names(names: Names, tasks: list[TaskDoc]) -> RowNames:
    """The apps and owners (and creators) of these tasks: one apps and one users request for the lot."""
    users = [t.metadata.owner_id for t in tasks] + [t.metadata.created_by for t in tasks]
    return await row_names(names, [t.app_id for t in tasks], users)


@dataclass
class NextRuns:
    """Tasks' next runs: the first (short UTC) of each, all of them shown, and why a scheduled one will not run."""

    first: dict[str, str] = dc_field(default_factory=dict)
    shown: dict[str, list[str]] = dc_field(default_factory=dict)
    why_not: dict[str, str] = dc_field(default_factory=dict)


async def next_runs(tasks: list[TaskDoc], count: int = 1, *, shown: bool = False) -> NextRuns:
    """The next runs of each scheduled task, all within one expansion budget; the rules not expanded before (see
    Schedule.known_runs) in one trip off the event loop. A schedule whose runs cannot be worked out in time has
    none, and says so."""
    now, budget = datetime.now(UTC), ExpansionBudget()
    found = NextRuns()
    read = [(task, info, timing(info)) for task in tasks for info in [WorkflowTaskSource.info(task)]]
    known = {
        task.id: runs
        for task, info, schedule in read
        if schedule is not None and info.enabled and (runs := schedule.known_runs(now, count)) is not None
    }

    def one(task: TaskDoc, info: TaskInfo, schedule: Schedule | None) -> None:
        try:
            runs = known.get(task.id)
            if runs is None:
                runs = schedule.next_runs(now, count, budget=budget) if schedule and info.enabled else []
        except InvalidInput as exc:
            found.why_not[task.id] = f"its next runs could not be worked out: {exc}"
            return
        if runs:
            found.first[task.id] = short_utc(runs[0])
            if shown:  # each in its zone and UTC: for a task read whole, not for every row of a list
                found.shown[task.id] = [local_and_utc(run) for run in runs]
        reason = will_not_run(info, runs, now=now)
        if reason:
            found.why_not[task.id] = reason

    def work() -> None:
        for entry in read:
            one(*entry)

    expand = any(s is not None and i.enabled and t.id not in known for t, i, s in read)
    if expand:
        await anyio.to_thread.run_sync(work)
    else:
        work()  # nothing left to expand: no trip off the loop
    return found


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
    started_at: str | None = Field(None, description="UTC, to the minute.")
    ended_at: str | None = None
    seconds: float | None = None
    triggered_by: str | None = None
    app_id: str | None = None
    app: str | None = None

    @classmethod
    def fields_of(cls, run: RunDoc, names: RowNames | None = None) -> dict[str, Any]:
        return {
            "id": run.id,
            "task_id": run.task_id,
            "task_name": one_line(run.task_name, 100) if run.task_name else None,
            "status": run.status,
            "started_at": short_time(run.started_at),
            "ended_at": short_time(run.ended_at),
            "seconds": _seconds(run.started_at, run.ended_at),
            "triggered_by": run.triggered_by,
            "app_id": run.resource_id,
            "app": names.app(run.resource_id) if names else None,
        }

    @classmethod
    def of(cls, run: RunDoc, names: RowNames | None = None) -> "Run":
        return cls(**cls.fields_of(run, names))


class RunDetail(Run):
    message: str | None = None

    @classmethod
    def of(cls, run: RunDoc, names: RowNames | None = None) -> "RunDetail":
        message = untrusted(run.log, "run message") if run.log else None
        return cls(**cls.fields_of(run, names), message=message)


class RunPage(Compact):
    runs: list[Run]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    scanned: int | None = Field(default=None, description="Runs read to find these (status filter).")
    note: str | None = None


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


class Dependency(Compact):
    id: str
    side: Literal["upstream", "downstream"] = Field(description="upstream: leads to this task; downstream: after it.")
    name: str | None = None
    enabled: bool | None = None
    last_status: str | None = None
    app_id: str | None = None
    app: str | None = None
    depth: int | None = None


class Dependencies(Compact):
    task_id: str
    direction: str
    tasks: list[Dependency]
    edges: list[str] = Field(default_factory=list, description="child -> parent, as the graph gives them.")
    names: str | None = Field(None, description="The tasks' names, tenant text in one fence.")
    note: str | None = None


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


# More ids than this are found in the tenant-wide list (100 a page) instead of one GET each: 5,000 GETs would
# spend tier 1 (1,000 a minute) and earn the tenant's 429.
BULK_READ_FROM = 20
# v1 has no tenant-wide list: each id is one GET of its 600-a-minute tier, so more than this are refused up front.
V1_READS = 200
LIST_PAGE = 100


class WorkflowTaskSource:
    """Tasks as the ops tools see them: the scheduling API lists them tenant-wide with a SCIM filter, v1 only app
    by app; they can chain."""

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
            owner_id=task.metadata.owner_id or None,
            schedule=task.timing,
        )

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await self.api.get(task_id))

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        """Those of `task_ids` that exist. A few: one GET each. More (scheduling API): the tenant-wide list, read
        in pages of 100 and matched here, as its SCIM filter takes no `id` (scheduling-tasks.json names name,
        enabled, resourceId, ownerId, spaceId, times, statuses and triggerType only); the few ids it lacks are then
        read one by one, so a task is "not found" only where the tenant answered 404 for it. v1 lists only per
        app, so there each id is read, up to V1_READS (its tier allows 600 a minute)."""
        if len(task_ids) <= BULK_READ_FROM:
            return await read_each(task_ids, self.get)
        if not (await self.api.endpoint()).scheduling:
            if len(task_ids) > V1_READS:
                raise InvalidInput(
                    f"{len(task_ids)} task ids: /api/v1/tasks is read one task at a time (no tenant-wide list), at "
                    f"most {V1_READS} per call; select them with app_id instead, or name fewer"
                )
            return await read_each(task_ids, self.get)
        wanted = set(task_ids)
        found = {task.id: self.info(task) async for task in self.api.all(resource_id=None) if task.id in wanted}
        missing = [i for i in task_ids if i not in found]
        if len(missing) > BULK_READ_FROM:
            raise InvalidInput(
                f"{len(missing)} of the task ids are not in the tenant's task list for this key (first: "
                f"{', '.join(missing[:5])}); nothing was changed: check the ids"
            )
        for task_id in missing:
            try:
                found[task_id] = await self.get(task_id)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return found

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(task) async for task in self.api.all(resource_id=app_id)]

    async def all_tasks(self, budget: Budget, narrow: Narrow | None = None) -> list[TaskInfo] | None:
        """Every task tenant-wide (scheduling API), those `narrow` selects sent as the list's SCIM filter (`eq`
        terms on resourceId, ownerId, enabled), a page of 100 per request of `budget`; a page the budget refuses
        is recorded there, so a cut listing is never taken for the whole. None on v1, which lists per app only."""
        if not (await self.api.endpoint()).scheduling:
            return None
        narrow = narrow or Narrow()
        scim = scim_filter(app_id=narrow.app_id, owner_id=narrow.owner_id, enabled=narrow.enabled, last_status=None)
        found: list[TaskInfo] = []
        cursor: str | None = None
        seen: set[str] = set()
        while budget.spend(scan_now(), f"tasks listing, page {len(seen) + 1}" + (" on" if seen else "")):
            page = await self.api.list(resource_id=None, sort="+createdAt", limit=LIST_PAGE, cursor=cursor, scim=scim)
            found += [self.info(task) for task in page.items]
            if not page.next_cursor:
                break
            if page.next_cursor in seen:
                budget.skipped.append(f"tasks listing after page {len(seen) + 1} (its next link came round)")
                break
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        return found

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

    async def delete(self, info: TaskInfo) -> None:
        await self.api.delete(info.id)

    async def failures(self, scan: FailureScan) -> None:
        """Every failed run in the window. Scheduling API: the tasks whose last run failed (one filtered listing,
        newest first); each run's reload names its task, so failed runs come from the failed reloads the scan read,
        and only tasks with none there have their runs read. v1 (listed per app only): the runs of the apps the
        scan knows. Apps the caller named are read app by app either way."""
        scheduling = (await self.api.endpoint()).scheduling
        failing = await self._last_failed(scan) if scheduling else {}
        runs = _RunFailures(scan)
        claimed = scan.reloads.claim("tasks")
        named = await self._starters(scan, [t for t in claimed if t not in failing])
        for task_id, reloads in claimed.items():
            task = failing.get(task_id) or named.get(task_id)
            runs.from_reloads(task_id, task, reloads, gone=task_id in named and named[task_id] is None)
        for task in failing.values():
            if task.id not in runs.tasks and scan.spend(f"runs of task {task.id}"):
                page = await self.api.runs(task.id, sort="-startedAt", limit=100)
                runs.add_runs(task.app_id, page.items)
        apps = sorted(scan.asked_apps | (set() if scheduling else scan.apps))
        await gather(apps, lambda app_id: self._app_runs(app_id, runs))
        await runs.read_first_errors(self.api)
        scan.found.extend(runs.found)
        scan.checked["task"] = len(failing) if scheduling else len(runs.tasks)
        scan.checked["task runs from reloads"] = runs.from_reload_count
        scan.checked["task apps"] = len(apps)

    async def _starters(self, scan: FailureScan, task_ids: list[str]) -> dict[str, TaskDoc | None]:
        """The tasks that started failed reloads, read by id within the scan's budget, so a failure is named after
        its task; None for an id the tenant answers 404 for (no task of that id visible to this key)."""
        found: dict[str, TaskDoc | None] = {}

        async def one(task_id: str) -> None:
            if not scan.spend(f"name of task {task_id}"):
                return
            try:
                found[task_id] = await self.api.get(task_id)
            except ApiError as exc:
                if exc.status == 404:
                    found[task_id] = None

        await gather(task_ids, one)
        return found

    async def _last_failed(self, scan: FailureScan) -> dict[str, TaskDoc]:
        """Tasks whose last run failed in the window: `lastStatus eq "FAILED"` sorted by their last run's end,
        read until one ended before the window (the notes confirm no operator but eq, so no range filter)."""
        found: dict[str, TaskDoc] = {}
        cursor: str | None = None
        while scan.spend("tasks whose last run failed" + (", a further page" if cursor else "")):
            page = await self.api.list(
                resource_id=None, sort="-lastEndedAt", limit=100, cursor=cursor, scim='lastStatus eq "FAILED"'
            )
            for task in page.items:
                ended = parse_time(_last_ended(task))
                if ended is not None and ended < scan.since:
                    return found
                found[task.id] = task
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        return found

    async def _app_runs(self, app_id: str, runs: "_RunFailures") -> None:
        """An app's failed runs in the window, newest first, every page while the budget allows."""
        cursor: str | None = None
        try:
            while runs.scan.spend(f"task runs of app {app_id}"):
                page = await self.api.resource_runs(app_id, sort="-startedAt", limit=100, cursor=cursor)
                if not runs.add_runs(app_id, page.items) or not page.next_cursor:
                    return
                cursor = page.next_cursor
        except ApiError as exc:
            runs.scan.budget.skipped.append(f"task runs of app {app_id} (HTTP {exc.status})")


def _last_ended(task: TaskDoc) -> str | None:
    attrs = task.metadata.orchestration.attrs if task.metadata.orchestration else {}
    value = attrs.get("last_run_endedAt") or attrs.get("lastEndedAt")
    return value if isinstance(value, str) else None


@dataclass
class _RunFailures:
    """The failed task runs of one scan, each counted once (by run or reload id), newest first per task."""

    scan: FailureScan
    found: list[Failure] = dc_field(default_factory=list)
    tasks: set[str] = dc_field(default_factory=set)
    seen: set[str] = dc_field(default_factory=set)
    from_reload_count: int = 0
    # Tasks whose failed runs were counted from their reloads: their runs are not counted again.
    by_reloads: set[str] = dc_field(default_factory=set)

    def from_reloads(self, task_id: str, task: TaskDoc | None, reloads: list[FailedReload], gone: bool = False) -> None:
        """The failed reloads a task started (the reloads name it); `gone`: the tenant answered 404 for its id."""
        self.tasks.add(task_id)
        self.by_reloads.add(task_id)
        why = "no task of this id is visible to this key" if gone else "its name was not read"
        label = task.name if task else f"task {task_id} ({why})"
        for reload in sorted(reloads, key=lambda r: r.at or "", reverse=True):
            self.from_reload_count += 1
            self.found.append(
                Failure(
                    "task",
                    task_id,
                    label,
                    reload.app_id,
                    reload.at,
                    ref=reload.id,
                    error=f"Reload error: {reload.error}" if reload.error else None,
                    ref_kind="reload",
                )
            )

    def add_runs(self, app_id: str | None, page: list[RunDoc]) -> bool:
        """Adds the page's failed runs in the window; False once a run started before it (no need to read on)."""
        for run in page:
            started = parse_time(run.started_at)
            if started is not None and started < self.scan.since:
                return False
            if run.status.upper() != "FAILED" or run.id in self.seen or run.task_id in self.by_reloads:
                continue
            self.seen.add(run.id)
            self.tasks.add(run.task_id)
            error = first_error_line(run.log) or first_line(run.log) if run.log else None
            self.found.append(_failure(app_id or run.resource_id, run, error))
        return True

    async def read_first_errors(self, api: TasksApi) -> None:
        """The newest failed run of each task without an error line gets one from its log, within the budget."""
        newest: dict[str, Failure] = {}
        for failure in self.found:
            if failure.task_id not in newest or (failure.at or "") > (newest[failure.task_id].at or ""):
                newest[failure.task_id] = failure
        for failure in newest.values():
            if failure.error or not failure.ref or failure.ref not in self.seen:
                continue
            if self.scan.spend(f"log of run {failure.ref}"):
                try:
                    failure.error = first_error_line(await api.run_log(failure.task_id, failure.ref))
                except ApiError as exc:
                    failure.error = f"(log not readable: HTTP {exc.status})"


def _failure(app_id: str | None, run: RunDoc, error: str | None) -> Failure:
    return Failure(
        kind="task",
        task_id=run.task_id,
        name=run.task_name or run.task_id,
        app_id=app_id,
        at=run.ended_at or run.started_at,
        ref=run.id or None,
        error=error,
        ref_kind="run" if run.id else None,
    )


def source(clients: Deps) -> WorkflowTaskSource:
    return WorkflowTaskSource(TasksApi(clients.qlik, clients.tasks_api))
