"""Cursor paging for every sandbox family: opaque cursors carrying an offset, absolute `links.next.href`/`prev`.

Each family names its cursor parameters as its spec does (`next`/`prev` on reload-tasks, `page` on tasks,
`page` for sharing-task lists and `next` for their executions); the links repeat the request's filters.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request


@dataclass(frozen=True)
class Cursors:
    """The query parameters a family's spec pages with."""

    next: str
    prev: str
    offset: bool = False  # the spec also takes a plain `offset`

    def names(self) -> tuple[str, ...]:
        return (self.next, self.prev) if self.next != self.prev else (self.next,)


@dataclass(frozen=True)
class Page:
    items: list[Any]
    links: dict[str, dict[str, str]]


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


def start_of(request: Request, cursors: Cursors) -> int | str:
    """Where the page starts, or what is wrong with the paging parameters."""
    q = request.query_params
    given = [name for name in cursors.names() if q.get(name)]
    if len(given) > 1:
        return f"provide either {' or '.join(given)}, not both"
    if given:
        offset = decode_cursor(q[given[0]])
        return "invalid page cursor: follow the links the last page gave" if offset is None else offset
    raw = q.get("offset") if cursors.offset else None
    if raw is None:
        return 0
    return int(raw) if raw.isdigit() else "offset must be a non-negative integer"


def paginate(request: Request, items: list[Any], limit: int, cursors: Cursors, keep: dict[str, Any]) -> Page | str:
    """One page of `items` and its links, or what is wrong with the request's paging parameters."""
    offset = start_of(request, cursors)
    if isinstance(offset, str):
        return offset
    shown = {"offset": offset or None} if cursors.offset else {}
    links = {"self": link(request, **keep, limit=limit, **shown)}
    if offset + limit < len(items):
        links["next"] = link(request, **keep, limit=limit, **{cursors.next: encode_cursor(offset + limit)})
    if offset > 0:
        links["prev"] = link(request, **keep, limit=limit, **{cursors.prev: encode_cursor(max(0, offset - limit))})
    return Page(items[offset : offset + limit], links)
