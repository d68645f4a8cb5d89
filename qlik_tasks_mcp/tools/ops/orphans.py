"""find_orphans (served by the ops toolset): tasks of every served kind whose owner is disabled or deleted, or
whose app no longer exists, each with what would fix it.

A kind whose source can list its tasks tenant-wide (`all_tasks`: sharing, Qalyptus) is read whole; the others
are read app by app: the apps of the tenant (items) and those any kind's tasks name (a deleted app is known only
from the tasks left behind). Owners and apps are then looked up by id in batches. Qalyptus owners are Qalyptus
users, judged by its source against each organization's users.

The work is bounded by a request budget, like find_failures: every listing page (client/allowance.py) and every
direct read spends from it, so a next link that loops ends there; what is left unread is named. A kind that
fails (retired, refused, unreachable) becomes a note and the others go on. Nothing is concluded from absence: an
app is gone only when a direct read of it answers 404, and an owner only when the tenant gives them a disabled or
deleted status, or a direct read of them answers 404; an app or user the key may not see is said to be so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Protocol, TypeVar

from pydantic import Field

from qlik_tasks_mcp.client.allowance import pages_allowed
from qlik_tasks_mcp.client.directory import Presence
from qlik_tasks_mcp.client.errors import ClientError
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import (
    NOT_VISIBLE,
    UNSEEN,
    Names,
    UserName,
    failure_reason,
    owner_of,
    user_label,
)
from qlik_tasks_mcp.tools.operation import read
from qlik_tasks_mcp.tools.sources import (
    Budget,
    KindUnavailable,
    TaskInfo,
    TaskSource,
    all_tasks,
    gather,
    scan_now,
)

SCAN_REQUESTS = 400
SCAN_SECONDS = 45.0
MAX_APPS = 1000
# How a new owner is given, per kind: reload tasks and tasks take the caller as owner on any update. Every tool
# named here exists (tests/test_tool_mentions.py).
NEW_OWNER = {
    "reload": "give it a new owner: any update through update_reload_task makes the caller its owner",
    "task": "give it a new owner: any update through update_task makes the caller its owner",
    "sharing": "give it a new owner (patch_sharing_task with owner_id), or delete it (delete_sharing_task)",
    "qalyptus": "give it a new owner in Qalyptus (change_qalyptus_task_owner), or delete it (delete_qalyptus_task)",
}
DELETE_TOOL = {
    "reload": "delete_reload_task",
    "task": "delete_task",
    "sharing": "delete_sharing_task",
    "qalyptus": "delete_qalyptus_task",
}

T = TypeVar("T")


class OrphanSources(Protocol):
    """What find_orphans needs of the ops service: the served kinds' sources and the name lookup."""

    by_kind: dict[str, TaskSource]
    names: Names


class Orphan(Compact):
    kind: str
    id: str
    name: str
    app: str | None = Field(None, description="The app, by name and id, when it is gone.")
    owner: str | None = Field(None, description="The owner, by name and id, with the status.")
    problem: str
    fix: str


class OrphanReport(Compact):
    orphans: list[Orphan]
    checked: dict[str, int] = Field(description="Tasks read per kind, and apps scanned.")
    stopped_early: bool = False
    not_checked: list[str] = []
    note: str | None = None


