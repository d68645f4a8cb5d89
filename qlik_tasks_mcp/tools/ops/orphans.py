"""find_orphans (served by the ops toolset): tasks of every served kind whose owner is disabled or deleted, or
whose app no longer exists, each with what would fix it.

A kind whose source can list its tasks tenant-wide (`all_tasks`: sharing, Qalyptus) is read whole; the others
are read app by app: the apps of the tenant (items) and those any kind's tasks name (a deleted app is known only
from the tasks left behind). Owners and apps are then looked up by id in batches. Qalyptus owners are Qalyptus
users, judged by its source against each organization's users. The work is bounded by a request budget, like
find_failures; what is left unread is named.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import Names, UserName, app_label, owner_of, user_label
from qlik_tasks_mcp.tools.operation import read
from qlik_tasks_mcp.tools.sources import Budget, TaskInfo, TaskSource, all_tasks, gather, scan_now

SCAN_REQUESTS = 400
SCAN_SECONDS = 45.0
MAX_APPS = 1000
# How a new owner is given, per kind: reload tasks and tasks take the caller as owner on any update.
NEW_OWNER = {
    "reload": "give it a new owner: any update through update_reload_task makes the caller its owner",
    "task": "give it a new owner: any update through update_task makes the caller its owner",
    "sharing": "give it a new owner (update_sharing_task with owner), or delete it",
    "qalyptus": "give it a new owner in Qalyptus (change_qalyptus_task_owner), or delete it",
}


class OrphanSources(Protocol):
    """What find_orphans needs of the ops service: the served kinds' sources and the name lookup."""

    by_kind: dict[str, TaskSource]
    names: Names


class Orphan(Compact):
    kind: str
    id: str
    name: str
    app: str | None = Field(None, description="The app, by name and id, or 'not found'.")
    owner: str | None = Field(None, description="The owner, by name and id, with the status.")
    problem: str
    fix: str


class OrphanReport(Compact):
    orphans: list[Orphan]
    checked: dict[str, int] = Field(description="Tasks read per kind, and apps scanned.")
    stopped_early: bool = False
    not_checked: list[str] = []
    note: str | None = None


async def _read_whole(sources: OrphanSources, budget: Budget) -> dict[str, list[TaskInfo]]:
    """The tasks of each kind whose source lists them tenant-wide, by kind; other kinds are left out."""
    whole: dict[str, list[TaskInfo]] = {}
    for kind, source in sources.by_kind.items():
        try:
            listed = await all_tasks(source, budget)
        except ApiError as exc:
            budget.skipped.append(f"{kind} tasks (HTTP {exc.status})")
            listed = []
        if listed is not None:
            whole[kind] = listed
    return whole


async def _apps_to_scan(sources: OrphanSources, budget: Budget, named: set[str]) -> list[str]:
    """The tenant's apps (listed as items, a page of 100 per request), those `named` by tasks already read, and
    those the other task kinds name cheaply."""
    found: set[str] = set(named)
    cursor: str | None = None
    while len(found) < MAX_APPS and budget.spend(scan_now(), "more apps of the tenant"):
        page = await sources.names.api.apps(limit=100, cursor=cursor)
        found |= {item.resource_id for item in page.items if item.resource_id}
        cursor = page.next_cursor
        if not cursor:
            break
    for kind, source in sources.by_kind.items():
        if budget.spend(scan_now(), f"apps named by {kind} tasks"):
            found |= await source.app_ids()
    return sorted(found)[:MAX_APPS]


async def _tasks(sources: OrphanSources, apps: list[str], budget: Budget, kinds: list[str]) -> list[TaskInfo]:
    """The tasks of `kinds` of each of `apps`, one request per kind and app."""
    read: dict[tuple[str, str], TaskInfo] = {}
    pairs = [(kind, app) for app in apps for kind in kinds]
    wanted = [(k, a) for k, a in pairs if budget.spend(scan_now(), f"{k} tasks of app {a}")]

    async def one(pair: tuple[str, str]) -> None:
        kind, app = pair
        try:
            for info in await sources.by_kind[kind].of_app(app):
                read[(info.kind, info.id)] = info
        except ApiError as exc:
            budget.skipped.append(f"{kind} tasks of app {app} (HTTP {exc.status})")

    await gather(wanted, one)
    return sorted(read.values(), key=lambda t: (t.kind, t.name, t.id))


