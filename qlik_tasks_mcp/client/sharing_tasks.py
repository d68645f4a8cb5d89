"""Qlik sharing tasks, `/api/v1/sharing-tasks`: report subscriptions, chart sharing and monitoring, executions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.resource import Doc, Listing, listing

BASE = "/api/v1/sharing-tasks"
SETTINGS = f"{BASE}/settings"
USERS = "/api/v1/users"
TYPES = ("template-sharing", "sheet-sharing", "chart-sharing", "chart-monitoring")
# The JSON Patch paths the spec allows on a task (`SharingTaskRecurringPatchRequestCompliant`). `/recipient`
# is left out on purpose: it is an undocumented singular twin of `/recipients`, which is what we send.
PATCH_PATHS = (
    "/name",
    "/tags",
    "/ownerId",
    "/enabled",
    "/description",
    "/scheduleOptions",
    "/templates",
    "/recipients",
    "/sharePointFolder",
    "/dataConnectionID",
    "/transportChannels",
    "/bookmarkId",
)
SETTINGS_PATCH_PATHS = ("/enable-sharing", "/enable-report-subscription")
FINAL_STATUSES = frozenset({"successful", "failed", "cancelled", "invalid"})
RUNNING_STATUSES = frozenset({"initialized", "in-progress", "presuccessful", "cancelling"})
# Addresses asked about per users request: the filter stays a short query string.
EMAILS_PER_LOOKUP = 20


def _objects(value: Any) -> Any:
    """A list of objects as a tenant may send it: anything that is not an object is not one of them."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# Models -------------------------------------------------------------------------------------------


class RecipientErrorDoc(Doc):
    value: str = ""
    timestamp: str = ""


class RecipientDoc(Doc):
    """A user, group, address or distribution-list member: an object when stored, a plain string in a request."""

    value: str = ""
    enabled: bool | None = None
    enabled_by_user: bool | None = None
    enabled_by_system: bool | None = None
    task_recipient_errors: Annotated[list[RecipientErrorDoc], BeforeValidator(_objects)] = []
    task_group_recipient_errors: Annotated[list[RecipientErrorDoc], BeforeValidator(_objects)] = []

    @model_validator(mode="before")
    @classmethod
    def _plain_value(cls, data: Any) -> Any:
        return {"value": data} if isinstance(data, str) else data

    @property
    def switched_on(self) -> bool:
        return self.enabled is not False and self.enabled_by_user is not False and self.enabled_by_system is not False


def _entries(value: Any) -> Any:
    return [item for item in value if isinstance(item, dict | str)] if isinstance(value, list) else []


Recipients = Annotated[list[RecipientDoc], BeforeValidator(_entries)]


class RecipientsDoc(Doc):
    user_ids: Recipients = []
    group_ids: Recipients = []
    email_addresses: Recipients = []
    dl_users: Recipients = Field([], validation_alias="DLUsers", serialization_alias="DLUsers")
    dl_groups: Recipients = Field([], validation_alias="DLGroups", serialization_alias="DLGroups")

    def values(self) -> dict[str, list[str]]:
        """Users, groups, addresses and distribution-list members, by value."""

        def of(entries: list[RecipientDoc]) -> list[str]:
            return [e.value for e in entries if e.value]

        return {
            "users": of(self.user_ids),
            "groups": of(self.group_ids),
            "emails": of(self.email_addresses),
            "list_users": of(self.dl_users),
            "list_groups": of(self.dl_groups),
        }


class ScheduleOptionsDoc(Doc):
    timezone: str = ""
    recurrence: list[str] = []
    start_date_time: str = ""
    end_date_time: str = ""
    next_execution_time: str = ""


class TriggerDoc(Doc):
    recurrence: list[str] = []
    execute_on_app_reload: bool = False


class SheetRefDoc(Doc):
    app_id: str = ""
    sheet_id: str = ""
    object_id: str = ""


class TemplateDoc(Doc):
    type: str = ""
    sub_type: str = ""
    multi_sheet_data: Annotated[list[SheetRefDoc], BeforeValidator(_objects)] = []
    sheet_data: SheetRefDoc | None = None
    chart_data: SheetRefDoc | None = None
    file_name: str = ""


