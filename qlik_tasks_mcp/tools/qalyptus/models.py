"""What the Qalyptus tools share: the service, parameter types, compact rows, client-side windows, status classes.

The client reads what Qalyptus sends into typed docs (client/qalyptus.py); the rows here are shaped from them.
Unknown status values pass through unchanged.
"""

import json
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.errors import ApiError, ClientError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import (
    QalyptusClient,
    QalyptusTaskDoc,
    RecipientDoc,
    ReportDoc,
    StatusDoc,
    TaskReportDoc,
    TriggerDoc,
)
from qlik_tasks_mcp.client.qalyptus_orgs import Organizations
from qlik_tasks_mcp.tools.fence import one_line, quoted, tenant_text_note, untrusted_fields
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.sources import parse_time, short_time

if TYPE_CHECKING:
    from qlik_tasks_mcp.tools.names import Names

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Qalyptus task id.")]
Offset = Annotated[int, Field(ge=0, le=1_000_000, description="Rows to skip.")]
OrgName = Annotated[
    str | None,
    Field(default=None, max_length=64, description="Name; default: the first."),
]

# Status values are not documented for Qalyptus Cloud: these are the spellings seen in Qalyptus products.
ACTIVE = frozenset({"queued", "pending", "waiting", "starting", "started", "running", "inprogress", "processing"})
SUCCESS = frozenset({"completed", "success", "succeeded", "done"})
WARNING = frozenset({"warning", "warnings", "completedwithwarnings"})
FAILURE = frozenset({"failed", "failure", "error", "aborted", "stopped", "cancelled", "canceled"})
StatusClass = Literal["active", "success", "warning", "failure", "unknown"]
EMAIL = re.compile(r"^[^@\s;,<>]+@[^@\s;,<>]+\.[^@\s;,<>]+$")

# Qalyptus lists come whole, so every row field is bounded here: names, and any other text, on one line.
NAME_CHARS = 200
LIST_ITEMS = 20
CUT_TEXT = (
    f"Names longer than {NAME_CHARS} characters, and other text longer than its bound (160 characters in rows), "
    f'end with "…"; a list in a row keeps its first {LIST_ITEMS} items.'
)

# Copies of one task, and copies in one organization, per window. A duplicate is a one-off admin action (a
# variant to edit, a backup before a change); each copy carries the task's reports, recipients and triggers, so a
# loop of calls fills the organization with tasks that can each send reports once someone activates them (or at
# once, where Qalyptus keeps the copy active). Gating each copy would change the tool's arguments and result and
# ask about what is usually harmless; a bound refuses only the flood, and says when to retry.
COPIES_PER_TASK = 3
COPIES_PER_ORGANIZATION = 10
COPY_WINDOW_SECONDS = 60.0
# The clock the window is counted on (a test sets a fake one).
COPY_CLOCK: Callable[[], float] = time.monotonic


@dataclass
class CopyLimit:
    """Duplicates made in this process in the last `window` seconds, by task and by organization (per replica:
    the count lives in memory, like the gate's pending approvals)."""

    window: float = field(default_factory=lambda: COPY_WINDOW_SECONDS)
    clock: Callable[[], float] = field(default_factory=lambda: COPY_CLOCK)
    made: dict[str, deque[float]] = field(default_factory=dict)

    def take(self, organization: str, task_id: str) -> None:
        """Count one copy of `task_id`, or refuse it naming when a copy is possible again."""
        now = self.clock()
        keys = ((f"{organization}\n{task_id}", COPIES_PER_TASK), (organization, COPIES_PER_ORGANIZATION))
        for key, limit in keys:
            times = self._recent(key, now)
            if len(times) >= limit:
                wait = max(1, round(times[0] + self.window - now + 0.5))
                raise ToolError(self._refusal(organization, task_id, key != organization, limit, wait))
        for key, _ in keys:
            self.made[key].append(now)

    def give_back(self, organization: str, task_id: str) -> None:
        """A copy the tenant refused was not made: it does not count."""
        for key in (f"{organization}\n{task_id}", organization):
            if self.made.get(key):
                self.made[key].pop()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self.made.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def _refusal(self, organization: str, task_id: str, per_task: bool, limit: int, wait: int) -> str:
        at = (datetime.now(UTC) + timedelta(seconds=wait)).isoformat(timespec="seconds").replace("+00:00", "Z")
        scope = f"of task {task_id}" if per_task else f"in organization {organization}"
        return (
            f"Not duplicated: {limit} copies {scope} were made in the last {self.window:g} s, the most this server "
            f"makes, so repeated calls cannot flood the organization with copies that carry the task's recipients "
            f"and schedules. Retry in {wait} s (after {at}); list_qalyptus_tasks shows the copies already made."
        )


