"""What the reload task tools and their task source share: an app's tasks (which replaced which reload task, and
that it has any), and the guard that leaves a migrated reload task as it is."""

from dataclasses import dataclass, field

from qlik_tasks_mcp.client.errors import ClientError, InvalidInput
from qlik_tasks_mcp.client.reload_tasks import ReloadTaskDoc, ReloadTasksApi, ReplacementDoc
from qlik_tasks_mcp.tools.sources import gather

RULE_135 = "Qlik turns an app's reload tasks off once the app has one or more tasks (changelog 135)"


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


async def refuse_migrated(api: ReloadTasksApi, doc: ReloadTaskDoc) -> None:
    """A migrated reload task is never changed: a PUT would switch it back on beside its task (two reloads)."""
    if doc.migrated:
        note = migrated_note(doc, await app_tasks(api, doc.app_id))
        raise InvalidInput(f"reload task {doc.id} was migrated and is left as it is. {note}")
