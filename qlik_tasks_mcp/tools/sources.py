"""One view of a scheduled task whatever its kind, so the ops tools treat every family alike.

Every family whose tasks the ops tools reach implements `TaskSource` (in tools/<family>/source.py, made by its
`source(clients)` factory): how to read a task into `TaskInfo`, list an app's tasks, enable or disable one, and
find its failures in a window within a budget. Optional, found by name: `all_tasks(budget)` (list tenant-wide),
`delete(info)`, `change_owner(info, owner_id)` for kinds whose owner is a field of their own (with
`handover(tasks, owner_id)` where their owners are their own users, matched to Qlik's), and
`runs_since(info, since, may_read)` for kinds whose runs are not app reloads, read task by task; for kinds whose
listing does not carry their schedules or whose runs are read for many tasks at once (Qalyptus: triggers, one
status list per organization), `schedules_of(infos, budget)` and `runs_of(infos, since, budget)`. The ops tools see
only sources of the toolsets being served.
"""

import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio

from qlik_tasks_mcp.client.errors import ClientError, InvalidInput
from qlik_tasks_mcp.client.schedule import ExpansionBudget, Schedule, read_schedule
from qlik_tasks_mcp.tools.fence import quoted

if TYPE_CHECKING:
    from qlik_tasks_mcp.tools.names import Names

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
    # What else starts the task besides its schedule, in words (Qalyptus: Qlik app events).
    also: str | None = None
    # The schedule read whole (client.schedule.read_schedule), for kinds whose schedule is not RRULE lines alone
    # (tasks: interval, cron, multi-line recurrences); None: read from recurrence/time_zone/start/end when asked.
    schedule: Schedule | None = None
    # Every time schedule, each read whole, for kinds whose task has several with their own start, zone and end
    # (Qalyptus schedule triggers): run_times expands them all; empty: the one of `timing`.
    schedules: list[Schedule] = field(default_factory=list)
    # (task id, outcome or None for any): the runs whose end starts this task.
    after: list[tuple[str, str | None]] = field(default_factory=list)
    next_run: str | None = None
    # Set for the kinds whose change is a PUT, which makes the caller the owner.
    owner_before_put: str | None = None
    # The owner's Qlik user id, for the kinds that have one (find_orphans, names in previews); None: not known.
    # Kinds whose owners are their own users (Qalyptus) set it only where all_tasks' narrow names the owner.
    owner_id: str | None = None
    # For kinds whose owners are their own users (Qalyptus): the owner, by name and id, when the kind's directory
    # no longer has them (read by the source's all_tasks); None: present, or not checked.
    owner_gone: str | None = None
    # The owner by name, for kinds whose own document names them (Qalyptus; Qlik owners are looked up by id).
    owner_label: str | None = None


@dataclass
class Failure:
    kind: str
    task_id: str
    name: str
    app_id: str | None
    at: str | None
    ref: str | None = None
    error: str | None = None
    # What `ref` is: "reload" (an app reload: get_reload, get_reload_log), "run" (a task's run: get_task_run_log),
    # or the kind's own (a sharing execution); never a task's id.
    ref_kind: str | None = None


# What a scan's time budget is counted on: the wall clock, since a scan mostly waits on the tenant. The tests stop it
# (tests/conftest.py), so only their request budgets bound their scans, however busy the machine.
SCAN_CLOCK: Callable[[], float] = time.monotonic


def scan_now() -> float:
    """Now, on the scans' clock: pass it to Budget.spend and add a scan's seconds to it for its deadline."""
    return SCAN_CLOCK()


@dataclass
class Budget:
    """Requests and time a cross-tenant scan may spend; whatever is left unread is named, not hidden."""

    requests: int
    deadline: float
    skipped: list[str] = field(default_factory=list)
    # What was read without a part the listing does not need (a Qalyptus organization's users): said, not a cut.
    notes: list[str] = field(default_factory=list)

    def spend(self, now: float, what: str) -> bool:
        if self.requests <= 0 or now > self.deadline:
            self.skipped.append(what)
            return False
        self.requests -= 1
        return True