class QalyptusOrgs(Organizations[QalyptusClient]):
    """The Qalyptus toolset's service: the configured organizations, the bound on duplicates, and the Qlik name
    look-up (external events name Qlik apps)."""

    def __init__(self, clients: dict[str, QalyptusClient], names: "Names | None" = None) -> None:
        super().__init__(clients)
        self.copies = CopyLimit()
        self.qlik_names = names

    async def app_labels(self, app_ids: list[str]) -> dict[str, str]:
        """Qlik apps by name and id for events in words; the ids alone when the Qlik tenant cannot say."""
        wanted = [a for a in app_ids if a]
        if self.qlik_names is None or not wanted:
            return {a: f"app {a}" for a in wanted}
        try:
            return await self.qlik_names.describe_apps(wanted)
        except ClientError:
            return {a: f"app {a}" for a in wanted}


def classify(status: str | None) -> StatusClass:
    key = re.sub(r"[\s_-]", "", (status or "").lower())
    for name, members in (("active", ACTIVE), ("success", SUCCESS), ("warning", WARNING), ("failure", FAILURE)):
        if key in members:
            return name  # type: ignore[return-value]
    return "unknown"


def first(*values: Any) -> Any:
    """The first value given (not None, not empty)."""
    return next((v for v in values if v not in (None, "")), None)


def text_of(value: Any, width: int = 160) -> str | None:
    """Tenant text (or a value of unknown shape) on one line, hidden characters escaped, at most `width` long."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return one_line(text, width)


def name_of(value: Any) -> str | None:
    return text_of(value.get("name") if isinstance(value, dict) else value)


def owner_id_of(doc: QalyptusTaskDoc) -> str | None:
    """The task's owner as a Qalyptus user id (a string, or an object's id: the shape is not confirmed)."""
    owner = doc.owner.get("id") if isinstance(doc.owner, dict) else doc.owner
    return str(owner) if owner not in (None, "") else None


async def task_named(api: QalyptusClient, task_id: str, name: Any = None) -> str:
    """task_label of a task read by id; its id (and `name`, when known) when it cannot be read: the get path
    is inferred."""
    try:
        return task_label(await api.task(task_id))
    except ApiError:
        shown = name_of(name)
        return f"Qalyptus task {quoted(shown, 100)} ({task_id})" if shown else f"Qalyptus task {task_id}"


def owner_label(doc: QalyptusTaskDoc) -> str:
    """The task's owner by name and Qalyptus user id: "'Bob' (Qalyptus user 2aab...)"."""
    owner_name = name_of(doc.owner_name) or name_of(doc.owner if isinstance(doc.owner, dict) else None)
    owner_id = owner_id_of(doc)
    owner = quoted(owner_name, 80) if owner_name else "unknown"
    if owner_id and owner_id != owner_name:
        owner += f" (Qalyptus user {one_line(owner_id, 80)})"
    return owner


def task_label(doc: QalyptusTaskDoc) -> str:
    """For previews and questions: the task, its project and its owner (a Qalyptus user) by name."""
    state = "active" if doc.is_active else "inactive"
    project = name_of(doc.project)
    where = f" of project {quoted(project, 80)}" if project else ""
    return f"Qalyptus task {quoted(doc.name, 100)} ({doc.id}, {state}){where}, owner {owner_label(doc)}"


def addresses(value: str, field: str) -> str | None:
    """E-mail addresses separated by ; or , as given (the separator Qalyptus stores is not documented)."""
    text = value.strip()
    if not text:
        return None
    bad = [a for a in re.split(r"[;,]", text) if a.strip() and not EMAIL.match(a.strip())]
    if bad:
        raise InvalidInput(f"{field}: {bad[0].strip()[:60]!r} is not an e-mail address (separate several with ;)")
    return text


