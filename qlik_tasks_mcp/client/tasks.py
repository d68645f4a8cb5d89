"""Qlik tasks and task chains, `/api/v1/tasks` (every endpoint is rate tier "special")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.paging import Page
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier

BASE = "/api/v1/tasks"
TIER = Tier.SPECIAL
# What a PUT may carry: the workflow definition; id, metadata and resourceId are the service's.
WRITABLE = (
    "key",
    "name",
    "start",
    "events",
    "states",
    "enabled",
    "version",
    "keepActive",
    "annotations",
    "description",
    "specVersion",
)


def put_body(task: dict[str, Any]) -> dict[str, Any]:
    return {k: task[k] for k in WRITABLE if k in task}


class TasksApi:
    def __init__(self, qlik: QlikClient) -> None:
        self.qlik = qlik

    def _one(self, task_id: str) -> str:
        return f"{BASE}/{path_segment(task_id, 'task_id')}"

    async def list(self, *, resource_id: str, sort: str, limit: int, cursor: str | None = None) -> Page:
        params = {"resourceId": resource_id, "sort": sort, "limit": limit}
        return await self.qlik.page(BASE, tier=TIER, params=params, cursor=cursor)

    def all(self, *, resource_id: str) -> AsyncIterator[dict[str, Any]]:
        return self.qlik.iterate(
            BASE, tier=TIER, params={"resourceId": resource_id, "sort": "+createdAt", "limit": 100}
        )

    async def get(self, task_id: str) -> dict[str, Any]:
        return await self.qlik.json("GET", self._one(task_id), tier=TIER)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.qlik.json("POST", BASE, tier=TIER, body=body)

    async def replace(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.qlik.json("PUT", self._one(task_id), tier=TIER, body=body)

    async def delete(self, task_id: str) -> None:
        await self.qlik.json("DELETE", self._one(task_id), tier=TIER)

    async def start(self, task_id: str, source: str | None = None) -> dict[str, Any]:
        params = {"source": source} if source else None
        return await self.qlik.json("POST", f"{self._one(task_id)}/actions/start", tier=TIER, params=params) or {}

    async def runs(self, task_id: str, *, sort: str, limit: int, cursor: str | None = None) -> Page:
        path = f"{self._one(task_id)}/runs"
        return await self.qlik.page(path, tier=TIER, params={"sort": sort, "limit": limit}, cursor=cursor)

    async def resource_runs(self, resource_id: str, *, sort: str, limit: int, cursor: str | None = None) -> Page:
        path = f"{BASE}/resources/{path_segment(resource_id, 'resource_id')}/runs"
        return await self.qlik.page(path, tier=TIER, params={"sort": sort, "limit": limit}, cursor=cursor)

    async def last_run(self, task_id: str) -> dict[str, Any] | None:
        """The task's latest run, or None when it has never run (the API answers 404 then)."""
        path = f"{self._one(task_id)}/runs/last"
        try:
            return await self.qlik.json("GET", path, tier=TIER)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # A 404 is also what a missing task gets: tell the two apart so a typo is not "never ran".
            await self.get(task_id)
            return None

    async def run_log(self, task_id: str, run_id: str) -> str:
        path = f"{self._one(task_id)}/runs/{path_segment(run_id, 'run_id')}/log"
        body = await self.qlik.json("GET", path, tier=TIER, headers={"Accept": "application/json"})
        text = body.get("logContent") if isinstance(body, dict) else None
        return text if isinstance(text, str) else ""
