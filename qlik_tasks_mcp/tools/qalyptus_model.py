"""What the Qalyptus tools share: parameter types, compact rows, client-side windows, status classes.

Qalyptus field names are read as seen live (misspellings included); fields whose names are not confirmed
(status rows) are read under each plausible spelling, and unknown status values pass through unchanged.
"""

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.qalyptus import QalyptusClient
from qlik_tasks_mcp.client.qalyptus_orgs import Organizations
from qlik_tasks_mcp.tools.fence import untrusted
from qlik_tasks_mcp.tools.kinds import parse_time
from qlik_tasks_mcp.tools.model import Compact

TOOLSET = "qalyptus"
Orgs = Organizations[QalyptusClient]

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Qalyptus task id.")]
Offset = Annotated[int, Field(ge=0, le=1_000_000, description="Skip this many rows (paging is done here).")]
OrgName = Annotated[
    str | None,
    Field(default=None, max_length=64, description="Qalyptus organization name; default: the first."),
]

# Status values are not documented for Qalyptus Cloud: these are the spellings seen in Qalyptus products.
ACTIVE = frozenset({"queued", "pending", "waiting", "starting", "started", "running", "inprogress", "processing"})
SUCCESS = frozenset({"completed", "success", "succeeded", "done"})
WARNING = frozenset({"warning", "warnings", "completedwithwarnings"})
FAILURE = frozenset({"failed", "failure", "error", "aborted", "stopped", "cancelled", "canceled"})
StatusClass = Literal["active", "success", "warning", "failure", "unknown"]
_EMAIL = re.compile(r"^[^@\s;,<>]+@[^@\s;,<>]+\.[^@\s;,<>]+$")


def classify(status: str | None) -> StatusClass:
    key = re.sub(r"[\s_-]", "", (status or "").lower())
    for name, members in (("active", ACTIVE), ("success", SUCCESS), ("warning", WARNING), ("failure", FAILURE)):
        if key in members:
            return name  # type: ignore[return-value]
    return "unknown"


def pick(raw: dict[str, Any], *keys: str) -> Any:
    return next((raw[k] for k in keys if raw.get(k) not in (None, "")), None)


def text_of(value: Any, width: int = 160) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def name_of(value: Any) -> str | None:
    return text_of(value.get("name") if isinstance(value, dict) else value)


def addresses(value: str, field: str) -> str | None:
    """E-mail addresses separated by ; or , as given (the separator Qalyptus stores is not documented)."""
    text = value.strip()
    if not text:
        return None
    bad = [a for a in re.split(r"[;,]", text) if a.strip() and not _EMAIL.match(a.strip())]
    if bad:
        raise InvalidInput(f"{field}: {bad[0].strip()[:60]!r} is not an e-mail address (separate several with ;)")
    return text


class Window(Compact):
    total: int = Field(description="Rows after filters.")
    offset: int = 0
    next_offset: int | None = Field(None, description="Pass as offset for more; absent when nothing is left.")
    note: str | None = None


def window(items: list[Any], limit: int, offset: int, what: str) -> tuple[list[Any], dict[str, Any]]:
    """Qalyptus lists come whole; cut them here and say what was cut and how to get the rest."""
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
        "note": note,
    }


class Project(Compact):
    id: str | None = None
    name: str | None = None


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
    def fields_of(cls, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(raw.get("id", "")),
            "name": str(raw.get("name", "")),
            "active": bool(raw.get("isActive")),
            "scheduled": raw.get("isScheduled") if isinstance(raw.get("isScheduled"), bool) else None,
            "test_mode": True if raw.get("testMode") else None,
            "project": name_of(raw.get("project")),
            "owner": text_of(pick(raw, "ownerName", "owner")),
            "last_execution": text_of(raw.get("lastExecution")),
        }

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "TaskRow":
        return cls(**cls.fields_of(raw))


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
    def of(cls, raw: dict[str, Any]) -> "Trigger":
        scheduled = raw.get("frequency") not in (None, "")
        return cls(
            id=str(raw.get("id", "")),
            name=text_of(raw.get("name")),
            type=text_of(raw.get("type")),
            active=raw.get("isActive") if isinstance(raw.get("isActive"), bool) else None,
            when=sched.describe(raw) if scheduled else None,
            frequency=text_of(raw.get("frequency")),
            time_zone=text_of(raw.get("timeZone")) if scheduled else None,
            start=text_of(raw.get("startDate")),
            end=text_of(raw.get("endDate")),
            next_run=text_of(raw.get("nextExecutionDate")),
            event=text_of(pick(raw, "qlikEvent", "eventType")),
            app_id=text_of(pick(raw, "appId", "appID")),
        )


