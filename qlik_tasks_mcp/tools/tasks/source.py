"""Tasks as the ops tools see them (`TaskSource`): read, listed tenant-wide or app by app, enabled, deleted, and
their failed runs found within a scan's budget."""

from dataclasses import dataclass
from dataclasses import field as dc_field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.tasks import RunDoc, TaskDoc, TasksApi, scim_filter
from qlik_tasks_mcp.tools.sources import (
    Budget,
    FailedReload,
    Failure,
    FailureScan,
    Narrow,
    TaskInfo,
    first_error_line,
    first_line,
    gather,
    parse_time,
    read_each,
    scan_now,
)

# More ids than this are found in the tenant-wide list (100 a page) instead of one GET each: 5,000 GETs would
# spend tier 1 (1,000 a minute) and earn the tenant's 429.
BULK_READ_FROM = 20
# v1 has no tenant-wide list: each id is one GET of its 600-a-minute tier, so more than this are refused up front.
V1_READS = 200
LIST_PAGE = 100


class WorkflowTaskSource:
    """Tasks as the ops tools see them: the scheduling API lists them tenant-wide with a SCIM filter, v1 only app
    by app; they can chain."""

    kind = "task"
    chains = True

    def __init__(self, api: TasksApi) -> None:
        self.api = api

    @staticmethod
    def info(task: TaskDoc) -> TaskInfo:
        return TaskInfo(
            kind="task",
            id=task.id,
            name=task.name,
            enabled=task.enabled,
            app_id=task.app_id,
            state="enabled" if task.enabled else "disabled",
            disabled_reason=None if task.enabled else (task.disabled_code or "disabled"),
            after=[(t.task_id, t.status) for t in task.triggers],
            owner_before_put=task.metadata.owner_id or "unknown",
            owner_id=task.metadata.owner_id or None,
            schedule=task.timing,
        )

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await self.api.get(task_id))

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        """Those of `task_ids` that exist. A few: one GET each. More (scheduling API): the tenant-wide list, read
        in pages of 100 and matched here, as its SCIM filter takes no `id` (scheduling-tasks.json names name,
        enabled, resourceId, ownerId, spaceId, times, statuses and triggerType only); the few ids it lacks are then
        read one by one, so a task is "not found" only where the tenant answered 404 for it. v1 lists only per
        app, so there each id is read, up to V1_READS (its tier allows 600 a minute)."""
        if len(task_ids) <= BULK_READ_FROM:
            return await read_each(task_ids, self.get)
        if not (await self.api.endpoint()).scheduling:
            if len(task_ids) > V1_READS:
                raise InvalidInput(
                    f"{len(task_ids)} task ids: /api/v1/tasks is read one task at a time (no tenant-wide list), at "
                    f"most {V1_READS} per call; select them with app_id instead, or name fewer"
                )
            return await read_each(task_ids, self.get)
        wanted = set(task_ids)
        found = {task.id: self.info(task) async for task in self.api.all(resource_id=None) if task.id in wanted}
        missing = [i for i in task_ids if i not in found]
        if len(missing) > BULK_READ_FROM:
            raise InvalidInput(
                f"{len(missing)} of the task ids are not in the tenant's task list for this key (first: "
                f"{', '.join(missing[:5])}); nothing was changed: check the ids"
            )
        for task_id in missing:
            try:
                found[task_id] = await self.get(task_id)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return found

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(task) async for task in self.api.all(resource_id=app_id)]

    async def all_tasks(self, budget: Budget, narrow: Narrow | None = None) -> list[TaskInfo] | None:
        """Every task tenant-wide (scheduling API), those `narrow` selects sent as the list's SCIM filter (`eq`
        terms on resourceId, ownerId, enabled), a page of 100 per request of `budget`; a page the budget refuses
        is recorded there, so a cut listing is never taken for the whole. None on v1, which lists per app only."""
        if not (await self.api.endpoint()).scheduling:
            return None
        narrow = narrow or Narrow()
        scim = scim_filter(app_id=narrow.app_id, owner_id=narrow.owner_id, enabled=narrow.enabled, last_status=None)
        found: list[TaskInfo] = []
        cursor: str | None = None
        seen: set[str] = set()
        while budget.spend(scan_now(), f"tasks listing, page {len(seen) + 1}" + (" on" if seen else "")):
            page = await self.api.list(resource_id=None, sort="+createdAt", limit=LIST_PAGE, cursor=cursor, scim=scim)
            found += [self.info(task) for task in page.items]
            if not page.next_cursor:
                break
            if page.next_cursor in seen:
                budget.skipped.append(f"tasks listing after page {len(seen) + 1} (its next link came round)")
                break
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        return found

    async def app_ids(self) -> set[str]:
        """Every app with a task, from the tenant-wide list; v1 lists only per app, so none there."""
        if not (await self.api.endpoint()).scheduling:
            return set()
        return {task.app_id async for task in self.api.all(resource_id=None) if task.app_id}

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        # Only `enabled` changes: a patch on the scheduling API, a PUT of the whole document on v1.
        current = await self.api.get(info.id)
        body = current.put_body() | {"enabled": enabled}
        await self.api.change(current, [{"op": "replace", "path": "/enabled", "value": enabled}], body)

    async def delete(self, info: TaskInfo) -> None:
        await self.api.delete(info.id)

    async def failures(self, scan: FailureScan) -> None:
        """Every failed run in the window. Scheduling API: the tasks whose last run failed (one filtered listing,
        newest first); each run's reload names its task, so failed runs come from the failed reloads the scan read,
        and only tasks with none there have their runs read. v1 (listed per app only): the runs of the apps the
        scan knows. Apps the caller named are read app by app either way."""
        scheduling = (await self.api.endpoint()).scheduling
        failing = await self._last_failed(scan) if scheduling else {}
        runs = _RunFailures(scan)
        claimed = scan.reloads.claim("tasks")
        named = await self._starters(scan, [t for t in claimed if t not in failing])
        for task_id, reloads in claimed.items():
            task = failing.get(task_id) or named.get(task_id)
            runs.from_reloads(task_id, task, reloads, gone=task_id in named and named[task_id] is None)
        for task in failing.values():
            if task.id not in runs.tasks and scan.spend(f"runs of task {task.id}"):
                page = await self.api.runs(task.id, sort="-startedAt", limit=100)
                runs.add_runs(task.app_id, page.items)
        apps = sorted(scan.asked_apps | (set() if scheduling else scan.apps))
        await gather(apps, lambda app_id: self._app_runs(app_id, runs))
        await runs.read_first_errors(self.api)
        scan.found.extend(runs.found)
        scan.checked["task"] = len(failing) if scheduling else len(runs.tasks)
        scan.checked["task runs from reloads"] = runs.from_reload_count
        scan.checked["task apps"] = len(apps)

    async def _starters(self, scan: FailureScan, task_ids: list[str]) -> dict[str, TaskDoc | None]:
        """The tasks that started failed reloads, read by id within the scan's budget, so a failure is named after
        its task; None for an id the tenant answers 404 for (no task of that id visible to this key)."""
        found: dict[str, TaskDoc | None] = {}

        async def one(task_id: str) -> None:
            if not scan.spend(f"name of task {task_id}"):
                return
            try:
                found[task_id] = await self.api.get(task_id)
            except ApiError as exc:
                if exc.status == 404:
                    found[task_id] = None

        await gather(task_ids, one)
        return found

    async def _last_failed(self, scan: FailureScan) -> dict[str, TaskDoc]:
        """Tasks whose last run failed in the window: `lastStatus eq "FAILED"` sorted by their last run's end,
        read until one ended before the window (the notes confirm no operator but eq, so no range filter)."""
        found: dict[str, TaskDoc] = {}
        cursor: str | None = None
        while scan.spend("tasks whose last run failed" + (", a further page" if cursor else "")):
            page = await self.api.list(
                resource_id=None, sort="-lastEndedAt", limit=100, cursor=cursor, scim='lastStatus eq "FAILED"'
            )
            for task in page.items:
                ended = parse_time(_last_ended(task))
                if ended is not None and ended < scan.since:
                    return found
                found[task.id] = task
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        return found

    async def _app_runs(self, app_id: str, runs: "_RunFailures") -> None:
        """An app's failed runs in the window, newest first, every page while the budget allows."""
        cursor: str | None = None
        try:
            while runs.scan.spend(f"task runs of app {app_id}"):
                page = await self.api.resource_runs(app_id, sort="-startedAt", limit=100, cursor=cursor)
                if not runs.add_runs(app_id, page.items) or not page.next_cursor:
                    return
                cursor = page.next_cursor
        except ApiError as exc:
            runs.scan.budget.skipped.append(f"task runs of app {app_id} (HTTP {exc.status})")


