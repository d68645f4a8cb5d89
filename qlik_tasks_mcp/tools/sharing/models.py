"""Sharing tasks: typed inputs turned into the bodies the spec takes, and compact views of what the API answers."""

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule import end_after_change, read_schedule, rrule_lines, start_after_change, time_zone
from qlik_tasks_mcp.client.sharing_tasks import (
    ExecutionDoc,
    RecipientDoc,
    RecipientsDoc,
    ScheduleOptionsDoc,
    SharingSettingsDoc,
    SharingTaskDoc,
    TemplateDoc,
)
from qlik_tasks_mcp.tools.fence import one_line, quoted, tenant_text_note, untrusted_fields
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.names import NOT_VISIBLE, RowNames
from qlik_tasks_mcp.tools.sources import short_time

SharingType = Literal["sheet-sharing", "chart-sharing", "chart-monitoring", "template-sharing"]
Channel = Literal["email", "sharepoint"]
# Good enough to catch typos before the tenant does; the tenant has the last word.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_RRULES = 5
FILE_TIMESTAMPS = Literal["yyyy-MM-dd", "yyyy-MM-dd_HH-mm", "yyyyMMdd", "yyyyMMdd_HH-mm"]

Id = Field(min_length=1, max_length=128)
# Tenant names shown in rows: one line, at most this many characters (a longer one ends with "…").
NAME_CHARS = 200
# The row fields that hold tenant text, for the result's note.
ROW_TEXT = ("name", "app", "owner")
ROW_TEXT_NOTE = tenant_text_note(ROW_TEXT) + f' Names longer than {NAME_CHARS} characters end with "…".'
DETAIL_TEXT_NOTE = tenant_text_note((*ROW_TEXT, "recipient names")) + f' Names longer than {NAME_CHARS} end with "…".'
EXECUTION_TEXT_NOTE = tenant_text_note(["recipient_name"])
# Where a send, or a failure the listing does not show, is followed up.
CHECK_WITH = "list_sharing_task_executions"


class Recipients(Input):
    """Who receives the report."""

    user_ids: list[str] = Field([], max_length=1000)
    group_ids: list[str] = Field([], max_length=1000)
    emails: list[str] = Field([], max_length=1000, description="Addresses of people outside the tenant.")

    def to_api(self) -> dict[str, Any]:
        for label, values in (("user_ids", self.user_ids), ("group_ids", self.group_ids)):
            for value in values:
                if not value.strip() or len(value) > 128:
                    raise InvalidInput(f"recipients.{label}: {value[:40]!r} is not an id (1-128 characters)")
        bad = [e for e in self.emails if not _EMAIL.match(e) or len(e) > 254]
        if bad:
            raise InvalidInput(f"recipients.emails: {', '.join(repr(b[:60]) for b in bad[:5])} not email addresses")
        body: dict[str, Any] = {}
        if self.user_ids:
            body["userIds"] = [{"value": v} for v in dict.fromkeys(self.user_ids)]
        if self.group_ids:
            body["groupIds"] = [{"value": v} for v in dict.fromkeys(self.group_ids)]
        if self.emails:
            body["emailAddresses"] = list(dict.fromkeys(e.strip() for e in self.emails))
        return body

    def count(self) -> int:
        return len(set(self.user_ids)) + len(set(self.group_ids)) + len({e.strip() for e in self.emails})


class SharingSchedule(Input):
    """When the report goes out."""

    recurrence: list[str] = Field(
        min_length=1, max_length=MAX_RRULES, description="1-5 lines like RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=7."
    )
    time_zone: str = Field(max_length=64, description="IANA zone.")
    start: str | None = Field(None, max_length=40, description="Local YYYY-MM-DDTHH:MM:SS; default now (patch: kept).")
    end: str | None = Field(None, max_length=40, description='Local; default never (patch: kept, "" clears).')

    def to_api(self, current: ScheduleOptionsDoc | None = None) -> dict[str, Any]:
        """The `scheduleOptions` body; on a patch, `current` supplies the start and end the caller left out."""
        zone = time_zone(self.time_zone)
        lines = rrule_lines(self.recurrence)
        for index, line in enumerate(lines):
            if "UNTIL=" in line.upper():
                raise InvalidInput(f"recurrence[{index}]: UNTIL is not allowed in sharing schedules; use end instead")
        current = current or ScheduleOptionsDoc()
        body: dict[str, Any] = {"timezone": self.time_zone, "recurrence": lines}
        start = start_after_change(self.start, current.start_date_time or None, None)
        if start:
            body["startDateTime"] = start
        body["endDateTime"] = end_after_change(self.end, current.end_date_time or None, start, zone)
        return body