@dataclass
class FailedReload:
    """One FAILED app reload of the scan's window, and what started it (reloads.json resourceType/resourceId)."""

    id: str
    app_id: str
    at: str | None
    error: str | None
    resource_type: str = ""
    resource_id: str = ""
    started_by: str = ""


# The group kind of failed reloads that no task kind served here claims (a user, the API, an automation).
APP_RELOADS = "app"


@dataclass
class ReloadIndex:
    """The failed app reloads of the window, read once (newest first) by the reloads source before any other kind.

    A task run and a reload-task run each make a reload naming it (resourceType tasks / reload-tasks,
    resourceId the task id), so those kinds count their failed runs from here instead of reading runs task by
    task. Whatever no kind claims becomes a failure of its app."""

    # True once the tenant-wide listing (a tenant admin's) was read back to the window's start.
    tenant_wide: bool = False
    # Apps whose failed reloads were read one app at a time (not a tenant admin), back to the window's start.
    apps: set[str] = field(default_factory=set)
    by_resource: dict[tuple[str, str], list[FailedReload]] = field(default_factory=dict)

    def add(self, reload: FailedReload) -> None:
        self.by_resource.setdefault((reload.resource_type, reload.resource_id), []).append(reload)

    def covers(self, app_id: str | None) -> bool:
        """Every failed reload of `app_id` in the window is here."""
        return self.tenant_wide or (app_id is not None and app_id in self.apps)

    def claim(self, resource_type: str) -> dict[str, list[FailedReload]]:
        """The failed reloads started by resources of this type (tasks, reload-tasks), by resource id; claimed
        ones are no longer reported as their app's."""
        keys = [key for key in self.by_resource if key[0] == resource_type and key[1]]
        return {key[1]: self.by_resource.pop(key) for key in keys}

    def unclaimed(self) -> list[Failure]:
        """Failures of the reloads no kind claimed, grouped by app."""
        return [
            Failure(
                APP_RELOADS,
                reload.app_id,
                f"reloads of app {reload.app_id} (not by a task served here)",
                reload.app_id,
                reload.at,
                ref=reload.id,
                error=f"started by {reload.started_by}: {reload.error}" if reload.error else None,
                ref_kind="reload",
            )
            for reloads in self.by_resource.values()
            for reload in reloads
        ]


@dataclass
class FailureScan:
    """One find_failures pass, shared by the sources in turn: each adds what it found and read.

    `budget` is the budget of the kind being scanned (the ops tool gives each kind its own share)."""

    since: datetime
    budget: Budget
    clock: Callable[[], float]
    # App ids learned so far (reload tasks name theirs, and the caller's app_ids), for per-app reads.
    apps: set[str] = field(default_factory=set)
    found: list[Failure] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    reloads: ReloadIndex = field(default_factory=ReloadIndex)
    # Apps the caller named (app_ids): read one by one even where a tenant-wide query covers them.
    asked_apps: set[str] = field(default_factory=set)
    # What a source wants the report's note to say about what it read (e.g. what it chose not to read).
    notes: list[str] = field(default_factory=list)

    def spend(self, what: str) -> bool:
        return self.budget.spend(self.clock(), what)


class KindUnavailable(ClientError):
    """Raised by a TaskSource whose API this tenant no longer serves (e.g. retired): the ops tools skip that
    kind with this message as a note instead of failing."""


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


def first_line(text: str | None) -> str | None:
    """The first non-blank line of a message (a reload's errorMessage), at most 300 characters."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return None


@dataclass(frozen=True)
class Narrow:
    """Conditions a tenant-wide listing may send to the tenant so it reads fewer pages. A source applies those its
    API can filter on and ignores the rest: callers still check every condition on what comes back. A kind whose
    owners are its own users (Qalyptus) sets owner_id on the tasks that are `owner_id`'s: only it can tell."""

    app_id: str | None = None
    owner_id: str | None = None
    enabled: bool | None = None


