"""Task bodies of `/api/v1/tasks`: Serverless Workflow 0.8 documents, as Qlik's `Task` schema profiles them.

Pure functions for the tools: the check of a body against the Task schema of the vendored spec (qlik_tasks_mcp/specs)
before it is sent, the ISO 8601 repeating-interval check, builders for the two reload tasks people need, and the
readers of what a workflow reloads and what starts it (client/tasks.py's TaskDoc reads through them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.schedule import LOCAL_FORMAT, RepeatingInterval, time_zone
from qlik_tasks_mcp.client.schedule import repeating_interval as read_interval
from qlik_tasks_mcp.specs import QLIK

if TYPE_CHECKING:
    from jsonschema import Draft7Validator

SPECS = {"v1": QLIK / "tasks.json", "scheduling": QLIK / "scheduling-tasks.json"}
EVENT_TYPE = "com.qlik.v1.task.run.finished"
EVENT_SOURCE = "system-events.task"
DATASET_SOURCE = "dataset.updated"
RELOAD = "app.reload"
SPEC_VERSION = "0.8"
# The Task schema only has EVENT states, and an EVENT state must name at least one event; a state that
# runs on the start schedule names this one, which is not a CloudEvent of `events`.
TIME_SCHEDULE_REF = "time-schedule"
NAME = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")
MIN_INTERVAL_SECONDS = 60

RunStatus = Literal["SUCCEEDED", "FAILED"]
RUN_STATUSES = ("SUCCEEDED", "FAILED")


@cache
def _validator(api: str) -> Draft7Validator:
    # Imported when a body is first checked: a server that never checks one starts without it.
    from jsonschema import Draft7Validator

    spec = json.loads(SPECS[api].read_text(encoding="utf-8"))
    # OpenAPI 3.0 component schemas are JSON Schema (draft 4-7 keywords); the refs point into components.
    root = {"$ref": "#/components/schemas/Task", "components": {"schemas": spec["components"]["schemas"]}}
    return Draft7Validator(root)


def _where(path: Any) -> str:
    return "/".join(str(p) for p in path) or "(body)"


def schema_problems(body: Any, limit: int = 5, api: str = "v1") -> list[str]:
    """Where `body` breaks the Task schema of `api`'s spec, one short line each (at most `limit`)."""
    errors = sorted(_validator(api).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    out: list[str] = []
    for error in errors[:limit]:
        message = error.message if len(error.message) <= 160 else error.message[:160] + "..."
        out.append(f"{_where(error.absolute_path)}: {message}")
    return out


def _actions(states: list[Any] | None) -> list[tuple[int, int, int, dict[str, Any]]]:
    """(state, onEvent, action) indexes and each action of a workflow's `states`."""
    found: list[tuple[int, int, int, dict[str, Any]]] = []
    for s, state in enumerate(states or []):
        for e, on in enumerate(state.get("onEvents") or [] if isinstance(state, dict) else []):
            for a, action in enumerate(on.get("actions") or [] if isinstance(on, dict) else []):
                if isinstance(action, dict):
                    found.append((s, e, a, action))
    return found


def meaning_problems(task: dict[str, Any]) -> list[str]:
    """What the schema cannot say: every event reference resolves, every action is a reload of an app."""
    problems: list[str] = []
    events = {e.get("name") for e in task.get("events") or [] if isinstance(e, dict)}
    start = task.get("start")
    scheduled = isinstance(start, dict) and "schedule" in start
    for s, state in enumerate(task.get("states") or []):
        for e, on in enumerate(state.get("onEvents") or [] if isinstance(state, dict) else []):
            for ref in on.get("eventRefs") or [] if isinstance(on, dict) else []:
                if ref not in events and not (scheduled and ref == TIME_SCHEDULE_REF):
                    problems.append(
                        f"states/{s}/onEvents/{e}/eventRefs: {ref!r} is not the name of an event in events"
                        + (f" (a scheduled task's state refers to {TIME_SCHEDULE_REF!r})" if scheduled else "")
                    )
    for s, e, a, action in _actions(task.get("states")):
        ref = action.get("functionRef")
        args = ref.get("arguments") if isinstance(ref, dict) else None
        if not isinstance(args, dict) or not isinstance(args.get("appId"), str) or not args["appId"]:
            problems.append(f"states/{s}/onEvents/{e}/actions/{a}/functionRef/arguments: appId (the app) is required")
        elif "partial" in args and not isinstance(args["partial"], bool):
            problems.append(f"states/{s}/onEvents/{e}/actions/{a}/functionRef/arguments/partial: must be a boolean")
    if not _actions(task.get("states")):
        problems.append("states: no action; a task needs one app.reload action")
    for index, event in enumerate(task.get("events") or []):
        if not isinstance(event, dict) or event.get("type") != EVENT_TYPE:
            continue
        names = [c.get("contextAttributeName") for c in event.get("correlation") or [] if isinstance(c, dict)]
        if "id" not in names:
            problems.append(f"events/{index}/correlation: needs the id of the task whose run finishing starts this")
    return problems


def check_workflow(body: Any, api: str = "v1") -> dict[str, Any]:
    """`body` if it is a Task that `api` ("v1" or "scheduling") takes, else InvalidInput listing what to fix.

    For new definitions only: a document the tenant returned is never checked whole (see tools/tasks.py)."""
    problems = schema_problems(body, api=api)
    if not problems and isinstance(body, dict):
        problems = meaning_problems(body)
    if problems:
        raise InvalidInput("workflow is not a valid task: " + "; ".join(problems[:5]))
    return body


def task_name(text: str) -> str:
    """A workflow name as the schema wants it (lowercase words joined by '-') from any title."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not name or not NAME.match(name):
        raise InvalidInput(f"name {text[:60]!r} has no letters or digits; give a short title like 'Sales daily'")
    return name[:100].rstrip("-")


@dataclass(frozen=True)
class Interval:
    """A repeating interval to send: client.schedule reads it (any start: local, `Z` or an offset)."""

    text: str
    parsed: RepeatingInterval

    @property
    def repetitions(self) -> int | None:
        return self.parsed.repetitions

    @property
    def seconds(self) -> int:
        return self.parsed.every.seconds

    def local_start(self, zone: str) -> str:
        """The start as wall-clock time in `zone`, the form startDateTime takes beside a zone."""
        start = self.parsed.start_in(time_zone(zone))
        assert start is not None  # repeating_interval() requires one
        return start.strftime(LOCAL_FORMAT)


def repeating_interval(value: str) -> Interval:
    """An ISO 8601 repeating interval `R[n]/<start>/<duration>` to send, checked, or InvalidInput. The start may be
    local (in the task's zone), UTC (`Z`) or have an offset; a new schedule needs one, so a bare duration is refused."""
    parsed = read_interval(value)
    if parsed.start_text is None:
        raise InvalidInput(
            f"interval {value[:60]!r} has no start, so when it runs cannot be said: give R/<start>/<duration>, "
            "e.g. R/2026-02-01T06:00:00/PT15M"
        )
    if parsed.every.seconds < MIN_INTERVAL_SECONDS:
        raise InvalidInput(f"interval repeats every {parsed.every.text}; the shortest accepted is PT1M")
    parsed.every.rrule()  # months mixed with other units have no fixed length: refused here
    return Interval(parsed.text, parsed)


def interval_rrule(interval: Interval) -> str:
    """The RRULE that repeats like `interval` in wall-clock time, so dateutil can expand it across DST."""
    return interval.parsed.rrule()


def reload_action(app_id: str, partial: bool) -> dict[str, Any]:
    return {
        "name": "reload-app",
        "functionRef": {"refName": RELOAD, "arguments": {"appId": app_id, "partial": partial}},
    }


def _base(name: str, enabled: bool, description: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "specVersion": SPEC_VERSION, "version": "1.0.0", "enabled": enabled}
    if description:
        body["description"] = description
    return body


def scheduled_reload(
    *,
    name: str,
    app_id: str,
    partial: bool,
    interval: Interval,
    time_zone: str,
    end: str | None,
    enabled: bool,
    description: str | None,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {"interval": interval.text, "timezone": time_zone}
    if end:
        schedule["endDateTime"] = end
    body = _base(name, enabled, description)
    body["start"] = {"schedule": schedule, "stateName": "reload"}
    body["states"] = [
        {
            "name": "reload",
            "type": "EVENT",
            "end": True,
            "onEvents": [{"eventRefs": [TIME_SCHEDULE_REF], "actions": [reload_action(app_id, partial)]}],
        }
    ]
    return body


def reload_after_task(
    *,
    name: str,
    app_id: str,
    partial: bool,
    task_id: str,
    status: RunStatus | None,
    enabled: bool,
    description: str | None,
) -> dict[str, Any]:
    correlation = [{"contextAttributeName": "id", "contextAttributeValue": task_id}]
    if status:
        correlation.append({"contextAttributeName": "status", "contextAttributeValue": status})
    event = f"task-{status.lower() if status else 'finished'}"
    body = _base(name, enabled, description)
    body["events"] = [{"name": event, "type": EVENT_TYPE, "source": EVENT_SOURCE, "correlation": correlation}]
    body["states"] = [
        {
            "name": "reload",
            "type": "EVENT",
            "end": True,
            "exclusive": True,
            "onEvents": [{"eventRefs": [event], "actions": [reload_action(app_id, partial)]}],
        }
    ]
    return body


@dataclass(frozen=True)
class Trigger:
    task_id: str
    status: str | None


def reload_targets(states: list[Any] | None) -> list[tuple[str, bool]]:
    """(app id, partial) of every reload a workflow's `states` do, in order."""
    out: list[tuple[str, bool]] = []
    for _, _, _, action in _actions(states):
        ref = action.get("functionRef")
        args = ref.get("arguments") if isinstance(ref, dict) else None
        if isinstance(args, dict) and isinstance(args.get("appId"), str):
            out.append((args["appId"], bool(args.get("partial", False))))
    return out


def dataset_triggers(events: list[Any] | None) -> list[str]:
    """For each dataset-update event, what it is correlated on (`appId <id>`, `datasetId <id>`)."""
    out: list[str] = []
    for event in events or []:
        if not isinstance(event, dict) or event.get("source") != DATASET_SOURCE:
            continue
        pairs = [
            f"{c.get('contextAttributeName')} {c.get('contextAttributeValue')}"
            for c in event.get("correlation") or []
            if isinstance(c, dict)
        ]
        out.append(", ".join(pairs) or "any dataset")
    return out


def triggers(events: list[Any] | None) -> list[Trigger]:
    """The task runs whose finishing starts a workflow with these `events` (status None: any outcome)."""
    out: list[Trigger] = []
    for event in events or []:
        if not isinstance(event, dict) or event.get("type") != EVENT_TYPE:
            continue
        attrs = {
            c.get("contextAttributeName"): c.get("contextAttributeValue")
            for c in event.get("correlation") or []
            if isinstance(c, dict)
        }
        task_id, status = attrs.get("id"), attrs.get("status")
        if isinstance(task_id, str):
            out.append(Trigger(task_id, status if isinstance(status, str) else None))
    return out
