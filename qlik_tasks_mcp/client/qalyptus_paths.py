"""THE path table of the Qalyptus Cloud API: each operation's method and path, marked verified or inferred.

Qalyptus's reference (beta v1) names every operation and body but no method or path. Paths seen answering
on a live tenant are `verified`; the others follow REST conventions and the reference's section names and
are `inferred` (qlik_tasks_mcp/specs/qalyptus/NOTES.md). Any entry can be replaced from QALYPTUS_PATHS, so a wrong
guess is a one-line fix for a user, not a release; a replaced entry is `configured`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.paths import path_segment

Source = Literal["verified", "inferred", "configured"]
SETTING = "QALYPTUS_PATHS"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

LIVE = "NOTES.md: seen answering on a live tenant"


def ref(title: str) -> str:
    """Where an inferred path comes from: the reference operation it serves (the seed names no method or path)."""
    return f'reference "{title}"'


# operation -> (method, path under the base URL, source, basis). Placeholders are filled by path_segment.
DEFAULTS: dict[str, tuple[str, str, Source, str]] = {
    "list_tasks": ("GET", "/tasks", "verified", LIVE),
    "get_task": ("GET", "/tasks/{id}", "inferred", ref("Get task")),
    "create_task": ("POST", "/tasks", "inferred", ref("Create task")),
    "update_task": ("PUT", "/tasks/{id}", "inferred", ref("Update task")),
    "delete_task": ("DELETE", "/tasks/{id}", "inferred", ref("Delete task")),
    "duplicate_task": ("POST", "/tasks/{id}/duplicate", "inferred", ref("Duplicate task")),
    "change_owner": ("PUT", "/tasks/{id}/owner/{ownerId}", "inferred", ref("Change owner") + " (Tasks)"),
    "task_email": ("GET", "/tasks/{id}/email", "inferred", ref("Get task email")),
    "update_task_email": ("PUT", "/tasks/{id}/email", "inferred", ref("Update task email")),
    "task_recipients": ("GET", "/tasks/{id}/recipients", "verified", LIVE),
    # "Update task recipients": an array of {id, type}; "Delete task recipients": an array of ids.
    "update_recipients": ("PUT", "/tasks/{id}/recipients", "inferred", ref("Update task recipients")),
    "delete_recipients": ("DELETE", "/tasks/{id}/recipients", "inferred", ref("Delete task recipients")),
    "task_reports": ("GET", "/tasks/{id}/reports", "verified", LIVE),
    # "Add or update report": the task report's id, when updating, goes in the query (taskReportID).
    "set_task_report": ("POST", "/tasks/{id}/reports", "inferred", ref("Add or update report")),
    "delete_task_reports": ("DELETE", "/tasks/{id}/reports", "inferred", ref("Delete task reports")),
    "task_triggers": ("GET", "/tasks/{id}/triggers", "verified", LIVE),
    "list_schedules": ("GET", "/tasks/{id}/schedules", "inferred", ref("Get task schedules")),
    # "Add or update a schedule": the schedule id, when updating, goes in the query (taskScheduleID).
    "set_schedule": ("POST", "/tasks/{id}/schedules", "inferred", ref("Add or update a schedule")),
    # "Delete task schedules": the ids to delete are the body.
    "delete_schedules": ("DELETE", "/tasks/{id}/schedules", "inferred", ref("Delete task schedules")),
    # "Add or update external event": the event's id, when updating, goes in the query (taskExternalEventID).
    "set_external_event": ("POST", "/tasks/{id}/external-events", "inferred", ref("Add or update external event")),
    "delete_external_events": (
        "DELETE",
        "/tasks/{id}/external-events",
        "inferred",
        ref("Delete external events"),
    ),
    "run_task": ("POST", "/tasks/{id}/run", "inferred", ref("Run a task")),
    "stop": ("POST", "/status/{id}/stop", "inferred", ref("Stop the execution of a specified task or request")),
    "task_statuses": ("GET", "/status/tasks", "inferred", ref("Get scheduled task status list")),
    "task_status": ("GET", "/status/tasks/{id}", "inferred", ref("Get scheduled task status")),
    "task_log": ("GET", "/status/tasks/{id}/log", "inferred", ref("Download the scheduled task log file")),
    "task_smtp_log": (
        "GET",
        "/status/tasks/{id}/smtp-log",
        "inferred",
        ref("Download the scheduled task SMTP log file"),
    ),
    # "Generate an on-demand report": the report id and the output format are path parameters.
    "generate_report": (
        "POST",
        "/reports/{id}/generate/{outputFormat}",
        "inferred",
        ref("Generate an on-demand report"),
    ),
    "request_statuses": ("GET", "/status/requests", "inferred", ref("Get on-demand requests status")),
    "request_status": ("GET", "/status/requests/{id}", "inferred", ref("Get on-demand request status")),
    "request_log": ("GET", "/status/requests/{id}/log", "inferred", ref("Download the on-demand request log")),
    "request_smtp_log": (
        "GET",
        "/status/requests/{id}/smtp-log",
        "inferred",
        ref("Download on-demand request SMTP log file"),
    ),
    "delete_request": ("DELETE", "/status/{id}", "inferred", ref("Delete request")),
    # "Download report": answers the file's URI in storage (query `version` optional).
    "download_report": ("GET", "/status/{id}/download", "inferred", ref("Download report")),
    "list_reports": ("GET", "/reports", "verified", LIVE),
    "list_users": ("GET", "/users", "verified", LIVE),
    "list_groups": ("GET", "/groups", "verified", LIVE),
    "list_projects": ("GET", "/projects", "verified", LIVE),
}

_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")
_SEGMENT = re.compile(r"^(?:[A-Za-z0-9._~-]+|\{[A-Za-z][A-Za-z0-9_]*\})$")
_MAX_PATH = 300


@dataclass(frozen=True)
class Endpoint:
    op: str
    method: str
    template: str
    source: Source
    # Where the entry comes from: NOTES.md (verified), the reference operation it serves (inferred), or the setting.
    basis: str = ""

    def path(self, **values: str) -> str:
        """The concrete path: every placeholder filled with a validated, encoded segment."""
        return _PLACEHOLDER.sub(lambda m: path_segment(values[m.group(1)], m.group(1)), self.template)

    def hint(self) -> str | None:
        """What a 404/405 on this path should also say, since it may be the path that is wrong, not the id."""
        if self.source == "verified":
            return None
        if self.source == "configured":
            return f"The path of '{self.op}' ({self.method} {self.template}) comes from {SETTING}: check that entry."
        example = json.dumps({self.op: f"{self.method} {self.template}"})
        return (
            f"The path of '{self.op}' ({self.method} {self.template}) is inferred from the {self.basis}, not confirmed "
            "by Qalyptus: if the "
            f"id is right, your tenant may use another path. Override it with {SETTING}, e.g. {SETTING}='{example}' "
            "with the path your tenant uses."
        )


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def _parse_entry(op: str, value: object) -> Endpoint:
    method, template, *_ = DEFAULTS[op]
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_PATH:
        raise InvalidInput(f'{SETTING}["{op}"] must be a string like "{method} {template}" or "{template}"')
    parts = value.split()
    if len(parts) == 2:
        method = parts[0].upper()
        if method not in METHODS:
            raise InvalidInput(f'{SETTING}["{op}"]: method {parts[0]!r} is not one of {", ".join(METHODS)}')
    elif len(parts) != 1:
        raise InvalidInput(f'{SETTING}["{op}"] must be "METHOD /path" or "/path", got {value[:80]!r}')
    path = parts[-1]
    segments = path.split("/")
    if not path.startswith("/") or not all(_SEGMENT.match(s) for s in segments[1:]) or ".." in segments:
        raise InvalidInput(
            f'{SETTING}["{op}"]: {path[:80]!r} must be an absolute path under the base URL (e.g. {template}) of '
            "letters, digits, . _ ~ - and {placeholders}, without '..', query or fragment"
        )
    if placeholders(path) != placeholders(template):
        need = ", ".join(f"{{{p}}}" for p in sorted(placeholders(template))) or "none"
        raise InvalidInput(f'{SETTING}["{op}"]: {path!r} must use exactly these placeholders: {need}')
    return Endpoint(op, method, path, "configured", SETTING)


def parse_overrides(text: str | None) -> dict[str, Endpoint]:
    """QALYPTUS_PATHS: a JSON object of operation -> "METHOD /path" (or "/path" to keep the method)."""
    if not text or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raise InvalidInput(f'{SETTING} must be a JSON object like {{"task_log": "GET /status/tasks/{{id}}/log"}}')
    unknown = sorted(str(k) for k in raw if k not in DEFAULTS)
    if unknown:
        raise InvalidInput(f"{SETTING}: unknown operations {unknown}; known: {', '.join(DEFAULTS)}")
    return {op: _parse_entry(op, value) for op, value in raw.items()}


class PathTable:
    """The defaults with the user's overrides on top; one per process, shared by every organization."""

    def __init__(self, overrides: str | None = None) -> None:
        self._entries = {op: Endpoint(op, *spec) for op, spec in DEFAULTS.items()}
        self._entries.update(parse_overrides(overrides))

    def __getitem__(self, op: str) -> Endpoint:
        return self._entries[op]

    def entries(self) -> list[Endpoint]:
        return list(self._entries.values())
