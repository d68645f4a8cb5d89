"""Bulk deletes and owner changes across the served task kinds, each with one yes. The selection (ids, an app, a
filter) and its paged preview are set_tasks_enabled's, so a yes covers exactly the tasks the preview counted.

The selection and its preview are tools/ops/selection.py's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, ClientError, InvalidInput
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.names import owner_of, user_id_of
from qlik_tasks_mcp.tools.operation import destructive
from qlik_tasks_mcp.tools.ops.selection import (
    MAX_TARGETS,
    ONE_BY_ONE,
    PREVIEW_LINES,
    BulkFailure,
    BulkResult,
    Sources,
    TaskFilter,
    TaskRef,
    preview_page,
    select_targets,
)
from qlik_tasks_mcp.tools.sources import (
    Handover,
    TaskInfo,
    can_delete,
    can_give,
    delete_task,
    gather,
    give_task,
    handover_planner,
    stale_reports_notes,
)

Tasks = Annotated[list[TaskRef] | None, Field(max_length=MAX_TARGETS)]
Filter = Annotated[TaskFilter | None, Field(description="Or the tasks matching all of these.")]
Page = Annotated[int, Field(ge=1, le=MAX_TARGETS // PREVIEW_LINES, description="Preview page.")]


def _per_kind(tasks: list[TaskInfo]) -> str:
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.kind] = counts.get(t.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def _tasks(tasks: list[TaskInfo]) -> str:
    return f"{len(tasks)} task" + ("s" if len(tasks) != 1 else "")


def _being_deleted(task: TaskInfo) -> bool:
    # A sharing task being deleted (statusCode DELETING) takes no change: it is going anyway.
    return task.state.upper() == "DELETING"


def _ids(tasks: list[TaskInfo]) -> str:
    shown = ", ".join(f"{t.kind} {t.id}" for t in tasks[:10])
    return shown + (f" and {len(tasks) - 10} more" if len(tasks) > 10 else "")


async def _each(todo: list[TaskInfo], act: Callable[[TaskInfo], Awaitable[None]]) -> BulkResult:
    """`act(info)` on every task: what the tenant refused is listed; a task already gone (404) is counted apart."""
    failed: list[BulkFailure] = []
    gone: list[str] = []

    async def one(info: TaskInfo) -> None:
        try:
            await act(info)
        except ApiError as exc:
            if exc.status == 404:
                gone.append(info.id)
            else:
                failed.append(BulkFailure(kind=info.kind, id=info.id, error=str(exc)[:300]))
        except ClientError as exc:
            failed.append(BulkFailure(kind=info.kind, id=info.id, error=str(exc)[:300]))

    await gather(todo, one)
    return BulkResult(changed=len(todo) - len(failed) - len(gone), already=len(gone), failed=failed)


async def _delete_plan(
    sources: Sources,
    tasks: list[TaskRef] | None,
    filter: TaskFilter | None,
    page: int,
) -> Plan:
    unavailable: list[str] = []
    targets = await select_targets(sources, tasks, None, None, unavailable, filter)
    going = [t for t in targets if _being_deleted(t)]
    todo = [t for t in targets if can_delete(sources.of(t.kind)) and not _being_deleted(t)]
    kept = [t for t in targets if not can_delete(sources.of(t.kind))]
    if not todo:
        why = "".join(f"; {note}" for note in unavailable)
        raise InvalidInput(f"the selection has no task that can be deleted here ({len(targets)} selected{why})")
    notes = list(unavailable)
    if going:
        notes.append(f"{len(going)} already being deleted: {_ids(going)}")
    if kept:
        notes.append(f"{len(kept)} cannot be deleted here, left as they are: {_ids(kept)}")
    notes += ["Deleted tasks are gone for good, with their schedules and run history.", ONE_BY_ONE]
    notes += await stale_reports_notes(sources.by_kind, sources.names, todo, deleting=True)
    app = filter.app_id if filter else None
    return Plan(
        action=f"Delete {_tasks(todo)} ({_per_kind(todo)})" + (f" of app {app}" if app else ""),
        changes=await preview_page(sources.names, todo, page, "deleted"),
        state=sorted((t.kind, t.id) for t in targets),
        notes=notes,
        payload=todo,
    )


@destructive("Delete tasks", plan=_delete_plan, idempotent=True)
async def delete_tasks(
    sources: Sources,
    plan: Plan,
    tasks: Tasks = None,
    filter: Filter = None,
    page: Page = 1,
) -> BulkResult:
    """Delete many tasks of any kind at once, named or by filter."""

    async def act(info: TaskInfo) -> None:
        await delete_task(sources.of(info.kind), info)

    return await _each(plan.payload, act)


async def _new_owner(sources: Sources, new_owner: str) -> tuple[str, str]:
    owner_id = await user_id_of(sources.names, new_owner)
    try:
        user = (await sources.names.users([owner_id])).get(owner_id)
    except ApiError:
        user = None  # not checked here: the tenant refuses a PATCH to an owner that cannot be one
    if user is not None and user.gone:
        raise InvalidInput(f"user {owner_id} is {user.status} and cannot own tasks; give an active user")
    return owner_id, await sources.names.describe_user(owner_id)


async def _handover(sources: Sources, tasks: list[TaskInfo], owner_id: str) -> Handover:
    """Each kind's tasks given to Qlik user `owner_id`: as the kind's own users where it has them (Qalyptus),
    else as they are (a task's owner is a Qlik user id)."""
    given = Handover()
    for kind in dict.fromkeys(t.kind for t in tasks):
        of_kind = [t for t in tasks if t.kind == kind]
        planner = handover_planner(sources.of(kind))
        if planner is None:
            part = Handover(
                todo=[(t, owner_id) for t in of_kind if owner_of(t) != owner_id],
                already=[t for t in of_kind if owner_of(t) == owner_id],
            )
        else:
            part = await planner(of_kind, owner_id)
        given.todo += part.todo
        given.already += part.already
        given.notes += part.notes
        given.state.append((kind, part.state))
    order = {(t.kind, t.id): n for n, t in enumerate(tasks)}
    given.todo.sort(key=lambda pair: order[(pair[0].kind, pair[0].id)])
    return given


async def _give_plan(
    sources: Sources,
    new_owner: str,
    tasks: list[TaskRef] | None,
    filter: TaskFilter | None,
    page: int,
) -> Plan:
    owner_id, label = await _new_owner(sources, new_owner)
    unavailable: list[str] = []
    targets = await select_targets(sources, tasks, None, None, unavailable, filter)
    movable = [t for t in targets if can_give(sources.of(t.kind))]
    going = [t for t in movable if _being_deleted(t)]
    given = await _handover(sources, [t for t in movable if not _being_deleted(t)], owner_id)
    todo = [t for t, _ in given.todo]
    # Reload tasks and tasks: any update (PUT or PATCH) makes the caller the owner, so they cannot be given.
    fixed = [t for t in targets if not can_give(sources.of(t.kind))]
    by_put = [t for t in fixed if t.owner_before_put]
    others = [t for t in fixed if not t.owner_before_put]
    notes = list(unavailable)
    if going:
        notes.append(f"{len(going)} being deleted, left as they are: {_ids(going)}")
    if given.already:
        notes.append(f"{len(given.already)} already owned by {label}: left as they are")
    notes += given.notes
    if by_put:
        notes.append(
            f"{len(by_put)} reload tasks/tasks left as they are: Qlik makes whoever updates one its owner, so "
            f"only {label} can take them over, by saving any change to each while signed in as themselves "
            f"(update_reload_task / update_task): {_ids(by_put)}"
        )
    if others:
        notes.append(f"{len(others)} left as they are: their owner cannot be changed here: {_ids(others)}")
    if not todo:
        raise InvalidInput(
            f"no task of the selection ({len(targets)}) can be given to {label} here. " + " ".join(notes)
        )
    notes += ["Each then runs with the new owner's access: content they cannot see fails to send.", ONE_BY_ONE]
    return Plan(
        action=f"Give {_tasks(todo)} ({_per_kind(todo)}) to {label}",
        changes=await preview_page(sources.names, todo, page, f"owner {label}"),
        state=(owner_id, sorted((t.kind, t.id, owner_of(t) or "") for t in targets), given.state),
        notes=notes,
        payload=given.todo,
    )


@destructive("Give tasks to a new owner", plan=_give_plan, idempotent=True)
async def change_tasks_owner(
    sources: Sources,
    plan: Plan,
    new_owner: Annotated[str, Field(min_length=1, max_length=200, description="User id, name or e-mail.")],
    tasks: Tasks = None,
    filter: Filter = None,
    page: Page = 1,
) -> BulkResult:
    """Give sharing and Qalyptus tasks to another owner at once (a leaver's: filter owner_id), named or by filter;
    reload tasks and tasks are listed, not changed."""
    new_owners: dict[tuple[str, str], str] = {(t.kind, t.id): owner for t, owner in plan.payload}

    async def act(info: TaskInfo) -> None:
        await give_task(sources.of(info.kind), info, new_owners[(info.kind, info.id)])

    return await _each([t for t, _ in plan.payload], act)
