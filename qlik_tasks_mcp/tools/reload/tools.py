"""Reload tasks (`/api/v1/reload-tasks`): list, get, create, update, delete, and their migration to tasks.

Qlik deprecated the API (removal on or after 2026-09-29): the client turns the retired API's answers into
ApiRetired, whose message every tool shows; migrated reload tasks are shown with the task that replaced them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from qlik_tasks_mcp.client.errors import ClientError, InvalidInput
from qlik_tasks_mcp.client.reload_tasks import ReloadTaskDoc, ReloadTasksApi
from qlik_tasks_mcp.client.schedule import end_after_change, read_schedule, rrule_lines, start_after_change, time_zone
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.model import Compact, Deleted, Input
from qlik_tasks_mcp.tools.names import Names, RowNames, owner_change_note, row_names, user_id_of
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.params import Cursor, Limit
from qlik_tasks_mcp.tools.reload.models import (
    RULE_135,
    AppTasks,
    app_tasks,
    migrated_note,
    refuse_migrated,
    tasks_by_app,
)
from qlik_tasks_mcp.tools.reload.source import ReloadTaskSource
from qlik_tasks_mcp.tools.sources import TaskSource, short_time, stale_reports_note, why_off

TOOLSET = "reload"
NOTE = (
    "Qlik deprecated /api/v1/reload-tasks (removal on or after 2026-09-29) in favour of tasks; "
    "migrate_reload_tasks moves them while it is still served."
)

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Reload task id.")]
AppId = Annotated[str, Field(min_length=1, max_length=128, description="App id.")]


class Schedule(Input):
    """RRULE lines expanded in an IANA zone from start to end."""

    recurrence: list[str] = Field(
        min_length=1,
        max_length=20,
        description="e.g. RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0 (no DTSTART).",
    )
    time_zone: str = Field(max_length=64, description="IANA zone.")
    start: str | None = Field(None, max_length=40, description="Local YYYY-MM-DDTHH:MM:SS; default now (update: kept).")
    end: str | None = Field(None, max_length=40, description='Local; default never (update: kept, "" clears).')

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


NAMES_NOTE = tenant_text_note(["app", "owner", "disabled_reason"])


def _true(flag: bool) -> bool | None:
    """A flag worth a field only when set: false is what a reload task is unless told."""
    return True if flag else None


def _common(doc: ReloadTaskDoc, app: "AppTasks | None", names: RowNames | None) -> dict[str, Any]:
    off = not doc.enabled
    replacement = app.replacement(doc.id) if app else None
    return {
        "id": doc.id,
        "app_id": doc.app_id,
        "app": names.app(doc.app_id) if names else None,
        "state": doc.state or None,
        "disabled_code": doc.disabled_code or None if off else None,
        "disabled_reason": one_line(doc.log, 500) if off and doc.log else None,
        "migrated": _true(doc.migrated),
        "replaced_by": replacement.id if replacement else None,
        "partial": _true(doc.partial),
        "owner_id": doc.user_id or None,
        "owner": names.user(doc.user_id) if names else None,
        "auto_reload": _true(doc.auto_reload),
        "note": app.note(doc) if app else migrated_note(doc, None) if doc.migrated else None,
    }


def _next_run(doc: ReloadTaskDoc) -> str | None:
    # A migrated task no longer runs, whatever next time the tenant still shows for it.
    return None if doc.migrated else doc.next_execution_time or None


class ReloadTaskFields(Compact):
    """What a reload task shows in a list and fetched whole."""

    id: str
    app_id: str
    app: str | None = None
    state: Literal["Enabled", "Disabled", "Completed"] | str | None = Field(
        None, description="Absent on a migrated task."
    )
    disabled_code: str | None = None
    disabled_reason: str | None = None
    migrated: bool | None = None
    replaced_by: str | None = Field(None, description="Id of the task that replaced this migrated one.")
    partial: bool | None = None
    next_run: str | None = None
    last_run: str | None = None
    owner_id: str | None = None
    owner: str | None = None
    auto_reload: bool | None = None
    note: str | None = None


class ReloadTaskRow(ReloadTaskFields):
    """A reload task in a list: its schedule in words beside its next run (UTC, to the minute)."""

    schedule: str | None = None
    will_not_run: str | None = Field(None, description="Why its schedule will not run it.")

    @classmethod
    def of(cls, doc: ReloadTaskDoc, app: "AppTasks | None", names: RowNames) -> "ReloadTaskRow":
        words = schedule_words(doc)
        off = why_off(ReloadTaskSource.info(doc), app_has_tasks=bool(app and app.count)) if doc.recurrence else None
        return cls(
            **_common(doc, app, names),
            schedule=None if doc.migrated else words,
            will_not_run=None if doc.migrated else off,
            next_run=short_time(_next_run(doc)),
            last_run=short_time(doc.last_execution_time),
        )


class ReloadTask(ReloadTaskFields):
    """A reload task fetched whole: its schedule in words, and as the API has it."""

    schedule: str | None = None
    will_not_run: str | None = Field(None, description="Why its schedule will not run it.")
    recurrence: list[str] = []
    time_zone: str | None = None
    start: str | None = None
    end: str | None = None

    @classmethod
    def of(cls, doc: ReloadTaskDoc, app: "AppTasks | None" = None, names: RowNames | None = None) -> "ReloadTask":
        off = why_off(ReloadTaskSource.info(doc), app_has_tasks=bool(app and app.count)) if doc.recurrence else None
        return cls(
            **_common(doc, app, names),
            schedule=None if doc.migrated else schedule_words(doc),
            will_not_run=None if doc.migrated else off,
            recurrence=doc.recurrence,
            time_zone=doc.time_zone or None,
            start=doc.start_date_time or None,
            end=doc.end_date_time or None,
            next_run=_next_run(doc),
            last_run=doc.last_execution_time or None,
        )


class ReloadTaskPage(Compact):
    tasks: list[ReloadTaskRow]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    note: str = NOTE


class ReloadTaskResult(Compact):
    task: ReloadTask
    note: str = NOTE


@dataclass(frozen=True)
class ReloadTasks:
    """What the reload-task tools work with: the reload-tasks API, the one name lookup, and the served families'
    task sources (made on first use), which previews read to say whose reports would go stale."""

    api: ReloadTasksApi
    names: Names
    sources: Callable[[], dict[str, TaskSource]] = dict


async def task_names(names: Names, docs: list[ReloadTaskDoc]) -> RowNames:
    return await row_names(names, [d.app_id for d in docs], [d.user_id for d in docs])


def schedule_words(doc: ReloadTaskDoc) -> str | None:
    """The reload task's recurrence in words (client.schedule.read_schedule), or raw with why it cannot be read."""
    found = read_schedule(
        recurrence=doc.recurrence,
        zone=doc.time_zone or "UTC",
        start=doc.start_date_time or None,
        end=doc.end_date_time or None,
    )
    return found.shown if found else None


