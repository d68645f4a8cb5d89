"""Which tasks a bulk change acts on, one way for every bulk tool (set_tasks_enabled, delete_tasks,
change_tasks_owner): the served kinds' sources, tasks named by kind and id, every task of an app, or a filter
tenant-wide; every page read within one budget, a selection the budget cut refused; and its paged preview.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

from pydantic import Field

from qlik_tasks_mcp.client.allowance import pages_allowed
from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.reloads import ReloadsApi
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.names import Names, owner_of, task_lines
from qlik_tasks_mcp.tools.sources import (
    APP_RELOADS,
    Budget,
    KindUnavailable,
    Narrow,
    TaskInfo,
    TaskSource,
    all_tasks,
    gather,
    handover_planner,
    scan_now,
)

# The selection's time bound, as the scans' (tests lift it where only requests are counted).
SCAN_SECONDS = 45.0
PREVIEW_LINES = 100
# A tenant-wide filter's listings: every page read to select the tasks counts.
SELECT_REQUESTS = 400
MAX_TARGETS = 5000
KindName = Literal["reload", "task", "sharing", "qalyptus"]
# Every bulk change acts task by task: what a preview says of the outcome.
ONE_BY_ONE = "Tasks are changed one by one; if some fail, the result lists what changed and what did not."
T = TypeVar("T")


class TaskRef(Input):
    kind: KindName
    id: str = Field(min_length=1, max_length=128)


class BulkFailure(Compact):
    kind: str
    id: str
    error: str


class BulkResult(Compact):
    changed: int
    already: int
    failed: list[BulkFailure] = []


@dataclass
class Sources:
    """The task sources of the served toolsets, by kind."""

    by_kind: dict[str, TaskSource]
    names: Names
    # Served with the reloads toolset: an app's overview shows its recent reloads.
    reloads: ReloadsApi | None = None

    def of(self, kind: str) -> TaskSource:
        if kind not in self.by_kind:
            raise InvalidInput(f"kind {kind!r} is not served here; choose from {self.available}")
        return self.by_kind[kind]

    @property
    def available(self) -> str:
        kinds = [kind for kind in self.by_kind if kind != APP_RELOADS]
        return ", ".join(kinds) or "(none: serve a family toolset beside ops)"


async def unless_unavailable(call: Awaitable[T], fallback: T, notes: list[str]) -> T:
    """`call`'s answer, or `fallback` with the source's note when its kind is unavailable on this tenant."""
    try:
        return await call
    except KindUnavailable as exc:
        if str(exc) not in notes:
            notes.append(str(exc))
        return fallback


@contextmanager
def spending(budget: Budget) -> Iterator[None]:
    """Every listing page read in this block spends one of `budget`'s requests (client/allowance.py)."""
    with pages_allowed(lambda what: budget.spend(scan_now(), what)):
        yield


class TaskFilter(Input):
    """Which tasks a bulk change selects: every condition given must hold."""

    app_id: str | None = Field(None, min_length=1, max_length=128)
    owner_id: str | None = Field(None, min_length=1, max_length=128, description="User id.")
    kinds: list[KindName] | None = Field(None, max_length=4)
    enabled: bool | None = Field(None, description="Current state.")
    name_contains: str | None = Field(None, min_length=1, max_length=200, description="Case-insensitive.")

    def matches(self, info: TaskInfo) -> bool:
        return (
            (self.owner_id is None or owner_of(info) == self.owner_id)
            and (self.enabled is None or info.enabled == self.enabled)
            and (self.name_contains is None or self.name_contains.casefold() in info.name.casefold())
        )


async def select_targets(
    sources: Sources,
    tasks: list[TaskRef] | None,
    app_id: str | None,
    only: list[KindName] | None,
    notes: list[str],
    chosen: TaskFilter | None = None,
) -> list[TaskInfo]:
    if sum(map(bool, (tasks, app_id, chosen))) != 1:
        raise InvalidInput("give either tasks (kind + id each), app_id, or filter")
    if chosen is not None:
        return await _filtered(sources, chosen, notes)
    if app_id:
        return await _filtered(sources, TaskFilter.model_validate({"app_id": app_id, "kinds": only}), notes)
    assert tasks is not None
    if len(tasks) > MAX_TARGETS:
        raise InvalidInput(f"{len(tasks)} tasks given; at most {MAX_TARGETS} per call")
    return await _named(sources, tasks, notes)


async def _named(sources: Sources, tasks: list[TaskRef], notes: list[str]) -> list[TaskInfo]:
    """The tasks named, each kind read as cheaply as it allows (many ids: its listing, within one budget)."""
    found: list[TaskInfo] = []
    wanted: dict[str, list[str]] = {}
    for ref in tasks:
        wanted.setdefault(ref.kind, []).append(ref.id)
    budget = Budget(requests=SELECT_REQUESTS, deadline=scan_now() + SCAN_SECONDS)
    for kind, ids in wanted.items():
        unique = list(dict.fromkeys(ids))
        with spending(budget):
            got = await unless_unavailable(sources.of(kind).many(unique), None, notes)
        _refuse_cut(budget, "the named tasks", "name fewer tasks per call")
        if got is None:
            continue
        missing = [i for i in unique if i not in got]
        if missing:
            raise InvalidInput(f"no {kind} task with id {', '.join(missing[:10])}; nothing was changed")
        found += [got[i] for i in unique]
    return found


