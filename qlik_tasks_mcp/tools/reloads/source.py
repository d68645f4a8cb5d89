"""App reloads as the ops tools see them (`AppReloadSource`): the window's failed reloads, which the task kinds
count as their failed runs and find_failures reports by app for what none claims."""

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.reloads import ReloadDoc, ReloadsApi
from qlik_tasks_mcp.tools.reloads.models import started_by
from qlik_tasks_mcp.tools.sources import APP_RELOADS, FailedReload, FailureScan, TaskInfo, first_line, parse_time

FAILED_PAGE = 100


def _failed(doc: ReloadDoc) -> FailedReload:
    return FailedReload(
        id=doc.id,
        app_id=doc.app_id,
        at=doc.end_time or doc.start_time or doc.creation_time or None,
        error=first_line(doc.error_message),
        resource_type=doc.resource_type,
        resource_id=doc.resource_id,
        started_by=started_by(doc),
    )


class AppReloadSource:
    """App reloads as find_failures reads them: the window's FAILED reloads, tenant-wide for a tenant admin (one
    listing, newest first), else app by app. They go to `scan.reloads`: task kinds count their failed runs there,
    and what no kind claims is reported by app. It has no tasks of its own to list, read or change."""

    kind = APP_RELOADS
    chains = False

    def __init__(self, api: ReloadsApi) -> None:
        self.api = api

    async def get(self, task_id: str) -> TaskInfo:
        raise InvalidInput("app reloads are not tasks: read one with get_reload")

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        return {}

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return []

    async def app_ids(self) -> set[str]:
        return set()

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        raise InvalidInput("app reloads cannot be enabled or disabled; their tasks can")

    async def failures(self, scan: FailureScan) -> None:
        try:
            read, complete = await self._read(scan, None)
        except ApiError as exc:
            if exc.status != 403:
                raise
            # Not a tenant admin: the listing needs appId, so only the apps known to the scan can be read.
            read = 0
            for app_id in sorted(scan.apps):
                found, complete = await self._read(scan, app_id)
                read += found
                if complete:
                    scan.reloads.apps.add(app_id)
            scan.checked["reload apps"] = len(scan.reloads.apps)
        else:
            scan.reloads.tenant_wide = complete
        scan.checked["failed reloads"] = read

    async def _read(self, scan: FailureScan, app_id: str | None) -> tuple[int, bool]:
        """The FAILED reloads since the window's start, newest first, into the scan's index: how many, and
        whether the listing reached the window's start (False: the budget ended it)."""
        cursor: str | None = None
        count = 0
        where = f"app {app_id}" if app_id else "the tenant"
        while scan.spend(f"failed reloads of {where}" + (", a further page" if cursor else "")):
            page = await self.api.list(
                app_id=app_id, statuses=["FAILED"], limit=FAILED_PAGE, cursor=cursor, sort="-endTime"
            )
            for doc in page.items:
                ended = parse_time(doc.end_time or doc.creation_time)
                if ended is not None and ended < scan.since:
                    return count, True
                scan.reloads.add(_failed(doc))
                count += 1
            if not page.next_cursor:
                return count, True
            cursor = page.next_cursor
        return count, False