class Window(Compact):
    total: int = Field(description="Rows after filters.")
    offset: int = 0
    next_offset: int | None = Field(None, description="Pass as offset for more; absent when nothing is left.")
    note: str | None = None


def window(
    items: list[Any], limit: int, offset: int, what: str, text_fields: tuple[str, ...]
) -> tuple[list[Any], dict[str, Any]]:
    """Qalyptus lists come whole; cut them here and say what was cut and how to get the rest, and which row
    fields hold tenant text (on one line, bounded: CUT_TEXT)."""
    total = len(items)
    chosen = items[offset : offset + limit]
    more = offset + len(chosen) < total
    if not total:
        note = None
    elif not chosen:
        note = f"offset {offset} is past the end: there are {total} {what}"
    elif more or offset:
        note = f"{what} {offset + 1}-{offset + len(chosen)} of {total}" + (
            f"; pass offset={offset + len(chosen)} for more" if more else ""
        )
    else:
        note = None
    return chosen, {
        "total": total,
        "offset": offset,
        "next_offset": offset + len(chosen) if more else None,
        "note": " ".join(filter(None, (note, tenant_text_note(text_fields), CUT_TEXT))),
    }


class TaskRow(Compact):
    id: str
    name: str
    active: bool
    scheduled: bool | None = None
    test_mode: bool | None = None
    project: str | None = None
    owner: str | None = None
    last_execution: str | None = None

    @classmethod
    def fields_of(cls, doc: QalyptusTaskDoc) -> dict[str, Any]:
        return {
            "id": doc.id,
            "name": one_line(doc.name, NAME_CHARS),
            "active": doc.is_active,
            "scheduled": True if doc.is_scheduled else None,
            "test_mode": True if doc.test_mode else None,
            "project": name_of(doc.project),
            "owner": text_of(first(doc.owner_name, doc.owner)),
            "last_execution": short_time(text_of(doc.last_execution)),
        }

    @classmethod
    def of(cls, doc: QalyptusTaskDoc) -> "TaskRow":
        return cls(**cls.fields_of(doc))


class Notifications(Compact):
    send: bool
    on_success: bool | None = None
    on_warning: bool | None = None
    on_error: bool | None = None
    to: str | None = None
    cc: str | None = None
    bcc: str | None = None


class Trigger(Compact):
    id: str
    name: str | None = None
    type: str | None = None
    active: bool | None = None
    when: str | None = Field(None, description="The schedule in words.")
    frequency: str | None = None
    time_zone: str | None = None
    start: str | None = None
    end: str | None = None
    next_run: str | None = None
    event: str | None = None
    app_id: str | None = None

    @classmethod
    def of(cls, doc: TriggerDoc, apps: dict[str, str] | None = None) -> "Trigger":
        """`apps`: Qlik app labels by id, for events in words."""
        return cls(
            id=doc.id,
            name=text_of(doc.name),
            type=text_of(doc.type),
            active=doc.is_active,
            when=sched.describe(doc.wire()) if doc.scheduled else event_words(doc, apps or {}),
            frequency=text_of(doc.frequency),
            time_zone=text_of(doc.time_zone) if doc.scheduled else None,
            start=text_of(doc.start_date),
            end=text_of(doc.end_date),
            next_run=text_of(doc.next_execution_date),
            event=text_of(first(doc.qlik_event, doc.event_type)),
            app_id=text_of(doc.app_id),
        )


# Qlik event names as seen in the triggers list (the reference types qlikEvent as a plain string): words for them.
EVENT_WORDS = {"succeeded": "reloads successfully", "failed": "fails to reload", "finished": "finishes a reload"}


def event_name(doc: TriggerDoc) -> str | None:
    event = doc.qlik_event
    if isinstance(event, dict):
        event = event.get("name") or event.get("type") or event.get("eventType")
    return str(event) if event not in (None, "") else (str(doc.event_type) if doc.event_type else None)


def event_words(doc: TriggerDoc, apps: dict[str, str]) -> str | None:
    """A Qlik event in words: "When Qlik app 'Sales' (app 1c2d...) reloads successfully"."""
    event = event_name(doc)
    if event is None:
        return None
    key = event.lower()
    verb = next((words for word, words in EVENT_WORDS.items() if word in key), f"raises {one_line(event, 60)}")
    app = apps.get(doc.app_id or "") or (f"app {doc.app_id}" if doc.app_id else "a Qlik app")
    return f"When Qlik {app} {verb}"


