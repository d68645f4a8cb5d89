"""Sharing tasks (`/api/v1/sharing-tasks`): report subscriptions, chart sharing and monitoring, executions, settings.

What sends a report out of the tenant, or takes one away from its recipients, goes through the gate: a patch that
disables, changes the owner, removes recipients or a channel, swaps the content or the selection filter, moves
the start far ahead or adds addresses outside the tenant; and a creation that mails outside addresses at once.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from mcp.server.mcpserver import Context
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.schedule import utc_z
from qlik_tasks_mcp.client.sharing_tasks import (
    ExecutionDoc,
    RecipientsDoc,
    ScheduleOptionsDoc,
    SharingTaskDoc,
    SharingTasksApi,
    TemplateDoc,
)
from qlik_tasks_mcp.tools.fence import quoted
from qlik_tasks_mcp.tools.follow import RunWatch, WaitSeconds, follow, read_after
from qlik_tasks_mcp.tools.gate import FieldChange, Plan, field_diff
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import Names, RowNames, row_names
from qlik_tasks_mcp.tools.operation import destructive, read
from qlik_tasks_mcp.tools.params import Cursor, Limit
from qlik_tasks_mcp.tools.sharing.models import (
    CHECK_WITH,
    DETAIL_TEXT_NOTE,
    EXECUTION_TEXT_NOTE,
    ROW_TEXT_NOTE,
    Channel,
    Content,
    ExecutionDetail,
    ExecutionRow,
    Recipients,
    SharingSchedule,
    SharingSettingsView,
    SharingTaskDetail,
    SharingTaskRow,
    SharingType,
    TemplateView,
    recipient_user_ids,
    recipients_line,
    replacement_recipients,
    schedule_line,
    task_text,
    template_view,
    transport_problem,
    who,
)
from qlik_tasks_mcp.tools.sharing.recipients import Recipient, resolve_recipient
from qlik_tasks_mcp.tools.sharing.source import LISTING_ROWS, SharingTaskSource
from qlik_tasks_mcp.tools.sources import parse_time

TOOLSET = "sharing"
# A new start further than this beyond today (or the next planned send) leaves the recipients without reports.
QUIET_DAYS = 7
# A send of a task this soon after its last one e-mails every recipient the same report again: it asks first.
REPEAT_SEND = timedelta(hours=1)
# How many tasks a `recipient` filter reads at most (pages of LISTING_ROWS): the API cannot filter by recipient.
RECIPIENT_SCAN_PAGES = 20

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Sharing task id.")]
ExecutionId = Annotated[str, Field(min_length=1, max_length=128, description="Execution id.")]
Text = Annotated[str | None, Field(max_length=255)]
SORTS = Literal["name", "-name", "datecreated", "-datecreated", "status", "-status", "type", "-type", "-scheduled"]


class SharingTaskPage(Compact):
    tasks: list[SharingTaskRow]
    total: int | None = None
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    note: str = ROW_TEXT_NOTE


TaskText = Annotated[str | None, Field(description="The task's description and e-mail subject, fenced.")]


class SharingTaskResult(Compact):
    task: SharingTaskDetail
    text: TaskText = None
    note: str | None = DETAIL_TEXT_NOTE

    @classmethod
    def of(cls, doc: SharingTaskDoc, known: RowNames) -> "SharingTaskResult":
        return cls(task=SharingTaskDetail.of(doc, known), text=task_text(doc))


class ExecutionPage(Compact):
    task_id: str
    executions: list[ExecutionRow]
    total: int | None = None
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    note: str | None = None


class ExecuteResult(Compact):
    task_id: str
    started: bool
    executions: list[ExecutionRow] = []
    wait_ended: Literal["finished", "timeout"] | None = None
    waited_seconds: float | None = None
    note: str | None = None


class Done(Compact):
    id: str
    done: str


class PatchResult(Compact):
    # The task as it is now; absent when it could not be read after the patch (the note says so).
    task: SharingTaskDetail | None = None
    ops: list[str]
    text: TaskText = None
    note: str | None = None


class SharingService(SharingTasksApi):
    """The sharing tasks API with the process's one name lookup beside it, for names in results and previews."""

    def __init__(self, qlik: QlikClient, names: Names) -> None:
        super().__init__(qlik)
        self.names = names
        # When this process last sent each task: the tenant may show a send in lastExecutionDate only later.
        self.sent: dict[str, datetime] = {}

    def last_send(self, doc: SharingTaskDoc) -> datetime | None:
        """The latest send of the task the tenant shows or this process made, whichever is later."""
        times = [t for t in (parse_time(doc.last_ran), self.sent.get(doc.id)) if t is not None]
        return max(times) if times else None