async def describe(names: Names, task: ReloadTaskDoc) -> str:
    """The reload task for a preview or question: its app and owner by name, state and schedule in words."""
    schedule = schedule_words(task) or "no schedule"
    app = await names.describe_app(task.app_id) if task.app_id else "no app"
    owner = f", owner {await names.describe_user(task.user_id)}" if task.user_id else ""
    return f"reload task {task.id} of {app}{owner} ({task.state or 'no state'}, {schedule})"


def service(clients: Deps) -> ReloadTasks:
    return ReloadTasks(ReloadTasksApi(clients.qlik, clients.tasks_api), clients.names, lambda: clients.sources)


async def _stale(reload_tasks: ReloadTasks, current: ReloadTaskDoc, *, deleting: bool) -> str | None:
    if not current.enabled:
        return None  # off already: this change stops nothing
    sources = reload_tasks.sources()
    leaving = {("reload", current.id)}
    return await stale_reports_note(sources, current.app_id, leaving, deleting=deleting, names=reload_tasks.names)


@read("List reload tasks")
async def list_reload_tasks(
    reload_tasks: ReloadTasks,
    app_id: Annotated[str | None, Field(max_length=128)] = None,
    partial: bool | None = None,
    limit: Limit = 20,
    cursor: Cursor = None,
    owner_id: Annotated[
        str | None,
        Field(min_length=1, max_length=128, description="User id, name or e-mail (filtered here)."),
    ] = None,
) -> ReloadTaskPage:
    """List scheduled app reloads (state, schedule, next/last run, why disabled, migrated to which task)."""
    api = reload_tasks.api
    owner = await user_id_of(reload_tasks.names, owner_id) if owner_id else None
    page = await api.list(app_id=app_id, partial=partial, limit=limit, cursor=cursor)
    docs = [t for t in page.items if owner is None or t.user_id == owner]
    # Migrated tasks need their app's tasks read (one listing per app, not per task); so does one app's listing,
    # whose rows then say whether Qlik turned them off because the app has tasks.
    wanted = {t.app_id for t in docs if (t.migrated or app_id) and t.app_id}
    apps = await tasks_by_app(api, wanted)
    names = await task_names(reload_tasks.names, docs)
    # The API has no owner filter: this page's rows are filtered here, so it may be short (or empty) mid-way.
    local = "Filtered by owner here: a page may hold fewer rows; follow next_cursor." if owner else None
    note = " ".join(filter(None, (NOTE, page.cut_note, local, NAMES_NOTE if docs else None)))
    rows = [ReloadTaskRow.of(t, apps.get(t.app_id), names) for t in docs]
    return ReloadTaskPage(tasks=rows, next_cursor=page.next_cursor, note=note)


