"""A page allowance for work that reads listings it does not page itself.

A cross-tenant scan (find_failures, an app's schedule overview) calls each family's listings, which page on
their own until the tenant says the end. Under `pages_allowed(...)`, every listing page read by
`QlikClient.iterate` first asks the allowance; once it says no, the listing ends there, so a next link that
loops or a tenant of 100,000 tasks costs no more than the scan's budget. The allowance records what it
refused, so the scan can say what it left unread. Outside such a block listings are read to their end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Given what the page is for, True to read it; False ends the listing there.
PageAllowance = Callable[[str], bool]

_allowance: ContextVar[PageAllowance | None] = ContextVar("page_allowance", default=None)


@contextmanager
def pages_allowed(allow: PageAllowance) -> Iterator[None]:
    """Listing pages read in this block (and in tasks it starts) are each allowed by `allow` first."""
    token = _allowance.set(allow)
    try:
        yield
    finally:
        _allowance.reset(token)


def may_read_page(what: str) -> bool:
    allow = _allowance.get()
    return allow is None or allow(what)
