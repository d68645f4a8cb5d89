"""The one name lookup: apps, users and spaces by id, for every family's lists, previews and questions.

Looked up in batches (at most one request per 100 ids of a kind, so one per page of results) and cached per
process for a short while: a page of tasks costs one users request and one apps request, whatever its size.
What the tenant did not return is cached too: it is not asked for again.
Names are tenant text: `describe_*` give them quoted on one line, for previews and questions.

Names are enrichment: a lookup that fails (any status, a timeout, no answer, an answer naming none of the ids)
leaves the ids as they are and is recorded for the call in progress (`NameGaps`); the registrar adds one note
saying which names could not be read and why, and the tool's own work goes on. Nothing is concluded from absence:
an id the tenant did not return is "not visible to this key", never "deleted" (only a user's status, or a direct
read answering 404, says that).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import httpx
from pydantic import BaseModel

from qlik_tasks_mcp.client.directory import IDS_PER_REQUEST, DirectoryApi, ItemDoc, UserDoc, filter_value
from qlik_tasks_mcp.client.errors import ApiError, ClientError, InvalidInput
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.tools.audit import signed_in_person
from qlik_tasks_mcp.tools.fence import one_line, quoted

if TYPE_CHECKING:
    # Only for types: the registrar imports this module at start, and the sources bring the schedule reader.
    from qlik_tasks_mcp.tools.sources import TaskInfo

# Long enough for one conversation turn's calls to share lookups, short enough that a rename shows soon.
TTL_SECONDS = 90.0


# A user id the tenant's answer did not hold: not visible to this key (or gone; the answer does not say which).
UNSEEN = "unseen"
NOT_VISIBLE = "not visible to this key"


@dataclass(frozen=True)
class UserName:
    id: str
    name: str
    email: str = ""
    # active, disabled, deleted, invited or provisioned as the tenant says; UNSEEN when its answer left the id out.
    status: str = ""
    # False when the lookup failed: nothing is known of this user but the id.
    read: bool = True

    @property
    def gone(self) -> bool:
        """True for a user the tenant says can no longer own anything: disabled or deleted."""
        return self.status in ("disabled", "deleted")


@dataclass(frozen=True)
class AppName:
    id: str
    name: str
    space_id: str = ""
    owner_id: str = ""
    last_reload: str = ""
    last_reload_status: str = ""
    # False when the lookup failed: nothing is known of this app but the id.
    read: bool = True


@dataclass
class NameGaps:
    """The name lookups that failed during one tool call: kind ("users", "apps", "spaces", "caller") -> why."""

    reasons: dict[str, str] = field(default_factory=dict)

    def note(self) -> str | None:
        if not self.reasons:
            return None
        why = "; ".join(f"{kind}: {reason}" for kind, reason in self.reasons.items())
        return f"Names could not be read, so ids are shown as they are ({why}); the rest of this result stands."


_GAPS: ContextVar[NameGaps | None] = ContextVar("qtm_name_gaps", default=None)


@contextmanager
def name_gaps() -> Iterator[NameGaps]:
    """Collects the failed lookups of the call in progress (its child tasks share the same record)."""
    gaps = NameGaps()
    token = _GAPS.set(gaps)
    try:
        yield gaps
    finally:
        _GAPS.reset(token)


def gap(kind: str, reason: str) -> None:
    """Records that `kind` names could not be read, for the call in progress (the first reason per kind is kept)."""
    gaps = _GAPS.get()
    if gaps is not None:
        gaps.reasons.setdefault(kind, reason)


def failure_reason(exc: BaseException) -> str:
    """Why a lookup failed, in our words only (no tenant text): the request and its status, or the failure."""
    if isinstance(exc, ApiError):
        answer = f"HTTP {exc.status}" if exc.status else f"no HTTP answer ({exc.title})"
        return f"{exc.method} {exc.path} -> {answer}" if exc.path else answer
    if isinstance(exc, EmptyAnswer):
        return str(exc)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__


# What a name lookup may fail with; anything else is a bug and surfaces as one.
LOOKUP_FAILURES = (ClientError, TimeoutError, httpx.HTTPError, ValueError)


def with_name_note(result: Any, gaps: NameGaps) -> Any:
    """`result` with the call's one names note added to its `notes` or `note` (a Gated's `notes`)."""
    note = gaps.note()
    if note is None or not isinstance(result, BaseModel):
        return result
    fields = type(result).model_fields
    notes = getattr(result, "notes", None)
    if "notes" in fields and isinstance(notes, list):
        setattr(result, "notes", [*notes, note])  # noqa: B010 - any result model with a `notes` list
    elif "note" in fields:
        current = getattr(result, "note", None)
        setattr(result, "note", f"{current} {note}" if current else note)  # noqa: B010 - as above
    return result


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
        return self.values_of(wanted)

    def values_of(self, keys: Iterable[str]) -> dict[str, V]:
        """The known values among `keys` (a fill that failed midway keeps what it read)."""
        values = {k: self.get(k) for k in keys}
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


class EmptyAnswer(ClientError):
    """A lookup answered, but with nothing for any id asked: read as a failed lookup, never as absence."""


class Seen:
    """What one caller has read: with QLIK_MCP_AUTH=oauth each signed-in person sees with their own rights, so one
    person's answers (a name, who "me" is) are never shown to another."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.users: TimedCache[UserName] = TimedCache(ttl, clock)
        self.apps: TimedCache[AppName] = TimedCache(ttl, clock)
        self.spaces: TimedCache[str] = TimedCache(ttl, clock)
        self.me: TimedCache[UserName] = TimedCache(ttl, clock)


