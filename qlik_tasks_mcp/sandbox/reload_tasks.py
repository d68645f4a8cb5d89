"""Sandbox `/api/v1/reload-tasks`: in-memory tasks answering as reload-tasks.json describes.

Also what NOTES-2026-11.md section 2 adds: migrated reload tasks shaped as Qlik's migration guide shows them (no
`state`, `migrated: true`), an app that has tasks having its reload tasks turned off (changelog 135), and a
switch under which the whole API answers as a retired one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.sandbox import contract
from qlik_tasks_mcp.sandbox.contract import RELOAD_TASKS_ERRORS as err
from qlik_tasks_mcp.sandbox.core import TENANT_ID, Sandbox, guarded, json_body
from qlik_tasks_mcp.sandbox.paging import Cursors, paginate, parse_limit, self_link
from qlik_tasks_mcp.sandbox.schedule import next_occurrence, recurrence_problem, utc_z, wall_clock, zone_of

BASE = "/api/v1/reload-tasks"
TABLE = "reload_tasks"
SPEC = "reload-tasks.json"
# What a task stores from a create or a replace: the fields of the spec's TaskBase (`type` is deprecated and
# "not used for creating a schedule reload"; `state` is applied on its own).
STORED = tuple(k for k in contract.writable(SPEC, "PutTaskBody") if k != "state")
CURSORS = Cursors(next="next", prev="prev")
# The task store's `POST /api/v1/tasks?migrateFrom=<id>`: (sandbox, body, reload task id) -> the new task.
Migrate = Callable[[Sandbox, dict[str, Any], str], dict[str, Any]]
# sandbox.tables key of the retirement switch: the HTTP status every reload-tasks request then gets (404 or 410).
RETIRED = "reload_tasks_retired"
# sandbox.tables key of changelog 271's create answer: POST answers 410 TASKS-011 while reads and changes go on.
# Off unless set, so the create path stays testable; a migrated task's PUT/DELETE answer 400 TASKS-001 always.
CREATION_GONE = "reload_task_creation_gone"
# What the migration guide's migrated task shows instead of `state` and the job fields.
MIGRATED_FIELDS = {"disabledCode": "", "fortressId": "", "log": "", "migrated": True}

SCHEDULES = [
    ("Europe/Zurich", ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=0;BYSECOND=0"]),
    ("America/New_York", ["RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,TU,WE,TH,FR;BYHOUR=5;BYMINUTE=30;BYSECOND=0"]),
    ("UTC", ["RRULE:FREQ=HOURLY;INTERVAL=4;BYMINUTE=15;BYSECOND=0"]),
    ("Europe/London", ["RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=1;BYHOUR=2;BYMINUTE=0;BYSECOND=0"]),
    ("Asia/Tokyo", ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=23;BYMINUTE=45;BYSECOND=0"]),
]


def tasks(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return sandbox.tables.setdefault(TABLE, {})


def retire(sandbox: Sandbox, status: int | None = 404) -> None:
    """From now on every /api/v1/reload-tasks request answers `status` (None: served again)."""
    if status not in (None, 404, 410):
        raise ValueError("a retired API answers 404 or 410")
    sandbox.tables[RETIRED] = status


def stop_creation(sandbox: Sandbox, stopped: bool = True) -> None:
    """From now on `POST /api/v1/reload-tasks` answers 410 TASKS-011 (changelog 271); reads and changes go on."""
    sandbox.tables[CREATION_GONE] = stopped


def coded(status: int, code: str, title: str, detail: str) -> Response:
    """An error with one of the Reload Tasks API's own codes (reload-tasks.json: `TASKS-123`)."""
    error = {"code": code, "title": title, "detail": detail}
    return JSONResponse({"errors": [error], "traceId": f"{id(error):016x}"}, status_code=status)


# Every answer of this deprecated API carries its deprecation (changelog 266: "deprecation warnings are
# communicated through response headers"), written as RFC 9745 / RFC 8594 do: deprecated since changelog 231's
# update (2026-06-26), removal on or after 2026-09-29.
DEPRECATION_HEADERS = {
    "Deprecation": "@1782432000",
    "Sunset": "Tue, 29 Sep 2026 00:00:00 GMT",
    "Link": '<https://qlik.dev/changelog/231-scheduling-tasks-api-and-reload-tasks-deprecation/>; rel="deprecation"',
}


