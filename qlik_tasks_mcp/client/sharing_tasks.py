"""Qlik sharing tasks, `/api/v1/sharing-tasks`: report subscriptions, chart sharing and monitoring, executions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from qlik_tasks_mcp.client.paging import Page
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier

BASE = "/api/v1/sharing-tasks"
SETTINGS = f"{BASE}/settings"
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


def recipient_limit(settings: dict[str, Any], task_type: str) -> int | None:
    """How many recipients the tenant takes on a task of this type (report subscriptions may have their own cap)."""
    limits = [settings.get("maxRecipients")]
    if task_type == "template-sharing":
        limits.append(settings.get("maxSubscriptionRecipients"))
    found = [int(x) for x in limits if isinstance(x, int | float) and x > 0]
    return min(found) if found else None


def recipient_values(recipients: dict[str, Any] | None) -> dict[str, list[str]]:
    """Users, groups, addresses and distribution-list members of a task, from the persisted shape (objects) or
    the request shape (strings)."""
    recipients = recipients or {}

    def values(key: str) -> list[str]:
        out = []
        for item in recipients.get(key) or []:
            value = item.get("value") if isinstance(item, dict) else item
            if isinstance(value, str) and value:
                out.append(value)
        return out

    return {
        "users": values("userIds"),
        "groups": values("groupIds"),
        "emails": values("emailAddresses"),
        "list_users": values("DLUsers"),
        "list_groups": values("DLGroups"),
    }


class SharingTasksApi:
    def __init__(self, qlik: QlikClient) -> None:
        self.qlik = qlik

    def _one(self, task_id: str) -> str:
        return f"{BASE}/{path_segment(task_id, 'task_id')}"

    async def list(self, params: dict[str, Any], *, limit: int, cursor: str | None = None) -> Page:
        return await self.qlik.page(
            BASE, tier=Tier.T1, params=params | {"limit": limit}, cursor=cursor, items_key="sharingTasks"
        )

    def all(self, *, app_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100, "sort": "+name"} | ({"appid": app_id} if app_id else {})
        return self.qlik.iterate(BASE, tier=Tier.T1, params=params, items_key="sharingTasks")

    async def get(self, task_id: str) -> dict[str, Any]:
        return await self.qlik.json("GET", self._one(task_id), tier=Tier.T1)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.qlik.json("POST", BASE, tier=Tier.T2, body=body)

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
    ) -> Page:
        params: dict[str, Any] = {"limit": limit, "sort": "-starttime"} | ({"status": status} if status else {})
        path = f"{self._one(task_id)}/executions"
        return await self.qlik.page(path, tier=Tier.T1, params=params, cursor=cursor, items_key="executions")

    async def execution(self, task_id: str, execution_id: str) -> dict[str, Any]:
        path = f"{self._one(task_id)}/executions/{path_segment(execution_id, 'execution_id')}"
        return await self.qlik.json("GET", path, tier=Tier.T1)

    async def settings(self) -> dict[str, Any]:
        return await self.qlik.json("GET", SETTINGS, tier=Tier.T1)

    async def patch_settings(self, ops: list[dict[str, Any]]) -> None:
        await self.qlik.json("PATCH", SETTINGS, tier=Tier.T2, body=ops)
