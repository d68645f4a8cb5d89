"""Report subscriptions and chart sharing as the ops tools see them (`TaskSource`): read, listed, enabled, deleted,
and their failed deliveries found in a window."""

from collections.abc import Callable
from datetime import datetime

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.sharing_tasks import ExecutionDoc, RecipientDoc, SharingTaskDoc, SharingTasksApi
from qlik_tasks_mcp.tools.sharing.models import CHECK_WITH
from qlik_tasks_mcp.tools.sources import (
    Budget,
    Failure,
    FailureScan,
    Narrow,
    TaskInfo,
    gather,
    parse_time,
    read_each,
    scan_now,
)

# How failures() lists every task: the largest page the spec allows, in a stable order.
LISTING = {"sort": "+name"}
LISTING_ROWS = 100


class SharingTaskSource:
    """Report subscriptions and chart sharing/monitoring as the ops tools see them; failures are failed deliveries."""

    kind = "sharing"
    chains = False

    def __init__(self, api: SharingTasksApi) -> None:
        self.api = api

    @staticmethod
    def info(doc: SharingTaskDoc) -> TaskInfo:
        schedule = doc.schedule_options
        lines = list(schedule.recurrence)
        reason = None
        if not doc.is_enabled:
            errors = [e.value for e in doc.task_errors]
            by = "by the system" if doc.enabled_by_system is False else "by a user"
            reason = f"disabled {by}" + (f" ({', '.join(errors)})" if errors else "")
        on_reload = "after each reload of the app" if doc.trigger.execute_on_app_reload else None
        return TaskInfo(
            kind="sharing",
            id=doc.id,
            name=f"{doc.name} ({doc.type or 'sharing'})",
            enabled=doc.is_enabled,
            app_id=doc.app_id or None,
            state=doc.status_code or ("enabled" if doc.is_enabled else "disabled"),
            disabled_reason=reason,
            recurrence=lines,
            time_zone=schedule.timezone or None,
            start=schedule.start_date_time or None,
            end=schedule.end_date_time or None,
            schedule_text=None if lines else on_reload,
            next_run=doc.next_run or None,
            owner_id=doc.owner or None,
        )

    async def get(self, task_id: str) -> TaskInfo:
        return self.info(await self.api.get(task_id))

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        return await read_each(task_ids, self.get)

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        return [self.info(doc) async for doc in self.api.all(app_id=app_id)]

    async def app_ids(self) -> set[str]:
        # Sharing tasks name their app, but listing them all to learn apps costs more than it tells.
        return set()

    async def all_tasks(self, budget: Budget, narrow: Narrow | None = None) -> list[TaskInfo]:
        """Every sharing task, a page of LISTING_ROWS per request while `budget` allows (find_orphans)."""
        if narrow is not None and narrow.owner_id:
            # sharing-tasks.json: the list holds the tasks accessible to the user; TenantAdmin/AnalyticsAdmin see all.
            budget.notes.append(
                "Sharing tasks are those this key can access: a TenantAdmin or AnalyticsAdmin key sees every one, "
                "another key only those it may access."
            )
        found: list[TaskInfo] = []
        cursor: str | None = None
        pages = 0
        while budget.spend(scan_now(), f"sharing tasks listing, page {pages + 1} on"):
            page = await self.api.list(LISTING, limit=LISTING_ROWS, cursor=cursor)
            pages += 1
            found += [self.info(doc) for doc in page.items]
            cursor = page.next_cursor
            if not cursor:
                break
        return found

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        await self.api.patch(info.id, [{"op": "replace", "path": "/enabled", "value": enabled}])

    async def delete(self, info: TaskInfo) -> None:
        await self.api.delete(info.id)

    async def change_owner(self, info: TaskInfo, owner_id: str) -> None:
        # sharing-tasks.json lets /ownerId be patched: the task then runs with the new owner's access.
        await self.api.patch(info.id, [{"op": "replace", "path": "/ownerId", "value": owner_id}])

    async def runs_since(
        self, info: TaskInfo, since: datetime, may_read: Callable[[str], bool]
    ) -> list[tuple[datetime, str]] | None:
        """(start, status) of each run started since `since`, oldest first: a run makes one execution per recipient,
        all with its start. None when `may_read` stopped the listing before it reached `since`."""
        found: dict[datetime, str] = {}
        cursor: str | None = None
        while may_read(f"executions of sharing task {info.id}" + (", a further page" if cursor else "")):
            page = await self.api.executions(info.id, limit=100, cursor=cursor)
            for doc in page.items:
                started = parse_time(doc.start_time)
                if started is not None and started < since:
                    return sorted(found.items())
                if started is not None:
                    found.setdefault(started, doc.status)
            if not page.next_cursor:
                return sorted(found.items())
            cursor = page.next_cursor
        return None

    async def failures(self, scan: FailureScan) -> None:
        """Failed executions since `scan.since` of the tasks whose listing shows a failure (`shows_failure`) and
        that ran in the window, with the tenant's errors; the listing has no status filter, so reading every
        task's executions would cost a request per task."""
        listed, suspects = await self._listed_with_failures(scan)
        found: list[Failure] = []

        async def read_failed(doc: SharingTaskDoc) -> None:
            found.extend(await self._failed(doc, scan))

        await gather(suspects, read_failed)
        found.sort(key=lambda f: f.at or "", reverse=True)
        scan.found.extend(found)
        scan.checked["sharing"] = listed
        scan.checked["sharing tasks read"] = len(suspects)
        scan.notes.append(
            f"Sharing: executions were read only for the {len(suspects)} of {listed} listed tasks that ran in the "
            "window and show a failure (failed runs in a row, status, task or recipient errors); tasks showing no "
            "failure were not read for executions (a failure that a later delivery to that recipient cleared does "
            f"not show): {CHECK_WITH} with status failed reads any task's."
        )

    async def _listed_with_failures(self, scan: FailureScan) -> tuple[int, list[SharingTaskDoc]]:
        """How many tasks were listed, and those that ran since `scan.since` and show a failure; listed page by
        page while the scan's budget allows: a tenant with endless pages (or a next link that comes round again)
        costs the budget, never more."""
        listed, suspects = 0, []
        cursor: str | None = None
        seen: set[str] = set()
        pages = 0
        while scan.budget.spend(scan.clock(), f"sharing tasks listing, page {pages + 1} on"):
            page = await self.api.list(LISTING, limit=LISTING_ROWS, cursor=cursor)
            pages += 1
            listed += len(page.items)
            # A task that has not run since `since` cannot have failed since: its executions are not read.
            suspects += [doc for doc in page.items if _ran_since(doc, scan) and shows_failure(doc)]
            if not page.next_cursor:
                break
            if page.next_cursor in seen:
                scan.budget.skipped.append(f"sharing tasks listing after page {pages} (its next link came round)")
                break
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        return listed, suspects

    async def _failed(self, doc: SharingTaskDoc, scan: FailureScan) -> list[Failure]:
        budget = scan.budget
        if not budget.spend(scan.clock(), f"executions of sharing task {doc.id}"):
            return []
        try:
            page = await self.api.executions(doc.id, limit=100, status="failed")
        except ApiError as exc:
            budget.skipped.append(f"executions of sharing task {doc.id} (HTTP {exc.status})")
            return []
        out = []
        for execution in page.items:
            at = execution.failed_time or execution.end_time or execution.start_time
            when = parse_time(at)
            if when is None or when < scan.since:
                continue
            out.append(
                Failure(
                    kind="sharing",
                    task_id=doc.id,
                    name=doc.name or doc.id,
                    app_id=doc.app_id or None,
                    at=at,
                    ref=execution.id or None,
                    error=failure_line(execution),
                )
            )
        return out


