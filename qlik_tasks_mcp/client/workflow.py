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
from qlik_tasks_mcp.client.schedule import local_datetime
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


_INTERVAL = re.compile(r"^R(\d{0,9})/([^/]+)/([^/]+)$")
_DURATION = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "W": 7 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Interval:
    text: str
    repetitions: int | None
    start: str
    every: str
    seconds: int


def duration_seconds(value: str) -> int:
    """An ISO 8601 duration (PnYnMnWnDTnHnMnS) as approximate seconds, or InvalidInput."""
    match = _DURATION.match(value)
    if not match or value in ("P", "PT") or value.endswith("T"):
        raise InvalidInput(
            f"duration {value[:40]!r} is not ISO 8601: use e.g. P1D (daily), PT4H (every 4 hours), P1W (weekly)"
        )
    return sum(int(n) * _SECONDS[unit] for unit, n in match.groupdict().items() if n)


def repeating_interval(value: str) -> Interval:
    """An ISO 8601 repeating interval `R[n]/<local start>/<duration>`, checked, or InvalidInput."""
    match = _INTERVAL.match(value.strip())
    if not match:
        raise InvalidInput(
            f"interval {value[:60]!r} must be an ISO 8601 repeating interval R[n]/<start>/<duration>, e.g. "
            "R/2026-02-01T06:00:00/P1D (every day at 06:00 from 1 Feb 2026, in time_zone)"
        )
    count, start, every = match.groups()
    local_datetime(start, "interval start")
    seconds = duration_seconds(every)
    if seconds < MIN_INTERVAL_SECONDS:
        raise InvalidInput(f"interval repeats every {every}; the shortest accepted is PT1M")
    if count == "0":
        raise InvalidInput("interval R0/... never runs; leave the count out (R/...) to repeat forever")
    return Interval(value.strip(), int(count) if count else None, start, every, seconds)


_FREQ = {"Y": "YEARLY", "M": "MONTHLY", "W": "WEEKLY", "D": "DAILY", "h": "HOURLY", "m": "MINUTELY", "s": "SECONDLY"}


def interval_rrule(interval: Interval) -> str:
    """The RRULE that repeats like `interval` in wall-clock time, so dateutil can expand it across DST."""
    match = _DURATION.match(interval.every)
    assert match is not None  # checked by repeating_interval
    parts = {unit: int(n) for unit, n in match.groupdict().items() if n}
    if len(parts) == 1:
        unit, count = next(iter(parts.items()))
        rule = f"RRULE:FREQ={_FREQ[unit]};INTERVAL={count}"
    elif "Y" in parts or "M" in parts:
        raise InvalidInput(f"interval {interval.every} mixes months or years with other units: it has no fixed length")
    elif interval.seconds % 60 == 0:
        rule = f"RRULE:FREQ=MINUTELY;INTERVAL={interval.seconds // 60}"
    else:
        rule = f"RRULE:FREQ=SECONDLY;INTERVAL={interval.seconds}"
    return rule + (f";COUNT={interval.repetitions}" if interval.repetitions else "")


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