def service(clients: Deps) -> SharingService:
    return SharingService(clients.qlik, clients.names)


async def known_names(names: Names, tasks: Iterable[SharingTaskDoc], users: Iterable[str] = ()) -> RowNames:
    """The names a result shows: apps the tenant did not name, owners (for their status) and `users`.

    One apps request and one users request at most (a page holds at most 100 tasks), none for what is cached."""
    docs = list(tasks)
    owners = [d.owner for d in docs]
    return await row_names(names, (d.app_id for d in docs if not d.app_name), dict.fromkeys([*owners, *users]))


async def task_label(names: Names, doc: SharingTaskDoc) -> str:
    """For previews and questions: the task with its app and owner by name and id."""
    app = await names.describe_app(doc.app_id) if doc.app_id else "no app"
    owner = await names.describe_user(doc.owner) if doc.owner else "unknown"
    return who(doc, app, owner)


# Reading --------------------------------------------------------------------------------------------


@read("List sharing tasks")
async def list_sharing_tasks(
    api: SharingService,
    app_id: Annotated[str | None, Field(max_length=128)] = None,
    owner_id: Annotated[str | None, Field(max_length=128)] = None,
    owner_name: Annotated[str | None, Field(max_length=200)] = None,
    role: Annotated[
        list[Literal["owner", "recipient"]] | None, Field(max_length=2, description="Caller's role in the task.")
    ] = None,
    types: Annotated[list[SharingType] | None, Field(max_length=4)] = None,
    template_ids: Annotated[list[str] | None, Field(max_length=20)] = None,
    recipient: Annotated[
        str | None, Field(max_length=254, description="Only tasks this user id, name or e-mail receives.")
    ] = None,
    exclude_deleting: bool = True,
    sort: SORTS = "name",
    limit: Limit = 20,
    cursor: Cursor = None,
) -> SharingTaskPage:
    """List report subscriptions and chart sharing/monitoring: app, owner, schedule, status, next/last run."""
    params: dict[str, Any] = {"sort": sort, "excludeDeleting": "true" if exclude_deleting else "false"}
    for key, value in (("appid", app_id), ("owner", owner_id), ("ownername", owner_name)):
        if value:
            params[key] = value
    for key, values in (("role", role), ("type", types), ("templateId", template_ids)):
        if values:
            params[key] = list(dict.fromkeys(values))
    if recipient is not None:
        if cursor:
            raise InvalidInput("cursor does not combine with recipient: the recipient's tasks come in one page")
        return await _received_by(api, params, await resolve_recipient(api.names, recipient), limit)
    page = await api.list(params, limit=limit, cursor=cursor)
    known = await known_names(api.names, page.items)
    return SharingTaskPage(
        tasks=[SharingTaskRow.of(t, known) for t in page.items],
        total=page.total,
        next_cursor=page.next_cursor,
        note=" ".join(filter(None, (ROW_TEXT_NOTE, page.cut_note))),
    )


async def _received_by(api: SharingService, params: dict[str, Any], who: Recipient, limit: int) -> SharingTaskPage:
    """The tasks `who` receives, read page by page up to RECIPIENT_SCAN_PAGES pages; the first `limit` shown."""
    matched: list[tuple[SharingTaskDoc, list[str]]] = []
    cursor: str | None = None
    for _ in range(RECIPIENT_SCAN_PAGES):
        page = await api.list(params, limit=LISTING_ROWS, cursor=cursor)
        matched += [(doc, how) for doc in page.items if (how := who.receives_as(doc))]
        cursor = page.next_cursor
        if not cursor:
            break
    shown = matched[:limit]
    known = await known_names(api.names, [doc for doc, _ in shown])
    rows = [SharingTaskRow.of(doc, known).model_copy(update={"receives_as": how}) for doc, how in shown]
    notes = [ROW_TEXT_NOTE, who.said()]
    if len(matched) > limit:
        notes.append(f"{len(matched) - limit} more tasks match: raise limit or narrow by app_id or types.")
    if cursor:
        notes.append(
            f"Only the first {RECIPIENT_SCAN_PAGES * LISTING_ROWS} tasks were read: narrow by app_id or types."
        )
    return SharingTaskPage(tasks=rows, total=len(matched), next_cursor=None, note=" ".join(notes))


@read("Get sharing task")
async def get_sharing_task(api: SharingService, task_id: TaskId) -> SharingTaskResult:
    """One sharing task: schedule, recipients (with their errors), content, status and task errors."""
    doc = await api.get(task_id)
    return SharingTaskResult.of(doc, await known_names(api.names, [doc], recipient_user_ids(doc)))


