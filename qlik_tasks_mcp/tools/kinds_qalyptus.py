"""The Qalyptus adapter for the ops tools: report tasks of every configured organization as `TaskInfo`."""

from datetime import datetime
from typing import Any

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import QalyptusClient, update_body
from qlik_tasks_mcp.tools.kinds import Budget, Failure, TaskInfo, first_error_line, parse_time
from qlik_tasks_mcp.tools.qalyptus_model import Orgs, Status, classify, status_time


class QalyptusKind:
    kind = "qalyptus"

    def __init__(self, orgs: Orgs) -> None:
        self.orgs = orgs

    async def _find(self, task_id: str) -> tuple[QalyptusClient, dict[str, Any]]:
        """A task id is unique to its organization: ask each configured one in turn."""
        last: ApiError | None = None
        for name in self.orgs.names:
            client = self.orgs.get(name)
            try:
                return client, await client.task(task_id)
            except ApiError as exc:
                if exc.status not in (400, 404):
                    raise
                last = exc
        assert last is not None
        raise last

    async def get(self, task_id: str) -> TaskInfo:
        client, raw = await self._find(task_id)
        info = self.info(raw)
        schedules = [t for t in await client.schedules(task_id) if sched.frequency_of(t.get("frequency"))]
        if schedules:
            first = schedules[0]
            zone = first.get("timeZone") or "UTC"
            try:
                start = (
                    sched.parse_date(first["startDate"], sched.time_zone(zone), "startDate")
                    if first.get("startDate")
                    else None
                )
                info.recurrence = sched.rrule_of(first, start)
                info.start = start.strftime("%Y-%m-%dT%H:%M:%S") if start else None
            except InvalidInput:
                info.recurrence = []
            info.time_zone = zone
            info.schedule_text = sched.describe(first) + (
                f" (+{len(schedules) - 1} more)" if len(schedules) > 1 else ""
            )
        return info

    @staticmethod
    def info(raw: dict[str, Any]) -> TaskInfo:
        active = bool(raw.get("isActive"))
        return TaskInfo(
            kind="qalyptus",
            id=str(raw.get("id", "")),
            name=str(raw.get("name", "")),
            enabled=active,
            state="active" if active else "inactive",
            disabled_reason=None if active else "inactive",
        )

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        # Qalyptus tasks are not tied to one Qlik app through any confirmed field.
        return []

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        client, raw = await self._find(info.id)
        body = update_body(raw)
        body["isActive"] = enabled
        await client.update_task(info.id, body)

    async def failures(self, since: datetime, budget: Budget, clock: Any) -> tuple[list[Failure], int]:
        """Failed (or warned) executions since `since`, newest per task, with the first error line of its log."""
        found: dict[str, Failure] = {}
        read = 0
        for name in self.orgs.names:
            client = self.orgs.get(name)
            if not budget.spend(clock(), f"Qalyptus statuses of {name}"):
                continue
            statuses = await client.statuses()
            read += len(statuses)
            for raw in sorted(statuses, key=status_time, reverse=True):
                row = Status.of(raw)
                when = parse_time(row.ended_at or row.started_at or row.created_at)
                if not row.task_id or row.task_id in found or when is None or when < since:
                    continue
                if classify(row.status) != "failure":
                    continue
                found[row.task_id] = Failure(
                    kind="qalyptus",
                    task_id=row.task_id,
                    name=row.task_name or row.task_id,
                    app_id=None,
                    at=row.ended_at or row.started_at,
                    ref=row.id,
                )
                if budget.spend(clock(), f"Qalyptus log of task {row.task_id}"):
                    try:
                        found[row.task_id].error = first_error_line(await client.log(row.task_id))
                    except ApiError as exc:
                        found[row.task_id].error = f"(log not readable: HTTP {exc.status})"
        return list(found.values()), read