def unless_retired(sandbox: Sandbox, handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        status = sandbox.tables.get(RETIRED)
        if status:
            title = "Gone" if status == 410 else "Not Found"
            return err(status, "the Reload Tasks API is not available on this tenant", title)
        response: Response = await handler(request)
        response.headers.update(DEPRECATION_HEADERS)
        return response

    return endpoint


def migration_problem(sandbox: Sandbox, task_id: str) -> tuple[int, str] | None:
    """Why `POST /api/v1/tasks?migrateFrom=<task_id>` cannot migrate that reload task, or None."""
    task = tasks(sandbox).get(task_id)
    if task is None:
        return 404, f"reload task {task_id} not found"
    if task.get("migrated"):
        return 400, f"reload task {task_id} is already migrated"
    return None


def mark_migrated(sandbox: Sandbox, task_id: str) -> None:
    """The guide's step 3: the reload task shows `migrated: true` (no state, no job); by changelog 135 its app now
    has a task, so the app's reload tasks are turned off."""
    task = tasks(sandbox)[task_id]
    for key in ("state", "jobId", "nextExecutionTime"):
        task.pop(key, None)
    task.update(MIGRATED_FIELDS)
    turn_off_for_app(sandbox, task["appId"])


def turn_off_for_app(sandbox: Sandbox, app_id: str) -> None:
    """Changelog 135: once an app has tasks its reload tasks no longer run. How Qlik shows that is not documented;
    here they keep their state and lose their next run."""
    for task in tasks(sandbox).values():
        if task["appId"] == app_id:
            task["_off_by_tasks"] = True


def guide_body(task: dict[str, Any], space_id: str) -> dict[str, Any]:
    """The task body of the migration guide's step 2 for one reload task (its first RRULE line)."""
    schedule = {"recurrence": task["recurrence"][0], "timezone": task.get("timeZone") or "UTC"}
    if task.get("startDateTime"):
        schedule["startDateTime"] = task["startDateTime"]
    action = {"name": "reload-app", "functionRef": {"refName": "app.reload", "arguments": {"appId": task["appId"]}}}
    action["functionRef"]["arguments"]["partial"] = task.get("partial", False)
    return {
        "name": f"migrated-reload-task-{task['id']}",
        "specVersion": "0.8",
        "enabled": True,
        "metadata": {"spaceId": space_id, "usage": "ANALYTICS"},
        "start": {"schedule": schedule, "stateName": "reload"},
        "states": [
            {
                "name": "reload",
                "type": "EVENT",
                "end": True,
                "onEvents": [{"eventRefs": ["time-schedule"], "actions": [action]}],
            }
        ],
    }


def seed_migrated(sandbox: Sandbox, count: int, migrate: Migrate) -> None:
    """Migrate the reload tasks of the last `count` apps as the guide does: `migrate(sandbox, body, task_id)` is
    the task store's POST ?migrateFrom handling."""
    chosen = [t for t in tasks(sandbox).values() if t.get("state") == "Enabled"][-count:] if count else []
    for task in chosen:
        migrate(sandbox, guide_body(task, sandbox.apps[task["appId"]].space_id), task["id"])


def next_execution(sandbox: Sandbox, task: dict[str, Any]) -> str | None:
    zone = zone_of(task.get("timeZone") or "UTC")
    if task.get("state") != "Enabled" or task.get("_off_by_tasks") or not task.get("recurrence") or zone is None:
        return None
    start, end = wall_clock(task.get("startDateTime"), zone), wall_clock(task.get("endDateTime"), zone)
    run = next_occurrence(task["recurrence"], zone, start, end, sandbox.clock.now())
    return utc_z(run) if run else None


def seed(sandbox: Sandbox, per_app: int = 1) -> None:
    table = tasks(sandbox)
    now = sandbox.clock.now()
    for index, app in enumerate(sandbox.apps.values()):
        for k in range(per_app):
            zone, rule = SCHEDULES[(index + k) % len(SCHEDULES)]
            task_id = sandbox.hex_id()
            start = (now - timedelta(days=30 + index)).astimezone(zone_of(zone))
            task: dict[str, Any] = {
                "id": task_id,
                "appId": app.id,
                "partial": k % 3 == 2,
                "timeZone": zone,
                "autoReload": False,
                "recurrence": list(rule),
                "startDateTime": start.strftime("%Y-%m-%dT%H:%M:00"),
                "endDateTime": "",
                "autoReloadPartial": False,
                "jobId": sandbox.hex_id(),
                "userId": app.owner_id,
                "tenantId": TENANT_ID,
                "spaceId": app.space_id,
                "state": "Enabled",
                "migrated": False,
                "links": {"self": {"href": f"{BASE}/{task_id}"}},
                "lastExecutionTime": utc_z(now - timedelta(hours=1 + index)),
            }
            if index % 7 == 3:
                task["state"] = "Disabled"
                task["disabledCode"] = "CONSECUTIVE-FAILURES"
                task["log"] = (
                    "Scheduled reload has been disabled since exceeded limit of 5 consecutive reload failures. "
                    "Please fix error and re-enable schedule."
                )
            elif index % 11 == 5:
                task["state"] = "Disabled"
                task["disabledCode"] = "MANUALLY"
            table[task_id] = task


def accessible(sandbox: Sandbox, task: dict[str, Any]) -> bool:
    return sandbox.sees_task(task["appId"], task.get("userId", ""), task.get("spaceId", ""))


def _public(request: Request, task: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
    out = {k: v for k, v in task.items() if not k.startswith("_")}
    out["links"] = self_link(request, f"{BASE}/{task['id']}")
    nxt = next_execution(sandbox, task)
    if nxt:
        out["nextExecutionTime"] = nxt
    else:
        out.pop("nextExecutionTime", None)
    return out


def meaning_problem(sandbox: Sandbox, body: dict[str, Any]) -> tuple[int, str] | None:
    """What the schema cannot say, as the spec's field descriptions do: an app that exists, an IANA zone,
    RFC 5545 RECUR lines without DTSTART/DTEND, start and end readable (local with a zone, else with an offset)."""
    if "appId" in body and body["appId"] not in sandbox.apps:
        return 404, f"app {body['appId']} not found"
    zone = zone_of(body["timeZone"]) if body.get("timeZone") else zone_of("UTC")
    if zone is None:
        return 400, f"timeZone {body['timeZone']!r} is not an IANA time zone name"
    problem = recurrence_problem(body.get("recurrence") or [])
    if problem:
        return 400, problem
    for key in ("startDateTime", "endDateTime"):
        if body.get(key) and wall_clock(body[key], zone) is None:
            return 400, f"{key} {str(body[key])[:40]!r} is not an ISO 8601 date-time"
    return None


def routes(sandbox: Sandbox) -> list[Route]:
    async def list_tasks(request: Request) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"), 10, 100)
        if limit is None:
            return err(400, "limit must be an integer between 1 and 100")
        # "The tasks that the user has access to", chosen before paging so every page and cursor agrees.
        items = sorted((t for t in tasks(sandbox).values() if accessible(sandbox, t)), key=lambda t: t["id"])
        if q.get("appId"):
            items = [t for t in items if t["appId"] == q["appId"]]
        if q.get("partial") is not None:
            wanted = q["partial"].lower() == "true"
            items = [t for t in items if t.get("partial", False) == wanted]
        keep = {k: q[k] for k in ("appId", "partial") if q.get(k) is not None}
        page = paginate(request, items, limit, CURSORS, keep)
        if isinstance(page, str):
            return err(400, page)
        return JSONResponse({"data": [_public(request, t, sandbox) for t in page.items], "links": page.links})

    async def create(request: Request) -> Response:
        if sandbox.tables.get(CREATION_GONE):
            return coded(410, "TASKS-011", "Gone", "reload tasks can no longer be created: create a task instead")
        body = await json_body(request)
        problem = meaning_problem(sandbox, body)
        if problem:
            return err(*problem)
        app = sandbox.apps[body["appId"]]
        task_id = sandbox.hex_id()
        task: dict[str, Any] = {k: body[k] for k in STORED if k in body}
        task.update(
            id=task_id,
            jobId=sandbox.hex_id(),
            userId=sandbox.caller_id,
            tenantId=TENANT_ID,
            spaceId=app.space_id,
            state="Enabled",
            migrated=False,
            links={"self": {"href": f"{BASE}/{task_id}"}},
        )
        task.setdefault("partial", False)
        tasks(sandbox)[task_id] = task
        return JSONResponse(_public(request, task, sandbox), status_code=201)

    async def get_one(request: Request) -> Response:
        task = tasks(sandbox).get(request.path_params["taskId"])
        if task is None:
            return err(404, "task not found")
        if not accessible(sandbox, task):
            return err(403, "the caller may not read this task: its app is in a space the caller is not a member of")
        return JSONResponse(_public(request, task, sandbox))

    async def put_one(request: Request) -> Response:
        task = tasks(sandbox).get(request.path_params["taskId"])
        if task is None:
            return err(404, "task not found")
        if task.get("migrated"):
            return coded(400, "TASKS-001", "Bad Request", "the reload task was migrated and cannot be changed")
        body = await json_body(request)
        problem = meaning_problem(sandbox, {"timeZone": task.get("timeZone")} | body)
        if problem:
            return err(*problem)
        for key in STORED:
            if key in body:
                task[key] = body[key]
        if "state" in body and body["state"] != task.get("state"):
            task["state"] = body["state"]
            if body["state"] == "Disabled":
                task["disabledCode"] = "MANUALLY"
            else:
                task.pop("disabledCode", None)
                task.pop("log", None)
        # PUT makes the caller the owner, as the real service does.
        task["userId"] = sandbox.caller_id
        return JSONResponse(_public(request, task, sandbox))

    async def delete_one(request: Request) -> Response:
        task = tasks(sandbox).get(request.path_params["taskId"])
        if task is None:
            return err(404, "task not found")
        if task.get("migrated"):
            return coded(400, "TASKS-001", "Bad Request", "the reload task was migrated and cannot be deleted")
        del tasks(sandbox)[task["id"]]
        return Response(status_code=204)

    def g(tier: str, handler: Any, component: str | None = None) -> Any:
        check = contract.checker(SPEC, component) if component else None
        # A retired API answers before anything else is looked at.
        return unless_retired(sandbox, guarded(sandbox, tier, err, handler, body=check))

    return [
        Route(BASE, g("1", list_tasks), methods=["GET"]),
        Route(BASE, g("2", create, "PostTaskBody"), methods=["POST"]),
        Route(BASE + "/{taskId}", g("1", get_one), methods=["GET"]),
        Route(BASE + "/{taskId}", g("2", put_one, "PutTaskBody"), methods=["PUT"]),
        Route(BASE + "/{taskId}", g("2", delete_one), methods=["DELETE"]),
    ]
