"""The sandbox tenant's shared machinery: clock, ids, auth, tier limits, error bodies, pagination."""

from __future__ import annotations

import base64
import json
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from qlik_tasks_mcp.sandbox.faults import Faults

SANDBOX_URL = "https://sandbox.qlikcloud.invalid"
SANDBOX_API_KEY = "sandbox-api-key-not-a-secret-0000"
TENANT_ID = "SbxTenant0Qx7pLm2Rk9vWz4Nc6Hd1Ty"

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class App:
    id: str
    name: str
    space_id: str
    owner_id: str


@dataclass
class User:
    id: str
    name: str
    email: str
    admin: bool = False


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


TIER_LIMITS = {"1": 1000, "2": 100, "special": 600, "qalyptus": 300}


@dataclass
class Sandbox:
    """State of the simulated tenant. Each API family keeps its own tables in `tables`."""

    seed: int = 7
    api_key: str = SANDBOX_API_KEY
    rate_limits: bool = True
    clock: Clock = field(default_factory=Clock)
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    caller_id: str = ""
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

    def caller(self) -> User:
        return self.users[self.caller_id]


def now_z(sandbox: Sandbox) -> str:
    return sandbox.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def now_ms(sandbox: Sandbox) -> str:
    return sandbox.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# Error bodies, one writer per shape the specs describe.
def qlik_errors(status: int, code: str, title: str, detail: str | None = None, *, http_meta: bool = False) -> Response:
    """reload-tasks and sharing-tasks: `Errors` with string codes."""
    error: dict[str, Any] = {"code": code, "title": title}
    if detail:
        error["detail"] = detail
    if http_meta:
        error["meta"] = {"httpCode": status}
    return JSONResponse({"errors": [error], "traceId": _trace()}, status_code=status)


def tasks_errors(status: int, title: str, context: str) -> Response:
    """tasks: `ErrorResponse` with integer codes."""
    body = {
        "errors": [{"code": status, "title": title, "context": context, "timestamp": _iso_now()}],
        "traceId": _trace(),
    }
    return JSONResponse(body, status_code=status)


def _trace() -> str:
    return f"{random.getrandbits(64):016x}"


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ErrorWriter = Callable[[int, str, str], Response]


def guarded(
    sandbox: Sandbox, tier: str, error: ErrorWriter, handler: Handler, *, api_key: str | None = None
) -> Handler:
    """Auth and tier limit in front of a handler, answering with the family's error shape.

    `api_key`: the key this endpoint accepts when it is not the tenant's (a Qalyptus organization has its own).
    """

    async def endpoint(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {api_key or sandbox.api_key}":
            return error(401, "Unauthorized", "missing or invalid bearer token")
        if sandbox.rate_limits:
            wait = sandbox.windows[tier].admit()
            if wait is not None:
                sandbox.throttled += 1
                response = error(429, "Too Many Requests", f"tier {tier} limit of {TIER_LIMITS[tier]}/min")
                response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
                return response
        problem = await _json_problem(request)
        if problem:
            return error(400, "Bad Request", problem)
        return await handler(request)

    return endpoint


async def _json_problem(request: Request) -> str | None:
    if request.method in ("POST", "PUT", "PATCH"):
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


# Pagination: opaque cursors that carry an offset, with absolute links on the request's own origin.
def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(value: str) -> int | None:
    try:
        padded = value + "=" * (-len(value) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["o"]
    except (ValueError, KeyError, TypeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


def link(request: Request, **params: Any) -> dict[str, str]:
    """A list value repeats its key, as repeatable filters (`type=a&type=b`) are sent."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != []}, doseq=True)
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
    return {"href": f"{base}?{query}" if query else base}


def self_link(request: Request, path: str) -> dict[str, dict[str, str]]:
    return {"self": {"href": f"{request.url.scheme}://{request.url.netloc}{path}"}}


def parse_limit(raw: str | None, default: int, maximum: int) -> int | None:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= maximum else None
