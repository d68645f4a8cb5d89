"""Qalyptus Cloud REST client on top of TenantHttp: the path table, the response envelope, the operations.

Every answer is `{"data", "isSuccess", "error", "errorDetails"}`; `isSuccess: false` is an ApiError even on
HTTP 200. Lists come whole (Qalyptus does not paginate). Qalyptus documents no rate limits: requests are
paced conservatively (Tier.QALYPTUS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import AliasChoices, ConfigDict, Field, ValidationError, model_validator

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput, error_from_response
from qlik_tasks_mcp.client.http import JSON_MAX_BYTES, LOG_JSON_MAX_BYTES, Params, Sink, TenantHttp
from qlik_tasks_mcp.client.qalyptus_paths import PathTable
from qlik_tasks_mcp.client.ratelimit import Tier, TierLimiter
from qlik_tasks_mcp.client.redact import redact
from qlik_tasks_mcp.client.resource import Doc
from qlik_tasks_mcp.client.store import Store

TIER = Tier.QALYPTUS
# What "Update task" takes: the whole task, so unchanged fields are sent back as they are.
UPDATE_FIELDS = (
    "name",
    "description",
    "isActive",
    "sendNotifications",
    "notifyIfError",
    "notifyIfWarning",
    "notifyIfSuccess",
    "notificationRecipients",
    "notificationCc",
    "notificationBcc",
    "testMode",
    "testModeRecipients",
)
# What "Update task email" takes, field by field: the whole e-mail, so unchanged fields are sent back as they are.
EMAIL_FIELDS = (
    "from",
    "ccBcc",
    "cc",
    "bcc",
    "ccQlikVariable",
    "bccQlikVariable",
    "subject",
    "message",
    "isActive",
    "oneToAll",
)
# "Add or update report" (a task's report), field by field; the objects are sent back as the tenant gave them.
TASK_REPORT_FIELDS = (
    "reportID",
    "format",
    "emailEmbedment",
    "emailAttachment",
    "fileOpenPassword",
    "fileWritePassword",
    "isOpenFilePasswordProtected",
    "isWriteFilePasswordProtected",
    "iterationOptions",
    "filters",
    "conditions",
    "storageServices",
    "hub",
    "fileStorage",
    "separatorOptions",
)
# "Add or update external event", field by field.
EVENT_FIELDS = (
    "name",
    "execution",
    "priority",
    "description",
    "appID",
    "qlikEvent",
    "startDate",
    "endDate",
    "timeZone",
)
REFUSED = "Qalyptus refused the request (isSuccess: false)."
# The spellings an execution's times are read under (not confirmed for Qalyptus Cloud).
STARTED = ("startDate", "startTime", "startedAt", "executionStartDate")
ENDED = ("endDate", "endTime", "endedAt", "executionEndDate")
CREATED = ("creationDate", "createdDate", "createdAt", "requestDate")
_TEXT_ACCEPT = "text/plain, application/json;q=0.9, */*;q=0.5"


class QalyptusDoc(Doc):
    """A Qalyptus resource: ids and numbers may come as numbers where text is read, and are read as text."""

    model_config = ConfigDict(coerce_numbers_to_str=True)


class QalyptusTaskDoc(QalyptusDoc):
    """A report task, field names as seen live."""

    id: str = ""
    name: str = ""
    description: str | None = None
    is_active: bool = False
    is_scheduled: bool | None = None
    test_mode: bool = False
    test_mode_recipients: str | None = None
    send_notifications: bool = False
    notify_if_success: bool | None = None
    notify_if_warning: bool | None = None
    notify_if_error: bool | None = None
    notification_recipients: str | None = None
    notification_cc: str | None = None
    notification_bcc: str | None = None
    # Shapes not confirmed (an object or a name): the tools render whatever came.
    project: Any = None
    owner: Any = None
    owner_name: Any = None
    last_execution: Any = None

    def update_body(self) -> dict[str, Any]:
        """The whole task as "Update task" takes it, unchanged fields sent back as they are."""
        sent = self.wire()
        body = {key: sent.get(key) for key in UPDATE_FIELDS}
        # Required booleans of the update body: a task that lacks them is sent as not active / not notifying.
        body["isActive"] = self.is_active
        body["sendNotifications"] = self.send_notifications
        body["testMode"] = self.test_mode
        return body


class TriggerDoc(QalyptusDoc):
    """A schedule or a Qlik event of a task. The misspelt names are Qalyptus's own: explicit aliases keep them."""

    id: str = ""
    name: str | None = None
    type: str | None = None
    is_active: bool | None = None
    frequency: str | None = None
    execution: Any = None
    priority: int | None = None
    time_zone: str | None = None
    time_zone_offset: Any = Field(None, alias="timeZoneOfset")
    start_date: str | None = None
    end_date: str | None = None
    at_hour: int | None = None
    at_minute: int | None = Field(None, alias="atMinut")
    every_hours: int | None = None
    from_hour: int | None = None
    from_minute: int | None = Field(None, alias="fromMinut")
    to_hour: int | None = None
    to_minute: int | None = Field(None, alias="toMinut")
    weekly_days: str | list[str] | None = None
    day: int | None = None
    month: int | None = None
    next_execution_date: str | None = None
    # A string or an object, as seen live.
    qlik_event: Any = None
    event_type: Any = None
    app_id: str | None = Field(None, validation_alias=AliasChoices("appId", "appID"))

    @property
    def scheduled(self) -> bool:
        """A schedule (it has a frequency), not a Qlik event."""
        return bool(self.frequency)


