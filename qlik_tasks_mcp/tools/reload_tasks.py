"""Reload tasks (`/api/v1/reload-tasks`): list, get, create, update, delete."""

from typing import Annotated, Any, Literal

from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.reload_tasks import ReloadTaskDoc, ReloadTasksApi
from qlik_tasks_mcp.client.schedule import end_after_change, rrule_lines, start_after_change, time_zone
from qlik_tasks_mcp.tools.common import Cursor, Limit, put_owner_note
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.inventory import Clients
from qlik_tasks_mcp.tools.model import Compact, Deleted, Input
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.sources import Failure, FailureScan, TaskInfo, parse_time

TOOLSET = "reload"
NOTE = "Qlik deprecated /api/v1/reload-tasks in favour of /api/scheduling/tasks; it is still served."

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Reload task id.")]
AppId = Annotated[str, Field(min_length=1, max_length=128, description="App id.")]


class Schedule(Input):
    """A reload schedule as Qlik takes it: RRULE lines expanded in an IANA time zone from start to end."""

    recurrence: list[str] = Field(
        min_length=1,
        max_length=20,
        description="RFC 5545 lines, e.g. RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0 (no DTSTART).",
    )
    time_zone: str = Field(max_length=64, description="IANA zone, e.g. Europe/Zurich.")
    start: str | None = Field(
        None, max_length=40, description="Local start, YYYY-MM-DDTHH:MM:SS; default now (update: keep current)."
    )
    end: str | None = Field(
        None, max_length=40, description='Local end; default never (update: keep current, "" clears).'
    )

    def to_api(self, current: ReloadTaskDoc | None = None) -> dict[str, Any]:
        """Validate everything the API would, and say what to fix, before a request is sent.

        On an update, `current` (the stored task) supplies the start and end the caller left out.
        """
        zone = time_zone(self.time_zone)
        start = start_after_change(self.start, current.start_date_time if current else None, zone)
        return {
            "recurrence": rrule_lines(self.recurrence),
            "timeZone": self.time_zone,
            "startDateTime": start,
            "endDateTime": end_after_change(self.end, current.end_date_time if current else None, start, zone),
        }


class ReloadTask(Compact):
    id: str
    app_id: str
    state: Literal["Enabled", "Disabled", "Completed"] | str
    disabled_code: str | None = None
    disabled_reason: str | None = None
    partial: bool = False
    recurrence: list[str] = []
    time_zone: str | None = None
    start: str | None = None
    end: str | None = None
    next_run: str | None = None
    last_run: str | None = None
    owner_id: str | None = None
    auto_reload: bool = False

    @classmethod
    def of(cls, doc: ReloadTaskDoc) -> "ReloadTask":
        off = not doc.enabled
        return cls(
            id=doc.id,
            app_id=doc.app_id,
            state=doc.state,
            disabled_code=doc.disabled_code or None if off else None,
            disabled_reason=doc.log or None if off else None,
            partial=doc.partial,
            recurrence=doc.recurrence,
            time_zone=doc.time_zone or None,
            start=doc.start_date_time or None,
            end=doc.end_date_time or None,
            next_run=doc.next_execution_time or None,
            last_run=doc.last_execution_time or None,
            owner_id=doc.user_id or None,
            auto_reload=doc.auto_reload,
        )


class ReloadTaskPage(Compact):
    tasks: list[ReloadTask]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    note: str = NOTE


class ReloadTaskResult(Compact):
    task: ReloadTask
    note: str = NOTE


def describe(task: ReloadTaskDoc) -> str:
    schedule = "; ".join(task.recurrence) or "no schedule"
    return f"reload task {task.id} of app {task.app_id} ({task.state}, {schedule} {task.time_zone})"


def service(clients: Clients) -> ReloadTasksApi:
    return ReloadTasksApi(clients.qlik)


