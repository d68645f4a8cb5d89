"""What the tasks tools take and answer: schedule and trigger inputs, task and run rows, dependencies, and the
next runs and names the rows show."""

import re
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule import (
    ExpansionBudget,
    Schedule,
    end_after_change,
    local_and_utc,
    rrule_lines,
    start_after_change,
    time_zone,
)
from qlik_tasks_mcp.client.tasks import RunDoc, ScheduleDoc, TaskDoc
from qlik_tasks_mcp.client.workflow import Interval, interval_rrule, repeating_interval
from qlik_tasks_mcp.tools.fence import one_line, tenant_text_note, untrusted
from qlik_tasks_mcp.tools.follow import FailedTail, Followed
from qlik_tasks_mcp.tools.model import Compact, Input
from qlik_tasks_mcp.tools.names import Names, RowNames, row_names
from qlik_tasks_mcp.tools.sources import (
    OWNER_OFF,
    TaskInfo,
    owner_off_reason,
    short_time,
    short_utc,
    timing,
    will_not_run,
)
from qlik_tasks_mcp.tools.tasks.source import WorkflowTaskSource


class ScheduleIn(Input):
    """When a scheduled task runs: RRULE lines from a local start, or an ISO 8601 repeating interval, in a zone."""

    interval: str | None = Field(
        None, max_length=80, description="ISO 8601, e.g. R/2026-02-01T06:00:00/P1D (daily 06:00)."
    )
    recurrence: list[str] | None = Field(
        None,
        max_length=10,
        description="RRULE lines (RRULE:FREQ=...); not with interval.",
    )
    start: str | None = Field(
        None, max_length=40, description="Local start of a recurrence; default now (update: kept)."
    )
    time_zone: str | None = Field(None, max_length=64, description="IANA zone; default UTC (update: kept).")
    end: str | None = Field(None, max_length=40, description='Local; default never (update: kept, "" clears).')

    def to_api(self, current: ScheduleDoc | None = None) -> tuple[Interval, str, str]:
        """The interval, zone and end ("" for never); on an update, `current` (the stored schedule) supplies the
        zone and end the caller left out. The interval carries its own start."""
        if not self.interval or self.recurrence:
            raise InvalidInput("give schedule.interval, or schedule.recurrence (RRULE lines), not both or neither")
        interval = repeating_interval(self.interval)
        zone = self.time_zone or (current.zone if current else "UTC")
        stored_end = current.end_date_time if current else None
        end = end_after_change(self.end, stored_end, interval.local_start(zone), time_zone(zone))
        return interval, zone, end

    def v1_fields(self, current: ScheduleDoc) -> dict[str, Any]:
        """The v1 `schedule` object (a PUT): the interval replaces the timing (cron, recurrence); the zone, the
        start and the end stay as stored unless given."""
        interval, zone, end = self.to_api(current)
        start = start_after_change(self.start, current.start_date_time, None)
        fields: dict[str, Any] = {"interval": interval.text, "timezone": zone}
        return fields | ({"startDateTime": start} if start else {}) | ({"endDateTime": end} if end else {})

    def schedule_fields(self, current: ScheduleDoc | None = None) -> dict[str, Any]:
        """The Task `schedule` object on the scheduling API: an interval becomes an RRULE from its own start, so
        both forms are one recurrence with startDateTime; zone, start and end kept from `current` unless given."""
        if self.interval and self.recurrence:
            raise InvalidInput("give schedule.interval or schedule.recurrence (RRULE lines), not both")
        zone = self.time_zone or (current.zone if current else "UTC")
        stored_start = current.start_date_time if current else None
        if self.recurrence:
            lines = rrule_lines(self.recurrence)
            start = start_after_change(self.start, stored_start, None)
        elif self.interval:
            interval = repeating_interval(self.interval)
            lines, start = [interval_rrule(interval)], interval.local_start(zone)
        else:
            raise InvalidInput("give schedule.recurrence (RRULE lines) or schedule.interval")
        stored_end = current.end_date_time if current else None
        end = end_after_change(self.end, stored_end, start, time_zone(zone))
        fields: dict[str, Any] = {"recurrence": "\n".join(lines), "timezone": zone}
        return fields | ({"startDateTime": start} if start else {}) | ({"endDateTime": end} if end else {})


