"""The sandbox's `/api/v1/users`: the tenant's people (some disabled or deleted), found by the filter language of
the users spec, by the filter action (at most 100 ids), by id, and `users/me` as the 301 the service answers.

Filter: conditions `attribute op "value"` (`eq` on id, email, name, status, subject; `co` on name, email,
subject), joined by `or` inside a group and by `and` between groups. As the spec says, status conditions must
be grouped on their own: `name eq "Bob" or status eq "active"` is refused, `(...) and (status eq "active")` is not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox.contract import ErrorShape
from qlik_tasks_mcp.sandbox.core import SANDBOX_URL, TENANT_ID, Sandbox, User, guarded, json_body
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit

BASE = "/api/v1/users"
CURSORS = Cursors(next="next", prev="prev")
MAX_FILTER_IDS = 100
err = ErrorShape("USERS")
_CONDITION = re.compile(r'^\s*(id|email|name|status|subject)\s+(eq|co)\s+"([^"\\]*)"\s*$', re.IGNORECASE)
_CONTAINS = frozenset({"name", "email", "subject"})
# A condition: (attribute, operator, value), all compared without regard to case.
Condition = tuple[str, str, str]


def _groups(text: str) -> list[str] | None:
    """The `and`-joined parts of a filter, split outside quotes and parentheses; None when unbalanced."""
    parts, depth, quoted, start = [], 0, False, 0
    lowered = text.lower()
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                return None
        elif not quoted and depth == 0 and lowered.startswith(" and ", index):
            parts.append(text[start:index])
            start = index = index + 5
            continue
        index += 1
    return None if depth or quoted else [*parts, text[start:]]


def _conditions(part: str) -> list[Condition] | None:
    part = part.strip()
    if part.startswith("(") and part.endswith(")"):
        part = part[1:-1]
    found: list[Condition] = []
    for piece in re.split(r"\s+or\s+", part, flags=re.IGNORECASE):
        match = _CONDITION.match(piece)
        if match is None:
            return None
        attr, op, value = match.group(1).lower(), match.group(2).lower(), match.group(3).lower()
        if op == "co" and attr not in _CONTAINS:
            return None
        found.append((attr, op, value))
    return found


def parse_filter(text: str) -> list[list[Condition]] | str:
    """The filter as groups (all must hold) of conditions (any may hold), or what is wrong with it."""
    parts = _groups(text)
    groups = [_conditions(p) for p in parts] if parts else [None]
    if any(g is None for g in groups):
        return f"the sandbox does not understand the filter {text[:200]!r}"
    checked = [g for g in groups if g is not None]
    for group in checked:
        statuses = {attr == "status" for attr, _, _ in group}
        if len(statuses) > 1:
            return 'status conditions must be grouped on their own, e.g. (...) and (status eq "active")'
    return checked


def _value(user: User, attr: str) -> str:
    return {"id": user.id, "email": user.email, "name": user.name, "status": user.status}.get(attr, subject(user))


def _holds(user: User, condition: Condition) -> bool:
    attr, op, value = condition
    have = _value(user, attr).lower()
    return value in have if op == "co" else have == value


def matcher(groups: list[list[Condition]]) -> Callable[[User], bool]:
    return lambda user: all(any(_holds(user, c) for c in group) for group in groups)


def subject(user: User) -> str:
    return f"auth0|{user.id}"


def public(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "subject": subject(user),
        "name": user.name,
        "email": user.email,
        "status": user.status,
        "tenantId": TENANT_ID,
        "links": {"self": {"href": f"{SANDBOX_URL}{BASE}/{user.id}"}},
    }


def _listed(request: Request, sandbox: Sandbox, filter_text: str | None, keep: dict[str, Any]) -> Response:
    limit = parse_limit(request.query_params.get("limit"), 20, 100)
    if limit is None:
        return err(400, "limit must be an integer between 1 and 100")
    users = sorted(sandbox.users.values(), key=lambda u: u.name.lower())
    if filter_text:
        groups = parse_filter(filter_text)
        if isinstance(groups, str):
            return err(400, groups)
        users = [u for u in users if matcher(groups)(u)]
    page = paginate(request, users, limit, CURSORS, keep)
    if isinstance(page, str):
        return err(400, page)
    return JSONResponse({"data": [public(u) for u in page.items], "links": page.links})


def routes(sandbox: Sandbox) -> list[Route]:
    async def list_users(request: Request) -> Response:
        filter_text = request.query_params.get("filter")
        return _listed(request, sandbox, filter_text, {"filter": filter_text})

    async def filter_users(request: Request) -> Response:
        if not sandbox.caller().admin:
            # The users spec declares 403 for this action: a key that may not list the tenant's users.
            return err(403, "the caller may not filter the tenant's users", "Forbidden")
        body = await json_body(request)
        filter_text = body.get("filter") if isinstance(body, dict) else None
        if isinstance(filter_text, str) and len(re.findall(r"\bid\s+eq\b", filter_text, re.IGNORECASE)) > 100:
            return err(400, f"the filter may name at most {MAX_FILTER_IDS} ids")
        return _listed(request, sandbox, filter_text if isinstance(filter_text, str) else None, {})

    async def me(_: Request) -> Response:
        # As the service does: a redirect to the caller's own user resource.
        location = f"{BASE}/{sandbox.caller_id}"
        return Response(f'<a href="{location}">Moved Permanently</a>', 301, {"Location": location}, "text/html")

    async def one_user(request: Request) -> Response:
        user = sandbox.users.get(request.path_params["user_id"])
        return JSONResponse(public(user)) if user else err(404, "user not found")

    return [
        Route(f"{BASE}/me", guarded(sandbox, "1", err, me), methods=["GET"]),
        Route(f"{BASE}/actions/filter", guarded(sandbox, "special", err, filter_users), methods=["POST"]),
        Route(f"{BASE}/{{user_id}}", guarded(sandbox, "1", err, one_user), methods=["GET"]),
        Route(BASE, guarded(sandbox, "1", err, list_users), methods=["GET"]),
    ]
