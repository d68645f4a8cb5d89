"""Reload tasks (`/api/v1/reload-tasks`): list, get, create, update, delete, and their migration to tasks.

Qlik deprecated the API (removal on or after 2026-09-29): the client turns the retired API's answers into
ApiRetired, whose message every tool shows; migrated reload tasks are shown with the task that replaced them.
"""

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field

from qlik_tasks_mcp.client.errors import ClientError, InvalidInput
from qlik_tasks_mcp.client.reload_tasks import ApiRetired, ReloadTaskDoc, ReloadTasksApi, ReplacementDoc
from qlik_tasks_mcp.client.schedule import end_after_change, rrule_lines, start_after_change, time_zone
from qlik_tasks_mcp.client.schedule_text import describe_schedule
from qlik_tasks_mcp.tools.common import Cursor, Limit, put_owner_note
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.inventory import Clients
from qlik_tasks_mcp.tools.model import Compact, Deleted, Input
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.ops import KindUnavailable
from qlik_tasks_mcp.tools.sources import Failure, FailureScan, TaskInfo, gather, parse_time

TOOLSET = "reload"
NOTE = (
    "Qlik deprecated /api/v1/reload-tasks (removal on or after 2026-09-29) in favour of tasks; "
    "migrate_reload_tasks moves them while it is still served."
)
RETIRED_NOTE = "reload tasks: API retired on this tenant"
RULE_135 = "Qlik turns an app's reload tasks off once the app has one or more tasks (changelog 135)"
T = TypeVar("T")

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
    state: Literal["Enabled", "Disabled", "Completed"] | str | None = Field(
        None, description="Absent on a migrated task."
    )
    disabled_code: str | None = None
    disabled_reason: str | None = None
    migrated: bool = False
    replaced_by: str | None = Field(None, description="Id of the task that replaced this migrated one.")
    partial: bool = False
    recurrence: list[str] = []
    time_zone: str | None = None
    start: str | None = None
    end: str | None = None
    next_run: str | None = None
    last_run: str | None = None
    owner_id: str | None = None
    auto_reload: bool = False
    note: str | None = None

    @classmethod
    def of(cls, doc: ReloadTaskDoc, app: "AppTasks | None" = None) -> "ReloadTask":
        off = not doc.enabled
        replacement = app.replacement(doc.id) if app else None
        return cls(
            id=doc.id,
            app_id=doc.app_id,
            state=doc.state or None,
            disabled_code=doc.disabled_code or None if off else None,
            disabled_reason=doc.log or None if off else None,
            migrated=doc.migrated,
            replaced_by=replacement.id if replacement else None,
            partial=doc.partial,
            recurrence=doc.recurrence,
            time_zone=doc.time_zone or None,
            start=doc.start_date_time or None,
            end=doc.end_date_time or None,
            # A migrated task no longer runs, whatever next time the tenant still shows for it.
            next_run=None if doc.migrated else doc.next_execution_time or None,
            last_run=doc.last_execution_time or None,
            owner_id=doc.user_id or None,
            auto_reload=doc.auto_reload,
            note=app.note(doc) if app else migrated_note(doc, None) if doc.migrated else None,
        )


class ReloadTaskPage(Compact):
    tasks: list[ReloadTask]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    note: str = NOTE


class ReloadTaskResult(Compact):
    task: ReloadTask
    note: str = NOTE


@dataclass
class AppTasks:
    """What an app's tasks say about its reload tasks: which task replaced which, and that it has tasks at all."""

    app_id: str
    count: int = 0
    by_reload_task: dict[str, ReplacementDoc] = field(default_factory=dict)
    problem: str | None = None

    def replacement(self, reload_task_id: str) -> ReplacementDoc | None:
        return self.by_reload_task.get(reload_task_id)

    def note(self, doc: ReloadTaskDoc) -> str | None:
        if doc.migrated:
            return migrated_note(doc, self)
        if self.count:
            return f"App {self.app_id} has {self.count} task(s): {RULE_135}, so expect this one not to run."
        return None


def where_to_find(doc: ReloadTaskDoc) -> str:
    return f"find it with list_tasks (resource_id {doc.app_id}): the task whose metadata.migratedFrom is {doc.id}"