class AfterTaskIn(Input):
    """Start when a run of another task finishes."""

    task_id: str = Field(min_length=1, max_length=128)
    status: Literal["SUCCEEDED", "FAILED", "any"] = Field("SUCCEEDED", description="Which outcome starts it.")


def _other_triggers(task: TaskDoc) -> list[str]:
    own = f"appId {task.app_id}"
    parts = [f"when a dataset is updated ({'its app' if what == own else what})" for what in task.dataset_updates]
    for trigger in task.triggers:
        outcome = {"SUCCEEDED": "succeeds", "FAILED": "fails"}.get(trigger.status or "", "finishes")
        parts.append(f"when task {trigger.task_id} {outcome}")
    return parts


# A schedule's start, as its words give it ("from 2026-01-02 00:30"): a list row leaves out one that has passed.
_FROM = re.compile(r",? from \d{4}-\d{2}-\d{2}(?: \d{2}:\d{2})?")


def trigger_words(task: TaskDoc, *, listed: bool = False) -> str | None:
    """What starts the task: its schedule in words (one that cannot be read: raw, with why), and other triggers.
    `listed`: without a start that has passed (get_task says it)."""
    schedule = task.timing
    words = [schedule.shown] if schedule is not None else []
    counted = schedule is not None and " times" in schedule.words  # a COUNT runs out counted from its start
    if listed and schedule is not None and schedule.readable and schedule.start is not None and not counted:
        if schedule.start.replace(tzinfo=time_zone(schedule.zone)) <= datetime.now(UTC):
            words = [_FROM.sub("", schedule.shown, count=1)]
    return "; ".join(words + _other_triggers(task)) or None


# Fields of task and run rows that hold tenant text besides the fenced ones.
NAMES_NOTE = tenant_text_note(["name", "app", "owner"])
# Said once per page, so each row's will_not_run can be two words.
OWNER_OFF_NOTE = "will_not_run 'owner ...': Qlik runs a task as its owner."
DISABLED = "it is disabled"
DETAIL_NAMES_NOTE = tenant_text_note(["app", "owner", "creator"])
RUN_NAMES_NOTE = tenant_text_note(["task_name", "app"])


def _task_fields(task: TaskDoc, names: RowNames | None) -> dict[str, Any]:
    targets = task.targets
    owner = task.metadata.owner_id
    return {
        "last_status": task.last_status,
        "id": task.id,
        "name": one_line(task.name, 200),
        "enabled": task.enabled,
        "app_id": task.app_id,
        "app": names.app(task.app_id) if names else None,
        # Only a partial reload is worth a field: full is what a reload is unless told.
        "partial": True if targets and targets[0][1] else None,
        "disabled_code": task.disabled_code,
        "owner_id": owner,
        "owner": names.user(owner) if names else None,
    }


def _owner_off(task: TaskDoc, names: RowNames | None, *, short: bool = False) -> str | None:
    """Why a scheduled, enabled task will not run though the tenant still shows it enabled: its owner, by the
    tenant's own status for that user, is disabled or deleted (`short`: "owner deleted", see OWNER_OFF_NOTE)."""
    user = names.users.get(task.metadata.owner_id or "") if names else None
    if task.schedule is None or not task.enabled or user is None or user.status not in OWNER_OFF:
        return None
    return f"owner {user.status}" if short else owner_off_reason(user.status)


class TaskRow(Compact):
    id: str
    name: str
    enabled: bool
    app_id: str | None = None
    app: str | None = None
    partial: bool | None = None
    trigger: str | None = None
    next_run: str | None = Field(None, description="UTC, worked out from the schedule.")
    will_not_run: str | None = Field(None, description="Why its schedule will not run it.")
    disabled_code: str | None = None
    owner_id: str | None = None
    owner: str | None = None
    updated_at: str | None = None
    last_status: str | None = None

    @classmethod
    def listed(cls, task: TaskDoc, names: RowNames, runs: "NextRuns") -> "TaskRow":
        why_not = runs.why_not.get(task.id) or _owner_off(task, names, short=True)
        # A list row leaves to get_task what costs tokens on every row and rarely answers a question: when it was
        # changed (the default sort says the order), a start that has passed, a run it will not make, its
        # description (tenant text that would need a fence of its own).
        return cls(
            **_task_fields(task, names),
            trigger=trigger_words(task, listed=True),
            next_run=None if why_not else runs.first.get(task.id),
            # "enabled": false says it already.
            will_not_run=None if not task.enabled and why_not == DISABLED else why_not,
        )