def schedule_line(options: ScheduleOptionsDoc) -> str:
    """A schedule in a preview: its rules in words (client.schedule.read_schedule), its start and end."""
    found = read_schedule(recurrence=options.recurrence, zone=options.timezone or None)
    start, end = options.start_date_time or "now", options.end_date_time or "never"
    return f"{found.shown if found else 'no recurrence'}, from {start} until {end}"


class Chart(Input):
    """A chart (visualization) on a sheet, for chart-sharing and chart-monitoring."""

    sheet_id: str = Id
    object_id: str = Id
    width_px: int = Field(1200, ge=100, le=8000)
    height_px: int = Field(800, ge=100, le=8000)


class Content(Input):
    """Sheets (sheet-sharing) or one chart (chart-sharing, chart-monitoring)."""

    app_id: str = Id
    sheet_ids: list[str] = Field([], max_length=50, description="In order.")
    chart: Chart | None = None
    format: Literal["pdf", "pptx"] = Field("pdf", description="sheet-sharing.")
    file_name: str | None = Field(None, max_length=200)
    file_timestamp: FILE_TIMESTAMPS | None = None

    def templates(self, task_type: str) -> list[dict[str, Any]]:
        if task_type == "template-sharing":
            raise InvalidInput(
                "template-sharing (report templates) cannot be created or re-templated through the API: the "
                "spec makes the template reference read-only. Create it in Qlik Cloud; it can then be listed, "
                "changed (schedule, recipients, enabled), executed and read here."
            )
        if task_type == "sheet-sharing":
            if not self.sheet_ids or self.chart is not None:
                raise InvalidInput("sheet-sharing takes content.sheet_ids (one or more sheets) and no chart")
            template: dict[str, Any] = {
                "type": "multi-sheet",
                "subType": self.format,
                "multiSheetData": [{"appId": self.app_id, "sheetId": s} for s in self.sheet_ids],
            }
        else:
            if self.chart is None or self.sheet_ids:
                raise InvalidInput(f"{task_type} takes content.chart (sheet_id, object_id) and no sheet_ids")
            template = {
                "type": "chart",
                "subType": "image",
                "chartData": {
                    "appId": self.app_id,
                    "sheetId": self.chart.sheet_id,
                    "objectId": self.chart.object_id,
                    "widthPx": self.chart.width_px,
                    "heightPx": self.chart.height_px,
                },
            }
        if self.file_name:
            template["fileName"] = self.file_name
        if self.file_timestamp:
            template["fileTimeStamp"] = self.file_timestamp
        return [template]


def transport_problem(channels: Sequence[str], folder: str | None, connection: str | None) -> str | None:
    if not channels:
        return "transport needs at least one channel: email and/or sharepoint"
    if "sharepoint" in channels and not (folder and connection):
        return "sharepoint needs sharepoint_folder and data_connection_id (the SharePoint data connection)"
    return None


# Views ----------------------------------------------------------------------------------------------