# What a change lets out or takes away ------------------------------------------------------------------


async def check_recipients(api: SharingTasksApi, count: int, task_type: str) -> None:
    settings = await api.settings()
    if settings.enable_sharing is False:
        raise InvalidInput(
            "sharing is disabled on this tenant (settings enable-sharing=false); a tenant admin can enable it"
        )
    cap = settings.recipient_limit(task_type)
    if cap is not None and count > cap:
        raise InvalidInput(
            f"{count} recipients is more than the tenant allows on a {task_type} ({cap}): remove {count - cap}"
        )


async def outside_addresses(api: SharingTasksApi, addresses: list[str]) -> tuple[list[str], str | None]:
    """Those of `addresses` that are no tenant user's e-mail, and a note when the users could not be read."""
    if not addresses:
        return [], None
    try:
        known = await api.tenant_emails(addresses)
    except ApiError as exc:
        return list(addresses), (
            f"The tenant's users could not be read (HTTP {exc.status}), so every address counts as outside."
        )
    return [a for a in addresses if a.lower() not in known], None


def outside_note(outside: list[str], when: str) -> str:
    shown = ", ".join(outside[:10]) + (f" and {len(outside) - 10} more" if len(outside) > 10 else "")
    return f"sends the report outside the tenant to {shown} ({when})"


def _aware(value: str, zone: ZoneInfo) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def quiet_start(before: ScheduleOptionsDoc, after: ScheduleOptionsDoc, next_run: str) -> str | None:
    """Why a new start silences the report: it lies more than QUIET_DAYS beyond today and the next planned send."""
    if not after.start_date_time or after.start_date_time == before.start_date_time:
        return None
    start = _aware(after.start_date_time, ZoneInfo(after.timezone))
    planned = parse_time(next_run)
    now = datetime.now(UTC)
    horizon = max(now, planned) if planned else now
    if start is None or start <= horizon + timedelta(days=QUIET_DAYS):
        return None
    since = "the next planned send" if planned and planned > now else "today"
    return (
        f"moves the start to {after.start_date_time} ({after.timezone}), more than {QUIET_DAYS} days after "
        f"{since}: nobody receives the report until then"
    )


def ended_schedule(before: ScheduleOptionsDoc, after: ScheduleOptionsDoc) -> str | None:
    """Why a new end silences the report: it is already past, so no send is planned any more (as disabling)."""
    if not after.end_date_time or after.end_date_time == before.end_date_time:
        return None
    end = _aware(after.end_date_time, ZoneInfo(after.timezone))
    if end is None or end > datetime.now(UTC):
        return None
    return (
        f"ends the schedule at {after.end_date_time} ({after.timezone}), which is past: nobody receives the "
        "report any more, as if it were disabled"
    )


def content_line(views: list[TemplateView]) -> str:
    parts = []
    for view in views:
        what = f"chart {view.chart}" if view.chart else f"sheets {', '.join(view.sheets) or '-'}"
        parts.append(f"{what} of app {view.app_id} ({view.format or view.type})")
    return "; ".join(parts) or "nothing"


# Creating -------------------------------------------------------------------------------------------


def create_body(
    name: str,
    type: str,
    content: Content,
    recipients: dict[str, Any],
    schedule: SharingSchedule | None,
    on_app_reload: bool,
    transport: Sequence[str],
) -> dict[str, Any]:
    """The POST body's required part: what is sent, to whom, and when."""
    body: dict[str, Any] = {
        "name": name,
        "type": type,
        "state": {},
        "templates": content.templates(type),
        "recipients": recipients,
        "transportChannels": list(dict.fromkeys(transport)),
    }
    lines: list[str] = []
    if schedule is not None:
        body["scheduleOptions"] = schedule.to_api()
        lines = body["scheduleOptions"]["recurrence"]
    body["trigger"] = {"recurrence": lines, "executeOnAppReload": on_app_reload}
    return body


def retention(type: str, history_size: int | None) -> dict[str, Any] | None:
    if type == "chart-monitoring":
        return {"historySize": history_size or 10, "overrideInterval": "FREQ=DAILY;INTERVAL=1"}
    return {"historySize": history_size} if history_size else None


def check_create(
    type: str, history_size: int | None, schedule: SharingSchedule | None, on_app_reload: bool, problem: str | None
) -> None:
    if type == "chart-monitoring" and history_size not in (None, 10):
        raise InvalidInput(f"history_size {history_size}: chart-monitoring keeps exactly 10; leave it out")
    if schedule is None and not on_app_reload:
        raise InvalidInput("give a schedule, or on_app_reload=true to send after each app reload")
    if problem:
        raise InvalidInput(problem)