@read("List reload tasks")
async def list_reload_tasks(
    api: ReloadTasksApi,
    app_id: Annotated[str | None, Field(max_length=128, description="Only this app's tasks.")] = None,
    partial: Annotated[bool | None, Field(description="Only partial (true) or full (false) reloads.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ReloadTaskPage:
    """List scheduled app reloads (state, schedule, next/last run, why disabled)."""
    page = await api.list(app_id=app_id, partial=partial, limit=limit, cursor=cursor)
    note = " ".join(filter(None, (NOTE, page.cut_note)))
    return ReloadTaskPage(tasks=[ReloadTask.of(t) for t in page.items], next_cursor=page.next_cursor, note=note)


@read("Get reload task")
async def get_reload_task(api: ReloadTasksApi, task_id: TaskId) -> ReloadTaskResult:
    """One reload task: state, schedule, next/last run, why disabled."""
    return ReloadTaskResult(task=ReloadTask.of(await api.get(task_id)))


@write("Create reload task")
async def create_reload_task(
    api: ReloadTasksApi,
    app_id: AppId,
    schedule: Schedule,
    partial: Annotated[bool, Field(description="Partial reload instead of full.")] = False,
) -> ReloadTaskResult:
    """Schedule reloads of an app. The schedule is validated before anything is sent."""
    body = {"appId": app_id, "partial": partial, **schedule.to_api()}
    return ReloadTaskResult(task=ReloadTask.of(await api.create(body)))


async def plan_update(
    api: ReloadTasksApi, task_id: str, enabled: bool | None, schedule: Schedule | None, partial: bool | None
) -> Plan:
    current = await api.get(task_id)
    body = current.put_body()
    if enabled is not None:
        body["state"] = "Enabled" if enabled else "Disabled"
    if schedule is not None:
        body.update(schedule.to_api(current))
    if partial is not None:
        body["partial"] = partial
    sent = current.wire()
    changes = [
        f"{key}: {sent.get(key)!r} -> {value!r}"
        for key, value in body.items()
        if sent.get(key, "" if key.endswith("DateTime") else None) != value
    ]
    if not changes:
        raise InvalidInput("the task already has these values; nothing to change")
    # Qlik Cloud help, "Ownership of reload schedules": changing a schedule makes the changer its owner.
    notes = [put_owner_note([current.user_id or None])]
    return Plan(action=f"Update {describe(current)}", changes=changes, state=sent, notes=notes, payload=body)


@destructive("Update reload task", plan=plan_update, idempotent=True)
async def update_reload_task(
    api: ReloadTasksApi,
    plan: Plan,
    task_id: TaskId,
    enabled: Annotated[bool | None, Field(description="false disables, true (re-)enables.")] = None,
    schedule: Annotated[
        Schedule | None, Field(description="New recurrence and zone; start/end kept unless given.")
    ] = None,
    partial: bool | None = None,
) -> ReloadTask:
    """Change only the given fields (enable/disable, schedule, partial). Needs the user's confirmation."""
    return ReloadTask.of(await api.replace(task_id, plan.payload))


async def plan_delete(api: ReloadTasksApi, task_id: str) -> Plan:
    current = await api.get(task_id)
    return Plan(
        action=f"Delete {describe(current)}",
        changes=["the task and its schedule are removed"],
        state=current.wire(),
        notes=["This cannot be undone."],
    )


@destructive("Delete reload task", plan=plan_delete, idempotent=True)
async def delete_reload_task(api: ReloadTasksApi, plan: Plan, task_id: TaskId) -> Deleted:
    """Delete a reload task. Needs the user's confirmation."""
    await api.delete(task_id)
    return Deleted(id=task_id, deleted=True)


# More ids than this: read the whole list once instead of one GET each.
BULK_SCAN_FROM = 20


class ReloadTaskSource:
    """Reload tasks as the ops tools see them; a failing task is one disabled after consecutive failures."""

    kind = "reload"
    chains = False

    def __init__(self, api: ReloadTasksApi) -> None:
        self.api = api

    @staticmethod
    def info(doc: ReloadTaskDoc) -> TaskInfo:
        return TaskInfo(
            kind="reload",
            id=doc.id,
            name=f"reload of app {doc.app_id}",
            enabled=doc.enabled,
            app_id=doc.app_id,
            state=doc.state,
            disabled_reason=None if doc.enabled else (doc.disabled_code or "Disabled"),
            recurrence=list(doc.recurrence),
            time_zone=doc.time_zone or None,
            start=doc.start_date_time or None,
            end=doc.end_date_time or None,
            next_run=doc.next_execution_time or None,
            owner_before_put=doc.user_id or "unknown",
        )

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await self.api.get(task_id))

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        if len(task_ids) <= BULK_SCAN_FROM:
            found: dict[str, TaskInfo] = {}
            for task_id in task_ids:
                found[task_id] = await self.get(task_id)
            return found
        wanted = set(task_ids)
        return {doc.id: self.info(doc) async for doc in self.api.all() if doc.id in wanted}

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(doc) async for doc in self.api.all(app_id=app_id)]

    async def app_ids(self) -> set[str]:
        return {doc.app_id async for doc in self.api.all() if doc.app_id}

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        body = (await self.api.get(info.id)).put_body()
        body["state"] = "Enabled" if enabled else "Disabled"
        await self.api.replace(info.id, body)

    async def failures(self, scan: FailureScan) -> None:
        count = 0
        async for doc in self.api.all():
            count += 1
            scan.apps.add(doc.app_id)
            last = parse_time(doc.last_execution_time)
            if doc.disabled_code == "CONSECUTIVE-FAILURES" and (last is None or last >= scan.since):
                error = doc.log or "disabled after consecutive failures"
                scan.found.append(
                    Failure(
                        "reload",
                        doc.id,
                        f"reload of app {doc.app_id}",
                        doc.app_id,
                        doc.last_execution_time or None,
                        error=error,
                    )
                )
        scan.checked["reload"] = count


def source(clients: Clients) -> ReloadTaskSource:
    return ReloadTaskSource(ReloadTasksApi(clients.qlik))
