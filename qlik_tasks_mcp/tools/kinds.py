"""One view of a scheduled task whatever its kind, so the ops tools treat every family alike.

Each API family contributes one adapter: how to read a task into `TaskInfo`, list an app's tasks, enable
or disable one, and find its failures in a time window.
"""

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.tasks import TasksApi
from qlik_tasks_mcp.client.tasks import put_body as task_put_body
from qlik_tasks_mcp.client.workflow import interval_rrule, reload_targets, repeating_interval, triggers
from qlik_tasks_mcp.tools.sources import (
    Budget,
    Failure,
    TaskInfo,
    first_error_line,
    parse_time,
)


class Kind(Protocol):
    kind: str

    async def get(self, task_id: str) -> TaskInfo: ...

    async def of_app(self, app_id: str) -> list[TaskInfo]: ...

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None: ...


@runtime_checkable
class ScansFailures(Protocol):
    async def failures(self, since: datetime, budget: Budget, clock: Any) -> tuple[list[Failure], int]: ...


class TaskKind:
    kind = "task"

    def __init__(self, api: TasksApi) -> None:
        self.api = api

    @staticmethod
    def info(raw: dict[str, Any]) -> TaskInfo:
        targets = reload_targets(raw)
        start = raw.get("start") if isinstance(raw.get("start"), dict) else {}
        schedule = start.get("schedule") if isinstance(start, dict) else None
        recurrence: list[str] = []
        zone = begin = end = text = None
        if isinstance(schedule, dict) and isinstance(schedule.get("interval"), str):
            text = schedule["interval"]
            zone = schedule.get("timezone") or "UTC"
            end = schedule.get("endDateTime")
            try:
                interval = repeating_interval(text)
                recurrence, begin = [interval_rrule(interval)], interval.start
            except InvalidInput:
                recurrence = []
        elif isinstance(schedule, dict) and schedule.get("cron"):
            cron = schedule["cron"]
            text = f"cron {cron.get('expression') if isinstance(cron, dict) else cron}"
            zone = schedule.get("timezone") or "UTC"
        meta = raw.get("metadata") or {}
        enabled = bool(raw.get("enabled"))
        return TaskInfo(
            kind="task",
            id=raw.get("id", ""),
            name=raw.get("name", ""),
            enabled=enabled,
            app_id=raw.get("resourceId") or (targets[0][0] if targets else None),
            state="enabled" if enabled else "disabled",
            disabled_reason=None if enabled else (meta.get("disabledCode") or "disabled"),
            recurrence=recurrence,
            time_zone=zone,
            start=begin,
            end=end,
            schedule_text=text,
            after=[(t.task_id, t.status) for t in triggers(raw)],
            owner_before_put=meta.get("ownerId") or "unknown",
        )

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await self.api.get(task_id))

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(raw) async for raw in self.api.all(resource_id=app_id)]

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        body = task_put_body(await self.api.get(info.id))
        body["enabled"] = enabled
        await self.api.replace(info.id, body)

    async def failures_of_app(self, app_id: str, since: datetime, budget: Budget, clock: Any) -> list[Failure]:
        """Failed runs of an app's tasks since `since`, newest first, with the first error line of the newest."""
        failures: dict[str, Failure] = {}
        cursor: str | None = None
        while budget.spend(clock(), f"task runs of app {app_id}"):
            page = await self.api.resource_runs(app_id, sort="-startedAt", limit=100, cursor=cursor)
            old = False
            for run in page.items:
                started = parse_time(run.get("startedAt"))
                if started is not None and started < since:
                    old = True
                    break
                if str(run.get("status", "")).upper() != "FAILED" or run.get("taskId") in failures:
                    continue
                failures[run["taskId"]] = Failure(
                    kind="task",
                    task_id=run["taskId"],
                    name=run.get("taskName") or run["taskId"],
                    app_id=app_id,
                    at=run.get("endedAt") or run.get("startedAt"),
                    ref=run.get("id"),
                )
            if old or not page.next_cursor:
                break
            cursor = page.next_cursor
        for failure in failures.values():
            if failure.ref and budget.spend(clock(), f"log of run {failure.ref}"):
                try:
                    failure.error = first_error_line(await self.api.run_log(failure.task_id, failure.ref))
                except ApiError as exc:
                    failure.error = f"(log not readable: HTTP {exc.status})"
        return list(failures.values())
