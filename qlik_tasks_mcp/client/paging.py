"""The one pagination helper: reads `links.next.href` for every family, and never leaves the tenant."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import BaseModel

from qlik_tasks_mcp.client.errors import InvalidInput, UnsafeLinkError


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None
    # Only where the family reports it (sharing tasks' `totalCount`).
    total: int | None = None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host, port


def check_same_origin(base: httpx.URL, href: str) -> httpx.URL:
    """Resolve `href` against the tenant and refuse it unless scheme, host and port are the tenant's."""
    target = base.join(href)
    if _origin(target) != _origin(base):
        raise UnsafeLinkError(
            f"refused to follow a pagination link to {target.scheme}://{target.host}:{target.port or ''}: "
            "it is not the configured tenant, and the API key is only ever sent to the tenant"
        )
    return target


def next_cursor(base: httpx.URL, path: str, body: dict[str, Any]) -> str | None:
    """The query string of the next page, as an opaque cursor for the same endpoint."""
    links = body.get("links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    if not href:
        return None
    target = check_same_origin(base, href)
    if target.path != path:
        raise UnsafeLinkError(f"refused a next link to {target.path}: the page was read from {path}")
    return target.query.decode() or None


def cursor_params(cursor: str) -> httpx.QueryParams:
    """Parse a cursor back into query parameters; anything that is not a plain query string is refused."""
    if len(cursor) > 4000 or urlsplit(cursor).scheme or cursor.startswith(("/", "?", "#")) or "#" in cursor:
        raise InvalidInput("cursor is not one this server returned: pass next_cursor from the previous result as is")
    try:
        pairs: list[tuple[str, str | int | float | bool | None]] = list(
            parse_qsl(cursor, keep_blank_values=True, strict_parsing=True)
        )
        return httpx.QueryParams(pairs)
    except ValueError as exc:
        raise InvalidInput(
            "cursor is not one this server returned: pass next_cursor from the previous result as is"
        ) from exc
