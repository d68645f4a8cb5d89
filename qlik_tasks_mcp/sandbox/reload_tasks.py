"""Sandbox `/api/v1/reload-tasks`: in-memory tasks answering as reload-tasks.json describes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.client.reload_tasks import BASE_FIELDS
from qlik_tasks_mcp.client.schedule import local_datetime, occurrences, rrule_lines, time_zone, utc_z
from qlik_tasks_mcp.sandbox.core import (
    TENANT_ID,
    Sandbox,
    decode_cursor,
    encode_cursor,
    guarded,
    json_body,
    link,
    parse_limit,
    qlik_errors,
    self_link,
)

BASE = "/api/v1/reload-tasks"
TABLE = "reload_tasks"

SCHEDULES = [
    ("Europe/Zurich", ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=0;BYSECOND=0"]),
    ("America/New_York", ["RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,TU,WE,TH,FR;BYHOUR=5;BYMINUTE=30;BYSECOND=0"]),
    ("UTC", ["RRULE:FREQ=HOURLY;INTERVAL=4;BYMINUTE=15;BYSECOND=0"]),
    ("Europe/London", ["RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=1;BYHOUR=2;BYMINUTE=0;BYSECOND=0"]),
    ("Asia/Tokyo", ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=23;BYMINUTE=45;BYSECOND=0"]),
]


def err(status: int, title: str, detail: str) -> Response:
    code = {400: "RELOAD-TASKS-400", 401: "RELOAD-TASKS-401", 404: "RELOAD-TASKS-404", 429: "RELOAD-TASKS-429"}
    return qlik_errors(status, code.get(status, f"RELOAD-TASKS-{status}"), title, detail)


def tasks(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return sandbox.tables.setdefault(TABLE, {})


def next_execution(sandbox: Sandbox, task: dict[str, Any]) -> str | None:
    if task.get("state") != "Enabled" or not task.get("recurrence"):
        return None
    zone = time_zone(task["timeZone"])
    start = local_datetime(task["startDateTime"], "startDateTime") if task.get("startDateTime") else None
    end = local_datetime(task["endDateTime"], "endDateTime") if task.get("endDateTime") else None
    runs = occurrences(task["recurrence"], zone, start, after=sandbox.clock.now(), count=1, end=end)
    return utc_z(runs[0]) if runs else None


def seed(sandbox: Sandbox, per_app: int = 1) -> None:
    table = tasks(sandbox)
    now = sandbox.clock.now()
    for index, app in enumerate(sandbox.apps.values()):
        for k in range(per_app):
            zone, rule = SCHEDULES[(index + k) % len(SCHEDULES)]
            task_id = sandbox.hex_id()
            start = (now - timedelta(days=30 + index)).astimezone(time_zone(zone))
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


def _public(request: Request, task: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
    out = {k: v for k, v in task.items() if not k.startswith("_")}
    out["links"] = self_link(request, f"{BASE}/{task['id']}")
    nxt = next_execution(sandbox, task)
    if nxt:
        out["nextExecutionTime"] = nxt
    else:
        out.pop("nextExecutionTime", None)
    return out


def _validate(sandbox: Sandbox, body: Any, *, creating: bool) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if creating:
        for required in ("appId", "timeZone"):
            if not body.get(required):
                return f"{required} is required"
    if "appId" in body and body["appId"] not in sandbox.apps:
        return f"app {body['appId']} not found"
    for key in ("partial", "autoReload", "autoReloadPartial"):
        if key in body and not isinstance(body[key], bool):
            return f"{key} must be a boolean"
    if "state" in body and body["state"] not in ("Enabled", "Disabled", "Completed"):
        return "state must be Enabled, Disabled or Completed"
    try:
        if body.get("timeZone"):
            time_zone(body["timeZone"])
        recurrence = body.get("recurrence")
        if recurrence is not None:
            if not isinstance(recurrence, list) or not all(isinstance(x, str) for x in recurrence):
                return "recurrence must be an array of strings"
            rrule_lines(recurrence)
        for key in ("startDateTime", "endDateTime"):
            if body.get(key):
                local_datetime(body[key], key)
    except InvalidInput as exc:
        return str(exc)
    return None


def routes(sandbox: Sandbox) -> list[Route]:
    async def list_tasks(request: Request) -> Response:
        q = request.query_params
        limit = parse_limit(q.get("limit"), 10, 100)
        if limit is None:
            return err(400, "Bad Request", "limit must be an integer between 1 and 100")
        if q.get("next") and q.get("prev"):
            return err(400, "Bad Request", "provide either next or prev, not both")
        items = sorted(tasks(sandbox).values(), key=lambda t: t["id"])
        if q.get("appId"):
            items = [t for t in items if t["appId"] == q["appId"]]
        if q.get("partial") is not None:
            wanted = q["partial"].lower() == "true"
            items = [t for t in items if t.get("partial", False) == wanted]
        cursor = q.get("next") or q.get("prev")
        offset = 0
        if cursor:
            decoded = decode_cursor(cursor)
            if decoded is None:
                return err(400, "Bad Request", "invalid page cursor")
            offset = decoded
        page = items[offset : offset + limit]
        keep = {k: q[k] for k in ("appId", "partial") if q.get(k) is not None}
        links: dict[str, Any] = {"self": link(request, **keep, limit=limit)}
        if offset + limit < len(items):
            links["next"] = link(request, **keep, limit=limit, next=encode_cursor(offset + limit))
        if offset > 0:
            links["prev"] = link(request, **keep, limit=limit, prev=encode_cursor(max(0, offset - limit)))
        return JSONResponse({"data": [_public(request, t, sandbox) for t in page], "links": links})

    async def create(request: Request) -> Response:
        body = await json_body(request)
        problem = _validate(sandbox, body, creating=True)
        if problem:
            status = 404 if problem.startswith("app ") else 400
            return err(status, "Not Found" if status == 404 else "Bad Request", problem)
        app = sandbox.apps[body["appId"]]
        task_id = sandbox.hex_id()
        task: dict[str, Any] = {k: body[k] for k in BASE_FIELDS if k in body}
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
            return err(404, "Not Found", "task not found")
        return JSONResponse(_public(request, task, sandbox))

    async def put_one(request: Request) -> Response:
        task = tasks(sandbox).get(request.path_params["taskId"])
        if task is None:
            return err(404, "Not Found", "task not found")
        body = await json_body(request)
        problem = _validate(sandbox, body, creating=False)
        if problem:
            return err(400, "Bad Request", problem)
        for key in BASE_FIELDS:
            if key in body:
                task[key] = body[key]
        if "state" in body and body["state"] != task["state"]:
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
        if tasks(sandbox).pop(request.path_params["taskId"], None) is None:
            return err(404, "Not Found", "task not found")
        return Response(status_code=204)

    def g(tier: str, handler: Any) -> Any:
        return guarded(sandbox, tier, err, handler)

    return [
        Route(BASE, g("1", list_tasks), methods=["GET"]),
        Route(BASE, g("2", create), methods=["POST"]),
        Route(BASE + "/{taskId}", g("1", get_one), methods=["GET"]),
        Route(BASE + "/{taskId}", g("2", put_one), methods=["PUT"]),
        Route(BASE + "/{taskId}", g("2", delete_one), methods=["DELETE"]),
    ]