class SharingTaskRow(Compact):
    id: str
    name: str
    type: str
    app: str | None = Field(None, description="The app's name.")
    app_id: str | None = None
    owner: str | None = Field(None, description="The owner's name, with the status when not active.")
    owner_id: str | None = None
    enabled: bool
    status: str | None = None
    schedule: str | None = Field(None, description="When it sends, in words.")
    next_run: str | None = Field(None, description="UTC, to the minute.")
    last_run: str | None = Field(None, description="UTC, to the minute.")
    receives_as: list[str] = Field([], description="How the recipient asked for is among its recipients.")

    @classmethod
    def of(cls, doc: SharingTaskDoc, known: RowNames) -> "SharingTaskRow":
        return cls(**cls.row_fields(doc, known))

    @staticmethod
    def row_fields(doc: SharingTaskDoc, known: RowNames) -> dict[str, Any]:
        return {
            "id": doc.id,
            "name": one_line(doc.name, NAME_CHARS),
            "type": doc.type,
            # The tenant names the app and owner itself; the directory adds the owner's status, and a name
            # where the tenant left one out.
            "app": _shown(doc.app_name) or known.app(doc.app_id),
            "app_id": doc.app_id or None,
            "owner": _owner(doc, known),
            "owner_id": doc.owner or None,
            "enabled": doc.is_enabled,
            "status": doc.status_code or None,
            "schedule": schedule_words(doc),
            "next_run": short_time(doc.next_run),
            "last_run": short_time(doc.last_ran),
        }


def schedule_words(doc: SharingTaskDoc) -> str | None:
    """The schedule in words, and "after each app reload" when the task sends then."""
    options = doc.schedule_options
    lines, zone = options.recurrence, options.timezone or None
    found = read_schedule(
        recurrence=lines, zone=zone, start=options.start_date_time or None, end=options.end_date_time or None
    )
    parts = [found.shown if found else "", "after each app reload" if doc.trigger.execute_on_app_reload else ""]
    return "; ".join(p for p in parts if p) or None


def _owner(doc: SharingTaskDoc, known: RowNames) -> str | None:
    """The owner's name and status from the directory; the tenant's ownerName when the directory has no name."""
    found = known.user(doc.owner)
    if doc.owner_name and (found is None or found == f"({NOT_VISIBLE})"):
        return f"{_shown(doc.owner_name)} {found or ''}".strip()
    return found


def _shown(text: str) -> str | None:
    return one_line(text, NAME_CHARS) if text else None


RecipientKind = Literal["user", "group", "email", "list-user", "list-group"]


class RecipientView(Compact):
    kind: RecipientKind = Field(description="list-user/list-group: members of the task's distribution list.")
    value: str
    name: str | None = Field(None, description="A user's name and, when not active, status.")
    switched_off: bool | None = None
    errors: list[str] = []


class TemplateView(Compact):
    type: str
    format: str | None = None
    app_id: str | None = None
    sheets: list[str] = []
    chart: str | None = None
    file_name: str | None = None


class SharingTaskDetail(SharingTaskRow):
    tags: list[str] = []
    recurrence: list[str] = []
    time_zone: str | None = None
    on_app_reload: bool | None = None
    recipients: list[RecipientView] = []
    templates: list[TemplateView] = []
    transport: list[str] = []
    sharepoint_folder: str | None = None
    data_connection_id: str | None = None
    status_label: str | None = None
    task_errors: list[str] = []
    failed_executions_in_a_row: int | None = None
    created: str | None = None
    updated: str | None = None

    @classmethod
    def of(cls, doc: SharingTaskDoc, known: RowNames) -> "SharingTaskDetail":
        schedule = doc.schedule_options
        # Fetched whole: times as the tenant wrote them, beside the schedule's raw lines.
        fields: dict[str, Any] = cls.row_fields(doc, known)
        fields.update(next_run=doc.next_run or None, last_run=doc.last_ran or None)
        return cls(
            **fields,
            tags=[one_line(t, NAME_CHARS) for t in doc.tags],
            recurrence=schedule.recurrence,
            time_zone=schedule.timezone or None,
            on_app_reload=doc.trigger.execute_on_app_reload or None,
            recipients=recipient_views(doc.recipients, known),
            templates=[template_view(t) for t in doc.templates],
            transport=doc.transport_channels,
            sharepoint_folder=doc.share_point_folder or None,
            data_connection_id=doc.data_connection_id or None,
            status_label=doc.status_label or None,
            task_errors=[f"{e.value} at {e.timestamp}" for e in doc.task_errors],
            failed_executions_in_a_row=doc.failed_executions_count or None,
            created=doc.date_created or None,
            updated=doc.last_updated or None,
        )


