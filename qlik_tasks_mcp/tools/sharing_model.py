"""Sharing tasks: typed inputs turned into the bodies the spec takes, and compact views of what the API answers."""

import re
from typing import Any, Literal

from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule import end_after_change, rrule_lines, start_after_change, time_zone
from qlik_tasks_mcp.client.schedule_text import describe_schedule
from qlik_tasks_mcp.client.sharing_tasks import recipient_values
from qlik_tasks_mcp.tools.fence import untrusted
from qlik_tasks_mcp.tools.model import Compact, Input

SharingType = Literal["sheet-sharing", "chart-sharing", "chart-monitoring", "template-sharing"]
Channel = Literal["email", "sharepoint"]
# Good enough to catch typos before the tenant does; the tenant has the last word.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_RRULES = 5
FILE_TIMESTAMPS = Literal["yyyy-MM-dd", "yyyy-MM-dd_HH-mm", "yyyyMMdd", "yyyyMMdd_HH-mm"]

Id = Field(min_length=1, max_length=128)


class Recipients(Input):
    """Who receives the report. The whole list: on a patch it replaces the current one."""

    user_ids: list[str] = Field([], max_length=1000, description="Qlik user ids.")
    group_ids: list[str] = Field([], max_length=1000, description="Qlik group ids.")
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
    """When the report goes out: RRULE lines expanded in an IANA zone from start to end."""

    recurrence: list[str] = Field(
        min_length=1, max_length=MAX_RRULES, description="1-5 lines like RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=7."
    )
    time_zone: str = Field(max_length=64, description="IANA zone, e.g. Europe/Zurich.")
    start: str | None = Field(
        None, max_length=40, description="Local start, YYYY-MM-DDTHH:MM:SS; default now (patch: keep current)."
    )
    end: str | None = Field(
        None, max_length=40, description='Local end; default never (patch: keep current, "" clears).'
    )

    def to_api(self, current: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `scheduleOptions` body; on a patch, `current` supplies the start and end the caller left out."""
        zone = time_zone(self.time_zone)
        lines = rrule_lines(self.recurrence)
        for index, line in enumerate(lines):
            if "UNTIL=" in line.upper():
                raise InvalidInput(f"recurrence[{index}]: UNTIL is not allowed in sharing schedules; use end instead")
        current = current or {}
        body: dict[str, Any] = {"timezone": self.time_zone, "recurrence": lines}
        start = start_after_change(self.start, current.get("startDateTime"), None)
        if start:
            body["startDateTime"] = start
        body["endDateTime"] = end_after_change(self.end, current.get("endDateTime"), start, zone)
        return body


def schedule_line(options: dict[str, Any]) -> str:
    start, end = options.get("startDateTime") or "now", options.get("endDateTime") or "never"
    return f"{options.get('recurrence')} {options.get('timezone')} from {start} until {end}"


class Chart(Input):
    """A chart (visualization) on a sheet, for chart-sharing and chart-monitoring."""

    sheet_id: str = Id
    object_id: str = Id
    width_px: int = Field(1200, ge=100, le=8000)
    height_px: int = Field(800, ge=100, le=8000)


class Content(Input):
    """What the report shows: sheets (sheet-sharing) or one chart (chart-sharing, chart-monitoring)."""

    app_id: str = Id
    sheet_ids: list[str] = Field([], max_length=50, description="sheet-sharing: the sheets, in order.")
    chart: Chart | None = Field(None, description="chart-sharing/chart-monitoring: the chart.")
    format: Literal["pdf", "pptx"] = Field("pdf", description="sheet-sharing file format.")
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


def transport_problem(channels: list[str], folder: str | None, connection: str | None) -> str | None:
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
    app: str | None = None
    owner: str | None = None
    enabled: bool
    status: str | None = None
    next_run: str | None = None
    last_run: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "SharingTaskRow":
        schedule = raw.get("scheduleOptions") or {}
        return cls(
            id=raw.get("id", ""),
            name=raw.get("name", ""),
            type=raw.get("type", ""),
            app=raw.get("appName") or raw.get("appId") or None,
            owner=raw.get("ownerName") or raw.get("owner") or None,
            enabled=is_enabled(raw),
            status=raw.get("statusCode") or None,
            next_run=raw.get("nextScheduledRun") or schedule.get("nextExecutionTime") or None,
            last_run=raw.get("lastExecutionDate") or raw.get("lastRun") or None,
        )


def is_enabled(raw: dict[str, Any]) -> bool:
    return bool(raw.get("enabled", raw.get("enabledByUser", True))) and raw.get("enabledBySystem", True) is not False


RecipientKind = Literal["user", "group", "email", "list-user", "list-group"]


class RecipientView(Compact):
    kind: RecipientKind = Field(description="list-user/list-group: members of the task's distribution list.")
    value: str
    enabled: bool = True
    errors: list[str] = []


class TemplateView(Compact):
    type: str
    format: str | None = None
    app_id: str | None = None
    sheets: list[str] = []
    chart: str | None = None
    file_name: str | None = None


class SharingTaskDetail(SharingTaskRow):
    app_id: str | None = None
    owner_id: str | None = None
    description: str | None = None
    tags: list[str] = []
    schedule: str | None = None
    recurrence: list[str] = []
    time_zone: str | None = None
    on_app_reload: bool = False
    recipients: list[RecipientView] = []
    templates: list[TemplateView] = []
    transport: list[str] = []
    sharepoint_folder: str | None = None
    data_connection_id: str | None = None
    status_label: str | None = None
    task_errors: list[str] = []
    email_subject: str | None = None
    failed_executions_in_a_row: int | None = None
    created: str | None = None
    updated: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "SharingTaskDetail":
        row = SharingTaskRow.of(raw).model_dump()
        schedule = raw.get("scheduleOptions") or {}
        lines = schedule.get("recurrence") or []
        zone = schedule.get("timezone") or None
        trigger = raw.get("trigger") or {}
        email = raw.get("emailContent") or {}
        return cls(
            **row,
            app_id=raw.get("appId") or None,
            owner_id=raw.get("owner") or None,
            description=raw.get("description") or None,
            tags=raw.get("tags") or [],
            schedule=describe_schedule(lines, zone, schedule.get("startDateTime"), schedule.get("endDateTime"))
            if lines
            else None,
            recurrence=lines,
            time_zone=zone,
            on_app_reload=bool(trigger.get("executeOnAppReload")),
            recipients=recipient_views(raw.get("recipients")),
            templates=[template_view(t) for t in raw.get("templates") or [] if isinstance(t, dict)],
            transport=raw.get("transportChannels") or [],
            sharepoint_folder=raw.get("sharePointFolder") or None,
            data_connection_id=raw.get("dataConnectionID") or None,
            status_label=raw.get("statusLabel") or None,
            task_errors=[f"{e.get('value')} at {e.get('timestamp')}" for e in raw.get("taskErrors") or []],
            email_subject=email.get("subject") or None,
            failed_executions_in_a_row=raw.get("failedExecutionsCount") or None,
            created=raw.get("dateCreated") or None,
            updated=raw.get("lastUpdated") or None,
        )


def recipient_views(recipients: dict[str, Any] | None) -> list[RecipientView]:
    out: list[RecipientView] = []
    recipients = recipients or {}
    kinds: tuple[tuple[str, RecipientKind, str], ...] = (
        ("userIds", "user", "taskRecipientErrors"),
        ("groupIds", "group", "taskGroupRecipientErrors"),
        ("emailAddresses", "email", "taskRecipientErrors"),
        ("DLUsers", "list-user", "taskRecipientErrors"),
        ("DLGroups", "list-group", "taskGroupRecipientErrors"),
    )
    for key, kind, errors_key in kinds:
        for item in recipients.get(key) or []:
            if not isinstance(item, dict):
                item = {"value": item}
            enabled = item.get("enabled", True) is not False and item.get("enabledByUser", True) is not False
            enabled = enabled and item.get("enabledBySystem", True) is not False
            errors = [str(e.get("value")) for e in item.get(errors_key) or [] if isinstance(e, dict)]
            out.append(RecipientView(kind=kind, value=str(item.get("value", "")), enabled=enabled, errors=errors))
    return out


def template_view(raw: dict[str, Any]) -> TemplateView:
    sheets = [s.get("sheetId", "") for s in raw.get("multiSheetData") or [] if isinstance(s, dict)]
    sheet = raw.get("sheetData") or {}
    chart = raw.get("chartData") or {}
    return TemplateView(
        type=raw.get("type", ""),
        format=raw.get("subType") or None,
        app_id=chart.get("appId")
        or sheet.get("appId")
        or next((s.get("appId") for s in raw.get("multiSheetData") or [] if isinstance(s, dict)), None),
        sheets=sheets or ([sheet["sheetId"]] if sheet.get("sheetId") else []),
        chart=f"{chart.get('objectId')} on sheet {chart.get('sheetId')}" if chart.get("objectId") else None,
        file_name=raw.get("fileName") or None,
    )


def who(raw: dict[str, Any]) -> str:
    app = raw.get("appName") or raw.get("appId")
    return f"sharing task {raw.get('name')!r} ({raw.get('id')}, {raw.get('type')}, app {app})"


def recipients_line(recipients: dict[str, Any] | None) -> str:
    values = recipient_values(recipients)
    line = f"{len(values['users'])} users, {len(values['groups'])} groups, {len(values['emails'])} addresses"
    listed = len(values["list_users"]) + len(values["list_groups"])
    return line + (f", {listed} from a distribution list" if listed else "")


def replacement_recipients(current: dict[str, Any] | None, wanted: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The `/recipients` value for a patch, in the create request's shape, and the addresses it switches back on.

    Users and groups that stay keep their on/off and subscription switches (a replacement must not switch back
    on someone the owner switched off); distribution-list members, which come from the list and not from this
    tool, are carried over as they are. Addresses are plain strings in that shape, so a switched-off address
    that stays is switched on again: the caller is told.
    """
    current = current or {}

    def stored(key: str) -> dict[str, dict[str, Any]]:
        return {i.get("value", ""): i for i in current.get(key) or [] if isinstance(i, dict)}

    users, groups = stored("userIds"), stored("groupIds")
    out: dict[str, Any] = {}
    if wanted.get("userIds"):
        out["userIds"] = []
        for entry in wanted["userIds"]:
            before = users.get(entry["value"], {})
            kept = {k: before[k] for k in ("groups", "subscribed") if k in before}
            if before.get("enabledByUser") is False:
                kept["enabled"] = False
            out["userIds"].append(entry | kept)
    if wanted.get("groupIds"):
        out["groupIds"] = [
            g | ({"enabled": False} if groups.get(g["value"], {}).get("enabledByUser") is False else {})
            for g in wanted["groupIds"]
        ]
    if wanted.get("emailAddresses"):
        out["emailAddresses"] = wanted["emailAddresses"]
    for key in ("DLUsers", "DLGroups"):
        if current.get(key):
            out[key] = current[key]
    switched_off = {
        str(i.get("value"))
        for i in current.get("emailAddresses") or []
        if isinstance(i, dict) and i.get("enabled") is False
    }
    return out, [str(e) for e in wanted.get("emailAddresses") or [] if e in switched_off]


class ExecutionRow(Compact):
    id: str
    status: str
    started: str | None = None
    ended: str | None = None
    recipient: str | None = None
    reports: str | None = None
    error_codes: list[str] = []

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "ExecutionRow":
        target = raw.get("targetUser") or {}
        total = raw.get("totalCount")
        return cls(
            id=raw.get("id", ""),
            status=raw.get("status", ""),
            started=raw.get("startTime") or None,
            ended=raw.get("endTime") or raw.get("failedTime") or raw.get("cancelledTime") or None,
            recipient=f"{target.get('type')}:{target.get('value')}" if target.get("value") else None,
            reports=f"{raw.get('successCount', 0)}/{total} ok" if total else None,
            error_codes=[str(e.get("code")) for e in raw.get("errors") or [] if isinstance(e, dict) and e.get("code")],
        )


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

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "ExecutionDetail":
        row = ExecutionRow.of(raw).model_dump()
        errors = [
            f"{e.get('code', '?')}: {e.get('title', '')}" + (f" - {e['detail']}" if e.get("detail") else "")
            for e in raw.get("errors") or []
            if isinstance(e, dict)
        ]
        uploads = raw.get("totalUploadCount")
        return cls(
            **row,
            task_id=raw.get("sharingTaskID") or None,
            app_id=raw.get("appId") or None,
            triggered_by_reload=raw.get("reloadId") or None,
            failed_reports=raw.get("failedCount") or None,
            uploads=f"{raw.get('successUploadCount', 0)}/{uploads} uploaded" if uploads else None,
            files=[
                ExecutionFile(alias=f.get("fileAlias"), type=f.get("type"), file_id=f.get("fileID"))
                for f in raw.get("files") or []
                if isinstance(f, dict)
            ],
            errors=untrusted("\n".join(errors), "sharing execution errors") if errors else None,
        )


class SharingSettingsView(Compact):
    sharing_enabled: bool | None = None
    report_subscription_enabled: bool | None = None
    report_subscription_change: str | None = None
    max_recipients: int | None = None
    max_subscription_recipients: int | None = None
    reporting_license: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "SharingSettingsView":
        status = raw.get("reportSubscriptionStatus")
        since = raw.get("reportSubscriptionStatusChangeTime")
        return cls(
            sharing_enabled=raw.get("enable-sharing"),
            report_subscription_enabled=raw.get("enable-report-subscription"),
            report_subscription_change=f"{status} since {since}" if status and status != "none" else None,
            max_recipients=int(raw["maxRecipients"]) if isinstance(raw.get("maxRecipients"), int | float) else None,
            max_subscription_recipients=raw.get("maxSubscriptionRecipients"),
            reporting_license=raw.get("reporting-service-license-status"),
        )
