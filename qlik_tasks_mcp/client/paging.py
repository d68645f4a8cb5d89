"""The one pagination helper for every family: finds the next page's cursor, never leaves the tenant,
never loops, and never hands on more rows than were asked for."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import BaseModel

from qlik_tasks_mcp.client.errors import InvalidInput, UnsafeLinkError

# The query parameters that carry a cursor in Qlik's families (`next` in most, `page` in sharing tasks).
CURSOR_NAMES = ("next", "page")
# Rows kept of one page when the request named no limit: far above every documented maximum (100-200).
PAGE_ROWS_MAX = 1000


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None
    # Only where the family reports it (sharing tasks' `totalCount`).
    total: int | None = None
    # Rows the tenant sent beyond the limit asked for: dropped, and not reachable by the cursor either.
    dropped: int = 0

    def cut_note(self) -> str | None:
        """What a result should say when the page was cut to its limit; None when it was not."""
        if not self.dropped:
            return None
        kept = len(self.items)
        return (
            f"Cut: the tenant sent {kept + self.dropped} rows for a page of {kept}; only the first {kept} are "
            f"shown, and the {self.dropped} extra rows were dropped."
        )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host, port


def same_origin(base: httpx.URL, target: httpx.URL) -> bool:
    """Scheme, host and port are the tenant's: the only place the API key may go."""
    return _origin(target) == _origin(base)


def check_same_origin(base: httpx.URL, href: str, page_url: httpx.URL | None = None) -> httpx.URL:
    """Resolve `href` (relative to the page it came from, else the tenant) and refuse it off the tenant."""
    target = (page_url or base).join(href)
    if not same_origin(base, target):
        raise UnsafeLinkError(
            f"refused to follow a pagination link to {target.scheme}://{target.host}:{target.port or ''}: "
            "it is not the configured tenant, and the API key is only ever sent to the tenant"
        )
    return target


def _without_cursor(params: httpx.QueryParams) -> httpx.QueryParams:
    for name in CURSOR_NAMES:
        params = params.remove(name)
    return params


def next_cursor(
    base: httpx.URL,
    path: str,
    body: dict[str, Any],
    current: httpx.QueryParams | None = None,
    cursor_param: str = "next",
) -> str | None:
    """The query string of the next page, as an opaque cursor for the same endpoint.

    The cursor comes from `links.next.href` (its `next=`/`page=` parameter; a relative href is resolved on
    the tenant), or from `links.next.token` when the href does not carry one; the token is then sent as
    `cursor_param` with the current page's other parameters.
    """
    links = body.get("links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    token = nxt.get("token") if isinstance(nxt, dict) else None
    token = token if isinstance(token, str) and token else None
    if not href and not token:
        return None
    query = _own_query(base, path, href) if isinstance(href, str) else None
    if query is not None:
        # Read and written as the slow path's URL does: the first value of each name, the query percent-encoded.
        params = httpx.QueryParams(query)
        if any(params.get(name) for name in CURSOR_NAMES) or not token:
            return str(params) or None
        return str(_without_cursor(current or httpx.QueryParams()).set(cursor_param, token))
    page_url = base.join(path.lstrip("/"))
    if isinstance(href, str) and href:
        target = check_same_origin(base, href, page_url)
        carries = any(target.params.get(name) for name in CURSOR_NAMES)
        if target.path == path and (carries or not token):
            return target.query.decode() or None
        if not token:
            raise UnsafeLinkError(f"refused a next link to {target.path}: the page was read from {path}")
    if token is None:
        return None
    return str(_without_cursor(current or httpx.QueryParams()).set(cursor_param, token))


def _own_query(base: httpx.URL, path: str, href: str) -> str | None:
    """The query of `href` when it plainly names the page's own endpoint on the tenant (the tenant's origin and the
    path, or the path alone, then `?` or nothing): what tenants send, read without parsing a URL. None for any other
    form, which check_same_origin() reads whole."""
    for prefix in (_page_prefix(base, path), path):
        if href == prefix or href.startswith(prefix + "?"):
            return href[len(prefix) + 1 :].partition("#")[0]
    return None


@lru_cache(maxsize=256)
def _page_prefix(base: httpx.URL, path: str) -> str:
    return str(base.join(path.lstrip("/")).copy_with(query=None, fragment=None))


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


def row_limit(query: httpx.QueryParams) -> int:
    """The rows one page may hold: the `limit` asked for, never more than PAGE_ROWS_MAX."""
    raw = query.get("limit")
    if raw and raw.isascii() and raw.isdigit() and int(raw) > 0:
        return min(int(raw), PAGE_ROWS_MAX)
    return PAGE_ROWS_MAX


def fingerprint(items: list[dict[str, Any]]) -> str:
    """A digest of a page's rows, to tell a page the tenant sent twice."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()