def _last_ended(task: TaskDoc) -> str | None:
    attrs = task.metadata.orchestration.attrs if task.metadata.orchestration else {}
    value = attrs.get("last_run_endedAt") or attrs.get("lastEndedAt")
    return value if isinstance(value, str) else None


@dataclass
class _RunFailures:
    """The failed task runs of one scan, each counted once (by run or reload id), newest first per task."""

    scan: FailureScan
    found: list[Failure] = dc_field(default_factory=list)
    tasks: set[str] = dc_field(default_factory=set)
    seen: set[str] = dc_field(default_factory=set)
    from_reload_count: int = 0
    # Tasks whose failed runs were counted from their reloads: their runs are not counted again.
    by_reloads: set[str] = dc_field(default_factory=set)

    def from_reloads(self, task_id: str, task: TaskDoc | None, reloads: list[FailedReload], gone: bool = False) -> None:
        """The failed reloads a task started (the reloads name it); `gone`: the tenant answered 404 for its id."""
        self.tasks.add(task_id)
        self.by_reloads.add(task_id)
        why = "no task of this id is visible to this key" if gone else "its name was not read"
        label = task.name if task else f"task {task_id} ({why})"
        for reload in sorted(reloads, key=lambda r: r.at or "", reverse=True):
            self.from_reload_count += 1
            self.found.append(
                Failure(
                    "task",
                    task_id,
                    label,
                    reload.app_id,
                    reload.at,
                    ref=reload.id,
                    error=f"Reload error: {reload.error}" if reload.error else None,
                    ref_kind="reload",
                )
            )

    def add_runs(self, app_id: str | None, page: list[RunDoc]) -> bool:
        """Adds the page's failed runs in the window; False once a run started before it (no need to read on)."""
        for run in page:
            started = parse_time(run.started_at)
            if started is not None and started < self.scan.since:
                return False
            if run.status.upper() != "FAILED" or run.id in self.seen or run.task_id in self.by_reloads:
                continue
            self.seen.add(run.id)
            self.tasks.add(run.task_id)
            error = first_error_line(run.log) or first_line(run.log) if run.log else None
            self.found.append(_failure(app_id or run.resource_id, run, error))
        return True

    async def read_first_errors(self, api: TasksApi) -> None:
        """The newest failed run of each task without an error line gets one from its log, within the budget."""
        newest: dict[str, Failure] = {}
        for failure in self.found:
            if failure.task_id not in newest or (failure.at or "") > (newest[failure.task_id].at or ""):
                newest[failure.task_id] = failure
        for failure in newest.values():
            if failure.error or not failure.ref or failure.ref not in self.seen:
                continue
            if self.scan.spend(f"log of run {failure.ref}"):
                try:
                    failure.error = first_error_line(await api.run_log(failure.task_id, failure.ref))
                except ApiError as exc:
                    failure.error = f"(log not readable: HTTP {exc.status})"


def _failure(app_id: str | None, run: RunDoc, error: str | None) -> Failure:
    return Failure(
        kind="task",
        task_id=run.task_id,
        name=run.task_name or run.task_id,
        app_id=app_id,
        at=run.ended_at or run.started_at,
        ref=run.id or None,
        error=error,
        ref_kind="run" if run.id else None,
    )
