"""Reload tasks (`/api/v1/reload-tasks`): list, get, create, update, delete."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.reload_tasks import ReloadTasksApi, put_body
from qlik_tasks_mcp.client.schedule import end_after_change, rrule_lines, start_after_change, time_zone
from qlik_tasks_mcp.tools.common import ConfirmToken, Cursor, Limit, Registrar, put_owner_note
from qlik_tasks_mcp.tools.gate import Consent, Gated, Plan
from qlik_tasks_mcp.tools.model import Compact, Input

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

    def to_api(self, current: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate everything the API would, and say what to fix, before a request is sent.

        On an update, `current` (the stored task) supplies the start and end the caller left out.
        """
        zone = time_zone(self.time_zone)
        current = current or {}
        start = start_after_change(self.start, current.get("startDateTime"), zone)
        return {
            "recurrence": rrule_lines(self.recurrence),
            "timeZone": self.time_zone,
            "startDateTime": start,
            "endDateTime": end_after_change(self.end, current.get("endDateTime"), start, zone),
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
    def of(cls, raw: dict[str, Any]) -> "ReloadTask":
        return cls(
            id=raw["id"],
            app_id=raw.get("appId", ""),
            state=raw.get("state", ""),
            disabled_code=raw.get("disabledCode") if raw.get("state") != "Enabled" else None,
            disabled_reason=raw.get("log") if raw.get("state") != "Enabled" else None,
            partial=bool(raw.get("partial")),
            recurrence=raw.get("recurrence") or [],
            time_zone=raw.get("timeZone") or None,
            start=raw.get("startDateTime") or None,
            end=raw.get("endDateTime") or None,
            next_run=raw.get("nextExecutionTime") or None,
            last_run=raw.get("lastExecutionTime") or None,
            owner_id=raw.get("userId") or None,
            auto_reload=bool(raw.get("autoReload")),
        )


class ReloadTaskPage(Compact):
    tasks: list[ReloadTask]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    note: str = NOTE


class ReloadTaskResult(Compact):
    task: ReloadTask
    note: str = NOTE


class Deleted(Compact):
    id: str
    deleted: bool


def describe(task: dict[str, Any]) -> str:
    schedule = "; ".join(task.get("recurrence") or []) or "no schedule"
    zone = task.get("timeZone", "")
    return f"reload task {task['id']} of app {task.get('appId')} ({task.get('state')}, {schedule} {zone})"


def register(reg: Registrar, api: ReloadTasksApi) -> None:
    @reg.tool(TOOLSET, "read", title="List reload tasks")
    async def list_reload_tasks(
        app_id: Annotated[str | None, Field(max_length=128, description="Only this app's tasks.")] = None,
        partial: Annotated[bool | None, Field(description="Only partial (true) or full (false) reloads.")] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> ReloadTaskPage:
        """List scheduled app reloads (state, schedule, next/last run, why disabled)."""
        page = await api.list(app_id=app_id, partial=partial, limit=limit, cursor=cursor)
        return ReloadTaskPage(tasks=[ReloadTask.of(t) for t in page.items], next_cursor=page.next_cursor)

    @reg.tool(TOOLSET, "read", title="Get reload task")
    async def get_reload_task(task_id: TaskId) -> ReloadTaskResult:
        """One reload task: state, schedule, next/last run, why disabled."""
        return ReloadTaskResult(task=ReloadTask.of(await api.get(task_id)))

    @reg.tool(TOOLSET, "write", title="Create reload task")
    async def create_reload_task(
        app_id: AppId,
        schedule: Schedule,
        partial: Annotated[bool, Field(description="Partial reload instead of full.")] = False,
    ) -> ReloadTaskResult:
        """Schedule reloads of an app. The schedule is validated before anything is sent."""
        body = {"appId": app_id, "partial": partial, **schedule.to_api()}
        return ReloadTaskResult(task=ReloadTask.of(await api.create(body)))

    async def plan_update(
        task_id: str, enabled: bool | None, schedule: Schedule | None, partial: bool | None
    ) -> tuple[Plan, dict[str, Any]]:
        current = await api.get(task_id)
        body = put_body(current)
        if enabled is not None:
            body["state"] = "Enabled" if enabled else "Disabled"
        if schedule is not None:
            body.update(schedule.to_api(current))
        if partial is not None:
            body["partial"] = partial
        changes = [
            f"{key}: {current.get(key)!r} -> {value!r}"
            for key, value in body.items()
            if current.get(key, "" if key.endswith("DateTime") else None) != value
        ]
        if not changes:
            raise InvalidInput("the task already has these values; nothing to change")
        # Qlik Cloud help, "Ownership of reload schedules": changing a schedule makes the changer its owner.
        notes = [put_owner_note([current.get("userId")])]
        return Plan(action=f"Update {describe(current)}", changes=changes, state=current, notes=notes), body

    @reg.resolver
    async def ask_update(
        ctx: Context, task_id: str, enabled: bool | None, schedule: Schedule | None, partial: bool | None
    ) -> Elicit[Consent] | None:
        async def plan() -> Plan:
            return (await plan_update(task_id, enabled, schedule, partial))[0]

        return await reg.gate.ask(ctx, plan)

    @reg.tool(TOOLSET, "destructive", title="Update reload task", idempotent=True)
    async def update_reload_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_update)],
        enabled: Annotated[bool | None, Field(description="false disables, true (re-)enables.")] = None,
        schedule: Annotated[
            Schedule | None, Field(description="New recurrence and zone; start/end kept unless given.")
        ] = None,
        partial: bool | None = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[ReloadTask]:
        """Change only the given fields (enable/disable, schedule, partial). Needs the user's confirmation."""
        plan, body = await plan_update(task_id, enabled, schedule, partial)

        async def act() -> ReloadTask:
            return ReloadTask.of(await api.replace(task_id, body))

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    async def plan_delete(task_id: str) -> Plan:
        current = await api.get(task_id)
        return Plan(
            action=f"Delete {describe(current)}",
            changes=["the task and its schedule are removed"],
            state=current,
            notes=["This cannot be undone."],
        )

    @reg.resolver
    async def ask_delete(ctx: Context, task_id: str) -> Elicit[Consent] | None:
        return await reg.gate.ask(ctx, lambda: plan_delete(task_id))

    @reg.tool(TOOLSET, "destructive", title="Delete reload task", idempotent=True)
    async def delete_reload_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_delete)],
        confirm_token: ConfirmToken = None,
    ) -> Gated[Deleted]:
        """Delete a reload task. Needs the user's confirmation."""
        plan = await plan_delete(task_id)

        async def act() -> Deleted:
            await api.delete(task_id)
            return Deleted(id=task_id, deleted=True)

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)