class EmailContentDoc(Doc):
    subject: str = ""
    body: str = ""


class SharingTaskDoc(Doc):
    id: str = ""
    name: str = ""
    type: str = ""
    app_id: str = ""
    app_name: str = ""
    owner: str = ""
    owner_name: str = ""
    description: str = ""
    tags: list[str] = []
    enabled: bool | None = None
    enabled_by_user: bool | None = None
    enabled_by_system: bool | None = None
    status_code: str = ""
    status_label: str = ""
    next_scheduled_run: str = ""
    last_execution_date: str = ""
    last_run: str = ""
    schedule_options: ScheduleOptionsDoc = ScheduleOptionsDoc()
    trigger: TriggerDoc = TriggerDoc()
    recipients: RecipientsDoc = RecipientsDoc.model_validate({})
    templates: Annotated[list[TemplateDoc], BeforeValidator(_objects)] = []
    transport_channels: list[str] = []
    share_point_folder: str = ""
    data_connection_id: str = Field("", alias="dataConnectionID")
    bookmark_id: str = ""
    email_content: EmailContentDoc = EmailContentDoc()
    task_errors: Annotated[list[RecipientErrorDoc], BeforeValidator(_objects)] = []
    failed_executions_count: int | None = None
    date_created: str = ""
    last_updated: str = ""

    @property
    def is_enabled(self) -> bool:
        """On for the user (`enabled`, else `enabledByUser`) and not paused by the system."""
        by_user = self.enabled if self.enabled is not None else self.enabled_by_user
        return by_user is not False and self.enabled_by_system is not False

    @property
    def user_on(self) -> bool:
        """The user's own switch, whatever the system did."""
        switch = self.enabled_by_user if self.enabled_by_user is not None else self.enabled
        return switch is not False

    @property
    def next_run(self) -> str:
        return self.next_scheduled_run or self.schedule_options.next_execution_time

    @property
    def last_ran(self) -> str:
        return self.last_execution_date or self.last_run


class TargetDoc(Doc):
    type: str = ""
    value: str = ""


class ExecutionErrorDoc(Doc):
    code: str = ""
    title: str = ""
    detail: str = ""


class ExecutionFileDoc(Doc):
    file_alias: str | None = None
    type: str | None = None
    file_id: str | None = Field(None, alias="fileID")


class ExecutionDoc(Doc):
    id: str = ""
    status: str = ""
    start_time: str = ""
    end_time: str = ""
    failed_time: str = ""
    cancelled_time: str = ""
    target_user: TargetDoc = TargetDoc()
    success_count: int = 0
    total_count: int | None = None
    failed_count: int | None = None
    success_upload_count: int = 0
    total_upload_count: int | None = None
    errors: Annotated[list[ExecutionErrorDoc], BeforeValidator(_objects)] = []
    sharing_task_id: str = Field("", alias="sharingTaskID")
    app_id: str = ""
    reload_id: str = ""
    files: Annotated[list[ExecutionFileDoc], BeforeValidator(_objects)] = []

    @property
    def ended_at(self) -> str:
        return self.end_time or self.failed_time or self.cancelled_time

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATUSES

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class SharingSettingsDoc(Doc):
    enable_sharing: bool | None = Field(None, alias="enable-sharing")
    enable_report_subscription: bool | None = Field(None, alias="enable-report-subscription")
    report_subscription_status: str = ""
    report_subscription_status_change_time: str = ""
    max_recipients: int | float | None = None
    max_subscription_recipients: int | None = None
    reporting_license: str | None = Field(None, alias="reporting-service-license-status")

    def recipient_limit(self, task_type: str) -> int | None:
        """How many recipients the tenant takes on a task of this type (report subscriptions may have their own)."""
        limits = [self.max_recipients]
        if task_type == "template-sharing":
            limits.append(self.max_subscription_recipients)
        found = [int(x) for x in limits if x is not None and x > 0]
        return min(found) if found else None


class UserDoc(Doc):
    id: str = ""
    email: str = ""


# The API --------------------------------------------------------------------------------------------


def email_filter(addresses: list[str]) -> str | None:
    """The users filter that finds these addresses; None when one cannot be written inside quotes."""
    if any('"' in a or "\\" in a for a in addresses):
        return None
    return " or ".join(f'email eq "{a}"' for a in addresses)


