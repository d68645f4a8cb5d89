"""Pending approvals for QLIK_MCP_APPROVAL=human: a person decides on a loopback page, never the model.

A preview opens one entry, bound (like a confirm token) to the tool, its exact arguments and a fingerprint
of the target's state. The page decides it once; the same call repeated then acts once (approved) or is
refused (rejected). Entries live in this process only and die with the confirm TTL.
"""

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

APPROVE_PATH = "/approve/"

Decision = Literal["pending", "approved", "rejected"]
Outcome = Literal["approved", "rejected", "gone", "forbidden"]


@dataclass(frozen=True)
class Preview:
    """Everything the page shows, already rendered one line per item."""

    tool: str
    arguments: str
    action: str
    changes: list[str]
    # (field, before, after) per changed field.
    diff: list[tuple[str, str, str]]
    notes: list[str]


@dataclass
class Pending:
    id: str
    csrf: str
    binding: str
    preview: Preview
    expires: float
    decision: Decision = "pending"
    # Sent to a client that opens the page by URL-mode elicitation; unlike `id` it grants nothing.
    elicitation_id: str = field(default_factory=lambda: secrets.token_urlsafe(12))


class PageHost(Protocol):
    """Where the approval page is served: the HTTP transport itself, or a loopback listener for stdio."""

    def base_url(self) -> str: ...

    def close(self) -> None: ...


class Approvals:
    def __init__(self, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.host: PageHost | None = None
        self._entries: dict[str, Pending] = {}
        # The stdio listener answers the page from its own thread.
        self._lock = threading.Lock()

    def url(self, pending: Pending) -> str:
        if self.host is None:
            raise RuntimeError("no approval page host is installed")
        return f"{self.host.base_url()}{APPROVE_PATH}{pending.id}"

    def _prune(self) -> None:
        now = self.clock()
        for key in [key for key, entry in self._entries.items() if entry.expires < now]:
            del self._entries[key]

    def _bound_to(self, binding: str) -> Pending | None:
        return next((e for e in self._entries.values() if e.binding == binding), None)

    def request(self, binding: str, preview: Preview) -> Pending:
        """The live entry for this exact call and state, opened if there is none."""
        with self._lock:
            self._prune()
            found = self._bound_to(binding)
            if found is not None:
                return found
            entry = Pending(
                id=secrets.token_urlsafe(32),
                csrf=secrets.token_urlsafe(32),
                binding=binding,
                preview=preview,
                expires=self.clock() + self.ttl_seconds,
            )
            self._entries[entry.id] = entry
            return entry

    def settle(self, binding: str) -> Pending | None:
        """The entry for this call: a decided one is removed (it acts or refuses once), a pending one stays."""
        with self._lock:
            self._prune()
            found = self._bound_to(binding)
            if found is not None and found.decision != "pending":
                del self._entries[found.id]
            return found

    def drop(self, pending: Pending) -> None:
        with self._lock:
            self._entries.pop(pending.id, None)

    def page(self, approval_id: str) -> Pending | None:
        """An entry the page may still show: live and undecided."""
        with self._lock:
            self._prune()
            found = self._entries.get(approval_id)
            return found if found is not None and found.decision == "pending" else None

    def decide(self, approval_id: str, csrf: str, approve: bool) -> Outcome:
        with self._lock:
            self._prune()
            found = self._entries.get(approval_id)
            if found is None or found.decision != "pending":
                return "gone"
            if not secrets.compare_digest(found.csrf.encode(), csrf.encode()):
                return "forbidden"
            found.decision = "approved" if approve else "rejected"
            return found.decision

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
