"""Qalyptus Cloud report tasks, the toolset's one module: tasks (list, get with reports, recipients and triggers,
update, duplicate, delete) and the report catalogue; the ops tools' view (`QalyptusTaskSource`) is in source.py.
The tools of the family's other modules (authoring: create, task reports; delivery: recipients, e-mail, owner;
schedules: triggers; runs; ondemand: on-demand requests) are named here too, so the catalogue keeps the README's
order.
"""

from typing import Annotated, Any

from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import UPDATE_FIELDS, QalyptusTaskDoc
from qlik_tasks_mcp.tools.fence import tenant_text_note
from qlik_tasks_mcp.tools.gate import Plan, field_diff
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.model import Compact, Deleted
from qlik_tasks_mcp.tools.operation import destructive, read, write
from qlik_tasks_mcp.tools.params import Limit
from qlik_tasks_mcp.tools.qalyptus import authoring, delivery, ondemand
from qlik_tasks_mcp.tools.qalyptus import runs as qalyptus_runs
from qlik_tasks_mcp.tools.qalyptus import schedules as qalyptus_schedules
from qlik_tasks_mcp.tools.qalyptus.models import (
    CUT_TEXT,
    Offset,
    OrgName,
    QalyptusOrgs,
    Report,
    TaskDetail,
    TaskId,
    TaskRow,
    Trigger,
    Window,
    addresses,
    task_label,
    task_text,
    text_of,
    window,
)
from qlik_tasks_mcp.tools.qalyptus.source import QalyptusTaskSource

NameFilter = Annotated[str | None, Field(max_length=100, description="Part of the name, any case.")]
Flag = bool | None
Addresses = Annotated[str | None, Field(max_length=2000, description='Addresses separated by ";"; "" clears.')]


TASK_TEXT_NOTE = tenant_text_note(("name", "project", "owner", "names in reports, recipients and triggers")) + (
    " " + CUT_TEXT
)


class TaskPage(Window):
    organization: str
    tasks: list[TaskRow]


class ReportPage(Window):
    organization: str
    reports: list[Report]


class TaskResult(Compact):
    organization: str
    task: TaskDetail
    text: str | None = Field(None, description="The task's description, fenced as tenant text.")
    note: str = TASK_TEXT_NOTE


class Duplicated(Compact):
    organization: str
    source_id: str
    task: TaskRow | None = None
    note: str | None = None


# update_qalyptus_task's parameters and the task fields each sets.
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


def service(clients: Deps) -> QalyptusOrgs:
    # Called only with an organization configured (the inventory's needs_qalyptus); the CLI says when there is none.
    return QalyptusOrgs(clients.qalyptus, clients.names)


@read("List Qalyptus tasks")
async def list_qalyptus_tasks(
    orgs: QalyptusOrgs,
    name: NameFilter = None,
    active: bool | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
    organization: OrgName = None,
) -> TaskPage:
    """Qalyptus report tasks: active, scheduled, project, owner, last execution."""
    api = orgs.get(organization)
    tasks = await api.tasks()
    if name:
        tasks = [t for t in tasks if name.lower() in t.name.lower()]
    if active is not None:
        tasks = [t for t in tasks if t.is_active is active]
    tasks.sort(key=lambda t: t.name.lower())
    rows, info = window(tasks, limit, offset, "tasks", ("name", "project", "owner"))
    return TaskPage(organization=api.name, tasks=[TaskRow.of(t) for t in rows], **info)


@read("Get Qalyptus task")
async def get_qalyptus_task(orgs: QalyptusOrgs, task_id: TaskId, organization: OrgName = None) -> TaskResult:
    """One Qalyptus task with its notifications, reports, recipients and triggers (schedules, Qlik events)."""
    api = orgs.get(organization)
    task = await api.task(task_id)
    reports = await api.task_reports(task_id)
    recipients = await api.recipients(task_id)
    triggers = await api.triggers(task_id)
    detail = TaskDetail.build(task, reports, recipients, triggers)
    labels = await orgs.app_labels([t.app_id for t in triggers if t.app_id and not t.scheduled])
    detail.triggers = [Trigger.of(t, labels) for t in triggers]
    return TaskResult(organization=api.name, task=detail, text=task_text(task))


create_qalyptus_task = authoring.create_qalyptus_task


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


def update_notes(before: dict[str, Any], body: dict[str, Any]) -> list[str]:
    if body["testMode"] and not body.get("testModeRecipients"):
        raise InvalidInput("test mode sends only to test_mode_recipients: give them (e-mail addresses)")
    if body["sendNotifications"] and not body.get("notificationRecipients"):
        raise InvalidInput("notifications need notification_recipients (e-mail addresses)")
    notes = ["Qalyptus's update takes the whole task: the other fields are sent back as they are."]
    if before["isActive"] and not body["isActive"]:
        notes.append("An inactive task does not run on its schedules or Qlik events.")
    if body["testMode"] and not before["testMode"]:
        notes.append("In test mode reports go only to the test recipients, not to the task's recipients.")
    return notes


async def plan_update(
    orgs: QalyptusOrgs,
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
) -> Plan:
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
    values = new_values(given)
    api = orgs.get(organization)
    current = await api.task(task_id)
    before = current.update_body()
    body = before | values
    notes = update_notes(before, body)
    changes = [
        f"{key}: {text_of(before.get(key)) or '(none)'} -> {text_of(body.get(key)) or '(none)'}"
        for key in UPDATE_FIELDS
        if before.get(key) != body.get(key)
    ]
    if not changes:
        raise InvalidInput("the task already has these values; nothing to change")
    action = f"Update {task_label(current)} in {api.name}"
    diff = field_diff(before, body, UPDATE_FIELDS)
    return Plan(action=action, changes=changes, state=before, notes=notes, payload=body, diff=diff)


