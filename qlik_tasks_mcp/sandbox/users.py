"""The sandbox's `/api/v1/users` list: the tenant's people, found by the `filter` forms a caller of the sharing tools
sends (`email eq "a@x.com"` or `id eq "..."`, joined by `or`, optionally in one pair of parentheses)."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox.contract import ErrorShape
from qlik_tasks_mcp.sandbox.core import TENANT_ID, Sandbox, User, guarded
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit

BASE = "/api/v1/users"
CURSORS = Cursors(next="next", prev="prev")
err = ErrorShape("USERS")
# One condition of the filter language (the users spec: attribute, operator, quoted value); `eq` compares
# without regard to case.
_CONDITION = re.compile(r'^\s*(email|id)\s+eq\s+"([^"\\]*)"\s*$', re.IGNORECASE)


def _conditions(text: str) -> list[tuple[str, str]] | None:
    """The (attribute, value) pairs of an `or` of conditions, or None when the filter is not of that form."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    found = []
    for part in re.split(r"\s+or\s+", text, flags=re.IGNORECASE):
        match = _CONDITION.match(part)
        if match is None:
            return None
        found.append((match.group(1).lower(), match.group(2).lower()))
    return found


def _matches(user: User, conditions: list[tuple[str, str]]) -> bool:
    return any((user.email if attr == "email" else user.id).lower() == value for attr, value in conditions)


def _public(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "subject": f"auth0|{user.id}",
        "name": user.name,
        "email": user.email,
        "status": "active",
        "tenantId": TENANT_ID,
    }


def routes(sandbox: Sandbox) -> list[Route]:
    async def list_users(request: Request) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"), 20, 100)
        if limit is None:
            return err(400, "limit must be an integer between 1 and 100")
        users = sorted(sandbox.users.values(), key=lambda u: u.name.lower())
        if q.get("filter"):
            conditions = _conditions(q["filter"])
            if conditions is None:
                return err(400, f"the sandbox does not understand the filter {q['filter'][:200]!r}")
            users = [u for u in users if _matches(u, conditions)]
        page = paginate(request, users, limit, CURSORS, {"filter": q.get("filter")})
        if isinstance(page, str):
            return err(400, page)
        return JSONResponse({"data": [_public(u) for u in page.items], "links": page.links})

    return [Route(BASE, guarded(sandbox, "1", err, list_users), methods=["GET"])]
