"""Making Qalyptus tasks: create one whole (project, reports in their formats, recipients, a first schedule), and
add, change or remove a task's reports.

"Create task" takes only a name, a description and a project; the rest goes through the task's own operations,
one call each, after everything was checked. If one of them fails, the new task is deleted again, so no
half-made task is left behind (and the answer says so).
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.errors import ClientError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import QalyptusClient, TaskReportDoc
from qlik_tasks_mcp.tools.fence import quoted
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.operation import destructive, write
from qlik_tasks_mcp.tools.qalyptus.delivery import RecipientsView, WhoList, directory, resolve_adds, view
from qlik_tasks_mcp.tools.qalyptus.models import (
    OrgName,
    QalyptusOrgs,
    TaskDetail,
    TaskId,
    TaskReport,
    task_named,
    text_of,
)
from qlik_tasks_mcp.tools.qalyptus.ondemand import find_report, format_of
from qlik_tasks_mcp.tools.qalyptus.schedules import ScheduleIn, build_body, runs_note

# A first run this close counts as sending at once: the user is asked first.
SOON = timedelta(minutes=15)


class ReportIn(Input):
    report: str = Field(min_length=1, max_length=200, description="Report id or name.")
    format: str = Field(min_length=1, max_length=20, description="e.g. PDF.")
    attach: bool = Field(True, description="Attach to the e-mail.")
    embed: bool = Field(False, description="In the e-mail's body.")


def report_body(report_id: str, fmt: str, attach: bool, embed: bool) -> dict[str, Any]:
    """A new task report as "Add or update report" takes it (its required fields; the rest left to Qalyptus)."""
    return {"reportID": report_id, "format": fmt, "emailEmbedment": embed, "emailAttachment": attach}


async def find_project(api: QalyptusClient, project: str) -> dict[str, Any]:
    projects = await api.projects()
    key = project.strip().lower()
    hit = [p for p in projects if str(p.get("id", "")).lower() == key] or [
        p for p in projects if str(p.get("name") or "").strip().lower() == key
    ]
    if len(hit) != 1:
        names = ", ".join(quoted(str(p.get("name") or p.get("id")), 40) for p in projects[:20]) or "none"
        why = "several projects are" if hit else "no project is"
        raise InvalidInput(f"{why} named {quoted(project, 80)}; the organization's projects: {names}")
    return hit[0]


async def plan_create(
    orgs: QalyptusOrgs,
    name: str,
    project: str,
    reports: list[ReportIn],
    recipients: list[str] | None,
    schedule: ScheduleIn | None,
    description: str | None,
    organization: str | None,
) -> Plan:
    if not name.strip():
        raise InvalidInput("name cannot be empty")
    api = orgs.get(organization)
    now = datetime.now(UTC)
    body_schedule = build_body(schedule, None, now) if schedule is not None else None
    found_project = await find_project(api, project)
    bodies, lines = [], []
    for item in reports:
        report = await find_report(api, item.report)
        fmt = format_of(report, item.format)
        bodies.append(report_body(report.id, fmt, item.attach, item.embed))
        lines.append(f"report {quoted(report.name, 80)} as {fmt}" + (", attached" if item.attach else ""))
    adds, outside, who = resolve_adds(recipients or [], [], await directory(api), [])
    notes = []
    soon = False
    if body_schedule is not None:
        lines.append(f"schedule: {sched.describe(body_schedule)}")
        notes.append(runs_note(body_schedule, now))
        runs = sched.next_runs(body_schedule, now, 1)
        soon = bool(runs) and runs[0] - now.astimezone(runs[0].tzinfo) <= SOON
        if soon:
            notes.insert(0, f"Its first run is within {SOON.seconds // 60} minutes: it sends reports at once.")
    else:
        notes.append("Without a schedule it runs only when run by hand or on a Qlik event.")
    if outside:
        notes.append("Addresses outside the organization's users receive every report this task sends.")
    payload = {
        "task": {"name": name.strip(), "description": description, "projectID": str(found_project["id"])},
        "reports": bodies,
        "recipients": adds,
        "cc": outside,
        "schedule": body_schedule,
    }
    return Plan(
        action=f"Create Qalyptus task {quoted(name, 100)} in project {quoted(str(found_project.get('name')), 80)} "
        f"of {api.name}",
        changes=lines + who,
        # The yes covers what the words resolved to: the project, reports and recipients by id.
        state=payload,
        notes=notes,
        needs_consent=soon or bool(outside),
        payload=payload,
    )


class Created(Compact):
    organization: str
    task: TaskDetail
    recipients: RecipientsView | None = None
    note: str | None = None


async def _fill(api: QalyptusClient, task_id: str, payload: dict[str, Any]) -> None:
    for body in payload["reports"]:
        await api.set_task_report(task_id, body)
    if payload["recipients"]:
        await api.set_recipients(task_id, payload["recipients"])
    if payload["cc"]:
        email = (await api.email(task_id)).update_body()
        email["cc"] = "; ".join(payload["cc"])
        await api.update_email(task_id, email)
    if payload["schedule"] is not None:
        await api.set_schedule(task_id, payload["schedule"])


@destructive("Create Qalyptus task", plan=plan_create)
async def create_qalyptus_task(
    orgs: QalyptusOrgs,
    plan: Plan,
    name: Annotated[str, Field(min_length=1, max_length=200)],
    project: Annotated[str, Field(min_length=1, max_length=200, description="Project id or name.")],
    reports: Annotated[list[ReportIn], Field(min_length=1, max_length=20)],
    recipients: WhoList = None,
    schedule: ScheduleIn | None = None,
    description: Annotated[str | None, Field(max_length=2000)] = None,
    organization: OrgName = None,
) -> Created:
    """Create a Qalyptus task: project, reports and formats, recipients, first schedule; asks if it sends at once."""
    api = orgs.get(organization)
    payload: dict[str, Any] = plan.payload
    made = await api.create_task(payload["task"])
    if made is None:
        raise ToolError(
            "Qalyptus created the task but did not return it, so its reports, recipients and schedule were not "
            "added; list_qalyptus_tasks shows it."
        )
    try:
        await _fill(api, made.id, payload)
    except ClientError as exc:
        try:
            await api.delete_task(made.id)
            undone = "the new task was deleted again, so nothing is left half-made"
        except ClientError as again:
            undone = f"deleting the half-made task {made.id} failed too ({again}): delete it with delete_qalyptus_task"
        raise ToolError(f"Setting up the new task failed ({exc}); {undone}.") from exc
    task = await api.task(made.id)
    detail = TaskDetail.build(task, await api.task_reports(made.id), [], await api.triggers(made.id))
    note = None
    if not task.is_active:
        note = "Qalyptus created it inactive: update_qalyptus_task with is_active=true lets it run on its schedule."
    return Created(organization=api.name, task=detail, recipients=await view(api, made.id), note=note)


# A task's reports ---------------------------------------------------------------------------------------


class ReportSet(Compact):
    task_id: str
    report: TaskReport | None = None
    note: str | None = None


@write("Set Qalyptus task report", idempotent=True)
async def set_qalyptus_task_report(
    orgs: QalyptusOrgs,
    task_id: TaskId,
    report: Annotated[str | None, Field(max_length=200, description="Report id or name, to add.")] = None,
    task_report_id: Annotated[str | None, Field(max_length=128, description="Task report to change.")] = None,
    format: Annotated[str | None, Field(max_length=20, description="e.g. PDF.")] = None,
    attach: bool | None = None,
    embed: bool | None = None,
    organization: OrgName = None,
) -> ReportSet:
    """Add a report to a Qalyptus task, or change one (task_report_id): format, attached, embedded."""
    if bool(report) == bool(task_report_id):
        raise InvalidInput("give report (to add one) or task_report_id (to change one), not both")
    api = orgs.get(organization)
    if report:
        found = await find_report(api, report)
        if not format:
            raise InvalidInput(f"format is required to add a report: one of {', '.join(found.output_formats)}")
        body = report_body(found.id, format_of(found, format), attach is not False, bool(embed))
        saved = await api.set_task_report(task_id, body)
    else:
        current = next((r for r in await api.task_reports(task_id) if r.id == task_report_id), None)
        if current is None:
            raise InvalidInput(f"task {task_id} has no task report {task_report_id}; get_qalyptus_task lists them")
        body = current.update_body()
        if format:
            reports = {r.id: r for r in await api.reports()}
            target = reports.get(body["reportID"])
            body["format"] = format_of(target, format) if target else format.strip().upper()
        if attach is not None:
            body["emailAttachment"] = attach
        if embed is not None:
            body["emailEmbedment"] = embed
        saved = await api.set_task_report(task_id, body, task_report_id)
    if saved is None:
        return ReportSet(task_id=task_id, note="Saved; get_qalyptus_task_email shows the task's reports.")
    return ReportSet(task_id=task_id, report=TaskReport.of(saved))


async def plan_delete_reports(
    orgs: QalyptusOrgs, task_id: str, task_report_ids: list[str], organization: str | None
) -> Plan:
    api = orgs.get(organization)
    ids = list(dict.fromkeys(task_report_ids))
    existing: list[TaskReportDoc] = await api.task_reports(task_id)
    by_id = {r.id: r for r in existing}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        known = ", ".join(f"{r.id} ({text_of(r.name, 40)})" for r in existing) or "none"
        raise InvalidInput(f"task {task_id} has no task report {unknown[0]}; its reports: {known}")
    notes = ["This cannot be undone; the report itself stays (set_qalyptus_task_report adds it back)."]
    if len(ids) == len(by_id):
        notes.append("The task is left with no report: its runs have nothing to send.")
    return Plan(
        action=f"Remove {len(ids)} report{'s' if len(ids) > 1 else ''} from {await task_named(api, task_id)} "
        f"in {api.name}",
        changes=[f"{quoted(by_id[i].name or '', 80)} as {by_id[i].format} ({i})" for i in ids],
        state=[by_id[i].update_body() for i in ids],
        notes=notes,
        payload=ids,
    )


@destructive("Delete Qalyptus task reports", plan=plan_delete_reports, idempotent=True)
async def delete_qalyptus_task_reports(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
    task_report_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1, max_length=20)
    ],
    organization: OrgName = None,
) -> ReportSet:
    """Remove reports from a Qalyptus task."""
    await orgs.get(organization).delete_task_reports(task_id, plan.payload)
    return ReportSet(task_id=task_id, note=f"Removed {', '.join(plan.payload)}.")