class TaskDetail(TaskRow):
    next_runs: list[str] = Field(default_factory=list, description="Local time in the schedule's zone = UTC.")
    schedule_note: str | None = None
    description: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    creator: str | None = None
    workflow: dict[str, Any] = Field(default_factory=dict, description="start, events, states as the API has them.")

    @classmethod
    def of(cls, task: TaskDoc, names: RowNames | None = None, runs: "NextRuns | None" = None) -> "TaskDetail":
        creator = task.metadata.created_by
        schedule = task.timing
        return cls(
            **_task_fields(task, names),
            trigger=trigger_words(task),
            next_run=runs.first.get(task.id) if runs else None,
            next_runs=runs.shown.get(task.id, []) if runs else [],
            will_not_run=(runs.why_not.get(task.id) if runs else None) or _owner_off(task, names),
            schedule_note=schedule.note if schedule else None,
            updated_at=task.metadata.updated_at,
            description=task.description or None,
            created_at=task.metadata.created_at,
            created_by=creator,
            creator=names.user(creator) if names else None,
            workflow=task.workflow(),
        )


class TaskPage(Compact):
    tasks: list[TaskRow]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    app_ids: dict[str, str] = Field(default_factory=dict, description="App -> id, for rows naming only the app.")
    owner_ids: dict[str, str] = Field(default_factory=dict, description="Owner -> id, for rows naming only the owner.")
    note: str | None = None


def ids_once(rows: list[Any], id_field: str, name_field: str) -> dict[str, str]:
    """Name -> id for the ids several rows share under a name no other id has; those rows keep the name alone
    (their `id_field` emptied), so each id is said once per page. Rows without a name keep their id."""
    ids_of: dict[str, set[str]] = {}
    uses: Counter[str] = Counter()
    for row in rows:
        name, ident = getattr(row, name_field), getattr(row, id_field)
        if name and ident and not name.startswith("("):  # "(not visible to this key)" names no one
            ids_of.setdefault(name, set()).add(ident)
            uses[ident] += 1
    shared = {name: next(iter(ids)) for name, ids in ids_of.items() if len(ids) == 1 and uses[next(iter(ids))] > 1}
    for row in rows:
        if getattr(row, name_field) in shared:
            setattr(row, id_field, None)
    return shared


class TaskResult(Compact):
    task: TaskDetail
    note: str | None = None


async def task_names(names: Names, tasks: list[TaskDoc]) -> RowNames:
    """The apps and owners (and creators) of these tasks: one apps and one users request for the lot."""
    users = [t.metadata.owner_id for t in tasks] + [t.metadata.created_by for t in tasks]
    return await row_names(names, [t.app_id for t in tasks], users)


@dataclass
class NextRuns:
    """Tasks' next runs: the first (short UTC) of each, all of them shown, and why a scheduled one will not run."""

    first: dict[str, str] = dc_field(default_factory=dict)
    shown: dict[str, list[str]] = dc_field(default_factory=dict)
    why_not: dict[str, str] = dc_field(default_factory=dict)


