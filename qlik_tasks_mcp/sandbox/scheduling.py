"""Sandbox `/api/scheduling/tasks`: what the Scheduling Tasks API has beyond `/api/v1/tasks`, over the same store.

The tenant-wide list with its SCIM filter and token paging, JSON Patch (which, like PUT, makes the caller the
owner), the dependency graphs, and the one-call reload creators of changelog 262 (NOTES-2026-11.md 1.1: bodies,
statuses, CHO codes). Also the tasks a November 2026 tenant has that were made in Qlik's UI: free-text names,
RRULE recurrences, and the shapes of Qlik's own published examples.
"""

from __future__ import annotations

import copy
import re
from collections import deque
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox import contract
from qlik_tasks_mcp.sandbox.contract import TASKS_ERRORS as err
from qlik_tasks_mcp.sandbox.core import Sandbox, json_body
from qlik_tasks_mcp.sandbox.paging import encode_cursor, paginate, parse_limit
from qlik_tasks_mcp.sandbox.schedule import task_recurrence_problem, wall_clock, zone_of
from qlik_tasks_mcp.sandbox.tasks import (
    CURSORS,
    MAX_TASKS_PER_APP,
    SCHEDULING_API,
    SCHEDULING_BASE,
    TASK_SORTS,
    WRITABLE,
    Refused,
    TasksApi,
    accessible,
    build_task,
    chain_to_running,
    guarded_api,
    public_task,
    replace_task,
    stamp,
    tables,
    token_links,
)
from qlik_tasks_mcp.sandbox.workflow import triggers

SORTS = {
    f"{sign}{key}"
    for sign in "+-"
    for key in (
        "createdAt enabled name ownerId resourceId spaceId updatedAt updatedBy lastStatus lastTriggeredBy "
        "lastStartedAt lastEndedAt lastExecutedAs triggerType"
    ).split()
}
TERM = re.compile(r'^\s*(\w+)\s+eq\s+("([^"]*)"|true|false|\d+)\s*$', re.IGNORECASE)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
STATUSES = {"succeeded": "SUCCEEDED", "failed": "FAILED", "any": None}


# Listing -----------------------------------------------------------------------------------------------


def field_of(task: dict[str, Any], name: str) -> Any:
    """A task's value for a filter or sort field."""
    meta = task["metadata"]
    attrs = (meta.get("orchestration") or {}).get("attrs") or {}
    values = {
        "name": task.get("name"),
        "enabled": task.get("enabled", False),
        "resourceId": task.get("resourceId"),
        "ownerId": meta.get("ownerId"),
        "spaceId": meta.get("spaceId"),
        "createdAt": meta.get("createdAt"),
        "updatedAt": meta.get("updatedAt"),
        "updatedBy": meta.get("ownerId"),
        "lastStatus": attrs.get("last_run_status"),
        "lastStartedAt": attrs.get("last_run_startedAt"),
        "lastEndedAt": attrs.get("last_run_endedAt"),
        "triggerType": meta["trigger"]["type"],
    }
    return values.get(name)


def parse_filter(text: str) -> list[tuple[str, str]] | str:
    """`field eq value` terms joined by `and` (the subset of SCIM the sandbox reads), or what is wrong."""
    terms: list[tuple[str, str]] = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = TERM.match(part)
        if not match or f"+{match.group(1)}" not in SORTS:
            return f"filter term {part[:80]!r} is not `<field> eq <value>` on a supported field"
        terms.append((match.group(1), match.group(3) if match.group(3) is not None else match.group(2)))
    return terms


def matches(task: dict[str, Any], terms: list[tuple[str, str]]) -> bool:
    return all(str(field_of(task, name)).lower() == value.lower() for name, value in terms)