# What a task in the listing shows of a failure, as sharing-tasks.json describes the fields:
# - failedExecutionsCount: "the number of consecutive failed executions for all recipients", reset "on a
#   successful execution for at least one recipient": a run that failed for everyone.
# - statusCode (FAILED, MAX_FAILURES_REACHED, or a missing chart, app, sheet, ...), statusLabel being "error
#   message indicating the underlying failure"; the codes below are states, not failures.
# - taskErrors: "type of error occurring on sharing task".
# - taskRecipientErrors on users and addresses, taskGroupRecipientErrors on groups: "type of error occurring on
#   sharing task specific for recipient": a delivery that failed for one recipient (a bounced address) shows on
#   that recipient alone, while failedExecutionsCount stays 0.
NOT_FAILED_STATUSES = frozenset({"", "VALID", "IN_PROGRESS", "DELETING", "CANCELLING", "CANCELLED"})


def shows_failure(doc: SharingTaskDoc) -> bool:
    return bool(
        doc.failed_executions_count
        or doc.status_code not in NOT_FAILED_STATUSES
        or doc.task_errors
        or any(r.task_recipient_errors or r.task_group_recipient_errors for r in _every_recipient(doc))
    )


def _every_recipient(doc: SharingTaskDoc) -> list[RecipientDoc]:
    r = doc.recipients
    return [*r.user_ids, *r.group_ids, *r.email_addresses, *r.dl_users, *r.dl_groups]


def _ran_since(doc: SharingTaskDoc, scan: FailureScan) -> bool:
    last = parse_time(doc.last_ran)
    return last is not None and last >= scan.since


def failure_line(execution: ExecutionDoc) -> str | None:
    error = None
    if execution.errors:
        first = execution.errors[0]
        error = f"{first.code or None}: {first.title} {first.detail}".strip()
    if execution.target_user.value:
        error = f"to {execution.target_user.value}: {error or 'failed'}"
    return error[:300] if error else None