def migrated_note(doc: ReloadTaskDoc, app: AppTasks | None) -> str:
    replacement = app.replacement(doc.id) if app else None
    if replacement:
        return (
            f"Migrated to task {replacement.id} ({'enabled' if replacement.enabled else 'disabled'}), which runs "
            "this schedule now: change that task (update_task), not this one."
        )
    why = f" (its tasks could not be read: {app.problem})" if app and app.problem else ""
    return f"Migrated to a task{why}; {where_to_find(doc)}."


async def app_tasks(api: ReloadTasksApi, app_id: str) -> AppTasks:
    """The app's tasks as AppTasks; a tenant that will not list them gives a note, not an error."""
    try:
        tasks = await api.tasks_of_app(app_id)
    except ClientError as exc:
        return AppTasks(app_id, problem=str(exc)[:300])
    found = {t.metadata.migrated_from: t for t in tasks if t.metadata.migrated_from}
    return AppTasks(app_id, count=len(tasks), by_reload_task=found)


async def tasks_by_app(api: ReloadTasksApi, app_ids: set[str]) -> dict[str, AppTasks]:
    found: dict[str, AppTasks] = {}

    async def one(app_id: str) -> None:
        found[app_id] = await app_tasks(api, app_id)

    await gather(sorted(app_ids), one)
    return found


def describe(task: ReloadTaskDoc) -> str:
    schedule = "; ".join(task.recurrence) or "no schedule"
    return f"reload task {task.id} of app {task.app_id} ({task.state or 'no state'}, {schedule} {task.time_zone})"


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
    """List scheduled app reloads (state, schedule, next/last run, why disabled, migrated to which task)."""
    page = await api.list(app_id=app_id, partial=partial, limit=limit, cursor=cursor)
    # Only migrated tasks need their app's tasks read: one listing per app, not per task.
    apps = await tasks_by_app(api, {t.app_id for t in page.items if t.migrated and t.app_id})
    note = " ".join(filter(None, (NOTE, page.cut_note)))
    tasks = [ReloadTask.of(t, apps.get(t.app_id)) for t in page.items]
    return ReloadTaskPage(tasks=tasks, next_cursor=page.next_cursor, note=note)


@read("Get reload task")
async def get_reload_task(api: ReloadTasksApi, task_id: TaskId) -> ReloadTaskResult:
    """One reload task: state, schedule, next/last run, why disabled, the task that replaced it."""
    doc = await api.get(task_id)
    return ReloadTaskResult(task=ReloadTask.of(doc, await app_tasks(api, doc.app_id)))


@write("Create reload task")
async def create_reload_task(
    api: ReloadTasksApi,
    app_id: AppId,
    schedule: Schedule,
    partial: Annotated[bool, Field(description="Partial reload instead of full.")] = False,
) -> ReloadTaskResult:
    """Schedule reloads of an app. The schedule is validated before anything is sent."""
    body = {"appId": app_id, "partial": partial, **schedule.to_api()}
    doc = await api.create(body)
    return ReloadTaskResult(task=ReloadTask.of(doc, await app_tasks(api, doc.app_id)))


async def refuse_migrated(api: ReloadTasksApi, doc: ReloadTaskDoc) -> None:
    """A migrated reload task is never changed: a PUT would switch it back on beside its task (two reloads)."""
    if doc.migrated:
        note = migrated_note(doc, await app_tasks(api, doc.app_id))
        raise InvalidInput(f"reload task {doc.id} was migrated and is left as it is. {note}")


async def plan_update(
    api: ReloadTasksApi, task_id: str, enabled: bool | None, schedule: Schedule | None, partial: bool | None
) -> Plan:
    current = await api.get(task_id)
    await refuse_migrated(api, current)
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
    """Change only the given fields (enable/disable, schedule, partial). Refuses migrated tasks. Needs a yes."""
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


# More reload tasks than this in one migration: go app by app.
MAX_MIGRATIONS = 1000
PREVIEW_LINES = 100


class Migrated(Compact):
    reload_task_id: str
    app_id: str
    task_id: str
    enabled: bool