def listed(sandbox: Sandbox, request: Request, api: TasksApi) -> Response:
    q = request.query_params
    st = tables(sandbox)
    resource_id = q.get("resourceId")
    if not api.scheduling and not resource_id:
        return err(400, "resourceId is required: list the tasks of one resource (app) at a time")
    limit = parse_limit(q.get("limit"), 20, 100)
    sort = q.get("sort", "-updatedAt")
    if limit is None or sort not in (SORTS if api.scheduling else TASK_SORTS):
        return err(400, "limit must be 1-100 and sort one of the spec's values")
    terms = parse_filter(q["filter"]) if q.get("filter") else []
    if isinstance(terms, str):
        return err(400, terms)
    # The last-run fields come from the runs (public_task); the others are stored. A tenant of thousands of tasks
    # is shown page by page, so only a filter or sort on a last-run field makes every task's public view first.
    by_runs = any(name.startswith("last") for name, _ in terms) or sort[1:].startswith("last")
    # "The tasks the requesting user has access to", chosen before paging so every page and token agrees.
    reachable = [t for t in st.tasks.values() if accessible(sandbox, t)]
    shown = [public_task(sandbox, t) for t in reachable] if by_runs else reachable
    items = [t for t in shown if (not resource_id or t["resourceId"] == resource_id) and matches(t, terms)]
    items = sorted(items, key=lambda t: (str(field_of(t, sort[1:]) or ""), t["id"]), reverse=sort.startswith("-"))
    keep = {"resourceId": resource_id, "sort": sort, "filter": q.get("filter")}
    page = paginate(request, items, limit, CURSORS, keep)
    if isinstance(page, str):
        return err(400, page)
    data = page.items if by_runs else [public_task(sandbox, t) for t in page.items]
    links = token_links(page.links) if api.scheduling else page.links
    if api.scheduling and st.looping_pages:
        links["next"] = {"href": links["self"]["href"], "token": q.get("page") or encode_cursor(0)}
    return JSONResponse({"data": data, "links": links})


# JSON Patch --------------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any] | str:
    """`document` with the add/replace/remove ops applied (RFC 6902), or what is wrong with an op."""
    doc = copy.deepcopy(document)
    for index, op in enumerate(ops):
        parts = _pointer(str(op.get("path", "")))
        if not parts or parts[0] not in WRITABLE:
            return f"patch op {index}: path {op.get('path')!r} names no field a patch may change"
        if op["op"] not in ("add", "replace", "remove"):
            return f"patch op {index}: {op['op']} is not supported here"
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent.setdefault(part, {}) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                return f"patch op {index}: {op['path']} does not exist"
        if op["op"] == "remove":
            parent.pop(parts[-1], None)
        else:
            parent[parts[-1]] = op.get("value")
    return doc


def patch_problems(patched: dict[str, Any], ops: list[dict[str, Any]]) -> list[str]:
    """Only the fields the patch touched are checked against the Task schema: the rest is the task as stored."""
    fields = {_pointer(str(op.get("path", "")))[0] for op in ops}
    problems = []
    for name in sorted(fields):
        if name in patched:
            problems += contract.field_problems(SCHEDULING_API.spec, "Task", name, patched[name])
    schedule = (patched.get("start") or {}).get("schedule") if isinstance(patched.get("start"), dict) else None
    if "start" in fields and isinstance(schedule, dict):
        if schedule.get("timezone") and zone_of(schedule["timezone"]) is None:
            problems.append(f"start/schedule/timezone {schedule['timezone']!r} is not an IANA time zone")
        if isinstance(schedule.get("recurrence"), str):
            problem = task_recurrence_problem(schedule["recurrence"], schedule.get("timezone"))
            problems += [f"start/schedule/recurrence: {problem}"] if problem else []
    return problems


# Graphs ------------------------------------------------------------------------------------------------


def children_of(sandbox: Sandbox, task_id: str) -> list[dict[str, Any]]:
    return [t for t in tables(sandbox).tasks.values() if any(tr.task_id == task_id for tr in triggers(t))]


def parents_of(sandbox: Sandbox, task_id: str) -> list[dict[str, Any]]:
    st = tables(sandbox)
    task = st.tasks.get(task_id)
    ids = [tr.task_id for tr in triggers(task)] if task else []
    return [st.tasks[i] for i in dict.fromkeys(ids) if i in st.tasks]


def walk(sandbox: Sandbox, root: dict[str, Any], down: bool, level: int | None, with_task: bool) -> dict[str, Any]:
    """A TaskGraph: vertices with depth, edges from the child (source) to the parent (target), as the spec shows."""
    step = children_of if down else parents_of
    depth = {root["id"]: 0}
    edges: list[dict[str, Any]] = []
    queue = deque([root])
    while queue:
        task = queue.popleft()
        if level is not None and depth[task["id"]] >= level:
            continue
        for other in step(sandbox, task["id"]):
            child, parent = (other, task) if down else (task, other)
            edges.append({"source": child["id"], "target": parent["id"], "attrs": {"depth": depth[task["id"]] + 1}})
            if other["id"] not in depth:
                depth[other["id"]] = depth[task["id"]] + 1
                queue.append(other)
    st = tables(sandbox)
    vertices = []
    for task_id, d in depth.items():
        attrs = {
            "depth": d,
            "isChild": bool(parents_of(sandbox, task_id)),
            "isParent": bool(children_of(sandbox, task_id)),
        }
        vertex: dict[str, Any] = {"taskId": task_id, "attrs": attrs}
        if with_task:
            vertex["task"] = public_task(sandbox, st.tasks[task_id])
        vertices.append(vertex)
    return {"taskId": root["id"], "vertices": vertices, "edges": edges}


