"""The one name lookup: apps, users and spaces by id, for every family's lists, previews and questions.

Looked up in batches (at most one request per 100 ids of a kind, so one per page of results) and cached per
process for a short while: a page of tasks costs one users request and one apps request, whatever its size.
What the tenant did not return is cached too, as missing: a deleted app or user is not asked for again.
Names are tenant text: `describe_*` give them quoted on one line, for previews and questions.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

from qlik_tasks_mcp.client.directory import IDS_PER_REQUEST, DirectoryApi, ItemDoc, UserDoc, filter_value
from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.tools.fence import one_line, quoted
from qlik_tasks_mcp.tools.sources import TaskInfo

# Long enough for one conversation turn's calls to share lookups, short enough that a rename shows soon.
TTL_SECONDS = 90.0


@dataclass(frozen=True)
class UserName:
    id: str
    name: str
    email: str = ""
    # active, disabled, deleted, invited or provisioned; "missing" when the tenant no longer has the user.
    status: str = ""

    @property
    def gone(self) -> bool:
        """True for a user who can no longer own anything: disabled, deleted, or removed altogether."""
        return self.status in ("disabled", "deleted", "missing")


@dataclass(frozen=True)
class AppName:
    id: str
    name: str
    space_id: str = ""
    owner_id: str = ""
    last_reload: str = ""
    last_reload_status: str = ""


V = TypeVar("V")


class TimedCache(Generic[V]):
    """Values by id, each good for `ttl` seconds; None stands for "the tenant has no such thing"."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self.entries: dict[str, tuple[float, V | None]] = {}
        self.lock = anyio.Lock()

    def known(self, key: str) -> bool:
        entry = self.entries.get(key)
        return entry is not None and self.clock() - entry[0] < self.ttl

    def get(self, key: str) -> V | None:
        return self.entries[key][1] if self.known(key) else None

    def put(self, key: str, value: V | None) -> None:
        self.entries[key] = (self.clock(), value)

    async def fill(self, keys: Iterable[str], fetch: Callable[[list[str]], Awaitable[dict[str, V]]]) -> dict[str, V]:
        """The values of `keys`, fetching the unknown ones in batches of 100; absent ones are left out."""
        wanted = list(dict.fromkeys(k for k in keys if k))
        async with self.lock:  # a second caller waits and then finds the first one's answers cached
            unknown = [k for k in wanted if not self.known(k)]
            for start in range(0, len(unknown), IDS_PER_REQUEST):
                batch = unknown[start : start + IDS_PER_REQUEST]
                found = await fetch(batch)
                for key in batch:
                    self.put(key, found.get(key))
        values = {k: self.get(k) for k in wanted}
        return {k: v for k, v in values.items() if v is not None}


def _user(doc: UserDoc) -> UserName:
    return UserName(id=doc.id, name=doc.name, email=doc.email, status=doc.status)


def _app(doc: ItemDoc) -> AppName:
    return AppName(
        id=doc.resource_id,
        name=doc.name,
        space_id=doc.space_id,
        owner_id=doc.owner_id,
        last_reload=doc.resource_reload_end_time,
        last_reload_status=doc.resource_reload_status,
    )