@read("Get reload task")
async def get_reload_task(reload_tasks: ReloadTasks, task_id: TaskId) -> ReloadTaskResult:
    """One reload task: state, schedule, next/last run, why disabled, the task that replaced it."""
    api = reload_tasks.api
    doc = await api.get(task_id)
    names = await task_names(reload_tasks.names, [doc])
    task = ReloadTask.of(doc, await app_tasks(api, doc.app_id), names)
    return ReloadTaskResult(task=task, note=f"{NOTE} {NAMES_NOTE}")


@write("Create reload task")
async def create_reload_task(
    reload_tasks: ReloadTasks,
    app_id: AppId,
    schedule: Schedule,
    partial: bool = False,
) -> ReloadTaskResult:
    """Schedule reloads of an app."""
    api = reload_tasks.api
    body = {"appId": app_id, "partial": partial, **schedule.to_api()}
    doc = await api.create(body)
    return ReloadTaskResult(task=ReloadTask.of(doc, await app_tasks(api, doc.app_id)))


async def plan_update(
    reload_tasks: ReloadTasks, task_id: str, enabled: bool | None, schedule: Schedule | None, partial: bool | None
) -> Plan:
    api = reload_tasks.api
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
    timing = ("recurrence", "timeZone")
    changes = [
        f"{key}: {sent.get(key)!r} -> {value!r}"
        for key, value in body.items()
        if key not in timing and sent.get(key, "" if key.endswith("DateTime") else None) != value
    ]
    if any(sent.get(key) != body.get(key) for key in timing):
        after = ReloadTaskDoc.model_validate(sent | body)
        changes.insert(0, f"schedule: {schedule_words(current) or '(none)'} -> {schedule_words(after) or '(none)'}")
    if not changes:
        raise InvalidInput("the task already has these values; nothing to change")
    # Qlik Cloud help, "Ownership of reload schedules": changing a schedule makes the changer its owner.
    notes = [n for n in [await owner_change_note(reload_tasks.names, [current.user_id or "unknown"])] if n]
    if enabled is False:
        notes += [n for n in [await _stale(reload_tasks, current, deleting=False)] if n]
    action = f"Update {await describe(reload_tasks.names, current)}"
    return Plan(action=action, changes=changes, state=sent, notes=notes, payload=body)


@destructive("Update reload task", plan=plan_update, idempotent=True)
async def update_reload_task(
    reload_tasks: ReloadTasks,
    plan: Plan,
    task_id: TaskId,
    enabled: bool | None = None,
    schedule: Annotated[
        Schedule | None, Field(description="New recurrence and zone; start/end kept unless given.")
    ] = None,
    partial: bool | None = None,
) -> ReloadTask:
    """Change only the given fields. Refuses migrated tasks."""
    return ReloadTask.of(await reload_tasks.api.replace(task_id, plan.payload))


async def plan_delete(reload_tasks: ReloadTasks, task_id: str) -> Plan:
    current = await reload_tasks.api.get(task_id)
    return Plan(
        action=f"Delete {await describe(reload_tasks.names, current)}",
        changes=["the task and its schedule are removed"],
        state=current.wire(),
        notes=["This cannot be undone.", *[n for n in [await _stale(reload_tasks, current, deleting=True)] if n]],
    )


