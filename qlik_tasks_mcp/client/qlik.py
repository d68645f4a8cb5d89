"""Qlik Cloud REST client: JSON helpers and the one pagination helper on top of TenantHttp."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from qlik_tasks_mcp.client.http import Params, TenantHttp
from qlik_tasks_mcp.client.paging import Page, check_same_origin, cursor_params, next_cursor
from qlik_tasks_mcp.client.ratelimit import Tier, TierLimiter


class QlikClient(TenantHttp):
    def __init__(
        self,
        tenant_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: TierLimiter | None = None,
    ) -> None:
        super().__init__(
            tenant_url, api_key, service="Qlik Cloud", timeout=timeout, transport=transport, limiter=limiter
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
        self, path: str, *, tier: Tier, params: Params = None, cursor: str | None = None, items_key: str = "data"
    ) -> Page:
        """One page of a list endpoint. A cursor replaces the params: it carries the filters it was made with.

        `items_key`: where the list sits (`data` in most families; sharing tasks say `sharingTasks`, `executions`).
        """
        query = cursor_params(cursor) if cursor else params
        body = await self.json("GET", path, tier=tier, params=query)
        if not isinstance(body, dict):
            return Page(items=[])
        total = body.get("totalCount")
        return Page(
            items=body.get(items_key) or [],
            next_cursor=next_cursor(self.base_url, path, body),
            total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        )

    async def iterate(
        self,
        path: str,
        *,
        tier: Tier,
        params: Params = None,
        max_items: int | None = None,
        items_key: str = "data",
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list endpoint, following next links on the tenant only."""
        cursor: str | None = None
        seen = 0
        while True:
            page = await self.page(path, tier=tier, params=params, cursor=cursor, items_key=items_key)
            for item in page.items:
                yield item
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def same_origin(self, href: str) -> httpx.URL:
        return check_same_origin(self.base_url, href)