async def plan_create(
    api: SharingService,
    name: str,
    type: SharingType,
    content: Content,
    recipients: Recipients,
    schedule: SharingSchedule | None,
    on_app_reload: bool,
    transport: list[Channel],
    sharepoint_folder: str | None,
    data_connection_id: str | None,
    email_subject: str | None,
    email_body: str | None,
    message: str | None,
    description: str | None,
    tags: list[str],
    history_size: int | None,
    execute_on_creation: bool,
    enabled: bool,
) -> Plan:
    """The POST body, checked as the spec and the tenant would; a yes is needed only to mail outside at once."""
    check_create(
        type,
        history_size,
        schedule,
        on_app_reload,
        transport_problem(list(transport), sharepoint_folder, data_connection_id),
    )
    wanted = recipients.to_api()
    if not wanted:
        raise InvalidInput("recipients is empty: give user_ids, group_ids or emails")
    body = create_body(name, type, content, wanted, schedule, on_app_reload, transport)
    body |= {"enabled": enabled, "executeOnCreation": execute_on_creation}
    kept = retention(type, history_size)
    optional = {
        "retentionPolicy": kept,
        "sharePointFolder": sharepoint_folder,
        "dataConnectionID": data_connection_id,
        "message": message,
        "description": description,
        "tags": list(dict.fromkeys(tags)),
        "emailContent": {"subject": email_subject or "", "body": email_body or ""}
        if email_subject or email_body
        else None,
    }
    body.update({k: v for k, v in optional.items() if v})
    await check_recipients(api, recipients.count(), type)
    return await _create_plan(api, body, execute_on_creation)


async def _create_plan(api: SharingService, body: dict[str, Any], execute_now: bool) -> Plan:
    recipients = RecipientsDoc.model_validate(body["recipients"])
    outside, unknown = await outside_addresses(api, recipients.values()["emails"]) if execute_now else ([], None)
    when = [
        "once right away" if execute_now else "",
        "on its schedule" if "scheduleOptions" in body else "",
        "after each reload of the app" if body["trigger"]["executeOnAppReload"] else "",
    ]
    changes = [f"recipients: {recipients_line(recipients)}", f"sends {', '.join(w for w in when if w)}"]
    notes = [outside_note(outside, "execute_on_creation sends it as soon as the task exists")] if outside else []
    app_id = next(
        (a for a in (template_view(TemplateDoc.model_validate(t)).app_id for t in body["templates"]) if a), ""
    )
    app = await api.names.describe_app(app_id) if app_id else "no app"
    return Plan(
        action=f"Create {body['type']} task {quoted(body['name'])} of {app}, owned by the caller",
        changes=changes,
        state={"outside": outside},
        notes=notes + ([unknown] if unknown and outside else []),
        needs_consent=bool(outside),
        payload=body,
    )


@destructive("Create sharing task", plan=plan_create)
async def create_sharing_task(
    api: SharingService,
    plan: Plan,
    name: Annotated[str, Field(min_length=1, max_length=200)],
    type: Annotated[SharingType, Field(description="template-sharing cannot be created through the API.")],
    content: Content,
    recipients: Recipients,
    schedule: Annotated[SharingSchedule | None, Field(description="When to send; omit with on_app_reload.")] = None,
    on_app_reload: Annotated[bool, Field(description="Send after each reload of the app.")] = False,
    transport: Annotated[list[Channel], Field(min_length=1, max_length=2)] = ["email"],  # noqa: B006
    sharepoint_folder: Annotated[str | None, Field(max_length=1000)] = None,
    data_connection_id: Annotated[str | None, Field(max_length=128)] = None,
    email_subject: Annotated[str | None, Field(max_length=255)] = None,
    email_body: Annotated[str | None, Field(max_length=5000)] = None,
    message: Annotated[str | None, Field(max_length=280)] = None,
    description: Text = None,
    tags: Annotated[list[str], Field(max_length=20)] = [],  # noqa: B006
    history_size: Annotated[
        int | None, Field(ge=1, le=100, description="Reports kept; chart-monitoring takes only 10.")
    ] = None,
    execute_on_creation: Annotated[bool, Field(description="Also send once right away.")] = False,
    enabled: bool = True,
) -> SharingTaskResult:
    """Create a sheet/chart report subscription or chart monitoring. Sending at once to outside addresses asks
    the user first."""
    doc = await api.create(plan.payload)
    return SharingTaskResult.of(doc, await known_names(api.names, [doc], recipient_user_ids(doc)))