class _Scan:
    """One find_orphans pass: its budget, and what it could not read (kind notes, skipped reads)."""

    def __init__(self, sources: OrphanSources) -> None:
        self.sources = sources
        self.budget = Budget(requests=SCAN_REQUESTS, deadline=scan_now() + SCAN_SECONDS)
        self.unavailable: dict[str, str] = {}
        self.notes: list[str] = []

    def spend(self, what: str) -> bool:
        return self.budget.spend(scan_now(), what)

    async def guarded(self, kind: str, what: str, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`call`'s answer; a retired kind is set aside with its note, any other failure is a skipped read."""
        if kind in self.unavailable:
            return fallback
        try:
            return await call()
        except KindUnavailable as exc:
            self.unavailable[kind] = str(exc)
        except ClientError as exc:
            self.budget.skipped.append(f"{what} ({failure_reason(exc)})")
        return fallback


async def _read_whole(scan: _Scan) -> dict[str, list[TaskInfo]]:
    """The tasks of each kind whose source lists them tenant-wide, by kind; other kinds are left out."""
    whole: dict[str, list[TaskInfo]] = {}
    for kind, source in scan.sources.by_kind.items():
        listed = await scan.guarded(kind, f"{kind} tasks", lambda s=source: all_tasks(s, scan.budget), None)
        if listed is not None:
            whole[kind] = listed
    return whole


async def _tenant_apps(scan: _Scan, found: set[str]) -> None:
    """The tenant's apps as this key sees them (items, a page of 100 per request), until the budget or a cursor
    seen before ends the listing."""
    cursor: str | None = None
    cursors: set[str] = set()
    while len(found) < MAX_APPS and scan.spend("more apps of the tenant"):
        try:
            page = await scan.sources.names.api.apps(limit=100, cursor=cursor)
        except ClientError as exc:
            scan.budget.skipped.append(f"apps of the tenant ({failure_reason(exc)})")
            return
        found |= {item.resource_id for item in page.items if item.resource_id}
        cursor = page.next_cursor
        if not cursor or cursor in cursors:
            return
        cursors.add(cursor)


async def _apps_to_scan(scan: _Scan, named: set[str]) -> list[str]:
    """The tenant's apps, those `named` by tasks already read, and those the other task kinds name cheaply."""
    found: set[str] = set(named)
    await _tenant_apps(scan, found)
    for kind, source in scan.sources.by_kind.items():
        found |= await scan.guarded(kind, f"apps named by {kind} tasks", source.app_ids, set())
    return sorted(found)[:MAX_APPS]


async def _tasks(scan: _Scan, apps: list[str], kinds: list[str]) -> list[TaskInfo]:
    """The tasks of `kinds` of each of `apps`, one listing per kind and app (each page spends from the budget)."""
    read_tasks: dict[tuple[str, str], TaskInfo] = {}
    pairs = [(kind, app) for app in apps for kind in kinds]

    async def one(pair: tuple[str, str]) -> None:
        kind, app = pair
        source = scan.sources.by_kind[kind]
        for info in await scan.guarded(kind, f"{kind} tasks of app {app}", lambda: source.of_app(app), []):
            read_tasks[(info.kind, info.id)] = info

    await gather(pairs, one)
    return list(read_tasks.values())


async def _presence(scan: _Scan, what: str, ask: Callable[[], Awaitable[Presence]]) -> Presence | None:
    """A direct read's answer within the budget; None when it was not read."""
    if not scan.spend(what):
        return None
    try:
        return await ask()
    except ClientError as exc:
        scan.budget.skipped.append(f"{what} ({failure_reason(exc)})")
        return None


async def _gone_apps(scan: _Scan, app_ids: set[str]) -> tuple[set[str], set[str]]:
    """Of `app_ids`, those the tenant says are gone (404 to a direct read) and those this key may not see;
    an app the listing named is neither, and one whose lookup failed is not judged."""
    names = await scan.sources.names.apps(app_ids)
    unlisted = sorted(a for a in app_ids if a not in names)
    gone, hidden = set(), set()
    api = scan.sources.names.api
    for app_id in unlisted:
        presence = await _presence(scan, f"app {app_id}", lambda a=app_id: api.app_presence(a))
        if presence == "gone":
            gone.add(app_id)
        elif presence == "forbidden":
            hidden.add(app_id)
    return gone, hidden


async def _owners(scan: _Scan, owner_ids: set[str]) -> dict[str, UserName]:
    """The owners by id; one the filter left out is read directly: a 404 says the tenant has no such user."""
    owners = await scan.sources.names.users(owner_ids)
    api = scan.sources.names.api
    for user_id, user in list(owners.items()):
        if user.status != UNSEEN:
            continue
        presence = await _presence(scan, f"user {user_id}", lambda u=user_id: api.user_presence(u))
        if presence == "gone":
            owners[user_id] = UserName(id=user_id, name="", status="removed")
    return owners


def _owner_problem(info: TaskInfo, owner: UserName | None) -> tuple[str, str] | None:
    """The owner, labelled, and what is wrong with them; None when the owner is fine or not known."""
    if info.owner_gone:
        return info.owner_gone, "its owner is no longer a user of its Qalyptus organization"
    if owner is None or not owner.read:
        return None
    if owner.status == "removed":
        return f"user {owner.id} (no such user)", "its owner is no longer a user of the tenant"
    if owner.gone:
        return user_label(owner), f"its owner is {owner.status}"
    return None


def _orphan(info: TaskInfo, app_gone: bool, owner: UserName | None) -> Orphan | None:
    problems = []
    if app_gone:
        problems.append("its app no longer exists (the tenant answers 404 for it)")
    owner_problem = _owner_problem(info, owner)
    if owner_problem is not None:
        problems.append(owner_problem[1])
    if not problems:
        return None
    delete = DELETE_TOOL.get(info.kind, "its kind's delete tool")
    return Orphan(
        kind=info.kind,
        id=info.id,
        name=one_line(info.name, 200),
        app=f"app {info.app_id} (gone)" if app_gone and info.app_id else None,
        owner=owner_problem[0] if owner_problem is not None else None,
        problem="; ".join(problems),
        fix=f"delete it ({delete}): it reloads or sends nothing without its app"
        if app_gone
        else NEW_OWNER.get(info.kind, ""),
    )


async def _judged(scan: _Scan, tasks: list[TaskInfo]) -> tuple[list[Orphan], set[str], int]:
    """The orphans among `tasks`, the apps this key may not see, and how many owners could not be read."""
    gone, hidden = await _gone_apps(scan, {t.app_id for t in tasks if t.app_id})
    owners = await _owners(scan, {o for o in map(owner_of, tasks) if o})
    found = []
    for info in tasks:
        orphan = _orphan(info, bool(info.app_id) and info.app_id in gone, owners.get(owner_of(info) or ""))
        if orphan is not None:
            found.append(orphan)
    unread = sum(1 for o in owners.values() if not o.read)
    return found, hidden, unread


def _checked(tasks: list[TaskInfo], sources: OrphanSources, apps: int) -> dict[str, int]:
    counts = {kind: 0 for kind in sources.by_kind}
    for info in tasks:
        counts[info.kind] = counts.get(info.kind, 0) + 1
    return counts | {"apps": apps}


def _note(scan: _Scan, tasks: list[TaskInfo], hidden: set[str], unread_owners: int) -> str:
    notes = [tenant_text_note(["name", "app", "owner"])]
    notes += [f"{kind} tasks skipped: {why}" for kind, why in scan.unavailable.items()]
    unowned = sorted({t.kind for t in tasks if owner_of(t) is None and t.kind != "qalyptus"})
    if unowned:
        notes.append(f"Owners not known for {', '.join(unowned)} tasks: only their apps were checked.")
    if unread_owners:
        notes.append(f"{unread_owners} owners could not be read, so their tasks' owners were not judged.")
    if hidden:
        shown = ", ".join(sorted(hidden)[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else "")
        notes.append(f"Apps {NOT_VISIBLE} (HTTP 403), so not judged: {shown}.")
    if "qalyptus" in scan.sources.by_kind:
        notes.append(
            "Qalyptus owners are Qalyptus users, checked against each organization's users (GET /users); that a "
            "task's owner field holds such a user's id is inferred, not documented. Qalyptus tasks are tied to a "
            "Qlik app only by their Qlik events, which are not read here."
        )
    notes += scan.budget.notes
    if scan.budget.skipped:
        notes.append(
            f"Stopped early or skipped: {len(scan.budget.skipped)} reads not done (within {SCAN_REQUESTS} requests "
            f"/ {SCAN_SECONDS:.0f} s, or refused); give app_ids to check fewer apps."
        )
    return " ".join(notes)


@read("Find orphaned tasks")
async def find_orphans(
    sources: OrphanSources,
    app_ids: Annotated[list[str] | None, Field(max_length=200, description="Default: every app.")] = None,
) -> OrphanReport:
    """Tasks of every kind whose owner is disabled or deleted, or whose app is gone, each with its fix."""
    scan = _Scan(sources)
    # Every listing page read below spends from the budget, whichever family pages it.
    with pages_allowed(scan.spend):
        # With app_ids, every kind is read app by app: cheaper than listing a whole kind for a few apps.
        whole = {} if app_ids else await _read_whole(scan)
        read_whole = [t for listed in whole.values() for t in listed]
        named = {t.app_id for t in read_whole if t.app_id}
        apps = sorted(set(app_ids)) if app_ids else await _apps_to_scan(scan, named)
        by_app = [k for k in sources.by_kind if k not in whole and k not in scan.unavailable]
        tasks = sorted(await _tasks(scan, apps, by_app) + read_whole, key=lambda t: (t.kind, t.name, t.id))
        orphans, hidden, unread_owners = await _judged(scan, tasks)
    return OrphanReport(
        orphans=orphans,
        checked=_checked(tasks, sources, len(apps)),
        stopped_early=bool(scan.budget.skipped),
        not_checked=scan.budget.skipped[:20],
        note=_note(scan, tasks, hidden, unread_owners),
    )
