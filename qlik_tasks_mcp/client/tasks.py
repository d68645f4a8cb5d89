"""Qlik tasks and task chains: the Scheduling Tasks API (`/api/scheduling/tasks`), or `/api/v1/tasks` where a
tenant lacks it (`QLIK_TASKS_API`: auto | scheduling | v1).

Both serve one Task document. Scheduling paces reads as tier 1 and writes as tier 2; v1 is tier "special" on
every operation. The scheduling API also has JSON Patch, the dependency graphs, a tenant-wide list with a SCIM
filter, and the one-call reload creators (NOTES-2026-11.md 1.1), which v1 lacks.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal
from weakref import WeakKeyDictionary

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.lines import LineSink
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.resource import Doc, Listing, listing
from qlik_tasks_mcp.client.schedule import Schedule, read_schedule
from qlik_tasks_mcp.client.workflow import Trigger, dataset_triggers, reload_targets, triggers

ApiSetting = Literal["auto", "scheduling", "v1"]
GraphKind = Literal["parents", "children", "ancestors", "descendants"]
CreatorKind = Literal["on-time-schedule", "on-task-event", "on-dataset-updated"]
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


@dataclass(frozen=True)
class TasksEndpoint:
    """One of the two APIs serving tasks, with the tiers its spec declares."""

    name: Literal["scheduling", "v1"]
    base: str
    reads: Tier
    writes: Tier

    @property
    def scheduling(self) -> bool:
        return self.name == "scheduling"


SCHEDULING = TasksEndpoint("scheduling", "/api/scheduling/tasks", Tier.T1, Tier.T2)
V1 = TasksEndpoint("v1", "/api/v1/tasks", Tier.SPECIAL, Tier.SPECIAL)
# Decided once per process (per tenant client) on the first call in auto mode.
_CHOSEN: WeakKeyDictionary[QlikClient, TasksEndpoint] = WeakKeyDictionary()


class CronDoc(Doc):
    expression: str | None = None
    valid_until: str | None = None


class ScheduleDoc(Doc):
    """A start schedule: an RRULE `recurrence` with start/end, an ISO 8601 repeating interval, or a cron
    expression, evaluated in `timezone` (absent: UTC)."""

    interval: str | None = None
    cron: str | CronDoc | None = None
    recurrence: str | None = None
    timezone: str | None = None
    start_date_time: str | None = None
    end_date_time: str | None = None

    @property
    def cron_expression(self) -> str | None:
        return self.cron.expression if isinstance(self.cron, CronDoc) else self.cron

    @property
    def recurrence_lines(self) -> list[str]:
        return [line.strip() for line in (self.recurrence or "").splitlines() if line.strip()]

    @property
    def zone(self) -> str:
        return self.timezone or "UTC"

    def read(self, created: str | None) -> Schedule | None:
        """The schedule read whole, whatever its form (a bare duration counts from `created`, the task's making)."""
        cron = self.cron
        return read_schedule(
            recurrence=self.recurrence,
            interval=None if self.recurrence else self.interval,
            cron_expression=None if self.recurrence or self.interval else self.cron_expression,
            zone=self.timezone,
            start=self.start_date_time,
            end=(cron.valid_until if isinstance(cron, CronDoc) else None) or self.end_date_time,
            created=created,
        )


class StartDoc(Doc):
    # The API also takes a bare interval string, read as one in UTC.
    schedule: ScheduleDoc | str | None = None
    state_name: str | None = None


class OrchestrationDoc(Doc):
    attrs: dict[str, Any] = {}


class TaskMetaDoc(Doc):
    owner_id: str | None = None
    disabled_code: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    updated_at: str | None = None
    migrated_from: str | None = None
    orchestration: OrchestrationDoc | None = None


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

    @functools.cached_property
    def targets(self) -> list[tuple[str, bool]]:
        """(app id, partial) of every reload the task does, in order (read once: a row asks for it several times)."""
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
    def dataset_updates(self) -> list[str]:
        """What a dataset-update trigger names (the app whose datasets, or a dataset id), one per event."""
        return dataset_triggers(self.events)

    @property
    def schedule(self) -> ScheduleDoc | None:
        stored = self.start.schedule if self.start else None
        if isinstance(stored, str):
            return ScheduleDoc(interval=stored, timezone="UTC")
        return stored

    @functools.cached_property
    def timing(self) -> Schedule | None:
        """The start schedule read whole (read once: a row asks for it several times); None without one."""
        schedule = self.schedule
        return schedule.read(self.metadata.created_at) if schedule else None

    @property
    def disabled_code(self) -> str | None:
        return None if self.enabled else self.metadata.disabled_code

    @property
    def last_status(self) -> str | None:
        orchestration = self.metadata.orchestration
        status = orchestration.attrs.get("last_run_status") if orchestration else None
        return status if isinstance(status, str) else None

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


class VertexDoc(Doc):
    task_id: str = ""
    attrs: dict[str, Any] = {}
    task: TaskDoc | None = None


class EdgeDoc(Doc):
    source: str = ""
    target: str = ""
    attrs: dict[str, Any] = {}


class GraphDoc(Doc):
    task_id: str = ""
    vertices: list[VertexDoc] = []
    edges: list[EdgeDoc] = []


def scim_text(value: str, field: str) -> str:
    """A value for a SCIM filter's quoted string: quotes and backslashes would end or escape it, so refuse them."""
    if not value or any(c in value for c in '"\\') or any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{field} {value[:60]!r} cannot be used in a filter (no quotes, backslashes or controls)")
    return f'"{value}"'


def scim_filter(
    *, app_id: str | None, owner_id: str | None, enabled: bool | None, last_status: str | None
) -> str | None:
    """The scheduling list's SCIM filter for the filters given (joined with `and`), or None."""
    terms = []
    if app_id:
        terms.append(f"resourceId eq {scim_text(app_id, 'resource_id')}")
    if owner_id:
        terms.append(f"ownerId eq {scim_text(owner_id, 'owner_id')}")
    if enabled is not None:
        terms.append(f"enabled eq {'true' if enabled else 'false'}")
    if last_status:
        terms.append(f"lastStatus eq {scim_text(last_status, 'last_status')}")
    return " and ".join(terms) or None


class TasksApi:
    """The tasks of a tenant, on whichever API `setting` and the tenant allow (see `endpoint`)."""

    def __init__(self, qlik: QlikClient, setting: ApiSetting = "auto") -> None:
        self.qlik = qlik
        self.setting = setting

    async def endpoint(self) -> TasksEndpoint:
        """The API in use: as set, or (auto) scheduling unless its list answers 404, decided on the first call."""
        if self.setting != "auto":
            return SCHEDULING if self.setting == "scheduling" else V1
        chosen = _CHOSEN.get(self.qlik)
        if chosen is None:
            chosen = _CHOSEN[self.qlik] = await self._probe()
        return chosen

    async def _probe(self) -> TasksEndpoint:
        try:
            await self.qlik.json("GET", SCHEDULING.base, tier=SCHEDULING.reads, params={"limit": 1})
        except ApiError as exc:
            if exc.status == 404:
                return V1
            raise
        return SCHEDULING

    async def scheduling(self, what: str) -> TasksEndpoint:
        """The scheduling API, or InvalidInput naming `what` the v1 API cannot do."""
        api = await self.endpoint()
        if not api.scheduling:
            raise InvalidInput(
                f"{what} needs the Scheduling Tasks API (/api/scheduling/tasks); this server uses /api/v1/tasks "
                "(QLIK_TASKS_API=v1, or the tenant answered 404 for the scheduling API)"
            )
        return api

    async def _one(self, task_id: str) -> tuple[TasksEndpoint, str]:
        api = await self.endpoint()
        return api, f"{api.base}/{path_segment(task_id, 'task_id')}"

    async def list(
        self,
        *,
        resource_id: str | None,
        sort: str,
        limit: int,
        cursor: str | None = None,
        scim: str | None = None,
    ) -> Listing[TaskDoc]:
        api = await self.endpoint()
        params: dict[str, Any] = {"sort": sort, "limit": limit}
        if scim:
            params["filter"] = scim
        elif resource_id:
            params["resourceId"] = resource_id
        page = await self.qlik.page(api.base, tier=api.reads, params=params, cursor=cursor, cursor_param="page")
        return listing(page, TaskDoc)

    async def all(self, *, resource_id: str | None) -> AsyncIterator[TaskDoc]:
        api = await self.endpoint()
        params: dict[str, Any] = {"sort": "+createdAt", "limit": 100}
        if resource_id:
            params["resourceId"] = resource_id
        async for raw in self.qlik.iterate(api.base, tier=api.reads, params=params, cursor_param="page"):
            yield TaskDoc.model_validate(raw)

    async def get(self, task_id: str) -> TaskDoc:
        api, path = await self._one(task_id)
        return TaskDoc.model_validate(await self.qlik.json("GET", path, tier=api.reads))

    async def create(self, body: dict[str, Any]) -> TaskDoc:
        api = await self.endpoint()
        return TaskDoc.model_validate(await self.qlik.json("POST", api.base, tier=api.writes, body=body))

    async def create_reload(self, app_id: str, kind: CreatorKind, body: dict[str, Any]) -> TaskDoc:
        """One of the one-call reload creators (NOTES-2026-11.md 1.1); the server builds the workflow."""
        api = await self.scheduling("the one-call reload creators")
        path = f"{api.base}/resources/{path_segment(app_id, 'app_id')}/actions/reload/{kind}"
        return TaskDoc.model_validate(await self.qlik.json("POST", path, tier=api.writes, body=body))

    async def replace(self, task_id: str, body: dict[str, Any]) -> TaskDoc:
        api, path = await self._one(task_id)
        return TaskDoc.model_validate(await self.qlik.json("PUT", path, tier=api.writes, body=body))

    async def patch(self, task_id: str, ops: list[dict[str, Any]]) -> TaskDoc:
        """A JSON Patch (scheduling only); a 204 answer is read back with a GET."""
        api = await self.scheduling("a JSON Patch of a task")
        path = f"{api.base}/{path_segment(task_id, 'task_id')}"
        answer = await self.qlik.json("PATCH", path, tier=api.writes, body=ops)
        return TaskDoc.model_validate(answer) if isinstance(answer, dict) and answer else await self.get(task_id)

    async def change(self, task: TaskDoc, ops: list[dict[str, Any]], put_body: dict[str, Any]) -> TaskDoc:
        """A change as the API in use takes it: `ops` as a JSON Patch (scheduling), else `put_body` by PUT."""
        api = await self.endpoint()
        if api.scheduling:
            return await self.patch(task.id, ops)
        return await self.replace(task.id, put_body)

    async def delete(self, task_id: str) -> None:
        api, path = await self._one(task_id)
        await self.qlik.json("DELETE", path, tier=api.writes)

    async def start(self, task_id: str, source: str | None = None) -> None:
        api, path = await self._one(task_id)
        params = {"source": source} if source else None
        await self.qlik.json("POST", f"{path}/actions/start", tier=api.writes, params=params)

    async def runs(self, task_id: str, *, sort: str, limit: int, cursor: str | None = None) -> Listing[RunDoc]:
        api, path = await self._one(task_id)
        params = {"sort": sort, "limit": limit}
        return listing(await self.qlik.page(f"{path}/runs", tier=api.reads, params=params, cursor=cursor), RunDoc)

    async def resource_runs(
        self, resource_id: str, *, sort: str, limit: int, cursor: str | None = None
    ) -> Listing[RunDoc]:
        api = await self.endpoint()
        path = f"{api.base}/resources/{path_segment(resource_id, 'resource_id')}/runs"
        params = {"sort": sort, "limit": limit}
        return listing(await self.qlik.page(path, tier=api.reads, params=params, cursor=cursor), RunDoc)

    async def last_run(self, task_id: str) -> RunDoc | None:
        """The task's latest run, or None when it has never run (the API answers 404 then)."""
        api, path = await self._one(task_id)
        try:
            return RunDoc.model_validate(await self.qlik.json("GET", f"{path}/runs/last", tier=api.reads))
        except ApiError as exc:
            if exc.status != 404:
                raise
            # A 404 is also what a missing task gets: tell the two apart so a typo is not "never ran".
            await self.get(task_id)
            return None

    def _log_path(self, base: str, run_id: str) -> str:
        return f"{base}/runs/{path_segment(run_id, 'run_id')}/log"

    async def run_log(self, task_id: str, run_id: str) -> str:
        """A run's whole log as text (for a failed run's tail and first error line)."""
        api, path = await self._one(task_id)
        body = await self.qlik.json(
            "GET", self._log_path(path, run_id), tier=api.reads, headers={"Accept": "application/json"}
        )
        text = body.get("logContent") if isinstance(body, dict) else None
        return text if isinstance(text, str) else ""

    async def read_log(self, task_id: str, run_id: str, sink: LineSink) -> LineSink:
        """A run's log streamed line by line into `sink` (asked for as text/plain)."""
        api, path = await self._one(task_id)
        log = self._log_path(path, run_id)
        return await self.qlik.read_lines(log, sink, tier=api.reads, headers={"Accept": "text/plain"})

    async def graph(self, task_id: str, kind: GraphKind, *, level: int | None = None) -> GraphDoc:
        """ancestors/descendants as a graph; parents/children (paged lists) as one graph of depth 1."""
        api = await self.scheduling("the dependency graph")
        path = f"{api.base}/{path_segment(task_id, 'task_id')}/graphs/{kind}"
        if kind in ("parents", "children"):
            tasks = [TaskDoc.model_validate(raw) async for raw in self._graph_list(path, api)]
            vertices = [VertexDoc(task_id=t.id, attrs={"depth": 1}, task=t) for t in tasks]
            return GraphDoc(task_id=task_id, vertices=vertices)
        params = {"level": level} if level else None
        return GraphDoc.model_validate(await self.qlik.json("GET", path, tier=api.reads, params=params))

    def _graph_list(self, path: str, api: TasksEndpoint) -> AsyncIterator[dict[str, Any]]:
        return self.qlik.iterate(path, tier=api.reads, params={"limit": 100}, max_items=500, cursor_param="page")
