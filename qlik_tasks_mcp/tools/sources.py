"""One view of a scheduled task whatever its kind, so the ops tools treat every family alike.

Every family whose tasks the ops tools reach implements `TaskSource` (in its own tools module, made by its
`source(clients)` factory): how to read a task into `TaskInfo`, list an app's tasks, enable or disable one, and
find its failures in a window within a budget. The ops tools see only sources of the toolsets being served.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import anyio

ERROR_LINE = re.compile(r"error|failed|exception|fatal", re.IGNORECASE)
# Requests in flight at once when a scan or a bulk change reads many things: a big tenant is read steadily.
CONCURRENCY = 4

T = TypeVar("T")


@dataclass
class TaskInfo:
    kind: str
    id: str
    name: str
    enabled: bool
    app_id: str | None = None
    state: str = ""
    disabled_reason: str | None = None
    recurrence: list[str] = field(default_factory=list)
    time_zone: str | None = None
    start: str | None = None
    end: str | None = None
    schedule_text: str | None = None
    # (task id, outcome or None for any): the runs whose end starts this task.
    after: list[tuple[str, str | None]] = field(default_factory=list)
    next_run: str | None = None
    # Set for the kinds whose change is a PUT, which makes the caller the owner.
    owner_before_put: str | None = None
    # The owner's Qlik user id, for the kinds that have one (find_orphans, names in previews); None: not known.
    owner_id: str | None = None


@dataclass
class Failure:
    kind: str
    task_id: str
    name: str
    app_id: str | None
    at: str | None
    ref: str | None = None
    error: str | None = None


@dataclass
class Budget:
    """Requests and time a cross-tenant scan may spend; whatever is left unread is named, not hidden."""

    requests: int
    deadline: float
    skipped: list[str] = field(default_factory=list)

    def spend(self, now: float, what: str) -> bool:
        if self.requests <= 0 or now > self.deadline:
            self.skipped.append(what)
            return False
        self.requests -= 1
        return True


@dataclass
class FailureScan:
    """One find_failures pass, shared by the sources in inventory order: each adds what it found and read."""

    since: datetime
    budget: Budget
    clock: Callable[[], float]
    # App ids learned so far (reload tasks name theirs), for kinds that can only be scanned app by app.
    apps: set[str] = field(default_factory=set)
    found: list[Failure] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)


class TaskSource(Protocol):
    kind: str
    # True for kinds whose tasks can start when another task ends: the overview reads other apps' tasks for them.
    chains: bool

    async def get(self, task_id: str) -> TaskInfo: ...

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        """Those of `task_ids` that exist, read as cheaply as the kind allows."""
        ...

    async def of_app(self, app_id: str) -> list[TaskInfo]: ...

    async def app_ids(self) -> set[str]:
        """Apps this kind has tasks for, where it can list them tenant-wide cheaply; else empty."""
        ...

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None: ...

    async def failures(self, scan: FailureScan) -> None: ...


def first_error_line(text: str) -> str | None:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if ERROR_LINE.search(line):
            found = line.strip()
            # Qlik logs announce an error ("The following error occurred:") and give it on the next line.
            if found.endswith(":") and index + 1 < len(lines):
                found += " " + lines[index + 1].strip()
            return found[:300]
    return None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def gather(items: list[T], work: Callable[[T], Awaitable[None]]) -> None:
    """Run `work` over `items` with bounded concurrency; the first failure ends the rest and surfaces as itself."""
    limiter = anyio.CapacityLimiter(CONCURRENCY)
    errors: list[Exception] = []

    async def one(item: T) -> None:
        async with limiter:
            try:
                await work(item)
            except Exception as exc:
                errors.append(exc)
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for item in items:
            group.start_soon(one, item)
    if errors:
        raise errors[0]


async def read_each(task_ids: list[str], get: Callable[[str], Awaitable[TaskInfo]]) -> dict[str, TaskInfo]:
    """`many` for a kind read one task at a time: each id by `get`, with bounded concurrency."""
    found: dict[str, TaskInfo] = {}

    async def one(task_id: str) -> None:
        found[task_id] = await get(task_id)

    await gather(task_ids, one)
    return found