class TaskReport(Compact):
    id: str
    report_id: str | None = None
    name: str | None = None
    format: str | None = None
    attached: bool | None = None
    embedded: bool | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "TaskReport":
        return cls(
            id=str(raw.get("id", "")),
            report_id=text_of(pick(raw, "reportID", "reportId")),
            name=text_of(pick(raw, "reportName", "name")),
            format=text_of(pick(raw, "format", "outputFormat")),
            attached=raw.get("emailAttachment") if isinstance(raw.get("emailAttachment"), bool) else None,
            embedded=raw.get("emailEmbedment") if isinstance(raw.get("emailEmbedment"), bool) else None,
        )


class Recipient(Compact):
    id: str | None = None
    type: str | None = None
    name: str | None = None
    email: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "Recipient":
        name = pick(raw, "name", "displayName")
        if name is None and (raw.get("firstName") or raw.get("lastName")):
            name = f"{raw.get('firstName') or ''} {raw.get('lastName') or ''}".strip()
        return cls(
            id=text_of(raw.get("id")),
            type=text_of(raw.get("type")),
            name=text_of(name),
            email=text_of(raw.get("email")),
        )


class TaskDetail(TaskRow):
    description: str | None = None
    notifications: Notifications | None = None
    test_mode_recipients: str | None = None
    reports: list[TaskReport] = []
    recipients: list[Recipient] = []
    triggers: list[Trigger] = []

    @classmethod
    def build(
        cls,
        raw: dict[str, Any],
        reports: list[dict[str, Any]],
        recipients: list[dict[str, Any]],
        triggers: list[dict[str, Any]],
    ) -> "TaskDetail":
        send = bool(raw.get("sendNotifications"))
        return cls(
            **cls.fields_of(raw),
            description=text_of(raw.get("description"), 500),
            notifications=Notifications(
                send=send,
                on_success=raw.get("notifyIfSuccess"),
                on_warning=raw.get("notifyIfWarning"),
                on_error=raw.get("notifyIfError"),
                to=text_of(raw.get("notificationRecipients"), 500),
                cc=text_of(raw.get("notificationCc"), 500),
                bcc=text_of(raw.get("notificationBcc"), 500),
            ),
            test_mode_recipients=text_of(raw.get("testModeRecipients"), 500) if raw.get("testMode") else None,
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
    def of(cls, raw: dict[str, Any]) -> "Report":
        formats = raw.get("outputFormats")
        return cls(
            id=str(raw.get("id", "")),
            name=str(raw.get("name", "")),
            type=text_of(raw.get("type")),
            formats=[str(f) for f in formats] if isinstance(formats, list) else [],
            iteration=True if raw.get("isIteration") else None,
            template=text_of(raw.get("templateFile")),
            project=name_of(raw.get("project")),
        )


def _seconds(start: Any, end: Any) -> float | None:
    began, ended = (
        parse_time(start if isinstance(start, str) else None),
        parse_time(end if isinstance(end, str) else None),
    )
    return round((ended - began).total_seconds(), 1) if began and ended else None


STARTED = ("startDate", "startTime", "startedAt", "executionStartDate")
ENDED = ("endDate", "endTime", "endedAt", "executionEndDate")
CREATED = ("creationDate", "createdDate", "createdAt", "requestDate")


def status_text(raw: dict[str, Any]) -> str:
    return str(pick(raw, "status", "state", "executionStatus") or "")


def status_time(raw: dict[str, Any]) -> str:
    """A sort key for newest first: start, else creation, time."""
    return str(pick(raw, *STARTED, *CREATED) or "")


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
    def of(cls, raw: dict[str, Any]) -> "Status":
        message = pick(raw, "message", "error", "errorMessage")
        started, ended = pick(raw, *STARTED), pick(raw, *ENDED)
        return cls(
            id=text_of(pick(raw, "id", "requestID", "requestId")),
            task_id=text_of(pick(raw, "taskID", "taskId")),
            task_name=text_of(raw.get("taskName")),
            status=status_text(raw),
            by=text_of(pick(raw, "executionType", "triggeredBy", "type")),
            created_at=text_of(pick(raw, *CREATED)),
            started_at=text_of(started),
            ended_at=text_of(ended),
            seconds=_seconds(started, ended),
            message=untrusted(str(message)[:1000], "Qalyptus message") if message else None,
        )