@destructive("Delete reload task", plan=plan_delete, idempotent=True)
async def delete_reload_task(reload_tasks: ReloadTasks, plan: Plan, task_id: TaskId) -> Deleted:
    """Delete a reload task."""
    await reload_tasks.api.delete(task_id)
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


def migration_line(doc: ReloadTaskDoc, app: str) -> str:
    """One reload task in the preview; `app` is its app as Names.describe_apps() shows it."""
    schedule = schedule_words(doc) or "no schedule"
    kind = "partial" if doc.partial else "full"
    after = "enabled" if doc.enabled else "disabled"
    return f"reload task {doc.id} of {app}: {schedule} ({kind} reload, {doc.state}) -> a task, {after}"


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


async def migration_notes(names: Names, todo: list[ReloadTaskDoc], others: list[str], skipped: list[str]) -> list[str]:
    """What else the migration does, naming the apps that stop running reload tasks and their tasks' owners."""
    apps = await names.describe_apps(sorted({d.app_id for d in todo if d.app_id})[:20])
    stop = f"{RULE_135}: once these tasks exist, every reload task of {', '.join(apps.values())} stops running"
    if others:
        stop += f", including reload tasks not migrated here: {', '.join(others[:20])}"
    owners = list((await names.describe_users(sorted({d.user_id for d in todo if d.user_id})[:10])).values())
    return [
        stop + ".",
        "Each task is enabled when its reload task is, disabled otherwise; it belongs to the API key's user "
        f"(the reload tasks belong to {', '.join(owners[:10]) or 'unknown'}).",
        "Tasks are created one at a time (POST /api/scheduling/tasks?migrateFrom=<id>, /api/v1/tasks where the "
        "tenant lacks the scheduling API); if some fail, the result lists "
        "what migrated and what did not, and a new call skips the migrated ones.",
        *skipped[:PREVIEW_LINES],
    ]


async def plan_migrate(reload_tasks: ReloadTasks, task_id: str | None, app_id: str | None, whole_tenant: bool) -> Plan:
    api, names = reload_tasks.api, reload_tasks.names
    targets = await migration_targets(api, task_id, app_id, whole_tenant)
    skipped = [reason for reason in map(skip_reason, targets) if reason]
    todo = [d for d in targets if skip_reason(d) is None]
    if not todo:
        found = "; ".join(skipped[:5]) or "no reload tasks found"
        raise InvalidInput(f"nothing to migrate: {found}")
    shown = todo[:PREVIEW_LINES]
    apps = await names.describe_apps(d.app_id for d in shown)
    changes = [migration_line(d, apps.get(d.app_id, "no app")) for d in shown]
    if len(todo) > PREVIEW_LINES:
        changes.append(f"... and {len(todo) - PREVIEW_LINES} more (all bound by the confirmation)")
    others = await others_that_stop(api, todo, task_id)
    return Plan(
        action=f"Migrate {len(todo)} reload task(s) to tasks",
        changes=changes,
        state=sorted((d.id, d.state, d.migrated) for d in targets),
        notes=await migration_notes(names, todo, others, skipped),
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
    reload_tasks: ReloadTasks,
    plan: Plan,
    task_id: Annotated[str | None, Field(max_length=128, description="This reload task.")] = None,
    app_id: Annotated[str | None, Field(max_length=128, description="Or every reload task of this app.")] = None,
    whole_tenant: Annotated[bool, Field(description="Or every reload task of the tenant.")] = False,
) -> MigrationResult:
    """Move reload tasks to tasks (Qlik's migration), skipping migrated ones."""
    work: MigrationWork = plan.payload
    result = MigrationResult(migrated=[], failed=[], skipped=work.skipped, note="")
    for doc in work.todo:
        try:
            task = await reload_tasks.api.migrate(doc)
        except ClientError as exc:
            result.failed.append(NotMigrated(reload_task_id=doc.id, app_id=doc.app_id, error=str(exc)[:300]))
            continue
        result.migrated.append(
            Migrated(reload_task_id=doc.id, app_id=doc.app_id, task_id=task.id, enabled=task.enabled)
        )
    result.note = migration_summary(result, len(work.todo))
    return result


def source(clients: Deps) -> ReloadTaskSource:
    return ReloadTaskSource(ReloadTasksApi(clients.qlik, clients.tasks_api))