# Patching -------------------------------------------------------------------------------------------


@dataclass
class PatchDraft:
    """A patch being planned against the task's current state: the JSON Patch ops, the lines shown, the risks."""

    current: SharingTaskDoc
    ops: list[dict[str, Any]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    risky: list[str] = field(default_factory=list)

    def diff(self) -> list[FieldChange]:
        """Each field the ops change, before and after in full: the task as sent, then with the ops applied."""
        before = self.current.wire() | {"ownerId": self.current.owner}
        after = dict(before)
        for op in self.ops:
            key = op["path"][1:]
            if op["op"] == "remove":
                after.pop(key, None)
            else:
                after[key] = op["value"]
        return field_diff(before, after, [op["path"][1:] for op in self.ops])

    def replace(self, path: str, value: Any, shown: str) -> None:
        self.ops.append({"op": "replace", "path": path, "value": value})
        self.changes.append(shown)

    def text(self, path: str, before: str, value: str | None, label: str) -> bool:
        """Set, replace or ("") remove a text field; True when it changes."""
        if value is None or value == before:
            return False
        if value == "":
            self.ops.append({"op": "remove", "path": path})
            self.changes.append(f"{label}: {quoted(before)} -> removed")
        else:
            self.replace(path, value, f"{label}: {quoted(before) if before else None} -> {quoted(value)}")
        return True


def patch_basics(draft: PatchDraft, name: str | None, description: str | None, tags: list[str] | None) -> None:
    current = draft.current
    draft.text("/name", current.name, name, "name")
    draft.text("/description", current.description, description, "description")
    if tags is not None and list(tags) != current.tags:
        draft.replace("/tags", list(dict.fromkeys(tags)), f"tags: {current.tags} -> {tags}")


async def patch_enabled_and_owner(names: Names, draft: PatchDraft, enabled: bool | None, owner_id: str | None) -> None:
    current = draft.current
    # The user's own switch: a task the system paused can still be switched off so it stays off when the
    # system lets it run again, and switching it on also lifts the system's pause.
    if (enabled is True and not current.is_enabled) or (enabled is False and current.user_on):
        paused = " (also paused by the system)" if current.user_on and not current.is_enabled else ""
        draft.replace("/enabled", enabled, f"enabled: {current.is_enabled}{paused} -> {enabled}")
        if not enabled:
            draft.risky.append("disables the task: nobody receives it until it is enabled again")
    if owner_id is not None and owner_id != current.owner:
        labels = await names.describe_users([current.owner, owner_id])
        before = labels.get(current.owner, "unknown")
        draft.replace("/ownerId", owner_id, f"owner: {before} -> {labels[owner_id]}")
        draft.risky.append(
            f"changes the owner from {before} to {labels[owner_id]}: the report then runs with the new owner's access"
        )


def patch_schedule(draft: PatchDraft, schedule: SharingSchedule | None) -> None:
    if schedule is None:
        return
    before = draft.current.schedule_options
    new = schedule.to_api(before)
    after = ScheduleOptionsDoc.model_validate(new)
    # Compared as stored: two rules can read alike in words and still differ.
    timing = ("recurrence", "timezone", "start_date_time", "end_date_time")
    if all(getattr(after, key) == getattr(before, key) for key in timing):
        return
    draft.replace("/scheduleOptions", new, f"schedule: {schedule_line(before)} -> {schedule_line(after)}")
    quiet = quiet_start(before, after, draft.current.next_run) or ended_schedule(before, after)
    if quiet:
        draft.risky.append(quiet)


async def patch_recipients(api: SharingTasksApi, draft: PatchDraft, recipients: Recipients | None) -> None:
    if recipients is None:
        return
    current = draft.current
    wanted = recipients.to_api()
    if not wanted:
        raise InvalidInput("recipients would be empty; disable the task (enabled=false) instead")
    new_body, woken = replacement_recipients(current.recipients, wanted)
    after = RecipientsDoc.model_validate(new_body)
    old, new = current.recipients.values(), after.values()
    removed = [f"{k[:-1]} {v}" for k in old for v in old[k] if v not in new[k]]
    added = [f"{k[:-1]} {v}" for k in new for v in new[k] if v not in old[k]]
    if not (removed or added):
        return
    await check_recipients(api, recipients.count(), current.type)
    shown = f"recipients: {recipients_line(current.recipients)} -> {recipients_line(after)}"
    draft.replace("/recipients", new_body, shown + (f"; adds {', '.join(added)}" if added else ""))
    if removed:
        draft.risky.append(f"removes recipients: {', '.join(removed)}")
    if woken:
        draft.risky.append(f"switches back on addresses that were switched off: {', '.join(woken)}")
    outside, unknown = await outside_addresses(api, [e for e in new["emails"] if e not in old["emails"]])
    if outside:
        draft.risky.append(outside_note(outside, "at the next scheduled send, or at once with execute_sharing_task"))
        if unknown:
            draft.risky.append(unknown)


def patch_content(draft: PatchDraft, content: Content | None) -> None:
    if content is None:
        return
    templates = content.templates(draft.current.type)
    before = [template_view(t) for t in draft.current.templates]
    after = [template_view(TemplateDoc.model_validate(t)) for t in templates]
    if after == before:
        return
    draft.replace("/templates", templates, f"content: {content_line(before)} -> {content_line(after)}")
    draft.risky.append("replaces what the report shows: recipients receive other sheets or charts from now on")


def patch_transport(
    draft: PatchDraft, transport: list[Channel] | None, folder: str | None, connection: str | None
) -> None:
    current = draft.current
    before = current.transport_channels
    if transport is not None or folder is not None or connection is not None:
        # Checked as the task will be after the patch: "" removes a folder or connection.
        channels = list(dict.fromkeys(transport)) if transport is not None else before
        after_folder = current.share_point_folder if folder is None else folder
        after_connection = current.data_connection_id if connection is None else connection
        problem = transport_problem(channels, after_folder or None, after_connection or None)
        if problem:
            raise InvalidInput(problem)
        if channels != before:
            draft.replace("/transportChannels", channels, f"transport: {before} -> {channels}")
            lost = [c for c in before if c not in channels]
            if lost:
                draft.risky.append(f"stops delivery by {' and '.join(lost)} to every recipient")
    draft.text("/sharePointFolder", current.share_point_folder, folder, "SharePoint folder")
    draft.text("/dataConnectionID", current.data_connection_id, connection, "data connection")


def patch_bookmark(draft: PatchDraft, bookmark_id: str | None) -> None:
    if draft.text("/bookmarkId", draft.current.bookmark_id, bookmark_id, "bookmark (filter)"):
        draft.risky.append("changes the selection filter (bookmark): recipients see other data from now on")


async def plan_patch(
    api: SharingService,
    task_id: str,
    name: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    enabled: bool | None = None,
    owner_id: str | None = None,
    schedule: SharingSchedule | None = None,
    recipients: Recipients | None = None,
    content: Content | None = None,
    transport: list[Channel] | None = None,
    sharepoint_folder: str | None = None,
    data_connection_id: str | None = None,
    bookmark_id: str | None = None,
) -> Plan:
    draft = PatchDraft(await api.get(task_id))
    patch_basics(draft, name, description, tags)
    await patch_enabled_and_owner(api.names, draft, enabled, owner_id)
    patch_schedule(draft, schedule)
    await patch_recipients(api, draft, recipients)
    patch_content(draft, content)
    patch_transport(draft, transport, sharepoint_folder, data_connection_id)
    patch_bookmark(draft, bookmark_id)
    if not draft.ops:
        raise InvalidInput("the task already has these values; nothing to change")
    return Plan(
        action=f"Change {await task_label(api.names, draft.current)}",
        changes=draft.changes,
        state=draft.current.wire(),
        notes=draft.risky,
        needs_consent=bool(draft.risky),
        payload=draft.ops,
        diff=draft.diff(),
    )


@destructive("Change sharing task", plan=plan_patch, idempotent=True)
async def patch_sharing_task(
    api: SharingService,
    plan: Plan,
    task_id: TaskId,
    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
    description: Annotated[str | None, Field(max_length=255, description='"" removes it.')] = None,
    tags: Annotated[list[str] | None, Field(max_length=20)] = None,
    enabled: bool | None = None,
    owner_id: Annotated[str | None, Field(min_length=1, max_length=128, description="New owner's user id.")] = None,
    schedule: SharingSchedule | None = None,
    recipients: Annotated[
        Recipients | None, Field(description="Replaces the list; distribution-list members stay.")
    ] = None,
    content: Annotated[Content | None, Field(description="Replaces what the report shows.")] = None,
    transport: Annotated[list[Channel] | None, Field(min_length=1, max_length=2)] = None,
    sharepoint_folder: Annotated[str | None, Field(max_length=1000, description='"" removes it.')] = None,
    data_connection_id: Annotated[str | None, Field(max_length=128, description='"" removes it.')] = None,
    bookmark_id: Annotated[str | None, Field(max_length=128, description='Filter; "" removes it.')] = None,
) -> PatchResult:
    """Change only the given fields. Ones that take something away or send data out (disable, owner, recipients,
    channel, content, filter, far start, outside addresses) ask the user first."""
    await api.patch(task_id, plan.payload)
    shown = [f"{o['op']} {o['path']}" for o in plan.payload]
    after, note = await read_after(api.get(task_id), "the task")
    if after is None:
        return PatchResult(ops=shown, note=note)
    known = await known_names(api.names, [after], recipient_user_ids(after))
    return PatchResult(task=SharingTaskDetail.of(after, known), ops=shown, text=task_text(after))


# Delete, cancel, execute, executions ------------------------------------------------------------------


async def plan_delete(api: SharingService, task_id: str) -> Plan:
    current = await api.get(task_id)
    return Plan(
        action=f"Delete {await task_label(api.names, current)}",
        changes=[f"the task, its schedule and execution history; {recipients_line(current.recipients)}"],
        state=current.wire(),
        notes=["This cannot be undone; recipients stop receiving the report."],
    )


@destructive("Delete sharing task", plan=plan_delete, idempotent=True)
async def delete_sharing_task(api: SharingService, plan: Plan, task_id: TaskId) -> Done:
    """Delete a sharing task."""
    await api.delete(task_id)
    return Done(id=task_id, done="deleted")


async def plan_cancel(api: SharingService, task_id: str) -> Plan:
    current = await api.get(task_id)
    label = await task_label(api.names, current)
    active = [e for e in (await api.executions(task_id, limit=50)).items if e.running]
    if not active:
        raise InvalidInput(f"{label} has no execution in progress; nothing to cancel")
    known = await known_names(api.names, [], (e.target_user.value for e in active if e.target_user.type == "user"))
    targets = [_delivery(ExecutionRow.of(e, known)) or e.id for e in active]
    return Plan(
        action=f"Cancel the running execution of {label}",
        changes=[f"{len(active)} in-progress deliveries stop: {', '.join(targets[:10])}"],
        state=[e.id for e in active],
        notes=["Recipients not yet served will not get this run's report."],
    )


@destructive("Cancel sharing task run", plan=plan_cancel, idempotent=True)
async def cancel_sharing_task(api: SharingService, plan: Plan, task_id: TaskId) -> Done:
    """Cancel the task's execution in progress."""
    await api.cancel(task_id)
    return Done(id=task_id, done="cancel requested")


class Deliveries:
    """The executions one execute makes (one per recipient): those not there at the first look, before the start."""

    def __init__(self, api: SharingTasksApi, task_id: str) -> None:
        self.api = api
        self.task_id = task_id
        self.before: set[str] | None = None

    async def latest(self) -> list[ExecutionDoc] | None:
        page = await self.api.executions(self.task_id, limit=100)
        if self.before is None:
            self.before = {e.id for e in page.items}
            return None
        return [e for e in page.items if e.id not in self.before] or None

    def watch(self) -> RunWatch[list[ExecutionDoc]]:
        return RunWatch(
            latest=self.latest,
            run_id=lambda run: ",".join(sorted(e.id for e in run)),
            ended=lambda run: all(e.final for e in run),
            say=lambda run: f"{sum(e.final for e in run or [])}/{len(run or [])} deliveries done",
        )


def _delivery(row: ExecutionRow) -> str | None:
    """A delivery's recipient for a preview: "user:<id> ('Bob Builder')"."""
    return f"{row.recipient} ({row.recipient_name})" if row.recipient_name else row.recipient


async def execution_rows(names: Names, docs: list[ExecutionDoc]) -> list[ExecutionRow]:
    """Rows naming each user recipient: one users request for the page."""
    known = await known_names(names, [], (e.target_user.value for e in docs if e.target_user.type == "user"))
    return [ExecutionRow.of(e, known) for e in docs]


async def plan_execute(api: SharingService, task_id: str) -> Plan:
    """A send e-mails every recipient and cannot be called back. A first send acts at once (sending is what the
    caller asked for, and the tool is annotated destructive so a host may ask too); a repeat send of the task
    within REPEAT_SEND would mail everyone the same report again, so it asks first."""
    current = await api.get(task_id)
    last = api.last_send(current)
    since = datetime.now(UTC) - last if last else None
    repeat = since is not None and since < REPEAT_SEND
    notes = ["Sent reports cannot be called back."]
    if repeat and last is not None and since is not None:
        ago = f"{int(since.total_seconds() // 60)} min ago"
        notes.insert(0, f"it was sent at {utc_z(last)} ({ago}): every recipient gets the report again")
    return Plan(
        action=f"Send {await task_label(api.names, current)} now",
        changes=[f"e-mails or uploads the report to {recipients_line(current.recipients)}"],
        state={"task": task_id, "last_send": utc_z(last) if last else None},
        notes=notes,
        needs_consent=repeat,
    )


@destructive("Execute sharing task", plan=plan_execute)
async def execute_sharing_task(
    api: SharingService,
    plan: Plan,
    ctx: Context,
    task_id: TaskId,
    wait: bool = False,
    timeout_seconds: WaitSeconds = 60,
) -> ExecuteResult:
    """Send the task's report now to all its recipients (cannot be undone); a repeat send within an hour asks
    first. wait=true follows the deliveries to the end."""

    async def start() -> None:
        await api.execute(task_id)
        api.sent[task_id] = datetime.now(UTC)

    followed = await follow(
        Deliveries(api, task_id).watch(),
        ctx=ctx,
        start=start,
        wait=wait,
        timeout_seconds=timeout_seconds,
        check_with=CHECK_WITH,
    )
    result = ExecuteResult(task_id=task_id, started=True)
    result.executions = await execution_rows(api.names, followed.run or [])
    result.note = followed.note
    if not wait:
        result.note = result.note or f"Follow it with {CHECK_WITH}."
    elif followed.waited_seconds is not None:
        result.waited_seconds = followed.waited_seconds
        result.wait_ended = "finished" if followed.finished else "timeout"
        failed = [e for e in result.executions if e.status == "failed"]
        if followed.finished and failed:
            result.note = f"{len(failed)} deliveries failed; get_sharing_task_execution says why."
    return result


@read("List sharing task executions")
async def list_sharing_task_executions(
    api: SharingService,
    task_id: TaskId,
    status: Literal["successful", "failed"] | None = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ExecutionPage:
    """A task's deliveries, newest first: status, recipient, error codes."""
    page = await api.executions(task_id, limit=limit, status=status, cursor=cursor)
    rows = await execution_rows(api.names, page.items)
    named = any(r.recipient_name for r in rows)
    return ExecutionPage(
        task_id=task_id,
        executions=rows,
        total=page.total,
        next_cursor=page.next_cursor,
        note=" ".join(filter(None, (EXECUTION_TEXT_NOTE if named else None, page.cut_note))) or None,
    )


@read("Get sharing task execution")
async def get_sharing_task_execution(
    api: SharingService, task_id: TaskId, execution_id: ExecutionId
) -> ExecutionDetail:
    """One delivery: status, recipient, errors (why a report did not arrive), files."""
    doc = await api.execution(task_id, execution_id)
    target = doc.target_user
    known = await known_names(api.names, [], [target.value] if target.type == "user" else [])
    return ExecutionDetail.of(doc, known)


# Settings -------------------------------------------------------------------------------------------


@read("Get sharing settings")
async def get_sharing_settings(api: SharingTasksApi) -> SharingSettingsView:
    """Tenant sharing settings: sharing and report subscriptions on/off, recipient limits, license."""
    return SharingSettingsView.of(await api.settings())


async def plan_settings(
    api: SharingTasksApi, sharing_enabled: bool | None = None, report_subscription_enabled: bool | None = None
) -> Plan:
    current = await api.settings()
    ops: list[dict[str, Any]] = []
    changes: list[str] = []
    notes: list[str] = []
    for key, before, value in (
        ("enable-sharing", current.enable_sharing, sharing_enabled),
        ("enable-report-subscription", current.enable_report_subscription, report_subscription_enabled),
    ):
        if value is not None and value != before:
            ops.append({"op": "replace", "path": f"/{key}", "value": value})
            changes.append(f"{key}: {before} -> {value}")
            if not value:
                notes.append(f"turning {key} off stops it for every user of the tenant")
    if not ops:
        raise InvalidInput("the settings already have these values; nothing to change")
    notes.append("Only a tenant admin may change these settings.")
    return Plan(
        action="Change the tenant's sharing settings", changes=changes, state=current.wire(), notes=notes, payload=ops
    )


@destructive("Update sharing settings", plan=plan_settings, idempotent=True)
async def update_sharing_settings(
    api: SharingTasksApi,
    plan: Plan,
    sharing_enabled: bool | None = None,
    report_subscription_enabled: bool | None = None,
) -> SharingSettingsView:
    """Turn sharing or report subscriptions on/off tenant-wide (tenant admin)."""
    await api.patch_settings(plan.payload)
    return SharingSettingsView.of(await api.settings())


def source(clients: Deps) -> SharingTaskSource:
    return SharingTaskSource(SharingTasksApi(clients.qlik))
