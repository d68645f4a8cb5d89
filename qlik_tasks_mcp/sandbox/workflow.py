"""Reading a Task document (tasks.json `Task`, Serverless Workflow 0.8) as the tasks service does.

Written from the spec's descriptions: `resourceId` "will be calculated automatically from Task.states" (so a
task needs an action that reloads an app); `eventRefs` "references one or more unique event names in the
defined workflow events"; a `schedule` is an ISO 8601 repeating interval, a cron expression or an RRULE
`recurrence`, evaluated in `timezone` (an IANA name, default UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from qlik_tasks_mcp.sandbox.schedule import cron_problem, task_recurrence_problem, zone_of

RUN_FINISHED = "com.qlik.v1.task.run.finished"
# ISO 8601 repeating interval, R[n]/<start>/<duration> or R[n]/<duration>[/<end>]; or a bare duration, as the
# scheduling-tasks spec's own example of an interval is ("PT15M").
REPEATING = re.compile(r"^(R\d*/([^/]+/)?P[0-9YMWDTHS.]+|R\d*/P[0-9YMWDTHS.]+/[^/]+|P[0-9YMWDTHS.]+)$")


@dataclass(frozen=True)
class Trigger:
    """A run of task `task_id` finishing (with `status`, or any status when None) starts the task."""

    task_id: str
    status: str | None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def actions(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        action
        for state in _dicts(task.get("states"))
        for on in _dicts(state.get("onEvents"))
        for action in _dicts(on.get("actions"))
    ]


def reload_targets(task: dict[str, Any]) -> list[tuple[str, bool]]:
    """(app id, partial) of every action that names an app, in order."""
    out: list[tuple[str, bool]] = []
    for action in actions(task):
        ref = action.get("functionRef")
        args = ref.get("arguments") if isinstance(ref, dict) else None
        if isinstance(args, dict) and isinstance(args.get("appId"), str) and args["appId"]:
            out.append((args["appId"], args.get("partial") is True))
    return out


def triggers(task: dict[str, Any]) -> list[Trigger]:
    """The task runs whose finishing starts this task: run-finished events correlated by task id."""
    out: list[Trigger] = []
    for event in _dicts(task.get("events")):
        if event.get("type") != RUN_FINISHED:
            continue
        attrs = {
            c.get("contextAttributeName"): c.get("contextAttributeValue") for c in _dicts(event.get("correlation"))
        }
        task_id, status = attrs.get("id"), attrs.get("status")
        if isinstance(task_id, str):
            out.append(Trigger(task_id, status if isinstance(status, str) else None))
    return out


def schedule_of(task: dict[str, Any]) -> Any:
    start = task.get("start")
    return start.get("schedule") if isinstance(start, dict) else None


def schedule_problem(schedule: Any) -> str | None:
    if isinstance(schedule, str):
        return None if REPEATING.match(schedule) else f"start/schedule {schedule[:60]!r} is not a repeating interval"
    if not isinstance(schedule, dict):
        return None
    if schedule.get("timezone") and zone_of(schedule["timezone"]) is None:
        return f"start/schedule/timezone {str(schedule['timezone'])[:60]!r} is not an IANA time zone name"
    interval = schedule.get("interval")
    if isinstance(interval, str) and not REPEATING.match(interval):
        return f"start/schedule/interval {interval[:60]!r} is not an ISO 8601 repeating interval"
    recurrence = schedule.get("recurrence")
    if isinstance(recurrence, str):
        problem = task_recurrence_problem(recurrence, schedule.get("timezone"))
        return f"start/schedule/recurrence: {problem}" if problem else None
    cron = schedule.get("cron")
    expression = cron.get("expression") if isinstance(cron, dict) else cron
    if isinstance(expression, str) and cron_problem(expression):
        return f"start/schedule/cron: {cron_problem(expression)}"
    return None


def meaning_problems(task: dict[str, Any]) -> list[str]:
    """What the schema cannot say: an action that reloads an app, event references that resolve, a schedule."""
    problems: list[str] = []
    if not reload_targets(task):
        problems.append("states: no action names an app (functionRef.arguments.appId); the task needs one")
    events = {e.get("name") for e in _dicts(task.get("events"))}
    if schedule_of(task) is None:
        for s, state in enumerate(_dicts(task.get("states"))):
            for e, on in enumerate(_dicts(state.get("onEvents"))):
                for ref in on.get("eventRefs") or []:
                    if ref not in events:
                        problems.append(f"states/{s}/onEvents/{e}/eventRefs: {ref!r} names no event of events")
    problem = schedule_problem(schedule_of(task))
    if problem:
        problems.append(problem)
    return problems
