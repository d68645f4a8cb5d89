"""Qalyptus Cloud report tasks: list, get (with reports, recipients, triggers), update, duplicate, delete;
the report catalogue. Schedules and runs are in qalyptus_schedules / qalyptus_runs; all share one toolset.
"""

from typing import Annotated, Any

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.qalyptus import UPDATE_FIELDS, QalyptusClient, update_body
from qlik_tasks_mcp.tools import qalyptus_runs, qalyptus_schedules
from qlik_tasks_mcp.tools.common import ConfirmToken, Limit, Registrar
from qlik_tasks_mcp.tools.gate import Consent, Gated, Plan
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.qalyptus_model import (
    TOOLSET,
    Offset,
    OrgName,
    Orgs,
    Report,
    TaskDetail,
    TaskId,
    TaskRow,
    Window,
    addresses,
    text_of,
    window,
)

NameFilter = Annotated[str | None, Field(max_length=100, description="Only names containing this (any case).")]
Flag = Annotated[bool | None, Field(description="Leave out to keep as is.")]
Addresses = Annotated[
    str | None, Field(max_length=2000, description="E-mail addresses separated by ; (empty string clears).")
]


class TaskPage(Window):
    organization: str
    tasks: list[TaskRow]


class ReportPage(Window):
    organization: str
    reports: list[Report]


class TaskResult(Compact):
    organization: str
    task: TaskDetail


class Duplicated(Compact):
    organization: str
    source_id: str
    task: TaskRow | None = None
    note: str | None = None


class Deleted(Compact):
    id: str
    deleted: bool


PARAMS = {
    "is_active": "isActive",
    "send_notifications": "sendNotifications",
    "notify_on_success": "notifyIfSuccess",
    "notify_on_warning": "notifyIfWarning",
    "notify_on_error": "notifyIfError",
    "notification_recipients": "notificationRecipients",
    "notification_cc": "notificationCc",
    "notification_bcc": "notificationBcc",
    "test_mode": "testMode",
    "test_mode_recipients": "testModeRecipients",
}
ADDRESS_FIELDS = {"notificationRecipients", "notificationCc", "notificationBcc", "testModeRecipients"}


def describe(task: dict[str, Any]) -> str:
    state = "active" if task.get("isActive") else "inactive"
    return f"Qalyptus task '{text_of(task.get('name'), 100)}' ({task.get('id')}, {state})"


