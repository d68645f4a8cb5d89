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

# operation -> (method, path under the base URL, source). Placeholders are filled by path_segment.
DEFAULTS: dict[str, tuple[str, str, Source]] = {
    "list_tasks": ("GET", "/tasks", "verified"),
    "get_task": ("GET", "/tasks/{id}", "inferred"),
    "update_task": ("PUT", "/tasks/{id}", "inferred"),
    "delete_task": ("DELETE", "/tasks/{id}", "inferred"),
    "duplicate_task": ("POST", "/tasks/{id}/duplicate", "inferred"),
    "task_recipients": ("GET", "/tasks/{id}/recipients", "verified"),
    "task_reports": ("GET", "/tasks/{id}/reports", "verified"),
    "task_triggers": ("GET", "/tasks/{id}/triggers", "verified"),
    "list_schedules": ("GET", "/tasks/{id}/schedules", "inferred"),
    # "Add or update a schedule": the schedule id, when updating, goes in the query (taskScheduleID).
    "set_schedule": ("POST", "/tasks/{id}/schedules", "inferred"),
    # "Delete task schedules": the ids to delete are the body.
    "delete_schedules": ("DELETE", "/tasks/{id}/schedules", "inferred"),
    "run_task": ("POST", "/tasks/{id}/run", "inferred"),
    "stop": ("POST", "/status/{id}/stop", "inferred"),
    "task_statuses": ("GET", "/status/tasks", "inferred"),
    "task_status": ("GET", "/status/tasks/{id}", "inferred"),
    "task_log": ("GET", "/status/tasks/{id}/log", "inferred"),
    "task_smtp_log": ("GET", "/status/tasks/{id}/smtp-log", "inferred"),
    "list_reports": ("GET", "/reports", "verified"),
    "list_users": ("GET", "/users", "verified"),
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
            f"The path of '{self.op}' ({self.method} {self.template}) is inferred, not confirmed by Qalyptus: if the "
            f"id is right, your tenant may use another path. Override it with {SETTING}, e.g. {SETTING}='{example}' "
            "with the path your tenant uses."
        )


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def _parse_entry(op: str, value: object) -> Endpoint:
    method, template, _ = DEFAULTS[op]
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
    return Endpoint(op, method, path, "configured")


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