async def _filtered(sources: Sources, chosen: TaskFilter, notes: list[str]) -> list[TaskInfo]:
    """The tasks `chosen` selects, in a stable order (kind, name, id): the preview pages through it."""
    # Only kinds whose tasks can be enabled: app reloads are a source for find_failures, not tasks.
    kinds = [sources.of(kind).kind for kind in chosen.kinds or sources.by_kind if kind in get_args(KindName)]
    if chosen.app_id:
        found: list[TaskInfo] = []
        for kind in kinds:
            found += await unless_unavailable(sources.of(kind).of_app(chosen.app_id), [], notes)
        own = [kind for kind in kinds if handover_planner(sources.of(kind))]
        if chosen.owner_id and own:
            # Their owners are their own users, matched to a Qlik user only by the tenant-wide listing.
            notes.append(f"No {', '.join(own)} task is selected by owner_id with app_id: filter without app_id.")
    else:
        narrow = Narrow(owner_id=chosen.owner_id, enabled=chosen.enabled)
        found = await _tenant_wide(sources, kinds, notes, narrow)
    selected = [t for t in unique_tasks(found) if chosen.matches(t)]
    if len(selected) > MAX_TARGETS:
        raise InvalidInput(f"the filter selects {len(selected)} tasks; at most {MAX_TARGETS} per call: narrow it")
    return sorted(selected, key=lambda t: (t.kind, t.name.casefold(), t.id))


async def _tenant_wide(sources: Sources, kinds: list[str], notes: list[str], narrow: Narrow) -> list[TaskInfo]:
    """Every task of `kinds` (those `narrow` selects where the kind's listing can filter): listed tenant-wide where
    the kind can, else app by app, within one budget. A selection cut by the budget is refused, never acted on:
    the confirmation must cover what the filter means."""
    budget = Budget(requests=SELECT_REQUESTS, deadline=scan_now() + SCAN_SECONDS)
    found: list[TaskInfo] = []
    by_app: list[str] = []
    for kind in kinds:
        listed = await unless_unavailable(all_tasks(sources.of(kind), budget, narrow), [], notes)
        if listed is None:
            by_app.append(kind)
        else:
            found += listed
    if by_app:
        with spending(budget):
            found += await _app_by_app(sources, by_app, notes)
        notes.append(f"Read app by app: {', '.join(by_app)} (tasks tied to no app are not found that way).")
    _refuse_cut(budget, "the filter's tasks", "narrow the filter with app_id or kinds")
    notes += budget.notes
    return found


def _refuse_cut(budget: Budget, what: str, narrow: str) -> None:
    if budget.skipped:
        raise InvalidInput(
            f"{what} could not all be read within {SELECT_REQUESTS} requests / {SCAN_SECONDS:.0f} s "
            f"({len(budget.skipped)} reads left, first: {budget.skipped[0]}); a partial selection is never "
            f"changed: {narrow}"
        )


async def _app_by_app(sources: Sources, kinds: list[str], notes: list[str]) -> list[TaskInfo]:
    apps: set[str] = set()
    for found in sources.by_kind.values():
        apps |= await unless_unavailable(found.app_ids(), set(), notes)
    read: list[TaskInfo] = []

    async def one(pair: tuple[str, str]) -> None:
        kind, app = pair
        read.extend(await unless_unavailable(sources.of(kind).of_app(app), [], notes))

    await gather([(kind, app) for app in sorted(apps - {""}) for kind in kinds], one)
    return read


async def preview_page(names: Names, todo: list[TaskInfo], page: int, state_word: str) -> list[str]:
    """Page `page` of the selection, PREVIEW_LINES lines, and a line saying what is left; the confirmation binds
    the whole selection whichever page was shown."""
    pages = -(-len(todo) // PREVIEW_LINES)
    if page > pages:
        raise InvalidInput(f"page {page} is past the last page ({pages}) of {len(todo)} tasks")
    first = (page - 1) * PREVIEW_LINES
    lines = await task_lines(names, todo[first : first + PREVIEW_LINES], state_word)
    left = len(todo) - first - len(lines)
    if left > 0:
        lines.append(f"... and {left} more (page={page + 1} shows them; the confirmation binds all {len(todo)})")
    elif first:
        lines.append(f"(page {page} of {pages}: the confirmation binds all {len(todo)})")
    return lines


def unique_tasks(infos: list[TaskInfo]) -> list[TaskInfo]:
    # A tenant whose listing loops sends the same task again: it is shown once.
    return list({(info.kind, info.id): info for info in infos}.values())
