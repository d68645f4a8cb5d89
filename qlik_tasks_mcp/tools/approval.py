"""Pending approvals for QLIK_MCP_APPROVAL=human: a person decides on a loopback page, never the model.

A preview opens one entry, bound (like a confirm token) to the tool, its exact arguments and a fingerprint
of the target's state. The page decides it once; the same call repeated then acts once (approved) or is
refused (rejected). Entries live in the store (this process, or Redis shared by replicas, so a page served by
one replica approves the call repeated on another) and die with the confirm TTL. Deciding and settling are
each an atomic set-if-absent, so a decision is taken once and acted on once, whichever replicas are asked.
"""

import dataclasses
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from qlik_tasks_mcp.client.store import MemoryStore, Store

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
    # Who asked, when people sign in (QLIK_MCP_AUTH=oauth): {id, name}; only they may decide it.
    person: dict[str, str] | None = None
    # Sent to a client that opens the page by URL-mode elicitation; unlike `id` it grants nothing.
    elicitation_id: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, text: str) -> "Pending":
        raw = json.loads(text)
        preview = raw.pop("preview")
        preview["diff"] = [tuple(row) for row in preview["diff"]]
        return cls(preview=Preview(**preview), **raw)


class PageHost(Protocol):
    """Where the approval page is served: the HTTP transport itself, or a loopback listener for stdio."""

    def base_url(self) -> str: ...

    def close(self) -> None: ...


def _entry(approval_id: str) -> str:
    return f"approval:{approval_id}"


def _bound(binding: str) -> str:
    return f"approval-for:{binding}"


def _decision(approval_id: str) -> str:
    return f"approval-decision:{approval_id}"


def _used(approval_id: str) -> str:
    return f"approval-used:{approval_id}"


class Approvals:
    def __init__(self, ttl_seconds: int, clock: Callable[[], float] = time.time, store: Store | None = None) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.host: PageHost | None = None
        self.store: Store = store or MemoryStore(clock)

    def url(self, pending: Pending) -> str:
        if self.host is None:
            raise RuntimeError("no approval page host is installed")
        return f"{self.host.base_url()}{APPROVE_PATH}{pending.id}"

    def _left(self, entry: Pending) -> float:
        return entry.expires - self.clock()

    async def _load(self, approval_id: str) -> Pending | None:
        text = await self.store.get(_entry(approval_id))
        return None if text is None else Pending.loads(text)

    async def _bound_to(self, binding: str) -> Pending | None:
        approval_id = await self.store.get(_bound(binding))
        return None if approval_id is None else await self._load(approval_id)

    async def request(self, binding: str, preview: Preview, person: dict[str, str] | None = None) -> Pending:
        """The live entry for this exact call and state, opened if there is none; `person`: who asked."""
        found = await self._bound_to(binding)
        if found is not None:
            return found
        entry = Pending(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            binding=binding,
            preview=preview,
            expires=self.clock() + self.ttl_seconds,
            person=person,
        )
        await self.store.put(_entry(entry.id), entry.dumps(), self.ttl_seconds)
        # Two replicas opening a page for one call at once: the first binding wins, the other page is dropped.
        if await self.store.put(_bound(binding), entry.id, self.ttl_seconds, only_new=True):
            return entry
        await self.store.delete(_entry(entry.id))
        return await self._bound_to(binding) or entry

    async def settle(self, binding: str) -> Pending | None:
        """The entry for this call: a decided one is consumed (it acts or refuses once), a pending one stays."""
        found = await self._bound_to(binding)
        if found is None:
            return None
        decision = await self.store.get(_decision(found.id))
        if decision not in ("approved", "rejected"):
            return found
        if not await self.store.put(_used(found.id), "used", max(1.0, self._left(found)), only_new=True):
            return None  # another call (on any replica) acted on it
        await self.store.delete(_bound(binding), _entry(found.id))
        found.decision = "approved" if decision == "approved" else "rejected"
        return found

    async def drop(self, pending: Pending) -> None:
        await self.store.delete(_entry(pending.id), _bound(pending.binding))

    async def page(self, approval_id: str) -> Pending | None:
        """An entry the page may still show: live and undecided."""
        found = await self._load(approval_id)
        if found is None or await self.store.get(_decision(approval_id)) is not None:
            return None
        return found

    async def decide(self, approval_id: str, csrf: str, approve: bool) -> Outcome:
        found = await self.page(approval_id)
        if found is None:
            return "gone"
        if not secrets.compare_digest(found.csrf.encode(), csrf.encode()):
            return "forbidden"
        decision: Outcome = "approved" if approve else "rejected"
        if not await self.store.put(_decision(approval_id), decision, max(1.0, self._left(found)), only_new=True):
            return "gone"
        return decision

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
