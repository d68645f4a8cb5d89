"""The sandbox's `/api/v1/items`: one item per seeded app that still exists, in its space, with its last reload.

An item's `id` is its own; the app's id is `resourceId`. As the items spec reads, `name` is a whole name (any case)
and `query` a fragment of the name or the description (any case). `resourceIds` takes at most 100 ids and, like
`resourceId`, needs `resourceType`. A key that is not a TenantAdmin's sees the items of its spaces and its own
personal ones (Sandbox.sees).

`GET /api/v1/apps/{appId}` answers here too, as the one place that says whether an app exists: 404 for an app
that is gone, 403 for one the key may not see (the apps spec lists only 200; these are Qlik's answers).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox.contract import ErrorShape
from qlik_tasks_mcp.sandbox.core import SANDBOX_URL, TENANT_ID, App, Sandbox, guarded
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit

BASE = "/api/v1/items"
CURSORS = Cursors(next="next", prev="prev")
MAX_RESOURCE_IDS = 100
err = ErrorShape("ITEMS")
# The seeded app whose item is gone: its tasks are left behind, as when an app is deleted.
DELETED_APP_INDEX = 7
FILTERS = ("resourceType", "name", "query", "resourceId", "resourceIds", "spaceId", "ownerId", "noActions")
APPS = "/api/v1/apps"
apps_err = ErrorShape("APPS")


def table(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return sandbox.tables.setdefault("items", {})


def _item(sandbox: Sandbox, app: App, index: int) -> dict[str, Any]:
    item_id, now = sandbox.hex_id(), sandbox.clock.now()
    stamp = (now - timedelta(days=60 + index)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": item_id,
        "name": app.name,
        "resourceId": app.id,
        "resourceType": "app",
        "resourceSubType": "",
        "spaceId": app.space_id,
        "ownerId": app.owner_id,
        "creatorId": app.owner_id,
        "updaterId": app.owner_id,
        "tenantId": TENANT_ID,
        "createdAt": stamp,
        "updatedAt": stamp,
        "resourceCreatedAt": stamp,
        "resourceUpdatedAt": stamp,
        "resourceReloadEndTime": (now - timedelta(hours=1 + index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resourceReloadStatus": "ok",
        "resourceAttributes": {"id": app.id, "name": app.name},
        "resourceCustomAttributes": {},
        "description": "",
        "isFavorited": False,
        "actions": ["read", "update", "reload"],
        "collectionIds": [],
        "meta": {"isFavorited": False, "actions": ["read", "update", "reload"], "tags": [], "collections": []},
        "links": {"self": {"href": f"{SANDBOX_URL}{BASE}/{item_id}"}},
    }


def seed(sandbox: Sandbox) -> None:
    """An item for every seeded app but one, after the families have seeded their tasks for all of them."""
    items = table(sandbox)
    for index, app in enumerate(sandbox.apps.values()):
        if index == DELETED_APP_INDEX:
            app.deleted = True
            continue
        item = _item(sandbox, app, index)
        items[item["id"]] = item


def _selected(q: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]] | str:
    if (q.get("resourceId") or q.get("resourceIds")) and not q.get("resourceType"):
        return "resourceId and resourceIds need resourceType"
    ids = [i for i in (q.get("resourceIds") or "").split(",") if i]
    if len(ids) > MAX_RESOURCE_IDS:
        return f"resourceIds takes at most {MAX_RESOURCE_IDS} ids"
    wanted = {
        "resourceType": q.get("resourceType"),
        "resourceId": q.get("resourceId"),
        "spaceId": q.get("spaceId"),
        "ownerId": q.get("ownerId"),
    }
    found = [i for i in items if all(v is None or i.get(k) == v for k, v in wanted.items())]
    if ids:
        found = [i for i in found if i["resourceId"] in set(ids)]
    if q.get("name"):
        found = [i for i in found if q["name"].casefold() == i["name"].casefold()]
    if q.get("query"):
        fragment = q["query"].casefold()
        found = [i for i in found if fragment in i["name"].casefold() or fragment in i["description"].casefold()]
    return found


def routes(sandbox: Sandbox) -> list[Route]:
    async def list_items(request: Request) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"), 10, 100)
        if limit is None:
            return err(400, "limit must be an integer between 1 and 100")
        visible = [i for i in table(sandbox).values() if sandbox.sees(i["spaceId"], i["ownerId"])]
        found = _selected(q, sorted(visible, key=lambda i: i["createdAt"]))
        if isinstance(found, str):
            return err(400, found)
        page = paginate(request, found, limit, CURSORS, {k: q.get(k) for k in FILTERS})
        if isinstance(page, str):
            return err(400, page)
        return JSONResponse({"data": page.items, "links": page.links})

    async def one_app(request: Request) -> Response:
        app = sandbox.apps.get(request.path_params["appId"])
        if app is None or app.deleted:
            return apps_err(404, "app not found")
        if not sandbox.sees_app(app):
            return apps_err(403, "the caller may not read this app")
        attributes = {"id": app.id, "name": app.name, "ownerId": app.owner_id, "usage": "ANALYTICS"}
        return JSONResponse({"attributes": attributes, "privileges": ["read", "reload"], "create": []})

    return [
        Route(BASE, guarded(sandbox, "1", err, list_items), methods=["GET"]),
        Route(APPS + "/{appId}", guarded(sandbox, "1", apps_err, one_app), methods=["GET"]),
    ]