def register(reg: Registrar, orgs: Orgs) -> None:
    @reg.tool(TOOLSET, "read", title="List Qalyptus tasks")
    async def list_qalyptus_tasks(
        name: NameFilter = None,
        active: Annotated[bool | None, Field(description="Only active (true) or inactive (false) tasks.")] = None,
        limit: Limit = 20,
        offset: Offset = 0,
        organization: OrgName = None,
    ) -> TaskPage:
        """Qalyptus report tasks: active, scheduled, project, owner, last execution."""
        api = orgs.get(organization)
        tasks = await api.tasks()
        if name:
            tasks = [t for t in tasks if name.lower() in str(t.get("name", "")).lower()]
        if active is not None:
            tasks = [t for t in tasks if bool(t.get("isActive")) is active]
        tasks.sort(key=lambda t: str(t.get("name", "")).lower())
        rows, info = window(tasks, limit, offset, "tasks")
        return TaskPage(organization=api.name, tasks=[TaskRow.of(t) for t in rows], **info)

    @reg.tool(TOOLSET, "read", title="Get Qalyptus task")
    async def get_qalyptus_task(task_id: TaskId, organization: OrgName = None) -> TaskResult:
        """One Qalyptus task with its notifications, reports, recipients and triggers (schedules, Qlik events)."""
        api = orgs.get(organization)
        task = await api.task(task_id)
        reports = await api.task_reports(task_id)
        recipients = await api.recipients(task_id)
        triggers = await api.triggers(task_id)
        return TaskResult(organization=api.name, task=TaskDetail.build(task, reports, recipients, triggers))

    def new_values(given: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param, value in given.items():
            if value is None:
                continue
            field = PARAMS[param]
            values[field] = addresses(value, param) if field in ADDRESS_FIELDS else value
        if not values:
            raise InvalidInput(f"give at least one of {', '.join(PARAMS)} to change")
        return values

    async def plan_update(api: QalyptusClient, task_id: str, given: dict[str, Any]) -> tuple[Plan, dict[str, Any]]:
        values = new_values(given)
        current = await api.task(task_id)
        before = update_body(current)
        body = before | values
        if body["testMode"] and not body.get("testModeRecipients"):
            raise InvalidInput("test mode sends only to test_mode_recipients: give them (e-mail addresses)")
        if body["sendNotifications"] and not body.get("notificationRecipients"):
            raise InvalidInput("notifications need notification_recipients (e-mail addresses)")
        changes = [
            f"{key}: {text_of(before.get(key)) or '(none)'} -> {text_of(body.get(key)) or '(none)'}"
            for key in UPDATE_FIELDS
            if before.get(key) != body.get(key)
        ]
        if not changes:
            raise InvalidInput("the task already has these values; nothing to change")
        notes = ["Qalyptus's update takes the whole task: the other fields are sent back as they are."]
        if before["isActive"] and not body["isActive"]:
            notes.append("An inactive task does not run on its schedules or Qlik events.")
        if body["testMode"] and not before["testMode"]:
            notes.append("In test mode reports go only to the test recipients, not to the task's recipients.")
        plan = Plan(action=f"Update {describe(current)} in {api.name}", changes=changes, state=before, notes=notes)
        return plan, body

    @reg.resolver
    async def ask_update(
        ctx: Context,
        task_id: str,
        organization: str | None,
        is_active: bool | None,
        send_notifications: bool | None,
        notify_on_success: bool | None,
        notify_on_warning: bool | None,
        notify_on_error: bool | None,
        notification_recipients: str | None,
        notification_cc: str | None,
        notification_bcc: str | None,
        test_mode: bool | None,
        test_mode_recipients: str | None,
    ) -> Elicit[Consent] | None:
        given = {
            "is_active": is_active,
            "send_notifications": send_notifications,
            "notify_on_success": notify_on_success,
            "notify_on_warning": notify_on_warning,
            "notify_on_error": notify_on_error,
            "notification_recipients": notification_recipients,
            "notification_cc": notification_cc,
            "notification_bcc": notification_bcc,
            "test_mode": test_mode,
            "test_mode_recipients": test_mode_recipients,
        }

        async def plan() -> Plan:
            return (await plan_update(orgs.get(organization), task_id, given))[0]

        return await reg.gate.ask(ctx, plan)

    @reg.tool(TOOLSET, "destructive", title="Update Qalyptus task", idempotent=True)
    async def update_qalyptus_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_update)],
        is_active: Annotated[bool | None, Field(description="false stops its schedules and events.")] = None,
        send_notifications: Flag = None,
        notify_on_success: Flag = None,
        notify_on_warning: Flag = None,
        notify_on_error: Flag = None,
        notification_recipients: Addresses = None,
        notification_cc: Addresses = None,
        notification_bcc: Addresses = None,
        test_mode: Annotated[bool | None, Field(description="true sends only to test_mode_recipients.")] = None,
        test_mode_recipients: Addresses = None,
        organization: OrgName = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[TaskRow]:
        """Change a Qalyptus task: active, notifications, test mode. Needs the user's confirmation."""
        api = orgs.get(organization)
        given = {
            "is_active": is_active,
            "send_notifications": send_notifications,
            "notify_on_success": notify_on_success,
            "notify_on_warning": notify_on_warning,
            "notify_on_error": notify_on_error,
            "notification_recipients": notification_recipients,
            "notification_cc": notification_cc,
            "notification_bcc": notification_bcc,
            "test_mode": test_mode,
            "test_mode_recipients": test_mode_recipients,
        }
        plan, body = await plan_update(api, task_id, given)

        async def act() -> TaskRow:
            data = await api.update_task(task_id, body)
            return TaskRow.of(data if isinstance(data, dict) else {**body, "id": task_id})

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    @reg.tool(TOOLSET, "write", title="Duplicate Qalyptus task")
    async def duplicate_qalyptus_task(task_id: TaskId, organization: OrgName = None) -> Duplicated:
        """Copy a Qalyptus task (reports, recipients, triggers) as a new task."""
        api = orgs.get(organization)
        data = await api.duplicate_task(task_id)
        if isinstance(data, dict) and data.get("id"):
            return Duplicated(organization=api.name, source_id=task_id, task=TaskRow.of(data))
        return Duplicated(
            organization=api.name,
            source_id=task_id,
            note="Qalyptus duplicated the task but did not return the copy; list_qalyptus_tasks shows it.",
        )

    async def plan_delete(api: QalyptusClient, task_id: str) -> Plan:
        current = await api.task(task_id)
        triggers = await api.triggers(task_id)
        return Plan(
            action=f"Delete {describe(current)} in {api.name}",
            changes=[
                "the task, its report settings, recipients and "
                f"{len(triggers)} trigger{'s' if len(triggers) != 1 else ''} (schedules, Qlik events) are removed"
            ],
            state=[update_body(current), sorted(str(t.get("id")) for t in triggers)],
            notes=["This cannot be undone. The reports themselves stay; duplicate_qalyptus_task first keeps a copy."],
        )

    @reg.resolver
    async def ask_delete(ctx: Context, task_id: str, organization: str | None) -> Elicit[Consent] | None:
        return await reg.gate.ask(ctx, lambda: plan_delete(orgs.get(organization), task_id))

    @reg.tool(TOOLSET, "destructive", title="Delete Qalyptus task", idempotent=True)
    async def delete_qalyptus_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_delete)],
        organization: OrgName = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[Deleted]:
        """Delete a Qalyptus task. Needs the user's confirmation."""
        api = orgs.get(organization)
        plan = await plan_delete(api, task_id)

        async def act() -> Deleted:
            await api.delete_task(task_id)
            return Deleted(id=task_id, deleted=True)

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    @reg.tool(TOOLSET, "read", title="List Qalyptus reports")
    async def list_qalyptus_reports(
        name: NameFilter = None,
        limit: Limit = 20,
        offset: Offset = 0,
        organization: OrgName = None,
    ) -> ReportPage:
        """Qalyptus report templates: type, output formats, iteration, project."""
        api = orgs.get(organization)
        reports = await api.reports()
        if name:
            reports = [r for r in reports if name.lower() in str(r.get("name", "")).lower()]
        reports.sort(key=lambda r: str(r.get("name", "")).lower())
        rows, info = window(reports, limit, offset, "reports")
        return ReportPage(organization=api.name, reports=[Report.of(r) for r in rows], **info)

    qalyptus_schedules.register(reg, orgs)
    qalyptus_runs.register(reg, orgs)