# The callers whose caches are kept at once; the one unused longest goes first.
CALLERS_KEPT = 256


class Names:
    """Apps, users and spaces by id, batched and briefly cached per caller; one per process (Deps.names)."""

    def __init__(self, api: DirectoryApi, *, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.api = api
        self._ttl = ttl
        self._clock = clock
        self._callers: dict[str, Seen] = {}

    def _seen(self) -> Seen:
        person = signed_in_person()
        key = person["id"] if person is not None else ""
        found = self._callers.pop(key, None)
        if found is None:
            found = Seen(self._ttl, self._clock)
            if len(self._callers) >= CALLERS_KEPT:
                del self._callers[next(iter(self._callers))]
        self._callers[key] = found
        return found

    @property
    def _users(self) -> TimedCache[UserName]:
        return self._seen().users

    @property
    def _apps(self) -> TimedCache[AppName]:
        return self._seen().apps

    @property
    def _spaces(self) -> TimedCache[str]:
        return self._seen().spaces

    @property
    def _me(self) -> TimedCache[UserName]:
        return self._seen().me

    @classmethod
    def of(cls, qlik: QlikClient) -> Names:
        return cls(DirectoryApi(qlik))

    async def users(self, user_ids: Iterable[str]) -> dict[str, UserName]:
        """Users by id, any status: each id asked for is there, with status UNSEEN when the tenant's answer left
        it out, and read=False when the lookup failed (a gap noted for the call)."""
        wanted = [i for i in user_ids if i]
        found = await self._filled(self._users, wanted, self._fetch_users, "users")
        return {
            i: found.get(i) or UserName(id=i, name="", status=UNSEEN, read=self._users.known(i))
            for i in dict.fromkeys(wanted)
        }

    async def apps(self, app_ids: Iterable[str]) -> dict[str, AppName]:
        """Apps by app id (an item's resourceId). An app the tenant's answer left out (gone, or not visible to this
        key) is absent; one the lookup could not read is there with read=False (a gap noted for the call)."""
        wanted = [a for a in app_ids if a]
        found = await self._filled(self._apps, wanted, self._fetch_apps, "apps")
        unread = {a: AppName(id=a, name="", read=False) for a in wanted if not self._apps.known(a)}
        return unread | found

    async def spaces(self, space_ids: Iterable[str]) -> dict[str, str]:
        """Space names by id; a personal space (no space id), a space not visible and one not read are absent."""
        return await self._filled(self._spaces, [s for s in space_ids if s], self._fetch_spaces, "spaces")

    async def me(self) -> UserName | None:
        """The caller: the signed-in person, or the user of this API key (GET /api/v1/users/me); None when it could
        not be read."""
        found = await self._filled(self._me, ["me"], self._fetch_me, "caller")
        return found.get("me")

    async def _filled(
        self,
        cache: TimedCache[V],
        keys: list[str],
        fetch: Callable[[list[str]], Awaitable[dict[str, V]]],
        kind: str,
    ) -> dict[str, V]:
        """cache.fill, degrading: a failed lookup leaves the ids it did not read unknown and notes why."""
        try:
            return await cache.fill(keys, fetch)
        except LOOKUP_FAILURES as exc:
            gap(kind, failure_reason(exc))
            return cache.values_of(keys)

    async def describe_app(self, app_id: str) -> str:
        """For previews and questions: "'Sales Dashboard' (app a27d...)", or app_label's other forms."""
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
        found = {doc.id: _user(doc) for doc in await self.api.users_by_id(ids)}
        if not found:
            # Every task names its owner, and Qlik keeps a deleted user with that status: an answer naming none
            # of them is no answer (a key that may see no one), not a tenant whose owners all left.
            raise EmptyAnswer(f"POST /api/v1/users/actions/filter answered none of the {len(ids)} users asked for")
        return found

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
    """ "'Sales' (app a27d...)"; "app a27d... (not visible to this key)" when the tenant's answer left it out;
    "app a27d..." when its name could not be read."""
    if app is None:
        return f"app {app_id} ({NOT_VISIBLE})"
    if not app.read:
        return f"app {app_id}"
    return f"{quoted(app.name, 80)} (app {app_id})"


def user_label(user: UserName) -> str:
    if not user.read:
        return f"user {user.id}"
    if user.status == UNSEEN:
        return f"user {user.id} ({NOT_VISIBLE})"
    state = f", {user.status}" if user.status and user.status != "active" else ""
    return f"{quoted(user.name, 80)} (user {user.id}{state})"


async def owner_change_note(names: Names, owner_ids: list[str]) -> str:
    """put_owner_note for these tasks' owners, by name; "" when the caller owns them all already."""
    me = await names.me()
    labels = await names.describe_users(o for o in owner_ids if o and o != "unknown")
    return put_owner_note(owner_ids, caller=me.id if me else None, labels=labels)


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
        """The app's name; "(not visible to this key)" when the tenant left it out; None when not read."""
        if not app_id:
            return None
        app = self.apps.get(app_id)
        if app is None:
            return f"({NOT_VISIBLE})"
        return one_line(app.name, 100) if app.read else None

    def user(self, user_id: str | None) -> str | None:
        """The user's name, with its status when not active: "Eve Exited (deleted)"; None when not read."""
        user = self.users.get(user_id) if user_id else None
        if user is None or not user.read:
            return None
        if user.status == UNSEEN:
            return f"({NOT_VISIBLE})"
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


# Qlik app ids are UUIDs: such a value is taken as an id without a lookup.
_APP_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
FOUND_APPS_SHOWN = 10


async def app_id_of(names: Names, text: str) -> str:
    """The id of the app `text` names: an app id as it is; else the one app this key sees whose name contains it
    (an exact name wins over partial matches). Several are InvalidInput listing them; none, or a lookup that
    fails, leaves `text` as it is, for the tenant to answer as an id."""
    if _APP_ID.fullmatch(text):
        return text
    try:
        page = await names.api.apps(query=text, limit=FOUND_APPS_SHOWN + 1)
    except LOOKUP_FAILURES:
        return text
    wanted = text.casefold()
    found = [i for i in page.items if i.resource_id and wanted in i.name.casefold()]
    exact = [i for i in found if i.name.casefold() == wanted]
    matches = exact if len(exact) == 1 else found
    if len(matches) == 1:
        return matches[0].resource_id
    if not matches:
        return text
    shown = "; ".join(f"{quoted(i.name, 60)} (app {i.resource_id})" for i in found[:5])
    count = f"more than {FOUND_APPS_SHOWN}" if len(found) > FOUND_APPS_SHOWN else str(len(found))
    raise InvalidInput(f"{count} apps match {quoted(text, 60)}: {shown}; give the whole name or the app id")


# Arguments that take an app or a user, in every family: each also takes a name that names exactly one.
APP_ARGUMENTS = ("app_id", "resource_id")
APP_LIST_ARGUMENTS = ("app_ids",)
USER_ARGUMENTS = ("owner_id",)
Resolver = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def argument_resolver(service: object) -> Resolver | None:
    """For a family whose service has the name lookup (`service.names`): the call's arguments with app and user
    names replaced by their ids (app_id_of, user_id_of). None for a family without one (Qalyptus)."""
    names = getattr(service, "names", None)
    if not isinstance(names, Names):
        return None

    async def one(key: str, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if key in APP_ARGUMENTS:
            return await app_id_of(names, value)
        return await user_id_of(names, value) if key in USER_ARGUMENTS else value

    async def resolve(kwargs: dict[str, Any]) -> dict[str, Any]:
        out = dict(kwargs)
        for key, value in kwargs.items():
            if key in APP_LIST_ARGUMENTS and isinstance(value, list):
                out[key] = [await one("app_id", a) for a in value]
            elif isinstance(value, BaseModel):
                # One level down too: a bulk filter's app and owner, a subscription's content app.
                fields = [f for f in (*APP_ARGUMENTS, *USER_ARGUMENTS) if f in type(value).model_fields]
                update = {f: await one(f, getattr(value, f)) for f in fields}
                out[key] = value.model_copy(update=update) if update else value
            else:
                out[key] = await one(key, value)
        return out

    return resolve


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
