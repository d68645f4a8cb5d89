"""The tenant's directory: apps as items (`/api/v1/items`), users (`/api/v1/users`), spaces (`/api/v1/spaces`).

An item's `id` is the item's own; the app id is its `resourceId`. Users are found by the SCIM-like filter
language of the users spec, whose values are quoted strings: a value that could close its quotes is refused.
"""

from __future__ import annotations

from typing import Any, Literal

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.paths import path_segment
from qlik_tasks_mcp.client.qlik import QlikClient
from qlik_tasks_mcp.client.ratelimit import Tier
from qlik_tasks_mcp.client.resource import Doc, Listing, listing

ITEMS = "/api/v1/items"
APPS = "/api/v1/apps"
USERS = "/api/v1/users"
SPACES = "/api/v1/spaces"
# The users filter action and items' resourceIds both take at most 100 ids per request.
IDS_PER_REQUEST = 100
USER_STATUSES = ("active", "disabled", "deleted", "invited", "provisioned")


class ItemDoc(Doc):
    id: str
    name: str = ""
    resource_id: str = ""
    resource_type: str = ""
    space_id: str = ""
    owner_id: str = ""
    resource_reload_end_time: str = ""
    resource_reload_status: str = ""


class UserDoc(Doc):
    id: str
    name: str = ""
    email: str = ""
    status: str = ""


class SpaceDoc(Doc):
    id: str
    name: str = ""
    type: str = ""


def filter_value(text: str, what: str) -> str:
    """`text` as a quoted value of the users filter; quotes and backslashes could end it early, so they are refused."""
    if '"' in text or "\\" in text:
        raise InvalidInput(f"{what} may not contain double quotes or backslashes")
    return f'"{text}"'


def any_of(field: str, op: str, values: list[str]) -> str:
    """`(field op "a" or field op "b")`: one group, as the filter language wants status conditions written."""
    return "(" + " or ".join(f"{field} {op} {filter_value(v, field)}" for v in values) + ")"


# What the tenant says of one app or user asked for by id: there, gone (404), or not for this key (403).
Presence = Literal["exists", "gone", "forbidden"]


class DirectoryApi:
    def __init__(self, qlik: QlikClient) -> None:
        self.qlik = qlik

    async def apps(
        self,
        *,
        name: str | None = None,
        query: str | None = None,
        space_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Listing[ItemDoc]:
        """`name`: a whole name (any case), as the items spec's `name` reads; `query`: a fragment of the name or the
        description (any case)."""
        params: dict[str, Any] = {"resourceType": "app", "noActions": "true", "limit": limit}
        if name:
            params["name"] = name
        if query:
            params["query"] = query
        if space_id:
            params["spaceId"] = space_id
        return listing(await self.qlik.page(ITEMS, tier=Tier.T1, params=params, cursor=cursor), ItemDoc)

    async def apps_by_id(self, app_ids: list[str]) -> list[ItemDoc]:
        """The apps among `app_ids` (at most 100) that exist and the caller may see, in one request."""
        if len(app_ids) > IDS_PER_REQUEST:
            raise InvalidInput(f"at most {IDS_PER_REQUEST} app ids per request, got {len(app_ids)}")
        params = {"resourceType": "app", "resourceIds": ",".join(app_ids), "noActions": "true", "limit": 100}
        page = await self.qlik.page(ITEMS, tier=Tier.T1, params=params)
        return listing(page, ItemDoc).items

    async def users(self, *, filter_text: str | None, limit: int = 20, cursor: str | None = None) -> Listing[UserDoc]:
        params: dict[str, Any] = {"limit": limit} | ({"filter": filter_text} if filter_text else {})
        return listing(await self.qlik.page(USERS, tier=Tier.T1, params=params, cursor=cursor), UserDoc)

    async def users_by_id(self, user_ids: list[str]) -> list[UserDoc]:
        """The users among `user_ids` (at most 100) that the tenant still has, any status, in one request."""
        if len(user_ids) > IDS_PER_REQUEST:
            raise InvalidInput(f"at most {IDS_PER_REQUEST} user ids per request, got {len(user_ids)}")
        body = {"filter": any_of("id", "eq", user_ids)}
        found = await self.qlik.json(
            "POST", f"{USERS}/actions/filter", tier=Tier.USERS_FILTER, params={"limit": 100}, body=body
        )
        rows = found.get("data") if isinstance(found, dict) else None
        return [UserDoc.model_validate(row) for row in rows or [] if isinstance(row, dict)]

    async def user(self, user_id: str) -> UserDoc | None:
        """One user read directly (GET /api/v1/users/{userId}); None when the tenant has no such user."""
        try:
            found = await self.qlik.json("GET", f"{USERS}/{path_segment(user_id, 'user_id')}", tier=Tier.T1)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return UserDoc.model_validate(found)

    async def me(self) -> UserDoc:
        # Answered with a 301 to /api/v1/users/{id}; the client follows it on the tenant, key and all.
        return UserDoc.model_validate(await self.qlik.json("GET", f"{USERS}/me", tier=Tier.T1))

    async def spaces(
        self, *, name: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Listing[SpaceDoc]:
        params: dict[str, Any] = {"limit": limit} | ({"name": name} if name else {})
        return listing(await self.qlik.page(SPACES, tier=Tier.T1, params=params, cursor=cursor), SpaceDoc)

    async def app_presence(self, app_id: str) -> Presence:
        """Whether the app exists, read directly (GET /api/v1/apps/{appId}): the one answer that says an app is gone;
        a filtered listing that lacks it says nothing of the kind."""
        return await self._presence(f"{APPS}/{path_segment(app_id, 'app_id')}")

    async def user_presence(self, user_id: str) -> Presence:
        """Whether the user exists (GET /api/v1/users/{userId}); its status, when it does, is the filter's to say."""
        return await self._presence(f"{USERS}/{path_segment(user_id, 'user_id')}")

    async def _presence(self, path: str) -> Presence:
        try:
            await self.qlik.json("GET", path, tier=Tier.T1)
        except ApiError as exc:
            if exc.status in (403, 404):
                return "forbidden" if exc.status == 403 else "gone"
            raise
        return "exists"

    async def space(self, space_id: str) -> SpaceDoc | None:
        """One space; None when it is missing or not visible (the API does not tell the two apart)."""
        path = f"{SPACES}/{path_segment(space_id, 'space_id')}"
        try:
            return SpaceDoc.model_validate(await self.qlik.json("GET", path, tier=Tier.T1))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
