"""Qlik tasks and task chains, `/api/v1/tasks` (every endpoint is rate tier "special")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.resource import Doc, Listing, listing
from qlik_tasks_mcp.client.workflow import Trigger, reload_targets, triggers

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


class ScheduleDoc(Doc):
    """A start schedule: an ISO 8601 repeating interval or a cron expression, in a zone (absent: UTC)."""

    interval: str | None = None
    cron: str | dict[str, Any] | None = None
    timezone: str | None = None
    end_date_time: str | None = None

    @property
    def cron_expression(self) -> str | None:
        return self.cron.get("expression") if isinstance(self.cron, dict) else self.cron

    @property
    def zone(self) -> str:
        return self.timezone or "UTC"

    @property
    def text(self) -> str:
        """The schedule in one line: interval or cron, its zone, its end."""
        text = f"{self.interval or self.cron_expression or '?'} {self.zone}"
        return text + (f" until {self.end_date_time}" if self.end_date_time else "")


class StartDoc(Doc):
    # The API also takes a bare interval string, read as one in UTC.
    schedule: ScheduleDoc | str | None = None
    state_name: str | None = None


class TaskMetaDoc(Doc):
    owner_id: str | None = None
    disabled_code: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    updated_at: str | None = None


class TaskDoc(Doc):
    """A task: a Serverless Workflow document (start, events, states as sent) plus the service's fields."""

    id: str = ""
    name: str = ""
    enabled: bool = False
    description: str | None = None
    resource_id: str | None = None
    metadata: TaskMetaDoc = TaskMetaDoc()
    start: StartDoc | None = None
    events: list[Any] = []
    states: list[Any] = []

    @property
    def targets(self) -> list[tuple[str, bool]]:
        """(app id, partial) of every reload the task does, in order."""
        return reload_targets(self.states)

    @property
    def app_id(self) -> str | None:
        # Tasks made elsewhere may lack resourceId; the app they reload is then the one they are about.
        targets = self.targets
        return self.resource_id or (targets[0][0] if targets else None)

    @property
    def triggers(self) -> list[Trigger]:
        return triggers(self.events)

    @property
    def schedule(self) -> ScheduleDoc | None:
        stored = self.start.schedule if self.start else None
        if isinstance(stored, str):
            return ScheduleDoc(interval=stored, timezone="UTC")
        return stored

    @property
    def disabled_code(self) -> str | None:
        return None if self.enabled else self.metadata.disabled_code

    def workflow(self) -> dict[str, Any]:
        """start, events and states as the API has them."""
        sent = self.wire()
        return {k: sent[k] for k in ("start", "events", "states") if k in sent}

    def put_body(self) -> dict[str, Any]:
        """A PUT body that keeps the whole workflow, so a change of one field loses no other."""
        sent = self.wire()
        return {k: sent[k] for k in WRITABLE if k in sent}


class RunDoc(Doc):
    id: str = ""
    task_id: str = ""
    task_name: str | None = None
    status: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    triggered_by: str | None = None
    resource_id: str | None = None
    log: str | None = None


class TasksApi:
    def __init__(self, qlik: QlikClient) -> None:
        self.qlik = qlik

    def _one(self, task_id: str) -> str:
        return f"{BASE}/{path_segment(task_id, 'task_id')}"

    async def list(self, *, resource_id: str, sort: str, limit: int, cursor: str | None = None) -> Listing[TaskDoc]:
        params = {"resourceId": resource_id, "sort": sort, "limit": limit}
        return listing(await self.qlik.page(BASE, tier=TIER, params=params, cursor=cursor), TaskDoc)

    async def all(self, *, resource_id: str) -> AsyncIterator[TaskDoc]:
        params = {"resourceId": resource_id, "sort": "+createdAt", "limit": 100}
        async for raw in self.qlik.iterate(BASE, tier=TIER, params=params):
            yield TaskDoc.model_validate(raw)

    async def get(self, task_id: str) -> TaskDoc:
        return TaskDoc.model_validate(await self.qlik.json("GET", self._one(task_id), tier=TIER))

    async def create(self, body: dict[str, Any]) -> TaskDoc:
        return TaskDoc.model_validate(await self.qlik.json("POST", BASE, tier=TIER, body=body))

    async def replace(self, task_id: str, body: dict[str, Any]) -> TaskDoc:
        return TaskDoc.model_validate(await self.qlik.json("PUT", self._one(task_id), tier=TIER, body=body))

    async def delete(self, task_id: str) -> None:
        await self.qlik.json("DELETE", self._one(task_id), tier=TIER)

    async def start(self, task_id: str, source: str | None = None) -> None:
        params = {"source": source} if source else None
        await self.qlik.json("POST", f"{self._one(task_id)}/actions/start", tier=TIER, params=params)

    async def runs(self, task_id: str, *, sort: str, limit: int, cursor: str | None = None) -> Listing[RunDoc]:
        path = f"{self._one(task_id)}/runs"
        page = await self.qlik.page(path, tier=TIER, params={"sort": sort, "limit": limit}, cursor=cursor)
        return listing(page, RunDoc)

    async def resource_runs(
        self, resource_id: str, *, sort: str, limit: int, cursor: str | None = None
    ) -> Listing[RunDoc]:
        path = f"{BASE}/resources/{path_segment(resource_id, 'resource_id')}/runs"
        page = await self.qlik.page(path, tier=TIER, params={"sort": sort, "limit": limit}, cursor=cursor)
        return listing(page, RunDoc)

    async def last_run(self, task_id: str) -> RunDoc | None:
        """The task's latest run, or None when it has never run (the API answers 404 then)."""
        path = f"{self._one(task_id)}/runs/last"
        try:
            return RunDoc.model_validate(await self.qlik.json("GET", path, tier=TIER))
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