class StatusDoc(QalyptusDoc):
    """One execution of a task. Its field names are not confirmed: each is read under every plausible spelling,
    the first one given wins, and unknown status values pass through unchanged."""

    id: str | None = Field(None, validation_alias=AliasChoices("id", "requestID", "requestId"))
    task_id: str | None = Field(None, validation_alias=AliasChoices("taskID", "taskId"))
    task_name: str | None = None
    status: str = Field("", validation_alias=AliasChoices("status", "state", "executionStatus"))
    by: Any = Field(None, validation_alias=AliasChoices("executionType", "triggeredBy", "type"))
    created_at: str | None = Field(None, validation_alias=AliasChoices(*CREATED))
    started_at: str | None = Field(None, validation_alias=AliasChoices(*STARTED))
    ended_at: str | None = Field(None, validation_alias=AliasChoices(*ENDED))
    message: Any = Field(None, validation_alias=AliasChoices("message", "error", "errorMessage"))

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        # An empty spelling must not hide a later one that carries the value.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    @property
    def sort_time(self) -> str:
        """A sort key for newest first: start, else creation, time."""
        return self.started_at or self.created_at or ""


class RequestDoc(StatusDoc):
    """One on-demand request (a report generated on demand); field names unconfirmed, read like StatusDoc's."""

    report_id: str | None = Field(None, validation_alias=AliasChoices("reportID", "reportId"))
    report_name: str | None = None
    output_format: str | None = Field(None, validation_alias=AliasChoices("outputFormat", "format"))


class EmailDoc(QalyptusDoc):
    """A task's e-mail ("Get task email"); `from` is a Python keyword, hence the explicit alias."""

    sender: str | None = Field(None, alias="from")
    cc_bcc: bool | None = None
    cc: str | None = None
    bcc: str | None = None
    cc_qlik_variable: str | None = None
    bcc_qlik_variable: str | None = None
    subject: str | None = None
    message: str | None = None
    is_active: bool | None = None
    one_to_all: bool | None = None

    def update_body(self) -> dict[str, Any]:
        """The whole e-mail as "Update task email" takes it; required fields a tenant left out get defaults."""
        sent = self.wire()
        body = {key: sent.get(key) for key in EMAIL_FIELDS}
        body["from"] = body["from"] or ""
        body["subject"] = body["subject"] or ""
        body["isActive"] = bool(body["isActive"])
        body["ccBcc"] = bool(body["ccBcc"])
        body["oneToAll"] = bool(body["oneToAll"])
        return body


class TaskReportDoc(QalyptusDoc):
    id: str = ""
    report_id: str | None = Field(None, validation_alias=AliasChoices("reportID", "reportId"))
    name: str | None = Field(None, validation_alias=AliasChoices("reportName", "name"))
    format: str | None = Field(None, validation_alias=AliasChoices("format", "outputFormat"))
    email_attachment: bool | None = None
    email_embedment: bool | None = None

    def update_body(self) -> dict[str, Any]:
        """The task report as "Add or update report" takes it; the required flags default to false."""
        sent = self.wire()
        body = {key: sent.get(key) for key in TASK_REPORT_FIELDS if sent.get(key) is not None}
        body["reportID"] = self.report_id or ""
        body["format"] = self.format or ""
        body["emailAttachment"] = bool(self.email_attachment)
        body["emailEmbedment"] = bool(self.email_embedment)
        return body