class NotMigrated(Compact):
    reload_task_id: str
    app_id: str
    error: str


class MigrationResult(Compact):
    migrated: list[Migrated]
    failed: list[NotMigrated]
    skipped: list[str] = []
    note: str


@dataclass
class MigrationWork:
    todo: list[ReloadTaskDoc]
    skipped: list[str]


def skip_reason(doc: ReloadTaskDoc) -> str | None:
    """Why this reload task is not migrated by this tool, or None."""
    where = f"reload task {doc.id} (app {doc.app_id})"
    if doc.migrated:
        return f"{where}: already migrated, skipped"
    if not doc.recurrence:
        return f"{where}: no time schedule (autoReload only?), skipped; a dataset-update task replaces autoReload"
    if len(doc.recurrence) > 1 or not doc.recurrence[0].upper().startswith("RRULE:"):
        return (
            f"{where}: {len(doc.recurrence)} recurrence lines, skipped; a task takes one RRULE: "
            "create one task per line with create_task"
        )
    return None


def migration_line(doc: ReloadTaskDoc) -> str:
    start, end = doc.start_date_time or None, doc.end_date_time or None
    schedule = describe_schedule(doc.recurrence, doc.time_zone or "UTC", start, end)
    kind = "partial" if doc.partial else "full"
    after = "enabled" if doc.enabled else "disabled"
    return f"reload task {doc.id}, app {doc.app_id}: {schedule} ({kind} reload, {doc.state}) -> a task, {after}"


async def migration_targets(
    api: ReloadTasksApi, task_id: str | None, app_id: str | None, whole_tenant: bool
) -> list[ReloadTaskDoc]:
    if sum((bool(task_id), bool(app_id), whole_tenant)) != 1:
        raise InvalidInput("give exactly one of task_id, app_id or whole_tenant=true")
    if task_id:
        return [await api.get(task_id)]
    found: list[ReloadTaskDoc] = []
    async for doc in api.all(app_id=app_id):
        found.append(doc)
        if len(found) > MAX_MIGRATIONS:
            raise InvalidInput(f"more than {MAX_MIGRATIONS} reload tasks: migrate them app by app (app_id)")
    return found


async def others_that_stop(api: ReloadTasksApi, todo: list[ReloadTaskDoc], task_id: str | None) -> list[str]:
    """With one task migrated, the other reload tasks of its app stop too (changelog 135): name them."""
    if not task_id:
        return []
    doc = todo[0]
    return [o.id async for o in api.all(app_id=doc.app_id) if o.id != doc.id and o.enabled]


def migration_notes(todo: list[ReloadTaskDoc], others: list[str], skipped: list[str]) -> list[str]:
    apps = sorted({d.app_id for d in todo})
    stop = f"{RULE_135}: once these tasks exist, every reload task of app {', '.join(apps[:20])} stops running"
    if others:
        stop += f", including reload tasks not migrated here: {', '.join(others[:20])}"
    owners = sorted({d.user_id for d in todo if d.user_id})
    return [
        stop + ".",
        "Each task is enabled when its reload task is, disabled otherwise; it belongs to the API key's user "
        f"(the reload tasks belong to {', '.join(owners[:10]) or 'unknown'}).",
        "Tasks are created one at a time (POST /api/v1/tasks?migrateFrom=<id>); if some fail, the result lists "
        "what migrated and what did not, and a new call skips the migrated ones.",
        *skipped[:PREVIEW_LINES],
    ]


async def plan_migrate(api: ReloadTasksApi, task_id: str | None, app_id: str | None, whole_tenant: bool) -> Plan:
    targets = await migration_targets(api, task_id, app_id, whole_tenant)
    skipped = [reason for reason in map(skip_reason, targets) if reason]
    todo = [d for d in targets if skip_reason(d) is None]
    if not todo:
        found = "; ".join(skipped[:5]) or "no reload tasks found"
        raise InvalidInput(f"nothing to migrate: {found}")
    changes = [migration_line(d) for d in todo[:PREVIEW_LINES]]
    if len(todo) > PREVIEW_LINES:
        changes.append(f"... and {len(todo) - PREVIEW_LINES} more (all bound by the confirmation)")
    others = await others_that_stop(api, todo, task_id)
    return Plan(
        action=f"Migrate {len(todo)} reload task(s) to tasks",
        changes=changes,
        state=sorted((d.id, d.state, d.migrated) for d in targets),
        notes=migration_notes(todo, others, skipped),
        payload=MigrationWork(todo, skipped),
    )