async def all_tasks(source: TaskSource, budget: Budget, narrow: Narrow | None = None) -> list[TaskInfo] | None:
    """Every task of the source's kind (those `narrow` selects, where its API can filter), through its optional
    `all_tasks(budget, narrow)` (a source that can list its tasks tenant-wide); None, the default, for a source
    without it or that cannot here: its tasks are read app by app instead."""
    lister: Callable[[Budget, Narrow | None], Awaitable[list[TaskInfo] | None]] | None = getattr(
        source, "all_tasks", None
    )
    return None if lister is None else await lister(budget, narrow)


async def delete_task(source: TaskSource, info: TaskInfo) -> None:
    """Delete one task through the source's optional `delete(info)`; a kind without it cannot be deleted here."""
    deleter: Callable[[TaskInfo], Awaitable[None]] | None = getattr(source, "delete", None)
    if deleter is None:
        raise InvalidInput(f"{info.kind} tasks cannot be deleted here")
    await deleter(info)


def can_delete(source: TaskSource) -> bool:
    return getattr(source, "delete", None) is not None


async def give_task(source: TaskSource, info: TaskInfo, owner_id: str) -> None:
    """Give one task to `owner_id` (the owner as its kind names them: Handover) through the source's optional
    `change_owner(info, owner_id)`: only kinds whose owner is a field of its own (sharing, Qalyptus tasks) have it;
    a PUT makes its caller the owner, so no other kind can."""
    changer: Callable[[TaskInfo, str], Awaitable[None]] | None = getattr(source, "change_owner", None)
    if changer is None:
        raise InvalidInput(f"{info.kind} tasks cannot be given to another owner here")
    await changer(info, owner_id)


def can_give(source: TaskSource) -> bool:
    return getattr(source, "change_owner", None) is not None