class RecipientDoc(QalyptusDoc):
    id: str | None = None
    type: str | None = None
    name: str | None = Field(None, validation_alias=AliasChoices("name", "displayName"))
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None

    @property
    def full_name(self) -> str | None:
        if self.name:
            return self.name
        return f"{self.first_name or ''} {self.last_name or ''}".strip() or None


class ReportDoc(QalyptusDoc):
    id: str = ""
    name: str = ""
    type: str | None = None
    output_formats: list[str] = []
    is_iteration: bool | None = None
    template_file: str | None = None
    project: Any = None


DocT = TypeVar("DocT", bound=QalyptusDoc)


class QalyptusClient(TenantHttp):
    """One organization: its base URL and API key, and the process's path table."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str,
        *,
        paths: PathTable,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: TierLimiter | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            service=f"Qalyptus ({name})",
            timeout=timeout,
            transport=transport,
            limiter=limiter,
            store=store,
            key_setting="QALYPTUS_API_KEY (or the organization's key in QALYPTUS_ORGS)",
        )
        self.name = name
        self.paths = paths

    async def _send(
        self,
        op: str,
        ids: Mapping[str, str] | None = None,
        *,
        params: Params = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = JSON_MAX_BYTES,
    ) -> httpx.Response:
        endpoint = self.paths[op]
        path = endpoint.path(**(ids or {}))
        return await self.send(
            endpoint.method,
            path,
            tier=TIER,
            params=params,
            json=body,
            headers=headers,
            hint_404=endpoint.hint(),
            max_bytes=max_bytes,
        )

    def unwrap(self, response: httpx.Response) -> Any:
        """The envelope's data; isSuccess false is an error whatever the HTTP status said."""
        body = self.decode(response)
        if body is None:
            return None
        if not isinstance(body, dict) or "isSuccess" not in body:
            raise ApiError(
                response.status_code,
                f"{self.service} answered without its {{data, isSuccess}} envelope",
                method=response.request.method,
                path=response.request.url.path,
                hint="The base URL or a path may point at something other than the Qalyptus API: "
                "check QALYPTUS_URL / QALYPTUS_ORGS and QALYPTUS_PATHS.",
            )
        if body.get("isSuccess") is not True:
            raise error_from_response(response, REFUSED)
        return body.get("data")

    async def call(
        self, op: str, ids: Mapping[str, str] | None = None, *, params: Params = None, body: Any = None
    ) -> Any:
        return self.unwrap(await self._send(op, ids, params=params, body=body))

    async def items(self, op: str, ids: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """A whole list (no pagination in Qalyptus); anything but a list of objects is a clear error."""
        data = await self.call(op, ids)
        if data is None:
            return []
        if not isinstance(data, list):
            endpoint = self.paths[op]
            raise ApiError(
                200,
                f"{self.service} answered {op} with {type(data).__name__}, not a list",
                method=endpoint.method,
                path=endpoint.template,
                hint=endpoint.hint(),
            )
        return [item for item in data if isinstance(item, dict)]

    async def text(self, op: str, ids: Mapping[str, str]) -> str:
        """A log file: served as a file, or as text inside the envelope; read whole, up to 32 MiB.

        `read_lines` / `stream_log` read a log of any length keeping only the lines asked for."""
        response = await self._send(op, ids, headers={"Accept": _TEXT_ACCEPT}, max_bytes=LOG_JSON_MAX_BYTES)
        if "json" not in response.headers.get("content-type", ""):
            return redact(response.content.decode("utf-8", errors="replace"))
        return self.log_text(response)

    def log_text(self, response: httpx.Response) -> str:
        """The log text inside the envelope's data; a download link or anything else is a clear error."""
        data = self.unwrap(response)
        if isinstance(data, dict):
            data = next(
                (data[k] for k in ("content", "logContent", "log", "text") if isinstance(data.get(k), str)), data
            )
        if data is None:
            return ""
        if isinstance(data, str) and data.startswith(("https://", "http://")) and "\n" not in data.strip():
            # A download link to storage: the API key must not follow it, and this server fetches no other origin.
            raise ApiError(
                200,
                f"{self.service} answered with a download link instead of the log text",
                method=response.request.method,
                path=response.request.url.path,
                hint="Open the link in the Qalyptus portal; this server does not follow links off the tenant.",
            )
        if not isinstance(data, str):
            raise ApiError(
                200,
                f"{self.service} answered without log text",
                method=response.request.method,
                path=response.request.url.path,
            )
        return data

    async def stream_log(self, task_id: str, sink: Sink, *, smtp: bool = False, request: bool = False) -> Sink:
        """The task's (or, with `request`, an on-demand request's) log, line by line into `sink` (see
        client/lines.py): only what the sink keeps is held."""
        kind = "request" if request else "task"
        endpoint = self.paths[f"{kind}_smtp_log" if smtp else f"{kind}_log"]
        if endpoint.method != "GET":
            raise InvalidInput(f"the {endpoint.template} log path is not a GET in QALYPTUS_PATHS")
        return await self.read_lines(
            endpoint.path(id=task_id), sink, tier=TIER, headers={"Accept": _TEXT_ACCEPT}, hint_404=endpoint.hint()
        )

    def parse(self, doc: type[DocT], data: Any, op: str) -> DocT:
        """What the tenant sent, read once into its model; a field of an unexpected type is a clear error."""
        try:
            return doc.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the answer"
            endpoint = self.paths[op]
            raise ApiError(
                200,
                f"{self.service} answered {op} with an unexpected {where}: {first['msg']}",
                method=endpoint.method,
                path=endpoint.template,
            ) from None

    def maybe(self, doc: type[DocT], data: Any, op: str) -> DocT | None:
        """An answer that may or may not carry the resource (writes): the model when it does, else None."""
        return self.parse(doc, data, op) if isinstance(data, dict) and data.get("id") else None

    async def docs(self, doc: type[DocT], op: str, ids: Mapping[str, str] | None = None) -> list[DocT]:
        return [self.parse(doc, item, op) for item in await self.items(op, ids)]

    # Tasks
    async def tasks(self) -> list[QalyptusTaskDoc]:
        return await self.docs(QalyptusTaskDoc, "list_tasks")

    async def task(self, task_id: str) -> QalyptusTaskDoc:
        data = await self.call("get_task", {"id": task_id})
        if not isinstance(data, dict):
            raise ApiError(
                200, f"{self.service} answered get_task without a task", path=self.paths["get_task"].template
            )
        return self.parse(QalyptusTaskDoc, data, "get_task")

    async def update_task(self, task_id: str, body: dict[str, Any]) -> QalyptusTaskDoc | None:
        """The updated task, when Qalyptus answers with it."""
        return self.maybe(QalyptusTaskDoc, await self.call("update_task", {"id": task_id}, body=body), "update_task")

    async def delete_task(self, task_id: str) -> None:
        await self.call("delete_task", {"id": task_id})

    async def duplicate_task(self, task_id: str) -> QalyptusTaskDoc | None:
        """The copy, when Qalyptus answers with it."""
        return self.maybe(QalyptusTaskDoc, await self.call("duplicate_task", {"id": task_id}), "duplicate_task")

    async def recipients(self, task_id: str) -> list[RecipientDoc]:
        return await self.docs(RecipientDoc, "task_recipients", {"id": task_id})

    async def task_reports(self, task_id: str) -> list[TaskReportDoc]:
        return await self.docs(TaskReportDoc, "task_reports", {"id": task_id})

    async def triggers(self, task_id: str) -> list[TriggerDoc]:
        return await self.docs(TriggerDoc, "task_triggers", {"id": task_id})

    # Schedules
    async def schedules(self, task_id: str) -> list[TriggerDoc]:
        return await self.docs(TriggerDoc, "list_schedules", {"id": task_id})

    async def set_schedule(
        self, task_id: str, body: dict[str, Any], schedule_id: str | None = None
    ) -> TriggerDoc | None:
        """The schedule as saved, when Qalyptus answers with it."""
        params = {"taskScheduleID": schedule_id} if schedule_id else None
        data = await self.call("set_schedule", {"id": task_id}, params=params, body=body)
        return self.maybe(TriggerDoc, data, "set_schedule")

    async def delete_schedules(self, task_id: str, schedule_ids: list[str]) -> None:
        await self.call("delete_schedules", {"id": task_id}, body=schedule_ids)

    # Runs and status
    async def run(self, task_id: str) -> Any:
        return await self.call("run_task", {"id": task_id})

    async def stop(self, task_id: str) -> Any:
        return await self.call("stop", {"id": task_id})

    async def statuses(self) -> list[StatusDoc]:
        return await self.docs(StatusDoc, "task_statuses")

    async def status(self, task_id: str) -> StatusDoc | None:
        """The task's latest execution, or None when it has none."""
        data = await self.call("task_status", {"id": task_id})
        if isinstance(data, list):
            # The shape is not confirmed: a list of the task's runs is read as "the latest one".
            runs = [self.parse(StatusDoc, r, "task_status") for r in data if isinstance(r, dict)]
            return max(runs, key=lambda r: r.sort_time) if runs else None
        return self.parse(StatusDoc, data, "task_status") if isinstance(data, dict) else None

    async def log(self, task_id: str, *, smtp: bool = False) -> str:
        return await self.text("task_smtp_log" if smtp else "task_log", {"id": task_id})

    # Reports
    async def reports(self) -> list[ReportDoc]:
        return await self.docs(ReportDoc, "list_reports")

    async def users(self) -> list[dict[str, Any]]:
        return await self.items("list_users")

    async def groups(self) -> list[dict[str, Any]]:
        return await self.items("list_groups")

    async def projects(self) -> list[dict[str, Any]]:
        return await self.items("list_projects")

    # Creating, owning, e-mail, recipients, task reports, external events
    async def create_task(self, body: dict[str, Any]) -> QalyptusTaskDoc | None:
        """The new task, when Qalyptus answers with it."""
        return self.maybe(QalyptusTaskDoc, await self.call("create_task", body=body), "create_task")

    async def change_owner(self, task_id: str, owner_id: str) -> None:
        await self.call("change_owner", {"id": task_id, "ownerId": owner_id})

    async def email(self, task_id: str) -> EmailDoc:
        data = await self.call("task_email", {"id": task_id})
        return self.parse(EmailDoc, data if isinstance(data, dict) else {}, "task_email")

    async def update_email(self, task_id: str, body: dict[str, Any]) -> None:
        await self.call("update_task_email", {"id": task_id}, body=body)

    async def set_recipients(self, task_id: str, recipients: list[dict[str, str]]) -> None:
        await self.call("update_recipients", {"id": task_id}, body=recipients)

    async def delete_recipients(self, task_id: str, ids: list[str]) -> None:
        await self.call("delete_recipients", {"id": task_id}, body=ids)

    async def set_task_report(
        self, task_id: str, body: dict[str, Any], task_report_id: str | None = None
    ) -> TaskReportDoc | None:
        params = {"taskReportID": task_report_id} if task_report_id else None
        data = await self.call("set_task_report", {"id": task_id}, params=params, body=body)
        return self.maybe(TaskReportDoc, data, "set_task_report")

    async def delete_task_reports(self, task_id: str, ids: list[str]) -> None:
        await self.call("delete_task_reports", {"id": task_id}, body=ids)

    async def set_external_event(
        self, task_id: str, body: dict[str, Any], event_id: str | None = None
    ) -> TriggerDoc | None:
        params = {"taskExternalEventID": event_id} if event_id else None
        data = await self.call("set_external_event", {"id": task_id}, params=params, body=body)
        return self.maybe(TriggerDoc, data, "set_external_event")

    async def delete_external_events(self, task_id: str, ids: list[str]) -> None:
        await self.call("delete_external_events", {"id": task_id}, body=ids)

    # On-demand requests
    async def generate(self, report_id: str, output_format: str, body: dict[str, Any]) -> Any:
        """Qalyptus's answer to "Generate an on-demand report" (the request, or its id)."""
        return await self.call("generate_report", {"id": report_id, "outputFormat": output_format}, body=body)

    async def requests(self) -> list[RequestDoc]:
        return await self.docs(RequestDoc, "request_statuses")

    async def request(self, request_id: str) -> RequestDoc | None:
        data = await self.call("request_status", {"id": request_id})
        return self.parse(RequestDoc, data, "request_status") if isinstance(data, dict) else None

    async def delete_request(self, request_id: str) -> None:
        await self.call("delete_request", {"id": request_id})

    async def download(self, request_id: str) -> Any:
        """The generated file's URI in storage (or whatever Qalyptus answers with): never fetched here."""
        return await self.call("download_report", {"id": request_id})