class SharingTasksApi:
    def __init__(self, qlik: QlikClient) -> None:
        self.qlik = qlik

    def _one(self, task_id: str) -> str:
        return f"{BASE}/{path_segment(task_id, 'task_id')}"

    async def list(self, params: dict[str, Any], *, limit: int, cursor: str | None = None) -> Listing[SharingTaskDoc]:
        page = await self.qlik.page(
            BASE, tier=Tier.T1, params=params | {"limit": limit}, cursor=cursor, items_key="sharingTasks"
        )
        return listing(page, SharingTaskDoc)

    async def all(self, *, app_id: str | None = None) -> AsyncIterator[SharingTaskDoc]:
        params: dict[str, Any] = {"limit": 100, "sort": "+name"} | ({"appid": app_id} if app_id else {})
        async for raw in self.qlik.iterate(BASE, tier=Tier.T1, params=params, items_key="sharingTasks"):
            yield SharingTaskDoc.model_validate(raw)

    async def get(self, task_id: str) -> SharingTaskDoc:
        return SharingTaskDoc.model_validate(await self.qlik.json("GET", self._one(task_id), tier=Tier.T1))

    async def create(self, body: dict[str, Any]) -> SharingTaskDoc:
        return SharingTaskDoc.model_validate(await self.qlik.json("POST", BASE, tier=Tier.T2, body=body))

    async def patch(self, task_id: str, ops: list[dict[str, Any]]) -> None:
        await self.qlik.json("PATCH", self._one(task_id), tier=Tier.T2, body=ops)

    async def delete(self, task_id: str) -> None:
        await self.qlik.json("DELETE", self._one(task_id), tier=Tier.T2)

    async def cancel(self, task_id: str) -> None:
        await self.qlik.json("POST", f"{self._one(task_id)}/actions/cancel", tier=Tier.T2)

    async def execute(self, task_id: str) -> None:
        path_segment(task_id, "task_id")
        await self.qlik.json("POST", f"{BASE}/actions/execute", tier=Tier.T2, body={"sharingTaskID": task_id})

    async def executions(
        self, task_id: str, *, limit: int, status: str | None = None, cursor: str | None = None
    ) -> Listing[ExecutionDoc]:
        params: dict[str, Any] = {"limit": limit, "sort": "-starttime"} | ({"status": status} if status else {})
        path = f"{self._one(task_id)}/executions"
        page = await self.qlik.page(path, tier=Tier.T1, params=params, cursor=cursor, items_key="executions")
        return listing(page, ExecutionDoc)

    async def execution(self, task_id: str, execution_id: str) -> ExecutionDoc:
        path = f"{self._one(task_id)}/executions/{path_segment(execution_id, 'execution_id')}"
        return ExecutionDoc.model_validate(await self.qlik.json("GET", path, tier=Tier.T1))

    async def settings(self) -> SharingSettingsDoc:
        return SharingSettingsDoc.model_validate(await self.qlik.json("GET", SETTINGS, tier=Tier.T1))

    async def patch_settings(self, ops: list[dict[str, Any]]) -> None:
        await self.qlik.json("PATCH", SETTINGS, tier=Tier.T2, body=ops)

    async def tenant_emails(self, addresses: list[str]) -> set[str]:
        """Those of `addresses` (lower-cased) that are the e-mail of a user of this tenant (`GET /api/v1/users`).

        Raises ApiError when the users cannot be read (a key without the right to list them): the caller then
        treats every address as outside the tenant.
        """
        found: set[str] = set()
        unique = list(dict.fromkeys(a.lower() for a in addresses))
        for start in range(0, len(unique), EMAILS_PER_LOOKUP):
            chunk = unique[start : start + EMAILS_PER_LOOKUP]
            query = email_filter(chunk)
            if query is None:
                chunk = [a for a in chunk if email_filter([a]) is not None]
                query = email_filter(chunk) if chunk else None
            if not query:
                continue
            page = await self.qlik.page(USERS, tier=Tier.T1, params={"filter": query, "limit": 100})
            found |= {u.email.lower() for u in listing(page, UserDoc).items} & set(chunk)
        return found