def _owner_problem(info: TaskInfo, owner: UserName | None) -> tuple[str, str] | None:
    """The owner, labelled, and what is wrong with them; None when the owner is fine or not known."""
    if info.owner_gone:
        return info.owner_gone, "its owner is no longer a user of its Qalyptus organization"
    if owner is not None and owner.gone:
        return user_label(owner), f"its owner is {'removed' if owner.status == 'missing' else owner.status}"
    return None


def _orphan(info: TaskInfo, app_gone: bool, owner: UserName | None) -> Orphan | None:
    problems = []
    if app_gone:
        problems.append("its app no longer exists (or this API key's user cannot see it)")
    owner_problem = _owner_problem(info, owner)
    if owner_problem is not None:
        problems.append(owner_problem[1])
    if not problems:
        return None
    return Orphan(
        kind=info.kind,
        id=info.id,
        name=one_line(info.name, 200),
        app=app_label(info.app_id, None) if app_gone and info.app_id else None,
        owner=owner_problem[0] if owner_problem is not None else None,
        problem="; ".join(problems),
        fix="delete it: it reloads or sends nothing without its app" if app_gone else NEW_OWNER.get(info.kind, ""),
    )


async def _judged(names: Names, tasks: list[TaskInfo]) -> list[Orphan]:
    apps = await names.apps(t.app_id for t in tasks if t.app_id)
    owners = await names.users(o for o in map(owner_of, tasks) if o)
    found = []
    for info in tasks:
        owner_id = owner_of(info)
        orphan = _orphan(info, bool(info.app_id) and info.app_id not in apps, owners.get(owner_id or ""))
        if orphan is not None:
            found.append(orphan)
    return found


def _checked(tasks: list[TaskInfo], sources: OrphanSources, apps: int) -> dict[str, int]:
    counts = {kind: 0 for kind in sources.by_kind}
    for info in tasks:
        counts[info.kind] = counts.get(info.kind, 0) + 1
    return counts | {"apps": apps}


def _note(tasks: list[TaskInfo], sources: OrphanSources, budget: Budget) -> str:
    notes = [tenant_text_note(["name", "app", "owner"])]
    unowned = sorted({t.kind for t in tasks if owner_of(t) is None and t.kind != "qalyptus"})
    if unowned:
        notes.append(f"Owners not known for {', '.join(unowned)} tasks: only their apps were checked.")
    if "qalyptus" in sources.by_kind:
        notes.append(
            "Qalyptus owners are Qalyptus users, checked against each organization's users (GET /users); that a "
            "task's owner field holds such a user's id is inferred, not documented. Qalyptus tasks are tied to a "
            "Qlik app only by their Qlik events, which are not read here."
        )
    if budget.skipped:
        notes.append(f"Stopped early: {len(budget.skipped)} reads skipped to stay within {SCAN_REQUESTS} requests.")
    return " ".join(notes)


@read("Find orphaned tasks")
async def find_orphans(
    sources: OrphanSources,
    app_ids: Annotated[list[str] | None, Field(max_length=200, description="Default: every app.")] = None,
) -> OrphanReport:
    """Tasks of every kind whose owner is disabled or deleted, or whose app is gone, each with its fix."""
    budget = Budget(requests=SCAN_REQUESTS, deadline=scan_now() + SCAN_SECONDS)
    # With app_ids, every kind is read app by app: cheaper than listing a whole kind for a few apps.
    whole = {} if app_ids else await _read_whole(sources, budget)
    read_whole = [t for listed in whole.values() for t in listed]
    named = {t.app_id for t in read_whole if t.app_id}
    apps = sorted(set(app_ids)) if app_ids else await _apps_to_scan(sources, budget, named)
    by_app = [k for k in sources.by_kind if k not in whole]
    tasks = sorted(await _tasks(sources, apps, budget, by_app) + read_whole, key=lambda t: (t.kind, t.name, t.id))
    return OrphanReport(
        orphans=await _judged(sources.names, tasks),
        checked=_checked(tasks, sources, len(apps)),
        stopped_early=bool(budget.skipped),
        not_checked=budget.skipped[:20],
        note=_note(tasks, sources, budget),
    )
