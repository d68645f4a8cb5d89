"""The app reloads of a time window, read once for the ops answers that join runs (reload stats, missed runs).

`/api/v1/reloads` is read tenant-wide by a tenant admin (one listing, newest first), else app by app; each page
spends one request of the caller's budget. Every reload a reload task or task starts names it (resourceType
reload-tasks / tasks, resourceId the task id), so a task's runs are its reloads. What the budget left unread is
named, and a conclusion about an app is drawn only when its reloads were read back to the window's start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.reloads import ReloadDoc, ReloadsApi
from qlik_tasks_mcp.tools.names import Names
from qlik_tasks_mcp.tools.sources import Budget, TaskSource, gather, parse_time

PAGE = 100
SCAN_SECONDS = 45.0


class RunSources(Protocol):
    """What the answers that join runs need of the ops service (selection.Sources)."""

    by_kind: dict[str, TaskSource]
    names: Names
    reloads: ReloadsApi | None

    def of(self, kind: str) -> TaskSource: ...

    @property
    def available(self) -> str: ...


@dataclass
class ReloadWindow:
    since: datetime
    reloads: list[ReloadDoc] = field(default_factory=list)
    # The tenant-wide listing reached `since` (a tenant admin's).
    tenant_wide: bool = False
    # Apps whose own listing reached `since` (read app by app).
    apps: set[str] = field(default_factory=set)
    note: str | None = None

    def covers(self, app_id: str | None) -> bool:
        """Every reload of `app_id` created since the window's start was read."""
        return self.tenant_wide or (app_id is not None and app_id in self.apps)


async def read_window(
    api: ReloadsApi,
    since: datetime,
    budget: Budget,
    clock: Callable[[], float],
    app_ids: list[str] | None,
    known_apps: Callable[[], Awaitable[set[str]]],
) -> ReloadWindow:
    """Reloads created since `since`: of `app_ids`, or of the tenant (a non-admin: of the apps `known_apps` names)."""
    window = ReloadWindow(since)
    if app_ids is None:
        try:
            window.tenant_wide = await _read(api, window, None, budget, clock)
            return window
        except ApiError as exc:
            if exc.status != 403:
                raise
        app_ids = sorted(await known_apps() - {""})
        window.note = "Not a tenant admin: reloads were read app by app, for the apps the served kinds' tasks name."

    async def one(app_id: str) -> None:
        try:
            if await _read(api, window, app_id, budget, clock):
                window.apps.add(app_id)
        except ApiError as exc:
            budget.skipped.append(f"reloads of app {app_id} (HTTP {exc.status})")

    await gather(list(dict.fromkeys(app_ids)), one)
    return window


async def _read(
    api: ReloadsApi, window: ReloadWindow, app_id: str | None, budget: Budget, clock: Callable[[], float]
) -> bool:
    """Newest first until one was created before the window: True once it got there (False: the budget ended it)."""
    cursor: str | None = None
    where = f"app {app_id}" if app_id else "the tenant"
    seen: set[str] = set()
    while budget.spend(clock(), f"reloads of {where}" + (", a further page" if cursor else "")):
        page = await api.list(app_id=app_id, limit=PAGE, cursor=cursor, sort="-creationTime")
        for doc in page.items:
            created = parse_time(doc.creation_time)
            if created is not None and created < window.since:
                return True
            if doc.id not in seen:
                seen.add(doc.id)
                window.reloads.append(doc)
        if not page.next_cursor:
            return True
        cursor = page.next_cursor
    return False