async def next_runs(tasks: list[TaskDoc], count: int = 1, *, shown: bool = False) -> NextRuns:
    """The next runs of each scheduled task, all within one expansion budget; the rules not expanded before (see
    Schedule.known_runs) in one trip off the event loop. A schedule whose runs cannot be worked out in time has
    none, and says so."""
    now, budget = datetime.now(UTC), ExpansionBudget()
    found = NextRuns()
    read = [(task, info, timing(info)) for task in tasks for info in [WorkflowTaskSource.info(task)]]
    known = {
        task.id: runs
        for task, info, schedule in read
        if schedule is not None and info.enabled and (runs := schedule.known_runs(now, count)) is not None
    }

    def one(task: TaskDoc, info: TaskInfo, schedule: Schedule | None) -> None:
        try:
            runs = known.get(task.id)
            if runs is None:
                runs = schedule.next_runs(now, count, budget=budget) if schedule and info.enabled else []
        except InvalidInput as exc:
            found.why_not[task.id] = f"its next runs could not be worked out: {exc}"
            return
        if runs:
            found.first[task.id] = short_utc(runs[0])
            if shown:  # each in its zone and UTC: for a task read whole, not for every row of a list
                found.shown[task.id] = [local_and_utc(run) for run in runs]
        reason = will_not_run(info, runs, now=now)
        if reason:
            found.why_not[task.id] = reason

    def work() -> None:
        for entry in read:
            one(*entry)

    expand = any(s is not None and i.enabled and t.id not in known for t, i, s in read)
    if expand:
        await anyio.to_thread.run_sync(work)
    else:
        work()  # nothing left to expand: no trip off the loop
    return found


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)
    except ValueError:
        return None


class Run(Compact):
    id: str
    task_id: str
    task_name: str | None = None
    status: str
    started_at: str | None = Field(None, description="UTC, to the minute.")
    ended_at: str | None = None
    seconds: float | None = None
    triggered_by: str | None = None
    app_id: str | None = None
    app: str | None = None

    @classmethod
    def fields_of(cls, run: RunDoc, names: RowNames | None = None) -> dict[str, Any]:
        return {
            "id": run.id,
            "task_id": run.task_id,
            "task_name": one_line(run.task_name, 100) if run.task_name else None,
            "status": run.status,
            "started_at": short_time(run.started_at),
            "ended_at": short_time(run.ended_at),
            "seconds": _seconds(run.started_at, run.ended_at),
            "triggered_by": run.triggered_by,
            "app_id": run.resource_id,
            "app": names.app(run.resource_id) if names else None,
        }

    @classmethod
    def of(cls, run: RunDoc, names: RowNames | None = None) -> "Run":
        return cls(**cls.fields_of(run, names))


class RunDetail(Run):
    message: str | None = None

    @classmethod
    def of(cls, run: RunDoc, names: RowNames | None = None) -> "RunDetail":
        message = untrusted(run.log, "run message") if run.log else None
        return cls(**cls.fields_of(run, names), message=message)


class RunPage(Compact):
    runs: list[Run]
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")
    scanned: int | None = Field(default=None, description="Runs read to find these (status filter).")
    note: str | None = None


class LastRun(Compact):
    run: RunDetail | None = None
    note: str | None = None


class StartResult(Compact):
    task_id: str
    started: bool
    run: RunDetail | None = None
    waited_seconds: float | None = None
    wait_ended: Literal["finished", "timeout"] | None = None
    log_tail: str | None = None
    note: str | None = None
    downstream: str | None = Field(default=None, description="Tasks chained after this one, which its run starts.")

    @classmethod
    def of(cls, task_id: str, followed: Followed[RunDoc], tail: FailedTail[RunDoc]) -> "StartResult":
        waited = followed.waited_seconds is not None
        note = followed.note
        if followed.log_tail is not None and not note:
            note = f"{tail.returned}; get_task_run_log reads more."
        return cls(
            task_id=task_id,
            started=True,
            run=RunDetail.of(followed.run) if followed.run else None,
            waited_seconds=followed.waited_seconds,
            wait_ended=("finished" if followed.finished else "timeout") if waited else None,
            log_tail=followed.log_tail,
            note=note,
        )


class Dependency(Compact):
    id: str
    side: Literal["upstream", "downstream"] = Field(description="upstream: leads to this task; downstream: after it.")
    name: str | None = None
    enabled: bool | None = None
    last_status: str | None = None
    app_id: str | None = None
    app: str | None = None
    depth: int | None = None


class Dependencies(Compact):
    task_id: str
    direction: str
    tasks: list[Dependency]
    edges: list[str] = Field(default_factory=list, description="child -> parent, as the graph gives them.")
    names: str | None = Field(None, description="The tasks' names, tenant text in one fence.")
    note: str | None = None
