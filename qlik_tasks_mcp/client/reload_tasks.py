"""Qlik reload tasks, `/api/v1/reload-tasks`: deprecated by Qlik for `/api/scheduling/tasks`, removal on or after
2026-09-29 (NOTES-2026-11.md section 2), and their migration to tasks: `POST /api/scheduling/tasks?migrateFrom=<id>`
as Qlik's own client (qlik-api-ts, scheduling/tasks createTask) sends it, `/api/v1/tasks?migrateFrom=` only where a
tenant lacks the scheduling API.

Changelog 271 (2026-11-20): PUT and DELETE of a reload task migrated to the new scheduler answer 400 TASKS-001 (the
reference had said 410), and the deprecated POST /api/v1/reload-tasks answers 410 TASKS-011. Both are read exactly
(`MigratedReloadTask`, `CreationRetired`): neither is the whole API gone, which a 404 or another 410 still says."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.resource import Doc, Listing, listing
from qlik_tasks_mcp.client.tasks import ApiSetting, TasksApi
from qlik_tasks_mcp.client.workflow import SPEC_VERSION, TIME_SCHEDULE_REF, reload_action

BASE = "/api/v1/reload-tasks"
# Changelog 271's codes: a change to a migrated reload task, and a create where Qlik no longer makes them.
MIGRATED_CODE = "TASKS-001"
CREATION_GONE_CODE = "TASKS-011"
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
# How a tenant that removed the API answers (not documented by Qlik; NOTES-2026-11.md: treat both as retired).
RETIRED_STATUSES = (404, 410)
REPLACING_TOOLS = "list_tasks, get_task, create_task, update_task, delete_task"
RETIRED_HINT = (
    "Qlik deprecated /api/v1/reload-tasks and removes it on or after 2026-09-29. Scheduled reloads are tasks now: "
    f"use the tasks toolset ({REPLACING_TOOLS}); reload tasks migrated before the removal are tasks there "
    "(metadata.migratedFrom holds the reload task id). migrate_reload_tasks moves reload tasks to tasks only "
    "while this API still answers."
)


class ApiRetired(ApiError):
    """The tenant no longer serves /api/v1/reload-tasks: every reload tool says so and names what replaces it."""


class MigratedReloadTask(ApiError):
    """400 TASKS-001 on a PUT or DELETE: the reload task was migrated, so Qlik keeps it read-only."""


class CreationRetired(ApiError):
    """410 TASKS-011 on the create: Qlik no longer makes reload tasks here; the rest of the API still answers."""


def _recast(exc: ApiError, kind: type[ApiError], title: str, hint: str) -> ApiError:
    return kind(exc.status, title, code=exc.code, trace_id=exc.trace_id, method=exc.method, path=exc.path, hint=hint)


def retired(exc: ApiError) -> ApiRetired:
    return ApiRetired(
        exc.status,
        "this tenant has retired the Reload Tasks API",
        code=exc.code,
        trace_id=exc.trace_id,
        method=exc.method,
        path=exc.path,
        hint=RETIRED_HINT,
    )


class ReloadTaskDoc(Doc):
    id: str
    app_id: str = ""
    space_id: str = ""
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
    migrated: bool = False

    @property
    def enabled(self) -> bool:
        return self.state == "Enabled" and not self.migrated

    def put_body(self) -> dict[str, Any]:
        """A PUT body that keeps everything the task has, so a change of one field loses no other.

        `state` goes only where the task has one: a migrated task has none, and a `state: Enabled` would
        switch it back on beside the task that replaced it (the app would reload twice).
        """
        sent = self.wire()
        body = {k: sent[k] for k in BASE_FIELDS if k in sent}
        if self.state:
            body["state"] = self.state
        return body


class TaskMetaDoc(Doc):
    migrated_from: str = ""


class ReplacementDoc(Doc):
    """A task as far as a migration needs it: which reload task it replaced."""

    id: str = ""
    name: str = ""
    enabled: bool = False
    metadata: TaskMetaDoc = TaskMetaDoc()


def task_name(reload_task_id: str) -> str:
    """A name the v1 Task schema takes (lower-case words joined by single dashes) that says where it came from."""
    slug = "-".join(re.findall(r"[a-z0-9]+", reload_task_id.lower()))
    return f"migrated-reload-task-{slug}" if slug else "migrated-reload-task"


def migration_body(doc: ReloadTaskDoc) -> dict[str, Any]:
    """The task the migration guide's step 2 sends for one reload task (one RRULE line, its zone and bounds).

    `enabled` follows the reload task: the guide's example is enabled, and so is every enabled reload task;
    a disabled one stays disabled rather than starting to reload its app.
    """
    schedule: dict[str, Any] = {"recurrence": doc.recurrence[0], "timezone": doc.time_zone or "UTC"}
    if doc.start_date_time:
        schedule["startDateTime"] = doc.start_date_time
    if doc.end_date_time:
        schedule["endDateTime"] = doc.end_date_time
    metadata: dict[str, Any] = {"usage": "ANALYTICS"}
    if doc.space_id:
        metadata["spaceId"] = doc.space_id
    return {
        "name": task_name(doc.id),
        "specVersion": SPEC_VERSION,
        "enabled": doc.enabled,
        "metadata": metadata,
        "start": {"schedule": schedule, "stateName": "reload"},
        "states": [
            {
                "name": "reload",
                "type": "EVENT",
                "end": True,
                "onEvents": [{"eventRefs": [TIME_SCHEDULE_REF], "actions": [reload_action(doc.app_id, doc.partial)]}],
            }
        ],
    }


class ReloadTasksApi:
    """Every call maps a 404/410 of the retired API to ApiRetired, in `_failed`, once for all tools."""

    def __init__(self, qlik: QlikClient, tasks_api: ApiSetting = "auto") -> None:
        self.qlik = qlik
        # Where migrated tasks live and are made: the scheduling API, or v1 where the tenant lacks it.
        self.tasks = TasksApi(qlik, tasks_api)

    def _one(self, task_id: str) -> str:
        return f"{BASE}/{path_segment(task_id, 'task_id')}"

    async def _failed(self, exc: ApiError) -> ApiError:
        """The error to raise for `exc`: ApiRetired when the API itself is gone, else `exc` as it was.

        A 404 on one task may only mean that task is missing: the collection answers that question.
        """
        if isinstance(exc, ApiRetired | MigratedReloadTask | CreationRetired):
            return exc
        if exc.status == 400 and exc.code == MIGRATED_CODE and exc.method in ("PUT", "DELETE"):
            return _recast(
                exc,
                MigratedReloadTask,
                "Qlik refuses changes to a migrated reload task",
                "Its schedule runs as the task that replaced it (metadata.migratedFrom holds this reload task's "
                "id): change or delete that task with update_task or delete_task.",
            )
        if exc.status == 410 and exc.code == CREATION_GONE_CODE and exc.method == "POST":
            return _recast(
                exc,
                CreationRetired,
                "Qlik no longer creates reload tasks on this tenant",
                "Schedule the app's reloads as a task with create_task; existing reload tasks can still be read, "
                "changed and migrated (migrate_reload_tasks).",
            )
        if exc.status not in RETIRED_STATUSES:
            return exc
        if exc.status == 410 or (exc.method == "GET" and exc.path.rstrip("/") == BASE):
            return retired(exc)
        try:
            await self.qlik.json("GET", BASE, tier=Tier.T1, params={"limit": 1})
        except ApiError as probe:
            return retired(exc) if probe.status in RETIRED_STATUSES else exc
        return exc

    async def _json(self, method: str, path: str, tier: Tier, body: Any = None) -> Any:
        try:
            return await self.qlik.json(method, path, tier=tier, body=body)
        except ApiError as exc:
            raise await self._failed(exc) from exc

    async def list(
        self, *, app_id: str | None = None, partial: bool | None = None, limit: int = 20, cursor: str | None = None
    ) -> Listing[ReloadTaskDoc]:
        params: dict[str, Any] = {"limit": limit}
        if app_id:
            params["appId"] = app_id
        if partial is not None:
            params["partial"] = "true" if partial else "false"
        try:
            page = await self.qlik.page(BASE, tier=Tier.T1, params=params, cursor=cursor)
        except ApiError as exc:
            raise await self._failed(exc) from exc
        return listing(page, ReloadTaskDoc)

    async def all(self, *, app_id: str | None = None) -> AsyncIterator[ReloadTaskDoc]:
        params: dict[str, Any] = {"limit": 100} | ({"appId": app_id} if app_id else {})
        try:
            async for raw in self.qlik.iterate(BASE, tier=Tier.T1, params=params):
                yield ReloadTaskDoc.model_validate(raw)
        except ApiError as exc:
            raise await self._failed(exc) from exc

    async def get(self, task_id: str) -> ReloadTaskDoc:
        return ReloadTaskDoc.model_validate(await self._json("GET", self._one(task_id), Tier.T1))

    async def create(self, body: dict[str, Any]) -> ReloadTaskDoc:
        return ReloadTaskDoc.model_validate(await self._json("POST", BASE, Tier.T2, body))

    async def replace(self, task_id: str, body: dict[str, Any]) -> ReloadTaskDoc:
        return ReloadTaskDoc.model_validate(await self._json("PUT", self._one(task_id), Tier.T2, body))

    async def delete(self, task_id: str) -> None:
        await self._json("DELETE", self._one(task_id), Tier.T2)

    async def tasks_of_app(self, app_id: str) -> list[ReplacementDoc]:
        """The app's tasks (those a migration made carry metadata.migratedFrom): no API filter takes that field,
        so the app's tasks (at most 10 per app, changelog 135) are read and matched here."""
        api = await self.tasks.endpoint()
        params = {"resourceId": app_id, "limit": 100}
        found = self.qlik.iterate(api.base, tier=api.reads, params=params, max_items=500, cursor_param="page")
        return [ReplacementDoc.model_validate(raw) async for raw in found]

    async def migrate(self, doc: ReloadTaskDoc) -> ReplacementDoc:
        """`POST <tasks>?migrateFrom=<reload task id>` (qlik-api-ts createTask's query): the new task names the
        reload task it replaces. On the scheduling API, v1 only where the tenant lacks it."""
        api = await self.tasks.endpoint()
        params = {"migrateFrom": doc.id}
        raw = await self.qlik.json("POST", api.base, tier=api.writes, params=params, body=migration_body(doc))
        return ReplacementDoc.model_validate(raw)
