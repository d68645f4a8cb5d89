"""Reload tasks as the ops tools see them (`ReloadTaskSource`): read, listed, enabled, deleted, and their failed
reloads found in a window; a retired API makes the kind unavailable, not an error."""

from collections.abc import Awaitable
from typing import TypeVar

from qlik_tasks_mcp.client.reload_tasks import ApiRetired, ReloadTaskDoc, ReloadTasksApi
from qlik_tasks_mcp.tools.reload.models import app_tasks, refuse_migrated, where_to_find
from qlik_tasks_mcp.tools.sources import Failure, FailureScan, KindUnavailable, TaskInfo, parse_time, read_each

RETIRED_NOTE = "reload tasks: API retired on this tenant"
T = TypeVar("T")


# More ids than this: read the whole list once instead of one GET each.
BULK_SCAN_FROM = 20


async def answering(call: Awaitable[T]) -> T:
    """`call`'s answer; a retired API becomes KindUnavailable, which the ops tools turn into a skipped note."""
    try:
        return await call
    except ApiRetired as exc:
        raise KindUnavailable(RETIRED_NOTE) from exc


class ReloadTaskSource:
    """Reload tasks as the ops tools see them; a failing task is one disabled after consecutive failures."""

    kind = "reload"
    chains = False

    def __init__(self, api: ReloadTasksApi) -> None:
        self.api = api

    @staticmethod
    def info(doc: ReloadTaskDoc) -> TaskInfo:
        if doc.migrated:
            return TaskInfo(
                kind="reload",
                id=doc.id,
                name=f"reload of app {doc.app_id}",
                enabled=False,
                app_id=doc.app_id,
                state="migrated",
                disabled_reason=f"migrated: {where_to_find(doc)}; that task runs instead",
                schedule_text="migrated to a task, which holds the schedule now",
                owner_id=doc.user_id or None,
            )
        return TaskInfo(
            kind="reload",
            id=doc.id,
            name=f"reload of app {doc.app_id}",
            enabled=doc.enabled,
            app_id=doc.app_id,
            state=doc.state,
            disabled_reason=None if doc.enabled else (doc.disabled_code or "Disabled"),
            recurrence=list(doc.recurrence),
            time_zone=doc.time_zone or None,
            start=doc.start_date_time or None,
            end=doc.end_date_time or None,
            next_run=doc.next_execution_time or None,
            owner_before_put=doc.user_id or "unknown",
            owner_id=doc.user_id or None,
        )

    async def has_tasks(self, app_id: str) -> bool | None:
        """Whether the app has tasks (Qlik then turns its reload tasks off); None when that cannot be read."""
        found = await app_tasks(self.api, app_id)
        return None if found.problem else found.count > 0

    async def _all(self, app_id: str | None = None) -> list[ReloadTaskDoc]:
        return [doc async for doc in self.api.all(app_id=app_id)]

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await answering(self.api.get(task_id)))

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        if len(task_ids) <= BULK_SCAN_FROM:
            return await read_each(task_ids, self.get)
        wanted = set(task_ids)
        return {doc.id: self.info(doc) for doc in await answering(self._all()) if doc.id in wanted}

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(doc) for doc in await answering(self._all(app_id))]

    async def app_ids(self) -> set[str]:
        return {doc.app_id for doc in await answering(self._all()) if doc.app_id}

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        current = await answering(self.api.get(info.id))
        await refuse_migrated(self.api, current)
        body = current.put_body()
        body["state"] = "Enabled" if enabled else "Disabled"
        await answering(self.api.replace(info.id, body))

    async def delete(self, info: TaskInfo) -> None:
        await answering(self.api.delete(info.id))

    async def failures(self, scan: FailureScan) -> None:
        """Every failed run in the window: each reload a reload task started names it, so its failed reloads (read
        by the scan) count one failure each; a task disabled after consecutive failures whose failed reloads the
        scan did not read counts once, with the reason the listing gives."""
        by_reloads = scan.reloads.claim("reload-tasks")
        for task_id, reloads in by_reloads.items():
            for reload in reloads:
                error = f"Reload error: {reload.error}" if reload.error else None
                name = f"reload of app {reload.app_id}"
                scan.found.append(
                    Failure("reload", task_id, name, reload.app_id, reload.at, reload.id, error, ref_kind="reload")
                )
        count = 0
        for doc in await answering(self._all()):
            count += 1
            scan.apps.add(doc.app_id)
            last = parse_time(doc.last_execution_time)
            failed = doc.disabled_code == "CONSECUTIVE-FAILURES" and (last is None or last >= scan.since)
            if failed and doc.id not in by_reloads:
                error = doc.log or "disabled after consecutive failures"
                name = f"reload of app {doc.app_id}"
                scan.found.append(
                    Failure("reload", doc.id, name, doc.app_id, doc.last_execution_time or None, error=error)
                )
        scan.checked["reload"] = count