class TaskReport(Compact):
    id: str
    report_id: str | None = None
    name: str | None = None
    format: str | None = None
    attached: bool | None = None
    embedded: bool | None = None

    @classmethod
    def of(cls, doc: TaskReportDoc) -> "TaskReport":
        return cls(
            id=doc.id,
            report_id=text_of(doc.report_id),
            name=text_of(doc.name),
            format=text_of(doc.format),
            attached=True if doc.email_attachment else None,
            embedded=True if doc.email_embedment else None,
        )


class Recipient(Compact):
    id: str | None = None
    type: str | None = None
    name: str | None = None
    email: str | None = None

    @classmethod
    def of(cls, doc: RecipientDoc) -> "Recipient":
        return cls(id=text_of(doc.id), type=text_of(doc.type), name=text_of(doc.full_name), email=text_of(doc.email))


class TaskDetail(TaskRow):
    notifications: Notifications | None = None
    test_mode_recipients: str | None = None
    reports: list[TaskReport] = []
    recipients: list[Recipient] = []
    triggers: list[Trigger] = []

    @classmethod
    def build(
        cls,
        doc: QalyptusTaskDoc,
        reports: list[TaskReportDoc],
        recipients: list[RecipientDoc],
        triggers: list[TriggerDoc],
    ) -> "TaskDetail":
        return cls(
            **cls.fields_of(doc),
            notifications=Notifications(
                send=doc.send_notifications,
                on_success=doc.notify_if_success,
                on_warning=doc.notify_if_warning,
                on_error=doc.notify_if_error,
                to=text_of(doc.notification_recipients, 500),
                cc=text_of(doc.notification_cc, 500),
                bcc=text_of(doc.notification_bcc, 500),
            ),
            test_mode_recipients=text_of(doc.test_mode_recipients, 500) if doc.test_mode else None,
            reports=[TaskReport.of(r) for r in reports],
            recipients=[Recipient.of(r) for r in recipients],
            triggers=[Trigger.of(t) for t in triggers],
        )


class Report(Compact):
    id: str
    name: str
    type: str | None = None
    formats: list[str] = []
    iteration: bool | None = None
    template: str | None = None
    project: str | None = None

    @classmethod
    def of(cls, doc: ReportDoc) -> "Report":
        return cls(
            id=doc.id,
            name=one_line(doc.name, NAME_CHARS),
            type=text_of(doc.type),
            formats=[one_line(f, 40) for f in doc.output_formats[:LIST_ITEMS]],
            iteration=True if doc.is_iteration else None,
            template=text_of(doc.template_file),
            project=name_of(doc.project),
        )


def task_text(doc: QalyptusTaskDoc) -> str | None:
    """A task's description in one fence, on one line."""
    return untrusted_fields([("description", doc.description)], "Qalyptus task text") if doc.description else None


def _seconds(start: str | None, end: str | None) -> float | None:
    began, ended = parse_time(start), parse_time(end)
    return round((ended - began).total_seconds(), 1) if began and ended else None


class Status(Compact):
    id: str | None = None
    task_id: str | None = None
    task_name: str | None = None
    status: str = Field(description="As Qalyptus gave it.")
    by: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    seconds: float | None = None
    message: str | None = None

    @classmethod
    def of(cls, doc: StatusDoc) -> "Status":
        message = doc.message
        return cls(
            id=text_of(doc.id),
            task_id=text_of(doc.task_id),
            task_name=text_of(doc.task_name),
            status=one_line(doc.status, 60),
            by=text_of(doc.by),
            # Times to the minute: no tool takes a run's time back.
            created_at=short_time(text_of(doc.created_at)),
            started_at=short_time(text_of(doc.started_at)),
            ended_at=short_time(text_of(doc.ended_at)),
            seconds=_seconds(doc.started_at, doc.ended_at),
            message=one_line(str(message), 1000) if message else None,
        )


def messages_of(statuses: "Sequence[Status]") -> str | None:
    """The runs' messages in one fence per result (each row keeps its message on one line)."""
    pairs = [(s.id or s.task_id or "run", s.message) for s in statuses if s.message]
    return untrusted_fields(pairs, "Qalyptus messages") if pairs else None
