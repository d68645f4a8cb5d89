"""The sharing-task adapter for the ops tools: report subscriptions and chart sharing/monitoring as `TaskInfo`."""

from datetime import datetime
from typing import Any

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.sharing_tasks import SharingTasksApi
from qlik_tasks_mcp.tools.kinds import Budget, Failure, TaskInfo, parse_time
from qlik_tasks_mcp.tools.ops import gather
from qlik_tasks_mcp.tools.sharing_model import is_enabled


class SharingKind:
    kind = "sharing"

    def __init__(self, api: SharingTasksApi) -> None:
        self.api = api

    @staticmethod
    def info(raw: dict[str, Any]) -> TaskInfo:
        enabled = is_enabled(raw)
        schedule = raw.get("scheduleOptions") or {}
        trigger = raw.get("trigger") or {}
        lines = list(schedule.get("recurrence") or [])
        reason = None
        if not enabled:
            errors = [str(e.get("value")) for e in raw.get("taskErrors") or [] if isinstance(e, dict)]
            by = "by the system" if raw.get("enabledBySystem") is False else "by a user"
            reason = f"disabled {by}" + (f" ({', '.join(errors)})" if errors else "")
        return TaskInfo(
            kind="sharing",
            id=raw.get("id", ""),
            name=f"{raw.get('name', '')} ({raw.get('type', 'sharing')})",
            enabled=enabled,
            app_id=raw.get("appId"),
            state=raw.get("statusCode") or ("enabled" if enabled else "disabled"),
            disabled_reason=reason,
            recurrence=lines,
            time_zone=schedule.get("timezone") or None,
            start=schedule.get("startDateTime") or None,
            end=schedule.get("endDateTime") or None,
            schedule_text=None
            if lines
            else ("after each reload of the app" if trigger.get("executeOnAppReload") else None),
            next_run=raw.get("nextScheduledRun") or schedule.get("nextExecutionTime") or None,
        )

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await self.api.get(task_id))

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(raw) async for raw in self.api.all(app_id=app_id)]

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        await self.api.patch(info.id, [{"op": "replace", "path": "/enabled", "value": enabled}])

    async def failures(self, since: datetime, budget: Budget, clock: Any) -> tuple[list[Failure], int]:
        """Failed executions since `since`, of every task that ran in the window, with the errors the tenant gave."""
        ran: list[dict[str, Any]] = []
        async for raw in self.api.all():
            last = parse_time(raw.get("lastExecutionDate") or raw.get("lastRun"))
            # A task that has not run since `since` cannot have failed since: its executions are not read.
            if last is not None and last >= since:
                ran.append(raw)
        found: list[Failure] = []

        async def scan(raw: dict[str, Any]) -> None:
            task_id = raw.get("id", "")
            if not budget.spend(clock(), f"executions of sharing task {task_id}"):
                return
            try:
                page = await self.api.executions(task_id, limit=100, status="failed")
            except ApiError as exc:
                budget.skipped.append(f"executions of sharing task {task_id} (HTTP {exc.status})")
                return
            for execution in page.items:
                when = parse_time(execution.get("failedTime") or execution.get("endTime") or execution.get("startTime"))
                if when is None or when < since:
                    continue
                target = execution.get("targetUser") or {}
                errors = [e for e in execution.get("errors") or [] if isinstance(e, dict)]
                error = None
                if errors:
                    first = errors[0]
                    error = f"{first.get('code')}: {first.get('title', '')} {first.get('detail', '')}".strip()
                if target.get("value"):
                    error = f"to {target.get('value')}: {error or 'failed'}"
                found.append(
                    Failure(
                        kind="sharing",
                        task_id=task_id,
                        name=raw.get("name") or task_id,
                        app_id=raw.get("appId"),
                        at=execution.get("failedTime") or execution.get("endTime") or execution.get("startTime"),
                        ref=execution.get("id"),
                        error=error[:300] if error else None,
                    )
                )

        await gather(ran, scan)
        found.sort(key=lambda f: f.at or "", reverse=True)
        return found, len(ran)
