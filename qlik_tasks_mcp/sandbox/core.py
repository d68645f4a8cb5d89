"""The sandbox tenant's shared machinery: clock, ids, auth, tier limits, the request body check, a state digest."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from qlik_tasks_mcp.sandbox.faults import Faults

SANDBOX_URL = "https://sandbox.qlikcloud.invalid"
SANDBOX_API_KEY = "sandbox-api-key-not-a-secret-0000"
# The sandbox's Qalyptus organization, named here (not in qalyptus.py) so a server can point its client at it
# without loading the simulated tenant and its checker.
QALYPTUS_HOST = "sandbox.qalyptus.invalid"
QALYPTUS_SANDBOX_URL = f"https://{QALYPTUS_HOST}/api/v1"
QALYPTUS_SANDBOX_KEY = SANDBOX_API_KEY
TENANT_ID = "SbxTenant0Qx7pLm2Rk9vWz4Nc6Hd1Ty"
# The OAuth client registered in the sandbox tenant (a public one: no secret needed; sandbox/oauth.py).
SANDBOX_OAUTH_CLIENT_ID = "sandbox-oauth-client"
# The user an OAuth access token of this request belongs to (None: the API key's user answers).
_signed_in: ContextVar[str | None] = ContextVar("sandbox_signed_in", default=None)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class App:
    id: str
    name: str
    space_id: str
    owner_id: str
    # Gone from the tenant (no item any more) while tasks that name it remain.
    deleted: bool = False


@dataclass
class User:
    id: str
    name: str
    email: str
    admin: bool = False
    # As the users spec says: active, invited, disabled, deleted or provisioned.
    status: str = "active"


class Clock:
    """Wall time that tests can move forward; run simulations read it too."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


class SlidingWindow:
    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.sent: deque[float] = deque()

    def admit(self) -> float | None:
        """None when admitted, else the seconds until a slot frees."""
        now = self.clock()
        while self.sent and now - self.sent[0] >= self.window:
            self.sent.popleft()
        if len(self.sent) >= self.limit:
            return self.window - (now - self.sent[0])
        self.sent.append(now)
        return None


TIER_LIMITS = {"1": 1000, "2": 100, "special": 600, "reloads": 50, "qalyptus": 300}
# Whose API key the sandbox answers: a TenantAdmin's (admin), a member of some spaces (user: no users filter,
# items and spaces limited to the key's, no tenant-wide reloads), or an admin's on a tenant after Qlik removed
# /api/v1/reload-tasks (retired).
PROFILES = ("admin", "user", "retired")