def task_text(doc: SharingTaskDoc) -> str | None:
    """A task's free text in one fence: the description and the e-mail subject, each on one line."""
    fields = [("description", doc.description or None), ("e-mail subject", doc.email_content.subject or None)]
    return untrusted_fields(fields, "sharing task text") if any(v for _, v in fields) else None


def recipient_views(recipients: RecipientsDoc, known: RowNames) -> list[RecipientView]:
    out: list[RecipientView] = []
    kinds: tuple[tuple[list[RecipientDoc], RecipientKind, bool], ...] = (
        (recipients.user_ids, "user", False),
        (recipients.group_ids, "group", True),
        (recipients.email_addresses, "email", False),
        (recipients.dl_users, "list-user", False),
        (recipients.dl_groups, "list-group", True),
    )
    for entries, kind, group in kinds:
        for entry in entries:
            errors = entry.task_group_recipient_errors if group else entry.task_recipient_errors
            out.append(
                RecipientView(
                    kind=kind,
                    value=entry.value,
                    name=None if group or kind == "email" else known.user(entry.value),
                    switched_off=None if entry.switched_on else True,
                    errors=[e.value for e in errors],
                )
            )
    return out


def recipient_user_ids(doc: SharingTaskDoc) -> list[str]:
    """The user ids among a task's recipients (named ones and distribution-list members)."""
    values = doc.recipients.values()
    return values["users"] + values["list_users"]


def template_view(doc: TemplateDoc) -> TemplateView:
    sheets = [s.sheet_id for s in doc.multi_sheet_data]
    sheet, chart = doc.sheet_data, doc.chart_data
    app_ids = [chart.app_id if chart else "", sheet.app_id if sheet else ""] + [s.app_id for s in doc.multi_sheet_data]
    return TemplateView(
        type=doc.type,
        format=doc.sub_type or None,
        app_id=next((a for a in app_ids if a), None),
        sheets=sheets or ([sheet.sheet_id] if sheet and sheet.sheet_id else []),
        chart=f"{chart.object_id} on sheet {chart.sheet_id}" if chart and chart.object_id else None,
        file_name=doc.file_name or None,
    )


def who(doc: SharingTaskDoc, app: str, owner: str) -> str:
    """For previews and questions: the task, its app and its owner, each by name and id."""
    return f"sharing task {quoted(doc.name)} ({doc.id}, {doc.type}, app {app}, owner {owner})"


def recipients_line(recipients: RecipientsDoc) -> str:
    values = recipients.values()
    line = f"{len(values['users'])} users, {len(values['groups'])} groups, {len(values['emails'])} addresses"
    listed = len(values["list_users"]) + len(values["list_groups"])
    return line + (f", {listed} from a distribution list" if listed else "")