class Names:
    """Apps, users and spaces by id, batched and briefly cached; one per process (Deps.names)."""

    def __init__(self, api: DirectoryApi, *, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.api = api
        self._users: TimedCache[UserName] = TimedCache(ttl, clock)
        self._apps: TimedCache[AppName] = TimedCache(ttl, clock)
        self._spaces: TimedCache[str] = TimedCache(ttl, clock)
        self._me: TimedCache[UserName] = TimedCache(ttl, clock)

    @classmethod
    def of(cls, qlik: QlikClient) -> Names:
        return cls(DirectoryApi(qlik))

    async def users(self, user_ids: Iterable[str]) -> dict[str, UserName]:
        """Users by id, any status; a user the tenant no longer has comes back with status "missing"."""
        wanted = list(user_ids)
        found = await self._users.fill(wanted, self._fetch_users)
        return {i: found.get(i) or UserName(id=i, name="", status="missing") for i in wanted if i}

    async def apps(self, app_ids: Iterable[str]) -> dict[str, AppName]:
        """Apps by app id (an item's resourceId); an app that is gone or not visible to the caller is absent."""
        return await self._apps.fill(app_ids, self._fetch_apps)

    async def spaces(self, space_ids: Iterable[str]) -> dict[str, str]:
        """Space names by id; a personal space (no space id) has none, and a missing space is absent."""
        return await self._spaces.fill(space_ids, self._fetch_spaces)

    async def me(self) -> UserName:
        """The caller: the user of this API key (GET /api/v1/users/me)."""
        found = await self._me.fill(["me"], self._fetch_me)
        return found["me"]

    async def describe_app(self, app_id: str) -> str:
        """For previews and questions: "'Sales Dashboard' (app a27d...)", or "app a27d... (not found)"."""
        return (await self.describe_apps([app_id]))[app_id]

    async def describe_apps(self, app_ids: Iterable[str]) -> dict[str, str]:
        wanted = [a for a in app_ids if a]
        found = await self.apps(wanted)
        return {a: app_label(a, found.get(a)) for a in wanted}

    async def describe_user(self, user_id: str) -> str:
        """For previews and questions: "'Bob Builder' (user 2aab...)", with "(disabled)" etc. when not active."""
        return (await self.describe_users([user_id]))[user_id]

    async def describe_users(self, user_ids: Iterable[str]) -> dict[str, str]:
        wanted = [u for u in user_ids if u]
        found = await self.users(wanted)
        return {u: user_label(found[u]) for u in wanted}

    async def _fetch_users(self, ids: list[str]) -> dict[str, UserName]:
        return {doc.id: _user(doc) for doc in await self.api.users_by_id(ids)}

    async def _fetch_apps(self, ids: list[str]) -> dict[str, AppName]:
        return {doc.resource_id: _app(doc) for doc in await self.api.apps_by_id(ids)}

    async def _fetch_spaces(self, ids: list[str]) -> dict[str, str]:
        """One listing page covers the spaces of most tenants; only what it missed is read one by one."""
        listed = await self.api.spaces(limit=100)
        names = {space.id: space.name for space in listed.items}
        if listed.next_cursor:
            for space_id in (i for i in ids if i not in names):
                space = await self.api.space(space_id)
                if space is not None:
                    names[space.id] = space.name
        for space_id, name in names.items():
            if space_id not in ids:
                self._spaces.put(space_id, name)
        return names

    async def _fetch_me(self, _: list[str]) -> dict[str, UserName]:
        return {"me": _user(await self.api.me())}


def app_label(app_id: str, app: AppName | None) -> str:
    if app is None:
        return f"app {app_id} (not found)"
    return f"{quoted(app.name, 80)} (app {app_id})"


def user_label(user: UserName) -> str:
    if user.status == "missing":
        return f"user {user.id} (not found)"
    state = f", {user.status}" if user.status and user.status != "active" else ""
    return f"{quoted(user.name, 80)} (user {user.id}{state})"


async def owner_change_note(names: Names, owner_ids: list[str]) -> str:
    """put_owner_note for these tasks' owners, by name; "" when the caller owns them all already."""
    me = await names.me()
    labels = await names.describe_users(o for o in owner_ids if o and o != "unknown")
    return put_owner_note(owner_ids, caller=me.id, labels=labels)


async def task_lines(names: Names, tasks: list[TaskInfo], after: str) -> list[str]:
    """Preview lines naming each task's app and owner: one apps and one users request for the lot."""
    apps = await names.describe_apps(t.app_id for t in tasks if t.app_id)
    owners = await names.describe_users(o for o in map(owner_of, tasks) if o)
    return [
        f"{t.kind} {t.id} ({t.name})"
        + (f" of {apps[t.app_id]}" if t.app_id else "")
        + (f", owner {owners[o]}" if (o := owner_of(t)) else "")
        + f": {t.state or 'now'} -> {after}"
        for t in tasks
    ]


def owner_of(task: TaskInfo) -> str | None:
    """The task's owner id, from whichever field its kind fills; None when unknown."""
    owner = task.owner_id or task.owner_before_put
    return owner if owner and owner != "unknown" else None


@dataclass(frozen=True)
class RowNames:
    """The names a page of rows shows beside its ids, each on one line (tenant text: say so once per result)."""

    apps: dict[str, AppName]
    users: dict[str, UserName]

    def app(self, app_id: str | None) -> str | None:
        if not app_id:
            return None
        app = self.apps.get(app_id)
        return one_line(app.name, 100) if app else "(not found)"

    def user(self, user_id: str | None) -> str | None:
        """The user's name, with its status when not active: "Eve Exited (deleted)"."""
        user = self.users.get(user_id) if user_id else None
        if user is None:
            return None
        if user.status == "missing":
            return "(not found)"
        state = f" ({user.status})" if user.status and user.status != "active" else ""
        return one_line(user.name, 100) + state


async def row_names(names: Names, app_ids: Iterable[str | None], user_ids: Iterable[str | None]) -> RowNames:
    """Names for a page of rows: at most one apps and one users request for the lot (none when cached)."""
    apps = await names.apps(a for a in app_ids if a)
    users = await names.users(u for u in user_ids if u)
    return RowNames(apps, users)


# Qlik user ids are hex (24 characters; the sandbox's 32): such a value is taken as an id without a lookup.
_USER_ID = re.compile(r"[0-9a-fA-F-]{16,64}")
FOUND_USERS_SHOWN = 10


async def user_id_of(names: Names, text: str) -> str:
    """The id of the user `text` names: a user id as it is, else the one user whose name or e-mail contains it
    (an exact name or e-mail wins over partial matches); ambiguous or unknown is InvalidInput, saying what to give."""
    if _USER_ID.fullmatch(text):
        return text
    fields = ("email",) if "@" in text else ("name", "email")
    query = "(" + " or ".join(f"{f} co {filter_value(text, 'owner')}" for f in fields) + ")"
    found = (await names.api.users(filter_text=query, limit=FOUND_USERS_SHOWN + 1)).items
    wanted = text.casefold()
    exact = [u for u in found if wanted in (u.name.casefold(), u.email.casefold())]
    matches = exact if len(exact) == 1 else found
    if len(matches) == 1:
        return matches[0].id
    if not matches:
        raise InvalidInput(f"no user's name or e-mail contains {quoted(text, 60)}; find_users looks people up")
    shown = "; ".join(f"{quoted(u.name, 40)} <{one_line(u.email, 60)}> (user {u.id})" for u in found[:5])
    count = f"more than {FOUND_USERS_SHOWN}" if len(found) > FOUND_USERS_SHOWN else str(len(found))
    raise InvalidInput(f"{count} users match {quoted(text, 60)}: {shown}; give the e-mail or the user id")


def put_owner_note(
    owners: Iterable[str | None], *, caller: str | None = None, labels: Mapping[str, str] | None = None
) -> str:
    """What a PUT of a reload task or task does besides the change: Qlik makes the caller the owner.

    `caller`: the caller's user id (Names.me()); tasks it owns already change no hands, and when it owns them
    all the note is "". `labels`: how to show an owner id (Names.describe_users()).
    """
    counts = Counter((labels or {}).get(o, o) if o else "unknown" for o in owners if not caller or o != caller)
    if not counts:
        return ""
    now = ", ".join(f"{o} ({n})" if n > 1 else o for o, n in counts.most_common(5))
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    return (
        f"Qlik makes the caller (this API key's user) the owner of what it updates; now owned by {now}{more}, "
        "afterwards it runs with the caller's access."
    )