@dataclass
class Sandbox:
    """State of the simulated tenant. Each API family keeps its own tables in `tables`."""

    seed: int = 7
    api_key: str = SANDBOX_API_KEY
    rate_limits: bool = True
    clock: Clock = field(default_factory=Clock)
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    # Whose the API key is; a request with an OAuth access token acts as that token's user instead.
    key_user_id: str = ""
    profile: str = "admin"
    # The spaces the key's user is a member of (what a key that is not a TenantAdmin's sees of shared and managed
    # ones); `memberships` holds every person's, for the OAuth sign-ins.
    key_spaces: set[str] = field(default_factory=set)
    memberships: dict[str, set[str]] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    windows: dict[str, SlidingWindow] = field(default_factory=dict)
    throttled: int = 0
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.windows = {tier: SlidingWindow(limit) for tier, limit in TIER_LIMITS.items()}

    def hex_id(self, length: int = 24) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(length))

    def uuid(self) -> str:
        h = self.hex_id(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    @property
    def caller_id(self) -> str:
        """Who this request acts as: the signed-in person of its OAuth token, else the API key's user."""
        return _signed_in.get() or self.key_user_id

    @caller_id.setter
    def caller_id(self, user_id: str) -> None:
        self.key_user_id = user_id

    @property
    def member_spaces(self) -> set[str]:
        signed_in = _signed_in.get()
        return self.memberships.get(signed_in, set()) if signed_in else self.key_spaces

    @member_spaces.setter
    def member_spaces(self, spaces: set[str]) -> None:
        self.key_spaces = spaces

    def caller(self) -> User:
        return self.users[self.caller_id]

    def sees(self, space_id: str, owner_id: str) -> bool:
        """Whether the caller sees what lives in `space_id`: a TenantAdmin sees everything; anyone else the spaces
        they are a member of and their own personal items (no space)."""
        if self.caller().admin:
            return True
        return space_id in self.member_spaces if space_id else owner_id == self.caller_id

    def sees_app(self, app: App) -> bool:
        """Whether the caller sees the app: as what lives in its space (or, personal, is its owner's)."""
        return self.sees(app.space_id, app.owner_id)

    def sees_task(self, app_id: str, owner_id: str, space_id: str = "") -> bool:
        """Whether the caller has access to a task of `app_id` owned by `owner_id`: the task lists answer those
        (reload-tasks.json, tasks.json, scheduling-tasks.json). A TenantAdmin has all; anyone else the tasks they
        own and those of apps they see, by the app's space as stored (an app whose item is gone too). `space_id`:
        the task's own record of its space, for an app the tenant does not know."""
        if owner_id and owner_id == self.caller_id:
            return True
        app = self.apps.get(app_id)
        return self.sees_app(app) if app is not None else self.sees(space_id, "")

    def digest(self) -> str:
        """A hash of every family's tables: the same before and after means nothing changed (copies cost more).

        Pickled as they are: a table left alone pickles to the same bytes; one rewritten with equal content may
        not (a set's order), which reads as a change, never the other way round.
        """
        return hashlib.sha256(pickle.dumps(self.tables, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


def now_z(sandbox: Sandbox) -> str:
    return sandbox.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(value: datetime) -> str:
    """A date-time as the APIs send it: UTC with milliseconds. Converted first: seeded runs keep their schedule's
    zone, and a wall time labelled Z as it is would be hours off."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_ms(sandbox: Sandbox) -> str:
    return stamp(sandbox.clock.now())


ErrorWriter = Callable[[int, str], Response]
# What is wrong with a request body, by the operation's request schema: one line per problem.
BodyCheck = Callable[[Any], list[str]]


def guarded(
    sandbox: Sandbox,
    tier: str,
    error: ErrorWriter,
    handler: Handler,
    *,
    api_key: str | None = None,
    body: BodyCheck | None = None,
) -> Handler:
    """Auth, tier limit and the request body's schema in front of a handler, answering in the family's error shape.

    `api_key`: the key this endpoint accepts when it is not the tenant's (a Qalyptus organization has its own).
    """

    async def endpoint(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        # Qlik's endpoints also take a signed-in person's OAuth access token; a Qalyptus organization only its key.
        person = signed_in_user(sandbox, auth) if api_key is None else None
        if auth != f"Bearer {api_key or sandbox.api_key}" and person is None:
            return error(401, "missing or invalid bearer token")
        if person is not None:
            acting = _signed_in.set(person)
            try:
                return await checked(request)
            finally:
                _signed_in.reset(acting)
        return await checked(request)

    async def checked(request: Request) -> Response:
        if sandbox.rate_limits:
            wait = sandbox.windows[tier].admit()
            if wait is not None:
                sandbox.throttled += 1
                response = error(429, f"tier {tier} limit of {TIER_LIMITS[tier]}/min")
                response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
                return response
        problem = await _json_problem(request)
        if problem:
            return error(400, problem)
        if body is not None:
            found = body(await json_body(request))
            if found:
                return error(400, "the body does not match the request schema: " + "; ".join(found))
        return await handler(request)

    return endpoint


def signed_in_user(sandbox: Sandbox, authorization: str) -> str | None:
    """The user of a live OAuth access token with the `user_default` scope (sandbox/oauth.py issues them)."""
    token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
    grant = sandbox.tables.get("oauth_access", {}).get(token)
    if grant is None or grant["expires_at"] <= sandbox.clock.now().timestamp() or "user_default" not in grant["scopes"]:
        return None
    user = sandbox.users.get(grant["user_id"])
    return user.id if user is not None and user.status == "active" else None


async def _json_problem(request: Request) -> str | None:
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        raw = await request.body()
        if raw:
            try:
                json.loads(raw)
            except ValueError as exc:
                return f"request body is not JSON: {exc}"
    return None


async def json_body(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw else None
