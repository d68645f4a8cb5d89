"""Qlik Cloud REST client: JSON helpers and the one pagination helper on top of TenantHttp."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from qlik_tasks_mcp.client.allowance import may_read_page
from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.http import Params, TenantHttp
from qlik_tasks_mcp.client.paging import Page, check_same_origin, cursor_params, fingerprint, next_cursor, row_limit
from qlik_tasks_mcp.client.ratelimit import Tier, TierLimiter
from qlik_tasks_mcp.client.store import Store

# The Qlik Cloud API release this client is built for (changelog 266: quarterly `YYYY-MM` versions). It selects no
# request or response shape: Qlik returns the deprecation warnings due to a client aware of this release.
QLIK_API_VERSION = "2026-11"
API_VERSION_HEADER = "qlik-api-version"


class QlikClient(TenantHttp):
    def __init__(
        self,
        tenant_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: TierLimiter | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(
            tenant_url,
            api_key,
            service="Qlik Cloud",
            timeout=timeout,
            transport=transport,
            limiter=limiter,
            store=store,
            key_setting="QLIK_API_KEY",
            headers={API_VERSION_HEADER: QLIK_API_VERSION},
        )

    async def json(
        self,
        method: str,
        path: str,
        *,
        tier: Tier,
        params: Params = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        response = await self.send(method, path, tier=tier, params=params, json=body, headers=headers)
        return self.decode(response)

    async def page(
        self,
        path: str,
        *,
        tier: Tier,
        params: Params = None,
        cursor: str | None = None,
        items_key: str = "data",
        cursor_param: str = "next",
    ) -> Page:
        """One page of a list endpoint. A cursor replaces the params: it carries the filters it was made with.

        `items_key`: where the list sits (`data` in most families; sharing tasks say `sharingTasks`, `executions`).
        `cursor_param`: the parameter that carries a `links.next.token` when the href does not.
        Rows beyond the page's `limit` are dropped (`Page.dropped` says how many); a next cursor equal to the
        one just read is an error, as following it would read the same page forever.
        """
        query = cursor_params(cursor) if cursor else httpx.QueryParams(params or {})
        body = await self.json("GET", path, tier=tier, params=query)
        if not isinstance(body, dict):
            return Page(items=[])
        rows = body.get(items_key) or []
        if not isinstance(rows, list):
            raise self._listing_error(path, f"answered a list with {type(rows).__name__} for {items_key!r}")
        items = [row for row in rows if isinstance(row, dict)]
        keep = row_limit(query)
        total = body.get("totalCount")
        following = next_cursor(self.base_url, path, body, query, cursor_param)
        if cursor and following == cursor:
            raise self._listing_error(path, "answered with the same next cursor as the page asked for")
        return Page(
            items=items[:keep],
            next_cursor=following,
            total=total if isinstance(total, int) and not isinstance(total, bool) else None,
            dropped=max(0, len(items) - keep),
        )

    async def iterate(
        self,
        path: str,
        *,
        tier: Tier,
        params: Params = None,
        max_items: int | None = None,
        items_key: str = "data",
        cursor_param: str = "next",
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list endpoint, following next cursors on the tenant only.

        A cursor seen before, or a page identical to the one before it, ends the listing with an ApiError:
        the tenant is looping, and the listing would never end.
        """
        cursor: str | None = None
        cursors: set[str] = set()
        previous: str | None = None
        seen = 0
        while True:
            # Under a scan's allowance (client/allowance.py) a page it refuses ends the listing here.
            if not may_read_page(f"{path} page {len(cursors) + 1}"):
                return
            page = await self.page(
                path, tier=tier, params=params, cursor=cursor, items_key=items_key, cursor_param=cursor_param
            )
            digest = fingerprint(page.items)
            if page.items and digest == previous:
                raise self._listing_error(path, f"sent the same page twice after {seen} items")
            previous = digest
            for item in page.items:
                yield item
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            if not page.next_cursor:
                return
            if page.next_cursor in cursors:
                raise self._listing_error(path, f"sent a next cursor it had sent before, after {seen} items")
            cursors.add(page.next_cursor)
            cursor = page.next_cursor

    def same_origin(self, href: str) -> httpx.URL:
        return check_same_origin(self.base_url, href)

    def _listing_error(self, path: str, what: str) -> ApiError:
        return ApiError(
            200,
            f"{self.service} {what}; the listing was stopped",
            method="GET",
            path=path,
            hint="Its pagination is looping or broken: narrow the listing with filters, or try again later.",
        )
