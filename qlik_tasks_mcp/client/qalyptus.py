"""Qalyptus Cloud REST client on top of TenantHttp: the path table, the response envelope, the operations.

Every answer is `{"data", "isSuccess", "error", "errorDetails"}`; `isSuccess: false` is an ApiError even on
HTTP 200. Lists come whole (Qalyptus does not paginate). Qalyptus documents no rate limits: requests are
paced conservatively (Tier.QALYPTUS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from qlik_tasks_mcp.client.errors import ApiError, error_from_response
from qlik_tasks_mcp.client.http import Params, TenantHttp
from qlik_tasks_mcp.client.qalyptus_paths import PathTable
from qlik_tasks_mcp.client.ratelimit import Tier, TierLimiter

TIER = Tier.QALYPTUS
# What "Update task" takes: the whole task, so unchanged fields are sent back as they are.
UPDATE_FIELDS = (
    "name",
    "description",
    "isActive",
    "sendNotifications",
    "notifyIfError",
    "notifyIfWarning",
    "notifyIfSuccess",
    "notificationRecipients",
    "notificationCc",
    "notificationBcc",
    "testMode",
    "testModeRecipients",
)
REFUSED = "Qalyptus refused the request (isSuccess: false)."
_TEXT_ACCEPT = "text/plain, application/json;q=0.9, */*;q=0.5"


def update_body(task: dict[str, Any]) -> dict[str, Any]:
    body = {key: task.get(key) for key in UPDATE_FIELDS}
    # Required booleans of the update body: a task that lacks them is sent as not active / not notifying.
    body["isActive"] = bool(task.get("isActive"))
    body["sendNotifications"] = bool(task.get("sendNotifications"))
    body["testMode"] = bool(task.get("testMode"))
    return body


class QalyptusClient(TenantHttp):
    """One organization: its base URL and API key, and the process's path table."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str,
        *,
        paths: PathTable,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: TierLimiter | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, service=f"Qalyptus ({name})", timeout=timeout, transport=transport, limiter=limiter
        )
        self.name = name
        self.paths = paths

    async def _send(
        self,
        op: str,
        ids: Mapping[str, str] | None = None,
        *,
        params: Params = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        endpoint = self.paths[op]
        path = endpoint.path(**(ids or {}))
        return await self.send(
            endpoint.method, path, tier=TIER, params=params, json=body, headers=headers, hint_404=endpoint.hint()
        )

    def unwrap(self, response: httpx.Response) -> Any:
        """The envelope's data; isSuccess false is an error whatever the HTTP status said."""
        body = self.decode(response)
        if body is None:
            return None
        if not isinstance(body, dict) or "isSuccess" not in body:
            raise ApiError(
                response.status_code,
                f"{self.service} answered without its {{data, isSuccess}} envelope",
                method=response.request.method,
                path=response.request.url.path,
                hint="The base URL or a path may point at something other than the Qalyptus API: "
                "check QALYPTUS_URL / QALYPTUS_ORGS and QALYPTUS_PATHS.",
            )
        if body.get("isSuccess") is not True:
            raise error_from_response(response, REFUSED)
        return body.get("data")

    async def call(
        self, op: str, ids: Mapping[str, str] | None = None, *, params: Params = None, body: Any = None
    ) -> Any:
        return self.unwrap(await self._send(op, ids, params=params, body=body))

    async def items(self, op: str, ids: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """A whole list (no pagination in Qalyptus); anything but a list of objects is a clear error."""
        data = await self.call(op, ids)
        if data is None:
            return []
        if not isinstance(data, list):
            endpoint = self.paths[op]
            raise ApiError(
                200,
                f"{self.service} answered {op} with {type(data).__name__}, not a list",
                method=endpoint.method,
                path=endpoint.template,
                hint=endpoint.hint(),
            )
        return [item for item in data if isinstance(item, dict)]

    async def text(self, op: str, ids: Mapping[str, str]) -> str:
        """A log file: served as a file, or as text inside the envelope."""
        response = await self._send(op, ids, headers={"Accept": _TEXT_ACCEPT})
        if "json" not in response.headers.get("content-type", ""):
            return response.content.decode("utf-8", errors="replace")
        data = self.unwrap(response)
        if isinstance(data, dict):
            data = next(
                (data[k] for k in ("content", "logContent", "log", "text") if isinstance(data.get(k), str)), data
            )
        if data is None:
            return ""
        if isinstance(data, str) and data.startswith(("https://", "http://")) and "\n" not in data.strip():
            # A download link to storage: the API key must not follow it, and this server fetches no other origin.
            raise ApiError(
                200,
                f"{self.service} answered with a download link instead of the log text",
                method=response.request.method,
                path=response.request.url.path,
                hint="Open the link in the Qalyptus portal; this server does not follow links off the tenant.",
            )
        if not isinstance(data, str):
            raise ApiError(200, f"{self.service} answered {op} without log text", path=self.paths[op].template)
        return data

    # Tasks
    async def tasks(self) -> list[dict[str, Any]]:
        return await self.items("list_tasks")

    async def task(self, task_id: str) -> dict[str, Any]:
        data = await self.call("get_task", {"id": task_id})
        if not isinstance(data, dict):
            raise ApiError(
                200, f"{self.service} answered get_task without a task", path=self.paths["get_task"].template
            )
        return data

    async def update_task(self, task_id: str, body: dict[str, Any]) -> Any:
        return await self.call("update_task", {"id": task_id}, body=body)

    async def delete_task(self, task_id: str) -> None:
        await self.call("delete_task", {"id": task_id})

    async def duplicate_task(self, task_id: str) -> Any:
        return await self.call("duplicate_task", {"id": task_id})

    async def recipients(self, task_id: str) -> list[dict[str, Any]]:
        return await self.items("task_recipients", {"id": task_id})

    async def task_reports(self, task_id: str) -> list[dict[str, Any]]:
        return await self.items("task_reports", {"id": task_id})

    async def triggers(self, task_id: str) -> list[dict[str, Any]]:
        return await self.items("task_triggers", {"id": task_id})

    # Schedules
    async def schedules(self, task_id: str) -> list[dict[str, Any]]:
        return await self.items("list_schedules", {"id": task_id})

    async def set_schedule(self, task_id: str, body: dict[str, Any], schedule_id: str | None = None) -> Any:
        params = {"taskScheduleID": schedule_id} if schedule_id else None
        return await self.call("set_schedule", {"id": task_id}, params=params, body=body)

    async def delete_schedules(self, task_id: str, schedule_ids: list[str]) -> None:
        await self.call("delete_schedules", {"id": task_id}, body=schedule_ids)

    # Runs and status
    async def run(self, task_id: str) -> Any:
        return await self.call("run_task", {"id": task_id})

    async def stop(self, task_id: str) -> Any:
        return await self.call("stop", {"id": task_id})

    async def statuses(self) -> list[dict[str, Any]]:
        return await self.items("task_statuses")

    async def status(self, task_id: str) -> dict[str, Any] | None:
        """The task's latest execution, or None when it has none."""
        data = await self.call("task_status", {"id": task_id})
        if isinstance(data, list):
            # The shape is not confirmed: a list of the task's runs is read as "the latest one".
            runs = [r for r in data if isinstance(r, dict)]
            data = max(runs, key=lambda r: str(r.get("startDate") or r.get("creationDate") or "")) if runs else None
        return data if isinstance(data, dict) else None

    async def log(self, task_id: str, *, smtp: bool = False) -> str:
        return await self.text("task_smtp_log" if smtp else "task_log", {"id": task_id})

    # Reports
    async def reports(self) -> list[dict[str, Any]]:
        return await self.items("list_reports")