def replacement_recipients(current: RecipientsDoc, wanted: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The `/recipients` value for a patch, in the create request's shape, and the addresses it switches back on.

    Users and groups that stay keep their on/off and subscription switches (a replacement must not switch back
    on someone the owner switched off); distribution-list members, which come from the list and not from this
    tool, are carried over as they are. Addresses are plain strings in that shape, so a switched-off address
    that stays is switched on again: the caller is told.
    """
    users = {u.value: u for u in current.user_ids}
    groups = {g.value: g for g in current.group_ids}
    out: dict[str, Any] = {}
    if wanted.get("userIds"):
        out["userIds"] = [entry | _kept_switches(users.get(entry["value"])) for entry in wanted["userIds"]]
    if wanted.get("groupIds"):
        out["groupIds"] = [
            g | ({"enabled": False} if g["value"] in groups and groups[g["value"]].enabled_by_user is False else {})
            for g in wanted["groupIds"]
        ]
    if wanted.get("emailAddresses"):
        out["emailAddresses"] = wanted["emailAddresses"]
    sent = current.wire()
    for key in ("DLUsers", "DLGroups"):
        if sent.get(key):
            out[key] = sent[key]
    switched_off = {e.value for e in current.email_addresses if e.enabled is False}
    return out, [str(e) for e in wanted.get("emailAddresses") or [] if e in switched_off]


def _kept_switches(before: RecipientDoc | None) -> dict[str, Any]:
    if before is None:
        return {}
    sent = before.wire()
    kept = {k: sent[k] for k in ("groups", "subscribed") if k in sent}
    if before.enabled_by_user is False:
        kept["enabled"] = False
    return kept


class ExecutionRow(Compact):
    id: str
    status: str
    started: str | None = Field(None, description="UTC, to the minute.")
    ended: str | None = Field(None, description="UTC, to the minute.")
    recipient: str | None = None
    recipient_name: str | None = None
    reports: str | None = None
    error_codes: list[str] = []

    @classmethod
    def of(cls, doc: ExecutionDoc, known: RowNames) -> "ExecutionRow":
        return cls(**cls.row_fields(doc, known))

    @staticmethod
    def row_fields(doc: ExecutionDoc, known: RowNames) -> dict[str, Any]:
        target = doc.target_user
        return {
            "id": doc.id,
            "status": doc.status,
            "started": short_time(doc.start_time),
            "ended": short_time(doc.ended_at),
            "recipient": f"{target.type or None}:{target.value}" if target.value else None,
            "recipient_name": known.user(target.value) if target.type == "user" else None,
            "reports": f"{doc.success_count}/{doc.total_count} ok" if doc.total_count else None,
            "error_codes": [e.code for e in doc.errors if e.code],
        }


class ExecutionFile(Compact):
    alias: str | None = None
    type: str | None = None
    file_id: str | None = None


class ExecutionDetail(ExecutionRow):
    task_id: str | None = None
    app_id: str | None = None
    triggered_by_reload: str | None = None
    failed_reports: int | None = None
    uploads: str | None = None
    files: list[ExecutionFile] = []
    errors: str | None = Field(None, description="Error titles and details, as the tenant wrote them.")
    note: str | None = None

    @classmethod
    def of(cls, doc: ExecutionDoc, known: RowNames) -> "ExecutionDetail":
        errors = [f"{e.code or '?'}: {e.title}" + (f" - {e.detail}" if e.detail else "") for e in doc.errors]
        uploads = doc.total_upload_count
        fields: dict[str, Any] = cls.row_fields(doc, known)
        fields.update(started=doc.start_time or None, ended=doc.ended_at or None)
        return cls(
            **fields,
            task_id=doc.sharing_task_id or None,
            app_id=doc.app_id or None,
            triggered_by_reload=doc.reload_id or None,
            failed_reports=doc.failed_count or None,
            uploads=f"{doc.success_upload_count}/{uploads} uploaded" if uploads else None,
            files=[ExecutionFile(alias=f.file_alias, type=f.type, file_id=f.file_id) for f in doc.files],
            errors=untrusted_fields(
                [(f"error {n}", line) for n, line in enumerate(errors, 1)], "sharing execution errors"
            )
            if errors
            else None,
        )


class SharingSettingsView(Compact):
    sharing_enabled: bool | None = None
    report_subscription_enabled: bool | None = None
    report_subscription_change: str | None = None
    max_recipients: int | None = None
    max_subscription_recipients: int | None = None
    reporting_license: str | None = None

    @classmethod
    def of(cls, doc: SharingSettingsDoc) -> "SharingSettingsView":
        status, since = doc.report_subscription_status, doc.report_subscription_status_change_time or None
        return cls(
            sharing_enabled=doc.enable_sharing,
            report_subscription_enabled=doc.enable_report_subscription,
            report_subscription_change=f"{status} since {since}" if status and status != "none" else None,
            max_recipients=int(doc.max_recipients) if doc.max_recipients is not None else None,
            max_subscription_recipients=doc.max_subscription_recipients,
            reporting_license=doc.reporting_license,
        )