@destructive("Update Qalyptus task", plan=plan_update, idempotent=True)
async def update_qalyptus_task(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
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
) -> TaskRow:
    """Change the given fields of a Qalyptus task: active, notifications, test mode."""
    body: dict[str, Any] = plan.payload
    updated = await orgs.get(organization).update_task(task_id, body)
    return TaskRow.of(updated or QalyptusTaskDoc.model_validate({**body, "id": task_id}))


@write("Duplicate Qalyptus task")
async def duplicate_qalyptus_task(orgs: QalyptusOrgs, task_id: TaskId, organization: OrgName = None) -> Duplicated:
    """Copy a Qalyptus task (reports, recipients, triggers) as a new task."""
    api = orgs.get(organization)
    orgs.copies.take(api.name, task_id)
    try:
        copy = await api.duplicate_task(task_id)
    except ApiError as exc:
        if 400 <= exc.status < 500:
            orgs.copies.give_back(api.name, task_id)
        raise
    if copy is None:
        note = "Qalyptus duplicated the task but did not return the copy; list_qalyptus_tasks shows it."
        return Duplicated(organization=api.name, source_id=task_id, note=note)
    note = None
    if copy.is_active and copy.is_scheduled:
        note = (
            "The copy is active with its own schedules: it sends reports on them. update_qalyptus_task with "
            "is_active=false pauses it."
        )
    return Duplicated(organization=api.name, source_id=task_id, task=TaskRow.of(copy), note=note)


async def plan_delete(orgs: QalyptusOrgs, task_id: str, organization: str | None) -> Plan:
    api = orgs.get(organization)
    current = await api.task(task_id)
    triggers = await api.triggers(task_id)
    return Plan(
        action=f"Delete {task_label(current)} in {api.name}",
        changes=[
            "the task, its report settings, recipients and "
            f"{len(triggers)} trigger{'s' if len(triggers) != 1 else ''} (schedules, Qlik events) are removed"
        ],
        state=[current.update_body(), sorted(t.id for t in triggers)],
        notes=["This cannot be undone. The reports themselves stay; duplicate_qalyptus_task first keeps a copy."],
    )


@destructive("Delete Qalyptus task", plan=plan_delete, idempotent=True)
async def delete_qalyptus_task(
    orgs: QalyptusOrgs, plan: Plan, task_id: TaskId, organization: OrgName = None
) -> Deleted:
    """Delete a Qalyptus task."""
    await orgs.get(organization).delete_task(task_id)
    return Deleted(id=task_id, deleted=True)


change_qalyptus_task_owner = delivery.change_qalyptus_task_owner
get_qalyptus_task_recipients = delivery.get_qalyptus_task_recipients
set_qalyptus_task_recipients = delivery.set_qalyptus_task_recipients
get_qalyptus_task_email = delivery.get_qalyptus_task_email
update_qalyptus_task_email = delivery.update_qalyptus_task_email
set_qalyptus_task_report = authoring.set_qalyptus_task_report
delete_qalyptus_task_reports = authoring.delete_qalyptus_task_reports


def source(clients: Deps) -> QalyptusTaskSource:
    return QalyptusTaskSource(QalyptusOrgs(clients.qalyptus, clients.names))


# The catalogue lists tasks, then schedules, then runs, then reports, as the README does: the inventory reads
# operations in the order their names enter this module.
list_qalyptus_task_triggers = qalyptus_schedules.list_qalyptus_task_triggers
set_qalyptus_task_schedule = qalyptus_schedules.set_qalyptus_task_schedule
set_qalyptus_task_event = qalyptus_schedules.set_qalyptus_task_event
delete_qalyptus_task_triggers = qalyptus_schedules.delete_qalyptus_task_triggers
run_qalyptus_task = qalyptus_runs.run_qalyptus_task
stop_qalyptus_task = qalyptus_runs.stop_qalyptus_task
get_qalyptus_task_status = qalyptus_runs.get_qalyptus_task_status
list_qalyptus_task_statuses = qalyptus_runs.list_qalyptus_task_statuses
get_qalyptus_task_log = qalyptus_runs.get_qalyptus_task_log
generate_qalyptus_report = ondemand.generate_qalyptus_report
get_qalyptus_request = ondemand.get_qalyptus_request
list_qalyptus_requests = ondemand.list_qalyptus_requests
delete_qalyptus_request = ondemand.delete_qalyptus_request


@read("List Qalyptus reports")
async def list_qalyptus_reports(
    orgs: QalyptusOrgs,
    name: NameFilter = None,
    limit: Limit = 20,
    offset: Offset = 0,
    organization: OrgName = None,
) -> ReportPage:
    """Qalyptus report templates: type, output formats, iteration, project."""
    api = orgs.get(organization)
    reports = await api.reports()
    if name:
        reports = [r for r in reports if name.lower() in r.name.lower()]
    reports.sort(key=lambda r: r.name.lower())
    rows, info = window(reports, limit, offset, "reports", ("name", "type", "template", "project"))
    return ReportPage(organization=api.name, reports=[Report.of(r) for r in rows], **info)