# The one-call creators -----------------------------------------------------------------------------------


def _common(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object", "CHO-001")
    name, description = body.get("name"), body.get("description")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise Refused(400, "name is required, 1-100 characters", "CHO-001")
    if description is not None and (not isinstance(description, str) or len(description) > 1024):
        raise Refused(400, "description must be text of at most 1024 characters", "CHO-001")
    out: dict[str, Any] = {"name": name, "specVersion": "1.16.0", "version": "1.0.0"}
    out["enabled"] = body.get("enabled") is True  # created disabled unless told
    if description:
        out["description"] = description
    return out


def _reload_state(app_id: str, event: str) -> list[dict[str, Any]]:
    action = {
        "name": "app.reload",
        "functionRef": {"refName": "app.reload", "arguments": {"appId": app_id, "partial": False}},
    }
    return [{"name": "Reload", "type": "EVENT", "end": True, "onEvents": [{"eventRefs": [event], "actions": [action]}]}]


def time_schedule_task(sandbox: Sandbox, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
    task = _common(body)
    recurrence, zone = body.get("recurrence"), body.get("timezone") or "UTC"
    if not isinstance(recurrence, str) or not recurrence.strip():
        raise Refused(400, "recurrence (an RFC 5545 rule) is required", "CHO-017")
    problem = task_recurrence_problem(recurrence, zone)
    if problem or zone_of(zone) is None:
        raise Refused(400, problem or f"timezone {zone!r} is not an IANA time zone", "CHO-017")
    tz = zone_of(zone)
    assert tz is not None
    start, end = wall_clock(body.get("startDateTime"), tz), wall_clock(body.get("endDateTime"), tz)
    now = sandbox.clock.now().astimezone(tz).replace(tzinfo=None)
    if end is not None and ((start is not None and end <= start) or end <= now):
        raise Refused(400, "endDateTime must be after startDateTime and in the future", "CHO-017")
    schedule = {"recurrence": recurrence, "timezone": zone}
    schedule |= {k: body[k] for k in ("startDateTime", "endDateTime") if body.get(k)}
    task["start"] = {"schedule": schedule}
    task["states"] = _reload_state(app_id, "time-schedule")
    return task


def task_event_task(sandbox: Sandbox, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
    task = _common(body)
    status = body.get("onTaskStatus", "succeeded")
    if status not in STATUSES:
        raise Refused(400, "onTaskStatus must be succeeded, failed or any", "CHO-001")
    upstream_id = body.get("onTaskId")
    upstream = tables(sandbox).tasks.get(upstream_id) if isinstance(upstream_id, str) else None
    if upstream is None or not UUID.match(str(upstream_id)):
        raise Refused(400, f"onTaskId {str(upstream_id)[:60]!r} is not the UUID of a task in this tenant", "CHO-016")
    correlation = [{"contextAttributeName": "id", "contextAttributeValue": upstream["id"]}]
    if STATUSES[status]:
        correlation.append({"contextAttributeName": "status", "contextAttributeValue": STATUSES[status]})
    correlation.append({"contextAttributeName": "appId", "contextAttributeValue": upstream["resourceId"]})
    correlation.append({"contextAttributeName": "spaceId", "contextAttributeValue": upstream["metadata"]["spaceId"]})
    event = f"task-{status}"
    task["events"] = [
        {
            "name": event,
            "type": "com.qlik.v1.task.run.finished",
            "source": "system-events.task",
            "correlation": correlation,
        }
    ]
    task["states"] = _reload_state(app_id, event)
    return task


def dataset_task(sandbox: Sandbox, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
    task = _common(body)
    existing = next(
        (
            t
            for t in tables(sandbox).tasks.values()
            if t["resourceId"] == app_id and t["metadata"]["trigger"]["type"] == 4
        ),
        None,
    )
    if existing is not None:
        raise Refused(409, "the app already has a dataset-update task", "CHO-031", {"existingTaskId": existing["id"]})
    correlation = [{"contextAttributeName": "appId", "contextAttributeValue": app_id}]
    task["events"] = [
        {
            "name": "dataset-updated",
            "type": "com.qlik/active-analytics-orch",
            "source": "dataset.updated",
            "correlation": correlation,
        }
    ]
    task["states"] = _reload_state(app_id, "dataset-updated")
    return task


CREATORS = {
    "on-time-schedule": time_schedule_task,
    "on-task-event": task_event_task,
    "on-dataset-updated": dataset_task,
}


def create_by_kind(sandbox: Sandbox, app_id: str, kind: str, body: Any) -> dict[str, Any]:
    if app_id not in sandbox.apps:
        raise Refused(403, f"app {app_id} is missing or the caller lacks app:reload on it", "CHO-003")
    if sum(1 for t in tables(sandbox).tasks.values() if t["resourceId"] == app_id) >= MAX_TASKS_PER_APP:
        raise Refused(422, f"app {app_id} already has its maximum of {MAX_TASKS_PER_APP} tasks", "CHO-014")
    definition = CREATORS[kind](sandbox, app_id, body)
    now = stamp(sandbox.clock.now())
    task = build_task(sandbox, definition, sandbox.uuid(), sandbox.caller_id, now)
    tables(sandbox).tasks[task["id"]] = task
    chain_to_running(sandbox, task)
    return task


# Routes ------------------------------------------------------------------------------------------------


def routes(sandbox: Sandbox) -> list[Route]:
    st = tables(sandbox)
    api = SCHEDULING_API

    async def patch_one(request: Request) -> Response:
        task = st.tasks.get(request.path_params["id"])
        if task is None:
            return err(404, "task not found")
        ops = await json_body(request)
        stored = {k: task[k] for k in WRITABLE if k in task}
        patched = apply_patch(stored, ops)
        if isinstance(patched, str):
            return err(400, patched)
        problems = patch_problems(patched, ops)
        if problems:
            return err(400, "; ".join(problems[:5]))
        return JSONResponse(public_task(sandbox, replace_task(sandbox, task, patched)))

    async def graph(request: Request) -> Response:
        task = st.tasks.get(request.path_params["id"])
        if task is None:
            return err(404, "task not found")
        kind = request.url.path.rsplit("/", 1)[-1]
        q = request.query_params
        level = int(q["level"]) if q.get("level", "").isdigit() else None
        with_task = q.get("withTask", "true").lower() != "false"
        if kind in ("parents", "children"):
            found = (parents_of if kind == "parents" else children_of)(sandbox, task["id"])
            limit = parse_limit(q.get("limit"), 20, 100) or 20
            page = paginate(request, [public_task(sandbox, t) for t in found], limit, CURSORS, {})
            if isinstance(page, str):
                return err(400, page)
            return JSONResponse({"data": page.items, "links": token_links(page.links)})
        if kind == "subgraph":
            up, down = walk(sandbox, task, False, level, with_task), walk(sandbox, task, True, level, with_task)
            seen = {v["taskId"] for v in up["vertices"]}
            up["vertices"] += [v for v in down["vertices"] if v["taskId"] not in seen]
            up["edges"] += down["edges"]
            return JSONResponse(up)
        return JSONResponse(walk(sandbox, task, kind == "descendants", level, with_task))

    async def create_reload(request: Request) -> Response:
        if request.path_params["kind"] not in CREATORS:
            return err(404, "Not Found")
        try:
            task = create_by_kind(
                sandbox, request.path_params["id"], request.path_params["kind"], await json_body(request)
            )
        except Refused as refused:
            return refused.response()
        return JSONResponse(public_task(sandbox, task), status_code=201)

    def g(handler: Any, tier: str, component: str | None = None) -> Any:
        return guarded_api(sandbox, api, tier, handler, component)

    base = SCHEDULING_BASE
    kinds = "{kind:str}"
    return [
        Route(base + "/resources/{id}/actions/reload/" + kinds, g(create_reload, "2"), methods=["POST"]),
        Route(base + "/{id}", g(patch_one, "2", "JSONPatch"), methods=["PATCH"]),
        *[
            Route(base + "/{id}/graphs/" + k, g(graph, "1"), methods=["GET"])
            for k in ("ancestors", "descendants", "subgraph", "children", "parents")
        ],
    ]


# Tasks made in Qlik's UI ---------------------------------------------------------------------------------


def _example(name: str, app_id: str, events: list[dict[str, Any]], state: str, refs: list[str]) -> dict[str, Any]:
    """A task shaped as Qlik's published examples: free-text names, a state "App.Reload"-style, type "event"."""
    action = {
        "name": "app.reload",
        "functionRef": {"refName": "app.reload", "arguments": {"appId": app_id, "partial": False}},
    }
    body: dict[str, Any] = {"name": name, "specVersion": "1.16.0", "version": "1.0.0", "enabled": True}
    body["description"] = "Made in the Qlik Cloud UI"
    body["states"] = [
        {
            "end": True,
            "name": state,
            "type": "EVENT",
            "exclusive": False,
            "onEvents": [{"actions": [action], "eventRefs": refs}],
        }
    ]
    if events:
        body["events"] = events
    return body


def seed_ui(sandbox: Sandbox, upstream: dict[str, Any]) -> None:
    """Three UI-made tasks on the last apps: an RRULE schedule, a chain from another app's task, a dataset trigger."""
    apps = list(sandbox.apps.values())
    if len(apps) < 12:
        return
    st = tables(sandbox)
    created = stamp(sandbox.clock.now() - timedelta(days=30))
    rrule = _example("Nightly reload – Web Analytics (UI)", apps[11].id, [], "App.Reload", ["time-schedule"])
    rrule["start"] = {
        "schedule": {
            "recurrence": "RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
            "timezone": "Europe/Zurich",
            "startDateTime": "2026-03-01T00:00:00",
        }
    }
    chained = _example(
        "Reload Service Desk when Task 1 succeeded",
        apps[10].id,
        [
            {
                "name": "task1-succeeded",
                "type": "com.qlik.v1.task.run.finished",
                "source": "system-events.task",
                "correlation": [
                    {"contextAttributeName": "id", "contextAttributeValue": upstream["id"]},
                    {"contextAttributeName": "status", "contextAttributeValue": "SUCCEEDED"},
                    {"contextAttributeName": "spaceId", "contextAttributeValue": upstream["metadata"]["spaceId"]},
                ],
            }
        ],
        "App4.Reload",
        ["task1-succeeded"],
    )
    dataset = _example(
        "TaskExample",
        apps[9].id,
        [
            {
                "name": "event1",
                "type": "com.qlik/active-analytics-orch",
                "source": "dataset.updated",
                "correlation": [{"contextAttributeName": "appId", "contextAttributeValue": apps[9].id}],
            }
        ],
        "Reload",
        ["app1-dataset-updated"],
    )
    for body in (rrule, chained, dataset, *_recurrence_forms(sandbox, apps[11].id)):
        task = build_task(sandbox, body, sandbox.uuid(), apps[3].owner_id, created)
        st.tasks[task["id"]] = task


def _recurrence_forms(sandbox: Sandbox, app_id: str) -> list[dict[str, Any]]:
    """UI-made tasks with the RRULE forms a recurrence may take: a rule without its `RRULE:` prefix, and multi-line
    recurrences with a DTSTART in a zone (TZID) or in UTC, an EXDATE (the next Monday's run skipped) and an RDATE."""
    now = sandbox.clock.now()
    monday = (now + timedelta(days=7 - now.weekday())).strftime("%Y%m%d")
    extra = (now + timedelta(days=1)).strftime("%Y%m%dT120000Z")
    forms = [
        ("Morning reload – Web Analytics (UI)", "FREQ=DAILY;BYHOUR=5;BYMINUTE=15", "America/New_York"),
        (
            "Twice weekly – Web Analytics (UI)",
            f"DTSTART;TZID=Europe/Zurich:20260302T020000\nRRULE:FREQ=WEEKLY;BYDAY=MO,TH\n"
            f"EXDATE;TZID=Europe/Zurich:{monday}T020000",
            "Europe/Zurich",
        ),
        (
            "Every 4 hours – Web Analytics (UI)",
            f"DTSTART:20260101T060000Z\nRRULE:FREQ=HOURLY;INTERVAL=4;BYMINUTE=0\nRDATE:{extra}",
            "UTC",
        ),
    ]
    out = []
    for name, recurrence, zone in forms:
        body = _example(name, app_id, [], "App.Reload", ["time-schedule"])
        body["start"] = {"schedule": {"recurrence": recurrence, "timezone": zone}}
        out.append(body)
    return out