@dataclass
class Handover:
    """Tasks of one kind given to a Qlik user: each task to change with its new owner as the kind names them, those
    already theirs, and why any other is left as it is."""

    todo: list[tuple[TaskInfo, str]] = field(default_factory=list)
    already: list[TaskInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What the confirmation binds beyond the tasks: the kind's own ids of the new owner and of each task's owner.
    state: list[object] = field(default_factory=list)


# (tasks, Qlik user id) -> Handover, for kinds whose owners are their own users (Qalyptus), matched to Qlik's.
HandoverPlan = Callable[[list[TaskInfo], str], Awaitable[Handover]]


def handover_planner(source: TaskSource) -> HandoverPlan | None:
    """The source's optional `handover`; without it, a task's owner is a Qlik user id (TaskInfo.owner_id)."""
    return getattr(source, "handover", None)


# (task, since, may_read) -> (start, status) of its runs since then, oldest first; None when may_read cut it short.
RunsSince = Callable[[TaskInfo, datetime, Callable[[str], bool]], Awaitable[list[tuple[datetime, str]] | None]]


def runs_reader(source: TaskSource) -> RunsSince | None:
    """The source's optional `runs_since`: for kinds whose runs are not app reloads (sharing executions)."""
    return getattr(source, "runs_since", None)


# (tasks, since, budget) -> (start, status) of each task's runs since then, oldest first, by task id; a task left out:
# its runs were not all read back to `since` (the budget named what it did not read).
RunsOf = Callable[[list[TaskInfo], datetime, Budget], Awaitable[dict[str, list[tuple[datetime, str]]]]]
# (tasks, budget) -> each task's time schedules, by task id; a task left out was not read (the budget says why).
SchedulesOf = Callable[[list[TaskInfo], Budget], Awaitable[dict[str, list[Schedule]]]]


def many_runs_reader(source: TaskSource) -> RunsOf | None:
    """The source's optional `runs_of`: for kinds that read many tasks' runs in one listing (Qalyptus statuses)."""
    return getattr(source, "runs_of", None)


def schedules_reader(source: TaskSource) -> SchedulesOf | None:
    """The source's optional `schedules_of`: for kinds whose listing does not carry their schedules (Qalyptus)."""
    return getattr(source, "schedules_of", None)


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


def short_time(value: str | None) -> str | None:
    """A time in a result row, for reading: "2026-11-23 06:00Z" (UTC, to the minute); as it is if unreadable."""
    parsed = parse_time(value)
    if parsed is None:
        return value or None
    return short_utc(parsed)


def short_utc(value: datetime) -> str:
    """short_time() of a time already read."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


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


def timing(info: TaskInfo) -> Schedule | None:
    """The one schedule of a kind that has one, read whole, whatever its form; None when it has no time schedule.
    A kind whose task can have several (Qalyptus) fills `schedules` only: code that may see one reads `timings`."""
    if info.schedule is not None:
        return info.schedule
    if not info.recurrence:
        return None
    return read_schedule(recurrence=info.recurrence, zone=info.time_zone, start=info.start, end=info.end)


async def run_times(
    info: TaskInfo,
    *,
    count: int,
    now: datetime,
    budget: ExpansionBudget,
    even_if_disabled: bool = False,
    strict: bool = False,
) -> list[datetime]:
    """The next runs of every readable time schedule of the task, merged, worked out off the event loop within
    `budget` (one per tool call, shared by its tasks).

    `strict`: a rule with no run in the horizon is InvalidInput, so an empty list means the schedule ended."""
    schedules = [s for s in timings(info) if s.readable]
    if not schedules or not (info.enabled or even_if_disabled):
        return []
    runs: set[datetime] = set()
    for schedule in schedules:
        work = partial(schedule.next_runs, now, count, budget=budget, strict=strict)
        runs.update(await anyio.to_thread.run_sync(work))
    # Aware times compare as instants: two schedules due at one moment are one run.
    return sorted(runs)[:count]


def timings(info: TaskInfo) -> list[Schedule]:
    """Every time schedule of the task: its several (`schedules`), else its one (`timing`), else none."""
    if info.schedules:
        return list(info.schedules)
    schedule = timing(info)
    return [schedule] if schedule is not None else []


def schedule_line(info: TaskInfo) -> str | None:
    """Every time schedule in words (one that cannot be read: raw, with why), then what else starts the task; or,
    without one, what starts it."""
    schedules = timings(info)
    if not schedules:
        return info.schedule_text
    words = "; ".join(s.shown for s in schedules)
    return f"{words}. {info.also}" if info.also else words


def ended(schedules: list[Schedule], after: datetime) -> str:
    """Why readable schedules with no run after `after` have none (Schedule.ended), each reason once."""
    return "; ".join(dict.fromkeys(s.ended(after) for s in schedules if s.readable))


# Why a scheduled task will not run, as Qlik gives the reason (disabledCode) or the schedule says it.
DISABLED_REASONS = {
    "OWNER-DISABLED": "its owner is disabled",
    "OWNER-DELETED": "its owner was deleted",
    "CONSECUTIVE-FAILURES": "Qlik disabled it after consecutive failed runs",
    "APP-SCRIPT-UPDATED": "Qlik disabled it when the app's script changed",
    "APP-MOVED-SPACE": "Qlik disabled it when the app moved space",
    "OWNER-MOVED": "Qlik disabled it when its owner moved",
    "MANUALLY": "it is disabled",
    "DISABLED": "it is disabled",
}
# Changelog 135 (NOTES-2026-11.md section 2): once an app has tasks, Qlik turns its reload tasks off.
APP_HAS_TASKS = "Qlik turns reload tasks off once their app has tasks (changelog 135), and this app has tasks"


# A user the tenant says is disabled or deleted: Qlik runs a task as its owner, and disables such owners' tasks.
OWNER_OFF = ("disabled", "deleted")


def owner_off_reason(status: str) -> str:
    return f"its owner is {status}, and Qlik runs a task as its owner (it disables such tasks)"


def why_off(info: TaskInfo, *, app_has_tasks: bool = False) -> str | None:
    """Why the task is off, as the tenant says it (its state and Qlik's reason, its app's tasks, its owner), or
    None; every reason that holds, as each must change before it runs."""
    reasons: list[str] = []
    if info.kind == "reload" and app_has_tasks and info.state != "migrated":
        reasons.append(APP_HAS_TASKS)
    if not info.enabled:
        code = (info.disabled_reason or "").upper()
        reason = DISABLED_REASONS.get(code) or (
            f"it is disabled ({info.disabled_reason})" if code else "it is disabled"
        )
        reasons.append(reason if info.state != "migrated" else info.disabled_reason or "it was migrated")
    if info.owner_gone:
        reasons.append(f"its owner {info.owner_gone} is gone")
    return "; ".join(reasons) or None


def will_not_run(info: TaskInfo, runs: list[datetime], *, now: datetime, app_has_tasks: bool = False) -> str | None:
    """Why a task with time schedules will not run on them, or None when it will (or has none). `runs`: those of
    every schedule, merged (run_times)."""
    schedules = timings(info)
    if not schedules:
        return None
    turned_off = why_off(info, app_has_tasks=app_has_tasks)
    if turned_off:
        return turned_off
    if not any(s.readable for s in schedules):
        problems = "; ".join(dict.fromkeys(s.problem or "" for s in schedules))
        return f"its schedule{'s' if len(schedules) > 1 else ''} could not be read ({problems})"
    if not runs:
        return ended(schedules, now)
    return None


async def _of_app(source: TaskSource | None, app_id: str) -> list[TaskInfo] | None:
    """The app's tasks of one kind; [] where the tenant no longer serves the kind; None when they cannot be read."""
    if source is None:
        return None
    try:
        return await source.of_app(app_id)
    except KindUnavailable:
        return []
    except ClientError:
        return None


# Kinds that send an app's content, in the words a preview uses for them.
SENDER_KINDS = {"sharing": "subscription", "qalyptus": "Qalyptus task"}
# A bulk preview checks the subscriptions of at most this many apps (each costs a few requests).
STALE_APPS = 5


async def senders_of(
    sources: dict[str, TaskSource], app_id: str, *, qalyptus: bool = True
) -> tuple[list[TaskInfo], list[str]] | None:
    """The app's enabled subscriptions (sharing tasks) and the enabled Qalyptus tasks its reload starts, and the
    kinds that could not be read (or, without `qalyptus`, were not); None when the subscriptions themselves could
    not be read."""
    found: list[TaskInfo] = []
    unread: list[str] = []
    for kind in SENDER_KINDS:
        if kind == "qalyptus" and kind in sources and not qalyptus:
            unread.append("Qalyptus tasks were not checked for a selection of several apps")
            continue
        infos = await _of_app(sources.get(kind), app_id) if kind in sources else []
        if infos is None:
            if kind == "sharing":
                return None
            unread.append(f"{SENDER_KINDS[kind]}s could not be read")
            continue
        found += [i for i in infos if i.enabled]
    return found, unread


async def sender_lines(names: "Names | None", senders: list[TaskInfo]) -> list[str]:
    """Each sender with its owner by name: "subscription 5e1c 'Finance snapshot' (owner 'Ben' (user 2aab...))"."""
    owners = await names.describe_users({i.owner_id for i in senders if i.owner_id}) if names else {}
    lines = []
    for info in senders:
        owner = owners.get(info.owner_id or "") or info.owner_label or info.owner_id
        lines.append(
            f"{SENDER_KINDS.get(info.kind, info.kind)} {info.id} {quoted(info.name, 60)}"
            + (f" (owner {owner})" if owner else "")
        )
    return lines


def runs_it(info: TaskInfo, app_has_tasks: bool) -> bool:
    """Whether a task of the app reloads it when left as it is: enabled, with a schedule or a task it follows, and
    an owner not known to be gone. Qlik turns reload tasks off while the app has tasks (changelog 135): those do
    not count then."""
    off = info.owner_gone or (info.kind == "reload" and app_has_tasks)
    return info.enabled and bool(timings(info) or info.after) and not off


async def stale_reports_note(
    sources: dict[str, TaskSource],
    app_id: str | None,
    leaving: Collection[tuple[str, str]],
    *,
    deleting: bool,
    names: "Names | None" = None,
    qalyptus: bool = True,
) -> str | None:
    """Who stops getting fresh reports when `leaving` ((kind, id) pairs; none for the app as it is) are disabled or
    deleted and nothing scheduled reloads the app any more: its subscriptions and the Qalyptus tasks its reload
    starts, each with its owner. The one warning of every preview and of the overview. Nothing is said unless every
    kind that could reload the app was read: no conclusion from what could not be seen."""
    if not app_id:
        return None
    read = await senders_of(sources, app_id, qalyptus=qalyptus)
    if read is None or not read[0]:
        return None
    tasks, reload_tasks = await _of_app(sources.get("task"), app_id), await _of_app(sources.get("reload"), app_id)
    if tasks is None or reload_tasks is None:
        return None
    return await stale_note(app_id, tasks + reload_tasks, *read, leaving, deleting=deleting, names=names)


async def stale_note(
    app_id: str,
    reloaders: list[TaskInfo],
    senders: list[TaskInfo],
    unread: list[str],
    leaving: Collection[tuple[str, str]],
    *,
    deleting: bool,
    names: "Names | None",
) -> str | None:
    """stale_reports_note from the app's tasks already read: `reloaders` (every task and reload task of the app),
    `senders` (senders_of)."""
    if not senders:
        return None
    has_tasks = any(i.kind == "task" for i in reloaders)
    others = [i for i in reloaders if (i.kind, i.id) not in leaving]
    # That reload tasks run again once the app's last task is deleted is not documented: they are not counted on.
    if any(runs_it(i, has_tasks) for i in others):
        return None
    lines = await sender_lines(names, senders)
    shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
    subscriptions = sum(1 for i in senders if i.kind == "sharing")
    # A Qalyptus task with a time schedule of its own still runs on it, with the data of the app's last reload.
    timed = sum(1 for i in senders if i.kind != "sharing" and timings(i))
    qalyptus = len(senders) - subscriptions - timed
    what = [f"{subscriptions} subscription(s) keep sending data as of its last reload"] if subscriptions else []
    what += [f"{qalyptus} Qalyptus task(s) started by its reload no longer run"] if qalyptus else []
    if timed:
        what.append(f"{timed} Qalyptus task(s) started by its reload run only on their own schedules, with that data")
    lead = "After this, nothing" if leaving else "Nothing"
    note = (
        f"{lead} scheduled reloads app {app_id}: {' and '.join(what)}. Who stops getting fresh reports: the "
        f"recipients of {shown}."
    )
    if unread:
        note += f" ({'; '.join(unread)}.)"
    last_task = deleting and any(k == "task" for k, _ in leaving) and not any(i.kind == "task" for i in others)
    if last_task and any(i.kind == "reload" and i.enabled for i in others):
        note += (
            " Its reload tasks are off while it has tasks; whether Qlik runs them again once it has none is not "
            "documented."
        )
    return note


async def stale_reports_notes(
    sources: dict[str, TaskSource], names: "Names | None", leaving: list[TaskInfo], *, deleting: bool
) -> list[str]:
    """stale_reports_note for each app whose reloading tasks are among `leaving` (a bulk preview). A selection
    across more than STALE_APPS apps is not checked (each app costs a few requests), and the note says so; across
    several, the Qalyptus tasks (an organization-wide read per app) are not either."""
    by_app: dict[str, set[tuple[str, str]]] = {}
    for info in leaving:
        if info.app_id and info.kind in ("task", "reload") and (info.enabled or deleting):
            by_app.setdefault(info.app_id, set()).add((info.kind, info.id))
    if len(by_app) > STALE_APPS:
        return [
            f"Which subscriptions would be left without fresh data was not checked for these {len(by_app)} apps "
            f"(a preview checks up to {STALE_APPS}); get_app_schedule_overview says it for one app."
        ]
    one = len(by_app) == 1
    notes: list[str] = []
    for app in sorted(by_app):
        note = await stale_reports_note(sources, app, by_app[app], deleting=deleting, names=names, qalyptus=one)
        notes += [note] if note else []
    return notes
