"""The sandbox's `/api/v1/spaces`: the shared and managed spaces the seeded apps live in (a key that is not a
TenantAdmin's sees those it is a member of)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox.contract import ErrorShape
from qlik_tasks_mcp.sandbox.core import SANDBOX_URL, TENANT_ID, Sandbox, guarded, now_z
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit

BASE = "/api/v1/spaces"
CURSORS = Cursors(next="next", prev="prev")
err = ErrorShape("SPACES")
SEEDED = [("Sales", "shared"), ("Finance", "managed"), ("Operations", "shared"), ("People Analytics", "managed")]


def table(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return sandbox.tables.setdefault("spaces", {})


def seed(sandbox: Sandbox) -> list[str]:
    """The seeded spaces, owned by the first person; their ids, for the apps to be placed in."""
    spaces = table(sandbox)
    owner = next(iter(sandbox.users), "")
    for name, kind in SEEDED:
        space_id = sandbox.hex_id()
        spaces[space_id] = {
            "id": space_id,
            "name": name,
            "type": kind,
            "ownerId": owner,
            "tenantId": TENANT_ID,
            "createdAt": now_z(sandbox),
            "createdBy": owner,
            "updatedAt": now_z(sandbox),
            "description": f"{name} apps",
            "meta": {"actions": ["read"], "roles": [], "assignableRoles": []},
            "links": {
                "self": {"href": f"{SANDBOX_URL}{BASE}/{space_id}"},
                "assignments": {"href": f"{SANDBOX_URL}{BASE}/{space_id}/assignments"},
            },
        }
    return list(spaces)


def routes(sandbox: Sandbox) -> list[Route]:
    async def list_spaces(request: Request) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"), 10, 100)
        if limit is None:
            return err(400, "limit must be an integer between 1 and 100")
        visible = [s for s in table(sandbox).values() if sandbox.sees(s["id"], "")]
        found = sorted(visible, key=lambda s: s["name"].lower())
        # `name` is a case-insensitive contains, as the spaces spec says ("fin" matches "Griffin").
        if q.get("name"):
            found = [s for s in found if q["name"].lower() in s["name"].lower()]
        if q.get("type"):
            kinds = set(q["type"].split(","))
            found = [s for s in found if s["type"] in kinds]
        page = paginate(request, found, limit, CURSORS, {"name": q.get("name"), "type": q.get("type")})
        if isinstance(page, str):
            return err(400, page)
        meta = {"count": len(found), "personalSpace": {"resourceType": "space", "actions": ["create"]}}
        return JSONResponse({"data": page.items, "meta": meta, "links": page.links})

    async def one_space(request: Request) -> Response:
        space = table(sandbox).get(request.path_params["space_id"])
        if space and sandbox.sees(space["id"], ""):
            return JSONResponse(space)
        return err(404, "space not found or access denied")

    return [
        Route(f"{BASE}/{{space_id}}", guarded(sandbox, "1", err, one_space), methods=["GET"]),
        Route(BASE, guarded(sandbox, "1", err, list_spaces), methods=["GET"]),
    ]