def migration_summary(result: MigrationResult, total: int) -> str:
    if not result.failed:
        return f"All {total} migrated: {RULE_135}, so their tasks run now, not the reload tasks."
    return (
        f"{len(result.migrated)} of {total} migrated, {len(result.failed)} not: those are reload tasks as before, "
        "unchanged. Fix what each error says and call again: migrated ones are skipped."
    )


@destructive("Migrate reload tasks", plan=plan_migrate, idempotent=True)
async def migrate_reload_tasks(
    api: ReloadTasksApi,
    plan: Plan,
    task_id: Annotated[str | None, Field(max_length=128, description="This reload task.")] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="Or every reload task of this app.")] = None,
    whole_tenant: Annotated[bool, Field(description="Or every reload task of the tenant.")] = False,
) -> MigrationResult:
    """Move reload tasks to tasks (Qlik's migration), skipping migrated ones. Needs the user's confirmation."""
    work: MigrationWork = plan.payload
    result = MigrationResult(migrated=[], failed=[], skipped=work.skipped, note="")
    for doc in work.todo:
        try:
            task = await api.migrate(doc)
        except ClientError as exc:
            result.failed.append(NotMigrated(reload_task_id=doc.id, app_id=doc.app_id, error=str(exc)[:300]))
            continue
        result.migrated.append(
            Migrated(reload_task_id=doc.id, app_id=doc.app_id, task_id=task.id, enabled=task.enabled)
        )
    result.note = migration_summary(result, len(work.todo))
    return result


# More ids than this: read the whole list once instead of one GET each.
BULK_SCAN_FROM = 20


async def answering(call: Awaitable[T]) -> T:
    """`call`'s answer; a retired API becomes KindUnavailable, which the ops tools turn into a skipped note."""
    try:
        return await call
    except ApiRetired as exc:
        raise KindUnavailable(RETIRED_NOTE) from exc


class ReloadTaskSource:
    """Reload tasks as the ops tools see them; a failing task is one disabled after consecutive failures."""

    kind = "reload"
    chains = False

    def __init__(self, api: ReloadTasksApi) -> None:
        self.api = api

    @staticmethod
    def info(doc: ReloadTaskDoc) -> TaskInfo:
        if doc.migrated:
            return TaskInfo(
                kind="reload",
                id=doc.id,
                name=f"reload of app {doc.app_id}",
                enabled=False,
                app_id=doc.app_id,
                state="migrated",
                disabled_reason=f"migrated: {where_to_find(doc)}; that task runs instead",
                schedule_text="migrated to a task, which holds the schedule now",
                owner_id=doc.user_id or None,
            )
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
            owner_id=doc.user_id or None,
        )

    async def _all(self, app_id: str | None = None) -> list[ReloadTaskDoc]:
        return [doc async for doc in self.api.all(app_id=app_id)]

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await answering(self.api.get(task_id)))

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        if len(task_ids) <= BULK_SCAN_FROM:
            found: dict[str, TaskInfo] = {}
            for task_id in task_ids:
                found[task_id] = await self.get(task_id)
            return found
        wanted = set(task_ids)
        return {doc.id: self.info(doc) for doc in await answering(self._all()) if doc.id in wanted}

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(doc) for doc in await answering(self._all(app_id))]

    async def app_ids(self) -> set[str]:
        return {doc.app_id for doc in await answering(self._all()) if doc.app_id}

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        current = await answering(self.api.get(info.id))
        await refuse_migrated(self.api, current)
        body = current.put_body()
        body["state"] = "Enabled" if enabled else "Disabled"
        await answering(self.api.replace(info.id, body))

    async def failures(self, scan: FailureScan) -> None:
        count = 0
        for doc in await answering(self._all()):
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
