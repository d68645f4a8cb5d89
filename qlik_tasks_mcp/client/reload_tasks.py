"""Qlik reload tasks, `/api/v1/reload-tasks` (deprecated by Qlik for `/api/scheduling/tasks`, still served)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.resource import Doc, Listing, listing

BASE = "/api/v1/reload-tasks"
# What a PUT carries besides `state`: the TaskBase fields; the rest is the service's.
BASE_FIELDS = (
    "appId",
    "partial",
    "timeZone",
    "autoReload",
    "recurrence",
    "endDateTime",
    "startDateTime",
    "autoReloadPartial",
)


class ReloadTaskDoc(Doc):
    id: str
    app_id: str = ""
    state: str = ""
    partial: bool = False
    recurrence: list[str] = []
    time_zone: str = ""
    start_date_time: str = ""
    end_date_time: str = ""
    next_execution_time: str = ""
    last_execution_time: str = ""
    user_id: str = ""
    auto_reload: bool = False
    disabled_code: str = ""
    log: str = ""

    @property
    def enabled(self) -> bool:
        return self.state == "Enabled"

    def put_body(self) -> dict[str, Any]:
        """A PUT body that keeps everything the task has, so a change of one field loses no other."""
        sent = self.wire()
        body = {k: sent[k] for k in BASE_FIELDS if k in sent}
        body["state"] = self.state or "Enabled"
        return body


class ReloadTasksApi:
    def __init__(self, qlik: QlikClient) -> None:
        self.qlik = qlik

    def _one(self, task_id: str) -> str:
        return f"{BASE}/{path_segment(task_id, 'task_id')}"

    async def list(
        self, *, app_id: str | None = None, partial: bool | None = None, limit: int = 20, cursor: str | None = None
    ) -> Listing[ReloadTaskDoc]:
        params: dict[str, Any] = {"limit": limit}
        if app_id:
            params["appId"] = app_id
        if partial is not None:
            params["partial"] = "true" if partial else "false"
        return listing(await self.qlik.page(BASE, tier=Tier.T1, params=params, cursor=cursor), ReloadTaskDoc)

    async def all(self, *, app_id: str | None = None) -> AsyncIterator[ReloadTaskDoc]:
        params: dict[str, Any] = {"limit": 100} | ({"appId": app_id} if app_id else {})
        async for raw in self.qlik.iterate(BASE, tier=Tier.T1, params=params):
            yield ReloadTaskDoc.model_validate(raw)

    async def get(self, task_id: str) -> ReloadTaskDoc:
        return ReloadTaskDoc.model_validate(await self.qlik.json("GET", self._one(task_id), tier=Tier.T1))

    async def create(self, body: dict[str, Any]) -> ReloadTaskDoc:
        return ReloadTaskDoc.model_validate(await self.qlik.json("POST", BASE, tier=Tier.T2, body=body))

    async def replace(self, task_id: str, body: dict[str, Any]) -> ReloadTaskDoc:
        return ReloadTaskDoc.model_validate(await self.qlik.json("PUT", self._one(task_id), tier=Tier.T2, body=body))

    async def delete(self, task_id: str) -> None:
        await self.qlik.json("DELETE", self._one(task_id), tier=Tier.T2)
